"""Post-import hooks (issue 16): which events run which hook, what the hook sees, and that a
slow or failing hook never blocks or fails anything."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from dropzone.config.loading import load_settings
from dropzone.errors import ConfigError
from dropzone.fleet.hooks import HookRunner, notice
from dropzone.testing.waiting import wait_until

DONE = {
    "event": "artifact.done",
    "path": "/srv/dropzone/qwen.gguf",
    "model": "qwen:latest",
    "host": "http://gpu1:11434",
    "result": "done",
    "error": None,
    "digests": ["sha256:" + "a" * 64, "sha256:" + "b" * 64],
}


def test_a_made_model_is_an_imported_notice_a_failure_or_refusal_a_refused_one() -> None:
    imported = notice(DONE)
    assert imported is not None and imported.kind == "imported"
    failed = notice({**DONE, "result": "failed", "error": "unknown architecture"})
    assert failed is not None and failed.kind == "refused"
    refused = notice({"event": "artifact.refused", "path": "/p", "host": "h", "status": 413,
                      "error": "too large", "fix": "raise client_max_body_size"})  # fmt: skip
    assert refused is not None and refused.kind == "refused"
    assert refused.env()["DROPZONE_FIX"] == "raise client_max_body_size"
    for other in ({"event": "hash.done"}, {**DONE, "result": "skipped"}, {"event": "hook.done"}):
        assert notice(other) is None


def test_the_environment_names_the_model_host_artifact_digests_and_reason() -> None:
    n = notice({**DONE, "result": "failed", "error": "bad template"})
    assert n is not None
    env = n.env()
    assert env["DROPZONE_EVENT"] == "refused"
    assert env["DROPZONE_MODEL"] == "qwen:latest"
    assert env["DROPZONE_HOST"] == "http://gpu1:11434"
    assert env["DROPZONE_ARTIFACT"] == "/srv/dropzone/qwen.gguf"
    assert env["DROPZONE_DIGESTS"] == " ".join(DONE["digests"])  # type: ignore[arg-type]
    assert env["DROPZONE_REASON"] == "bad template"
    assert env["DROPZONE_RESULT"] == "failed"


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "hook.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def run_one(runner: HookRunner, event: dict[str, Any], logs: list[Any], name: str) -> Any:
    runner.offer(event)
    return wait_until(lambda: [e for e in logs if e["event"] == name], what=name)[0]


def test_a_hook_runs_without_a_shell_with_the_event_in_its_environment_and_no_secrets(
    tmp_path: Path,
) -> None:
    out = tmp_path / "env.json"
    body = (
        "import json, os, sys\n"
        f"json.dump({{**os.environ, 'argv': sys.argv[1:]}}, open({str(out)!r}, 'w'))\n"
        "print('announced')\n"
    )
    argv = [*script(tmp_path, body), "$DROPZONE_MODEL", "a b"]
    runner = HookRunner(on_imported=argv, on_refused=[], timeout=30)
    with capture_logs() as logs:
        done = run_one(runner, DONE, logs, "hook.done")
        runner.close()
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["$DROPZONE_MODEL", "a b"]  # no shell: nothing expanded or split
    assert seen["DROPZONE_MODEL"] == "qwen:latest" and seen["DROPZONE_EVENT"] == "imported"
    # The daemon's own environment (its EnvironmentFile holds tokens) is not passed on.
    assert not {k for k in seen if k.startswith("DROPZONE_") and k not in notice(DONE).env()}  # type: ignore[union-attr]
    assert "PATH" in seen
    assert done["hook"] == "on_imported" and done["exit_status"] == 0
    assert done["output"].strip() == "announced" and done["model"] == "qwen:latest"


def test_a_failing_hook_is_logged_with_its_output_and_status(tmp_path: Path) -> None:
    argv = script(tmp_path, "import sys\nprint('no webhook today', file=sys.stderr)\nsys.exit(3)\n")
    runner = HookRunner(on_imported=argv, on_refused=[], timeout=30)
    with capture_logs() as logs:
        failed = run_one(runner, DONE, logs, "hook.failed")
        runner.close()
    assert failed["exit_status"] == 3 and "no webhook today" in failed["output"]
    assert failed["log_level"] == "warning"


def test_a_hook_that_runs_too_long_is_killed_with_its_children(tmp_path: Path) -> None:
    # The hook starts a child that holds the output pipe: both must go at the timeout.
    argv = script(
        tmp_path,
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('started', flush=True)\ntime.sleep(60)\n",
    )
    runner = HookRunner(on_imported=argv, on_refused=[], timeout=0.5)
    with capture_logs() as logs:
        failed = run_one(runner, DONE, logs, "hook.failed")
        runner.close()
    assert "timed out after 0.5 s" in failed["error"] and "started" in failed["output"]


def test_a_hook_that_cannot_start_is_a_failure_event_not_an_exception(tmp_path: Path) -> None:
    runner = HookRunner(on_imported=[str(tmp_path / "missing")], on_refused=[], timeout=5)
    with capture_logs() as logs:
        failed = run_one(runner, DONE, logs, "hook.failed")
        runner.close()
    assert "cannot run" in failed["error"]


def test_offering_never_blocks_the_job_thread_and_the_queue_is_bounded(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    argv = script(
        tmp_path,
        "import os, time\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n",
    )
    runner = HookRunner(on_imported=argv, on_refused=[], timeout=30, queue_size=2)
    offered = threading.Event()
    with capture_logs() as logs:

        def offer_many() -> None:
            for _ in range(10):
                runner.offer(DONE)
            offered.set()

        threading.Thread(target=offer_many).start()
        assert offered.wait(5), "offer blocked on a running hook"
        dropped = [e for e in logs if e["event"] == "hook.dropped"]
        assert dropped, "a full queue must drop with a warning"
        gate.write_text("")
        wait_until(lambda: len([e for e in logs if e["event"] == "hook.done"]) >= 2)
        runner.close()


@pytest.mark.parametrize("kind", ["on_imported", "on_refused"])
def test_only_the_configured_hook_runs(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    argv = script(tmp_path, f"open({str(marker)!r}, 'a').write('x')\n")
    runner = HookRunner(
        on_imported=argv if kind == "on_imported" else [],
        on_refused=argv if kind == "on_refused" else [],
        timeout=5,
    )
    with capture_logs() as logs:
        runner.offer(DONE)
        runner.offer({**DONE, "result": "failed", "error": "x"})
        wait_until(lambda: [e for e in logs if e["event"] == "hook.done"])
        runner.close()
    assert marker.read_text() == "x"
    (done,) = [e for e in logs if e["event"] == "hook.done"]
    assert done["hook"] == kind


def test_hook_and_webhook_settings_from_toml_and_the_environment(tmp_path: Path) -> None:
    absent = tmp_path / "absent.toml"
    config = tmp_path / "dropzone.toml"
    config.write_text('on_imported = ["/usr/local/bin/announce", "--quiet"]\n')
    env = {"DROPZONE_WEBHOOK_HEADERS": '{"X-Token": "s3cret"}',
           "DROPZONE_WEBHOOK_URL": "https://hooks.example/dropzone"}  # fmt: skip
    s = load_settings(config_path=config, env=env, default_config_path=absent)
    assert s.on_imported == ("/usr/local/bin/announce", "--quiet")
    assert s.webhook_headers["X-Token"].get_secret_value() == "s3cret"
    with pytest.raises(ConfigError) as e:
        load_settings(
            config_path=None,
            env={
                "DROPZONE_ON_REFUSED": '["page-oncall"]',
                "DROPZONE_WEBHOOK_HEADERS": '{"X-Token": "s3cret\\nInjected: 1"}',
            },
            default_config_path=absent,
        )
    text = str(e.value)
    assert "absolute path" in text and "webhook_headers" in text
    assert "s3cret" not in text  # a secret never reaches the message
