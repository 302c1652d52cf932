"""No secret in any output (design §10.8, issue 15): a real run configured with tokens, and
every line each command writes, searched for them.

One host carries a bearer token in its headers, the other a user and password in its URL
(which dropzone turns into a Basic Authorization header, so the URL events and the state
store show has none). The daemon runs at debug level, so httpx's own records are searched too.
"""

from __future__ import annotations

import base64
import json
import os
import time

from dropzone_process import DropzoneProcess
from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator

BEARER = "bearer-7d41c0e9aa52"
PASSWORD = "pw-5be1f03c77"
BASIC = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
SECRETS = (BEARER, PASSWORD, BASIC)


def leaks(process: DropzoneProcess) -> list[str]:
    return [line for line in process.output() if any(s in line for s in SECRETS)]


def test_no_token_appears_in_any_line_of_run_status_doctor_check_and_scan(
    dropzone: Dropzone, emulator: Emulator, second_emulator: Emulator
) -> None:
    second_emulator.start()
    plain = second_emulator.url.removeprefix("http://")
    hosts = json.dumps(
        [
            {"url": emulator.url, "headers": {"Authorization": f"Bearer {BEARER}"}},
            f"http://ops:{PASSWORD}@{plain}",
        ]
    )
    gguf = build_gguf(dropzone.drop / "Secret.gguf")
    old = time.time() - 3600
    os.utime(gguf, (old, old))

    daemon = dropzone.run(DROPZONE_OLLAMA_HOSTS=hosts, DROPZONE_LOG_LEVEL="debug")
    daemon.wait_for("artifact.done", host=emulator.url, timeout=30)
    done = daemon.wait_for("artifact.done", host=second_emulator.url, timeout=30)
    assert done["host"] == f"http://{plain}"
    assert daemon.stop() == 0, daemon.transcript()
    assert second_emulator.models() == ["secret:latest"]

    env = dropzone.env(DROPZONE_OLLAMA_HOSTS=hosts, DROPZONE_LOG_LEVEL="debug")
    for command, args in [
        ("status", ()),
        ("status", ("--json",)),
        ("doctor", ()),
        ("doctor", ("--json",)),
        ("check", (str(gguf),)),
        ("check", ("--json", str(gguf))),
        ("scan", ()),
    ]:
        process = dropzone.start(command, env, args)
        process.wait_exit(60)
        assert process.output(), command
        assert not leaks(process), (command, leaks(process))
    assert not leaks(daemon), leaks(daemon)


def test_invalid_json_with_a_token_in_the_host_list_is_named_without_it(
    dropzone: Dropzone,
) -> None:
    broken = f'[{{"url": "https://proxy", "headers": {{"Authorization": Bearer {BEARER}"}}}}]'
    for command in ("run", "scan", "status", "doctor"):
        process = dropzone.start(command, dropzone.env(DROPZONE_OLLAMA_HOSTS=broken))
        assert process.wait_exit(30) == 2, process.transcript()
        lines = process.output()
        assert any(line.startswith("dropzone: ollama_hosts") for line in lines), lines
        assert not leaks(process), leaks(process)
