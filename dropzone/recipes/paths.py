"""Paths named by sidecars: resolved inside the drop folder or refused; ``files`` keys.

A sidecar may only point at files inside the drop folder: no absolute or home paths, no ``..``
leading out, no symlink whose target lies outside, nothing missing. Paths are relative to the
sidecar's folder, as the Ollama CLI resolves a Modelfile's paths. ``FROM`` is a path when
something exists there and a model name otherwise, again as the CLI decides.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dropzone.errors import Problem
from dropzone.recipes.names import is_valid_ref

# A FROM value with one of these endings names a file; a miss is a typo, not a registry model.
_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pth", ".json")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _is_absolute(value: str) -> bool:
    # The CLI treats a leading backslash as absolute too (Windows), and expands ~ and ~user.
    return os.path.isabs(value) or value.startswith(("~", "\\"))


def resolve_inside(
    value: str,
    *,
    base_dir: Path,
    drop_dir: Path,
    source: str,
    key: str,
    line: int | None = None,
) -> Path | Problem:
    """``base_dir / value`` normalised, if it exists and stays inside ``drop_dir``; else why not.

    The returned path is lexically normalised, not resolved, so it matches the scanner's paths;
    containment is checked on the fully resolved path.
    """

    def refuse(message: str, fix: str) -> Problem:
        return Problem(source, message, fix, line=line, key=key)

    inside = "the path must lead to a file or folder inside the drop folder"
    if not value:
        return refuse("empty path", f"name a file or folder relative to {base_dir}")
    if _is_absolute(value):
        return refuse(
            f"absolute path {value!r} is not allowed",
            f"write it relative to the sidecar's folder ({base_dir}); {inside}",
        )
    candidate = os.path.normpath(os.path.join(os.path.abspath(base_dir), value))
    drop = os.path.abspath(drop_dir)
    real_drop = os.path.realpath(drop)
    real = os.path.realpath(candidate)
    if not _within(real, real_drop):
        # Outside either way; say why: ``..`` as written, or a symlink on the way.
        as_written = os.path.normpath(os.path.join(os.path.realpath(base_dir), value))
        if not any(_within(p, d) for p in (candidate, as_written) for d in (drop, real_drop)):
            return refuse(
                f"{value!r} leads outside the drop folder",
                f"move the file into the drop folder ({drop}); {inside}",
            )
        return refuse(
            f"{value!r} is a symlink that leads outside the drop folder (to {real})",
            "copy the file into the drop folder instead of linking to it",
        )
    if not os.path.lexists(candidate):
        return refuse(
            f"no such file or folder: {value!r}",
            f"check the name; it is read relative to the sidecar's folder ({base_dir})",
        )
    if not os.path.exists(real):
        return refuse(
            f"{value!r} is a symlink to a missing file ({real})",
            "fix or remove the symlink, or put the file itself in the drop folder",
        )
    return Path(candidate)


def resolve_from(
    value: str,
    *,
    base_dir: Path,
    drop_dir: Path,
    source: str,
    key: str = "from",
    line: int | None = None,
) -> Path | str | Problem:
    """FROM as the CLI reads it: a path if anything exists there, else a model name.

    Paths must satisfy ``resolve_inside``. A value that can only be a path (absolute, ``./``,
    ``../``, a weights file suffix) but names nothing is refused rather than sent as a model
    name, which the server would try to pull from the registry.
    """
    if not value:
        return Problem(
            source,
            "FROM is empty",
            "name a model (FROM llama3.2) or a file in the drop folder (FROM ./model.gguf), "
            "or leave FROM out to build from the dropped weights",
            line=line,
            key=key,
        )
    looks_like_path = _is_absolute(value) or value.startswith(".")
    looks_like_path = looks_like_path or value.lower().endswith(_FILE_SUFFIXES)
    exists = not _is_absolute(value) and os.path.lexists(os.path.join(base_dir, value))
    if exists or looks_like_path:
        return resolve_inside(
            value, base_dir=base_dir, drop_dir=drop_dir, source=source, key=key, line=line
        )
    if is_valid_ref(value):  # as the server reads a FROM: trimmed, ':local' taken off
        return value
    return Problem(
        source,
        f"invalid model name: {value}",
        f"no file or folder {value!r} exists next to the sidecar either; name an existing "
        "model (like llama3.2:1b) or a path inside the drop folder (like ./base.gguf)",
        line=line,
        key=key,
    )


def file_keys(paths: Sequence[Path]) -> dict[str, Path]:
    """``files`` keys as the CLI names them (``createRequestFileNames``, ``ollama-api.md`` §7.6).

    One file: its base name. Several: the path relative to the deepest folder holding them all,
    with ``/`` separators.
    """
    unique = sorted(set(paths))
    if len(unique) == 1:
        return {unique[0].name: unique[0]}
    if not unique:
        return {}
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in unique])
    keys: dict[str, Path] = {}
    for path in unique:
        relative = os.path.relpath(os.path.abspath(path), root)
        keys[PurePosixPath(*Path(relative).parts).as_posix()] = path
    return keys


@dataclass(frozen=True)
class References:
    """What a sidecar's ``from``, ``adapters`` and ``draft`` resolved to."""

    from_name: str | None = None
    from_paths: tuple[Path, ...] = ()
    adapter_paths: tuple[Path, ...] = ()
    draft_paths: tuple[Path, ...] = ()
    folders: frozenset[Path] = frozenset()  # those of the paths above that are folders


def resolve_references(
    values: Mapping[str, Sequence[str]],
    *,
    source: Path,
    drop_dir: Path,
    locate: Callable[[str, str], int | None],
) -> References | list[Problem]:
    """Resolve the ``from``, ``adapters`` and ``draft`` texts of the sidecar ``source``.

    FROM names: the last wins (as in the CLI); FROM paths accumulate; a sidecar naming both a
    model and files, or a DRAFT that is also a FROM path, is refused.
    """
    problems: list[Problem] = []
    base, src = source.parent, str(source)
    from_name: str | None = None
    found_paths: dict[str, list[Path]] = {"from": [], "adapters": [], "draft": []}
    for key, texts in values.items():
        for text in texts:
            line = locate(key, text)
            found: Path | str | Problem
            if key == "from":
                found = resolve_from(text, base_dir=base, drop_dir=drop_dir, source=src, line=line)
            else:
                found = resolve_inside(
                    text, base_dir=base, drop_dir=drop_dir, source=src, key=key, line=line
                )
            if isinstance(found, Problem):
                problems.append(found)
            elif isinstance(found, str):
                from_name = found
            else:
                found_paths[key].append(found)

    def refuse(message: str, fix: str, key: str) -> None:
        problems.append(Problem(src, message, fix, key=key))

    if from_name and found_paths["from"]:
        refuse(f"FROM names both the model {from_name!r} and files", "keep one kind", "from")
    for draft in set(found_paths["draft"]) & set(found_paths["from"]):
        message = f"DRAFT must not reference the same local path as FROM: {draft}"
        refuse(message, "point DRAFT at the draft model's own file", "draft")
    if problems:
        return problems
    every = [p for found in found_paths.values() for p in found]
    return References(
        from_name,
        tuple(found_paths["from"]),
        tuple(found_paths["adapters"]),
        tuple(found_paths["draft"]),
        frozenset(p for p in every if p.is_dir()),
    )
