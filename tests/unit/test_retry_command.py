"""``dropzone retry PATH``: which stored artifact keys a path on the command line names."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropzone.commands.retry import artifact_keys

KEYS = {
    "Qwen.gguf",
    "models/Mario.gguf",
    "models/llama-st",
    "split/big-00001-of-00003.gguf",
    "recipes/Chat.Modelfile",
}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Qwen.gguf", ["Qwen.gguf"]),
        ("models/Mario.gguf", ["models/Mario.gguf"]),
        ("models/Mario.toml", ["models/Mario.gguf"]),  # its sidecar
        ("models/Mario.Modelfile", ["models/Mario.gguf"]),
        ("models/llama-st/model-00001-of-00002.safetensors", ["models/llama-st"]),
        ("models/llama-st.yaml", ["models/llama-st"]),
        ("split/big-00003-of-00003.gguf", ["split/big-00001-of-00003.gguf"]),
        ("recipes/Chat.Modelfile", ["recipes/Chat.Modelfile"]),
        ("models", ["models/Mario.gguf", "models/llama-st"]),  # a folder: what is in it
        (".", sorted(KEYS)),
        ("Unknown.gguf", []),
    ],
)
def test_a_path_in_the_drop_folder_names_its_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, expected: list[str]
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    assert artifact_keys(str(drop / given), drop, KEYS) == expected
    monkeypatch.chdir(drop)  # relative to the working directory, as typed
    assert artifact_keys(given, drop, KEYS) == expected


def test_a_path_outside_the_drop_folder_names_nothing(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    assert artifact_keys(str(tmp_path / "Qwen.gguf"), drop, KEYS) == []
