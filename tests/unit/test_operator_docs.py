"""The README and repository fixes an operator trying dropzone asked for (issue 15)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gitignore_keeps_the_local_trial_folders_out_of_git() -> None:
    # Anchored at the root: an unanchored "emulator/" also hid tests/emulator/ from git.
    lines = (ROOT / ".gitignore").read_text().splitlines()
    for folder in ("/drop/", "/state/", "/emulator/"):
        assert folder in lines, folder


def test_the_systemd_readme_needs_no_sudo() -> None:
    # A minimal Debian 12 has no sudo; the install runs as root.
    assert "sudo" not in (ROOT / "systemd" / "README.md").read_text()


def test_the_readme_waits_for_the_settle_period_before_listing_models() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    cp = next(i for i, line in enumerate(lines) if line.startswith("cp tiny.gguf drop/"))
    between = "\n".join(lines[cp + 1 : cp + 5])
    assert "settle" in between and "curl" in between
    assert between.index("settle") < between.index("curl")
