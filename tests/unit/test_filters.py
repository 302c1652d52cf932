"""Ignore rules of the drop folder (design §4.1)."""

from __future__ import annotations

import pytest

from dropzone.scan.ignore import IgnoreRules, is_ignored


@pytest.mark.parametrize(
    "path",
    [
        ".hidden.gguf",
        ".qwen3-8b.gguf.Xa12Bc",  # rsync temporary
        "models/.cache/huggingface/download/model.safetensors.incomplete",
        ".cache/huggingface/download/abc.incomplete",
        "sub/.git/objects/ab",
        ".imported/old.gguf",
        "model.gguf.part",
        "model.gguf.partial",
        "model.gguf.crdownload",
        "model.gguf.download",
        "model.gguf.filepart",
        "model.gguf.tmp",
        "model.gguf.TMP",
        "model.gguf~",
        "model.gguf.aria2",
        ".DS_Store",
        "dir/.DS_Store",
        "@eaDir/model.gguf@SynoEAStream",
        "Thumbs.db",
        "thumbs.db",
        "lost+found/x.gguf",
        "__MACOSX/m/model.gguf",
        "download.tmp/model.gguf",  # a folder with a temporary name: everything below
    ],
)
def test_built_in_rules_ignore(path: str) -> None:
    assert is_ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "model.gguf",
        "qwen/model-00001-of-00002.safetensors",
        "qwen/config.json",
        "a.b.c.gguf",
        "partial-model.gguf",
        "tmp/model.gguf",
        "my.download.folder/model.gguf",
        "Modelfile",
    ],
)
def test_built_in_rules_keep(path: str) -> None:
    assert not is_ignored(path)


def test_aria2_control_file_hides_the_file_it_controls_until_it_is_gone() -> None:
    tree = {"m.gguf", "m.gguf.aria2", "other.gguf"}
    assert is_ignored("m.gguf", tree)
    assert not is_ignored("other.gguf", tree)
    assert not is_ignored("m.gguf", {"m.gguf"})


def test_aria2_control_file_of_a_folder_hides_everything_inside() -> None:
    tree = {"repo", "repo.aria2", "repo/model.safetensors"}
    assert is_ignored("repo/model.safetensors", tree)


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.bak"], "m/model.gguf.bak", True),
        (["*.BAK"], "model.gguf.bak", True),
        (["scratch"], "scratch/model.gguf", True),
        (["scratch"], "a/scratch/model.gguf", True),
        (["scratch"], "scratchpad/model.gguf", False),
        (["archive/*"], "archive/model.gguf", True),
        (["archive/*"], "other/archive/model.gguf", False),
        (["*/old"], "team/old/model.gguf", True),
        ([], "model.gguf.bak", False),
    ],
)
def test_configured_patterns(patterns: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules(tuple(patterns)).is_ignored(path) is ignored


def test_reason_says_why() -> None:
    rules = IgnoreRules(("*.bak",))
    assert rules.reason("x/.m.gguf.abc123") == "hidden (possibly an rsync temporary)"
    assert rules.reason("m.gguf.part") == "a temporary download name"
    assert rules.reason("m.bak") == "matches the configured pattern '*.bak'"
    assert rules.reason("m.gguf", {"m.gguf.aria2"}) == "being downloaded by aria2"
    assert rules.reason("m.gguf") is None


def test_prune_dir_only_uses_rules_that_need_no_siblings() -> None:
    rules = IgnoreRules(("old",))
    assert rules.prune_dir(".cache")
    assert rules.prune_dir("a/old")
    assert not rules.prune_dir("models")
