"""``dropzone check`` loads the settings the daemon loads (``--config``, ``DROPZONE_*``,
defaults), says on stderr which configuration it used, and exits 2 on a bad one (issue 15)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dropzone.cli import main
from dropzone.testing.builders import build_gguf


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DROPZONE_") or name in ("OLLAMA_HOST", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["check", "--json", "--no-hash", *args])
    captured = capsys.readouterr()
    models = [f["model"] for f in json.loads(captured.out)] if code != 2 else []
    return code, models, captured.err


def test_default_tag_from_the_config_file_names_the_model_as_the_daemon_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = build_gguf(tmp_path / "drop" / "Tiny.gguf")
    config = tmp_path / "dropzone.toml"
    config.write_text('default_tag = "prod"\n')
    code, models, err = check(capsys, "--config", str(config), str(gguf))
    assert (code, models) == (0, ["tiny:prod"])
    assert str(config) in err


def test_default_tag_from_the_environment_and_the_flag_beats_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = build_gguf(tmp_path / "drop" / "Tiny.gguf")
    config = tmp_path / "dropzone.toml"
    config.write_text('default_tag = "prod"\n')
    monkeypatch.setenv("DROPZONE_CONFIG", str(config))
    monkeypatch.setenv("DROPZONE_DEFAULT_TAG", "staging")
    code, models, err = check(capsys, str(gguf))
    assert (code, models) == (0, ["tiny:staging"])
    assert str(config) in err and "DROPZONE_DEFAULT_TAG" in err
    assert "staging" not in err  # names of variables, never their values
    code, models, _ = check(capsys, "--default-tag", "v1", str(gguf))
    assert (code, models) == (0, ["tiny:v1"])


def test_without_a_file_the_defaults_are_used_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = build_gguf(tmp_path / "Tiny.gguf")
    code, models, err = check(capsys, str(gguf))
    assert (code, models) == (0, ["tiny:latest"])
    assert "defaults" in err


@pytest.mark.parametrize(
    "content",
    [None, "default_tag = \n", 'default_tag = "no spaces allowed"\n', "drop_dri = '/srv'\n"],
    ids=["missing", "not-toml", "bad-value", "unknown-key"],
)
def test_a_missing_or_broken_configuration_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    gguf = build_gguf(tmp_path / "Tiny.gguf")
    config = tmp_path / "dropzone.toml"
    if content is not None:
        config.write_text(content)
    code = main(["check", "--config", str(config), str(gguf)])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.startswith("dropzone: "), captured.err
    assert captured.out == ""
