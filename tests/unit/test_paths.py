"""Paths a sidecar names: inside the drop folder or refused, each refusal with a fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropzone.errors import Problem
from dropzone.recipes.paths import (
    References,
    file_keys,
    resolve_from,
    resolve_inside,
    resolve_references,
)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """A drop folder with a model file, a sub folder, and a file outside the drop folder."""
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    (drop / "base.gguf").write_bytes(b"GGUF")
    (drop / "sub" / "lora.gguf").write_bytes(b"GGUF")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    return drop


def resolve(value: str, drop: Path, base: Path | None = None) -> Path | Problem:
    return resolve_inside(
        value, base_dir=base or drop, drop_dir=drop, source="s.toml", key="adapters", line=3
    )


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [
        ("base.gguf", ".", "base.gguf"),
        ("./base.gguf", ".", "base.gguf"),
        ("sub/lora.gguf", ".", "sub/lora.gguf"),
        ("../base.gguf", "sub", "base.gguf"),  # '..' that stays inside is fine
        ("sub/../base.gguf", ".", "base.gguf"),
        (".", "sub", "sub"),
        ("lora.gguf", "sub", "sub/lora.gguf"),  # relative to the sidecar's folder
    ],
)
def test_paths_inside_the_drop_folder_resolve(
    drop: Path, value: str, base: str, expected: str
) -> None:
    assert resolve(value, drop, drop / base) == drop / expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../outside.gguf", "leads outside the drop folder"),
        ("sub/../../outside.gguf", "leads outside the drop folder"),
        ("../nowhere.gguf", "leads outside the drop folder"),  # outside: existence not probed
        ("/etc/passwd", "absolute path '/etc/passwd' is not allowed"),
        ("~/model.gguf", "absolute path '~/model.gguf' is not allowed"),
        ("~root/model.gguf", "absolute path"),
        ("missing.gguf", "no such file or folder: 'missing.gguf'"),
        ("", "empty path"),
    ],
)
def test_paths_are_refused_with_a_fix(drop: Path, value: str, message: str) -> None:
    problem = resolve(value, drop)
    assert isinstance(problem, Problem)
    assert message in problem.message
    assert (problem.path, problem.line, problem.key) == ("s.toml", 3, "adapters")
    assert problem.fix


def test_a_symlink_leading_out_is_refused(drop: Path, tmp_path: Path) -> None:
    (drop / "link.gguf").symlink_to(tmp_path / "outside.gguf")
    (drop / "linkdir").symlink_to(tmp_path)
    for value in ("link.gguf", "linkdir/outside.gguf"):
        problem = resolve(value, drop)
        assert isinstance(problem, Problem)
        assert "symlink that leads outside" in problem.message


def test_a_dangling_symlink_is_refused(drop: Path) -> None:
    (drop / "dangling.gguf").symlink_to(drop / "gone.gguf")
    problem = resolve("dangling.gguf", drop)
    assert isinstance(problem, Problem)
    assert "symlink to a missing file" in problem.message


def test_a_symlink_inside_is_kept_as_written(drop: Path) -> None:
    (drop / "alias.gguf").symlink_to(drop / "base.gguf")
    assert resolve("alias.gguf", drop) == drop / "alias.gguf"


def test_a_symlinked_drop_folder_still_contains_its_files(drop: Path, tmp_path: Path) -> None:
    link = tmp_path / "drop-link"
    link.symlink_to(drop)
    assert resolve("base.gguf", link, drop) == drop / "base.gguf"
    assert resolve("base.gguf", drop, link) == link / "base.gguf"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("base.gguf", "path"),  # something exists there: a path, as the CLI decides
        ("sub", "path"),
        ("llama3.2", "llama3.2"),  # nothing there: a model name
        ("user/model:tag", "user/model:tag"),
        ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M"),
        # The server trims a FROM and takes ":local" off it (modelref.ParseRef, issue 15).
        (" llama3.2 ", " llama3.2 "),
        ("llama3.2:1b:local", "llama3.2:1b:local"),
    ],
)
def test_from_is_a_path_if_it_exists_else_a_name(drop: Path, value: str, expected: str) -> None:
    found = resolve_from(value, base_dir=drop, drop_dir=drop, source="M")
    assert (found == drop / value) if expected == "path" else found == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("./missing.gguf", "no such file or folder"),
        ("missing.gguf", "no such file or folder"),  # a weights suffix: a typo, not a registry name
        ("../outside.gguf", "leads outside"),
        ("/abs/model", "absolute path"),
        ("bad name!", "invalid model name: bad name!"),
        ("", "FROM is empty"),
        ("base:cloud:local", "invalid model name: base:cloud:local"),
    ],
)
def test_from_refusals(drop: Path, value: str, message: str) -> None:
    found = resolve_from(value, base_dir=drop, drop_dir=drop, source="M", line=1)
    assert isinstance(found, Problem)
    assert message in found.message
    assert found.fix and found.line == 1


def test_references_resolve_together(drop: Path) -> None:
    refs = resolve_references(
        {"from": ["llama3", "qwen3"], "adapters": ["sub/lora.gguf"], "draft": ["sub"]},
        source=drop / "x.toml",
        drop_dir=drop,
        locate=lambda key, value: None,
    )
    assert refs == References(
        from_name="qwen3",  # for names the last wins
        adapter_paths=(drop / "sub/lora.gguf",),
        draft_paths=(drop / "sub",),
        folders=frozenset({drop / "sub"}),
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"from": ["llama3", "base.gguf"]}, "FROM names both the model 'llama3' and files"),
        ({"from": ["base.gguf"], "draft": ["base.gguf"]}, "DRAFT must not reference the same"),
    ],
)
def test_references_that_contradict_are_refused(
    drop: Path, values: dict[str, list[str]], message: str
) -> None:
    found = resolve_references(
        values, source=drop / "x.toml", drop_dir=drop, locate=lambda key, value: 7
    )
    assert isinstance(found, list)
    assert any(message in p.message for p in found)


def test_references_report_every_bad_path_with_its_line(drop: Path) -> None:
    found = resolve_references(
        {"adapters": ["/abs", "nope"]},
        source=drop / "x.toml",
        drop_dir=drop,
        locate=lambda key, value: {"/abs": 2, "nope": 5}[value],
    )
    assert isinstance(found, list)
    assert [p.line for p in found] == [2, 5]


@pytest.mark.parametrize(
    ("files", "keys"),
    [
        (["/d/model.gguf"], ["model.gguf"]),
        (["/d/sub/x.gguf"], ["x.gguf"]),
        (["/d/a.gguf", "/d/mmproj.gguf"], ["a.gguf", "mmproj.gguf"]),
        (["/d/config.json", "/d/2_Dense/config.json"], ["2_Dense/config.json", "config.json"]),
        (["/d/x/a.json", "/d/y/b.json"], ["x/a.json", "y/b.json"]),
        ([], []),
    ],
)
def test_file_keys_as_the_cli_names_them(files: list[str], keys: list[str]) -> None:
    found = file_keys([Path(f) for f in files])
    assert sorted(found) == keys
    assert all(os.path.basename(k) == found[k].name for k in found)
