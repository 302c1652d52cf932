"""The command line as an operator meets it: ``--version`` and ``--help`` (issue 15)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from dropzone.cli import COMMANDS, main


def output_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert stopped.value.code == 0
    return capsys.readouterr().out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert output_of(capsys, "--version") == f"dropzone {version('dropzone')}\n"


def test_help_speaks_to_operators_not_developers(capsys: pytest.CaptureFixture[str]) -> None:
    text = output_of(capsys, "--help")
    assert "main(argv)" not in text and "``" not in text
    assert "Ollama" in text and "--version" in text
    assert "/etc/dropzone/dropzone.toml" in text and "DROPZONE_" in text
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_help_says_what_it_does_its_exit_status_and_an_example(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    text = output_of(capsys, command, "--help")
    assert "main(argv)" not in text and "``" not in text
    assert "exit status:" in text
    assert f"  dropzone {command}" in text  # an example line
    assert "--config PATH" in text
