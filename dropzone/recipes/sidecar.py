"""Sidecars (design §4.2): a Modelfile or TOML/YAML/JSON beside an artifact → ``SidecarSpec``.

``parse_sidecar`` is pure: bytes → checked fields, every error a ``Problem`` naming the file,
line (and column where the parser gives one), key and fix. ``load_sidecar`` and ``load_spec``
add the disk: the size limit, paths resolved inside the drop folder (``paths.py``), and the
Hugging Face side files. Both sidecar kinds end as one ``SidecarSpec``, so recipes do not care
where a setting came from. YAML is read with the safe loader only, and tags, anchors and
aliases are refused before it runs (no object construction, no alias bombs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dropzone.errors import Problem, ProblemError
from dropzone.fs.bytenames import has_surrogates, shown
from dropzone.fs.identity import FileKey
from dropzone.fs.safeopen import open_verified
from dropzone.recipes import parameters as rules
from dropzone.recipes import paths
from dropzone.recipes.modelfile import modelfile_fields, parse_modelfile
from dropzone.recipes.names import InvalidNameError, parse_name
from dropzone.recipes.types import Artifact, ArtifactKind

MAX_SIDECAR_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
SIDECAR_FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
HF_SIDE_FILES = {"template": "template", "system": "system", "params": "parameters"}
_TOML_AT = re.compile(r" \(at line (\d+), column (\d+)\)")

Locate = Callable[[str, str], int | None]  # (field, value as written) → line


@dataclass(frozen=True)
class SidecarSpec:
    """How to make the model, whichever kind of sidecar said it.

    Paths are resolved and inside the drop folder. ``fields`` holds the request fields passed
    through: template, system, license (a list), parameters, messages, renderer, parser,
    requires.
    """

    path: Path | None  # the sidecar file; None when there is none
    model: str | None = None  # as written
    from_name: str | None = None  # an existing model to build on
    from_paths: tuple[Path, ...] = ()  # weights named by FROM (files or folders)
    adapter_paths: tuple[Path, ...] = ()
    draft_paths: tuple[Path, ...] = ()
    folders: frozenset[Path] = frozenset()  # those of the paths above that are folders
    quantize: str | None = None
    draft_quantize: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[Problem, ...] = ()
    # The identity and digest of the sidecar as read: cleanup removes it only while it is
    # still this file, and the state store fingerprints what was read, not a second read.
    key: FileKey | None = field(default=None, compare=False)
    digest: str | None = field(default=None, compare=False)


def sidecar_format(path: Path) -> str | None:
    """``modelfile``, ``toml``, ``yaml`` or ``json`` from the file name; None if none fits."""
    if path.name.lower() == "modelfile" or path.suffix.lower() == ".modelfile":
        return "modelfile"
    return SIDECAR_FORMATS.get(path.suffix.lower())


def parse_sidecar(
    data: bytes, *, path: str, fmt: str
) -> tuple[dict[str, Any], list[Problem], Locate]:
    """Checked fields in sidecar vocabulary (``from``, ``adapters``, ``draft`` and ``license``
    as lists), warnings, and a line finder for later errors. ProblemError with every error."""
    if fmt == "modelfile":
        modelfile = parse_modelfile(data, path=path, require_from=False)
        fields, warnings = modelfile_fields(modelfile)
        instruction = {"from": "FROM", "adapters": "ADAPTER", "draft": "DRAFT"}

        def locate(key: str, value: str) -> int | None:
            return modelfile.line_of(instruction.get(key, key.upper()), value)

        return fields, warnings, locate
    text = decode_utf8(data, path=path)
    try:  # the parsers recurse: a few thousand nested brackets exhaust the stack
        document = _load_document(text, path=path, fmt=fmt)
        if not isinstance(document, dict):
            fix = 'write keys and values, like model = "name:tag"'
            raise ProblemError([Problem(path, "a sidecar must be a table of keys", fix, 1)])
        find = _key_finder(text)
        _refuse_lone_surrogates(document, path=path, find=find)
        fields, warned, failed = rules.check_sidecar_fields(document)
    except RecursionError:
        fix = "sidecar values nest at most a few levels"
        raise ProblemError([Problem(path, "nested too deeply", fix)]) from None

    def problem(issue: rules.Issue) -> Problem:
        return Problem(path, issue.message, issue.fix, find(issue.key, issue.parent), key=issue.key)

    if failed:
        raise ProblemError([problem(issue) for issue in failed])
    return fields, [problem(issue) for issue in warned], lambda key, _value: find(key, None)


def decode_utf8(data: bytes, *, path: str) -> str:
    """UTF-8 text (a BOM is skipped); ProblemError naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problem = Problem(path, "not valid UTF-8", "save the file as UTF-8", line)
        raise ProblemError([problem]) from e


def _load_document(text: str, *, path: str, fmt: str) -> Any:
    """TOML/YAML/JSON text → data (empty → {}); ProblemError with the parser's position."""

    def fail(message: str, fix: str, line: int | None = None, column: int | None = None) -> Any:
        raise ProblemError([Problem(path, message, fix, line, column)])

    if not text.strip():
        return {}
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            at = _TOML_AT.search(str(e))
            where = (int(at[1]), int(at[2])) if at else (None, None)
            return fail(_TOML_AT.sub("", str(e)), "fix the TOML syntax", *where)
    if fmt == "json":
        try:
            return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        except json.JSONDecodeError as e:
            return fail(e.msg, "fix the JSON syntax", e.lineno, e.colno)
        except ValueError as e:
            return fail(str(e), "fix the JSON")
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line, column = _position(event.start_mark)
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:  # PyYAML slows quadratically with nesting depth
                    fail("nested too deeply", "sidecar values nest a few levels", line, column)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                fix = "write the value out in full"
                fail("YAML anchors and aliases are not allowed", fix, line, column)
            if getattr(event, "tag", None):
                fix = "remove the tag; quote the value if it is text"
                fail(f"YAML tags are not allowed: {event.tag}", fix, line, column)  # type: ignore[attr-defined]
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        message = " ".join(filter(None, (e.context, e.problem))) or "invalid YAML"
        return fail(message, "fix the YAML syntax", *_position(e.problem_mark or e.context_mark))
    except yaml.YAMLError as e:
        return fail(f"invalid YAML: {e}", "fix the YAML syntax")
    except ValueError as e:  # a value that looks like a date but is none: 2024-13-45
        return fail(f"invalid YAML value: {e}", "quote the value to keep it as text")


def _refuse_lone_surrogates(
    document: Mapping[str, Any], *, path: str, find: Callable[[str, str | None], int | None]
) -> None:
    """ProblemError naming each top-level key holding a lone surrogate escape (``"\\ud800"``):
    valid JSON and YAML, but no text; it crashed the daemon where the request was hashed,
    stored or sent (issue 13). A pair of escapes (``"\\ud83d\\ude00"``) is one character."""
    problems = []
    for key, value in document.items():
        char = _lone_surrogate(key, value)
        if char is not None:
            message = f"holds a lone surrogate escape (\\u{ord(char):04x}), which is not text"
            fix = "remove the \\u escape, or write the character itself"
            problems.append(Problem(path, message, fix, find(key, None), key=shown(key)))
    if problems:
        raise ProblemError(problems)


def _lone_surrogate(*values: Any) -> str | None:
    """The first lone surrogate in strings, keys and items nested in ``values``, if any."""
    for value in values:
        if isinstance(value, str):
            if not has_surrogates(value):
                continue
            found: str | None = next(c for c in value if has_surrogates(c))
        elif isinstance(value, Mapping):
            found = _lone_surrogate(*value.keys(), *value.values())
        elif isinstance(value, list):
            found = _lone_surrogate(*value)
        else:
            continue
        if found is not None:
            return found
    return None


def _position(mark: Any) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _key_finder(text: str) -> Callable[[str, str | None], int | None]:
    """The line of a key (after its parent's) in TOML/YAML/JSON text: a heuristic, as neither
    ``tomllib`` nor ``json`` keeps positions."""

    def find(key: str, parent: str | None) -> int | None:
        start = 0
        if parent is not None and (above := _key_pattern(parent).search(text)):
            start = above.end()
        found = _key_pattern(key).search(text, start)
        return text.count("\n", 0, found.start()) + 1 if found else None

    return find


def _key_pattern(key: str) -> re.Pattern[str]:
    before = r"(?:^[ \t]*(?:-[ \t]*)?\[?[ \t]*|[.{,][ \t]*)"
    return re.compile(rf"{before}[\"']?{re.escape(key)}[\"']?[ \t]*[:=\].]", re.MULTILINE)


def _read_limited(path: Path, drop_dir: Path) -> tuple[bytes, FileKey]:
    """The file's bytes and the identity of what was read, refused beyond MAX_SIDECAR_BYTES
    before anything parses them. Opened through ``open_verified``: never a link out of the
    drop folder, never a FIFO (which would block the reading thread)."""
    source = str(path)
    try:
        with os.fdopen(open_verified(drop_dir, path), "rb") as f:
            key = FileKey.from_stat(os.fstat(f.fileno()))
            data = f.read(MAX_SIDECAR_BYTES + 1) if key.size <= MAX_SIDECAR_BYTES else b""
        size = max(key.size, len(data))  # it may have grown since fstat
    except OSError as e:
        problem = Problem(source, f"cannot read: {e.strerror}", "check its permissions")
        raise ProblemError([problem]) from e
    if size > MAX_SIDECAR_BYTES:
        message = f"{size} bytes: more than the {MAX_SIDECAR_BYTES} a sidecar may have"
        raise ProblemError([Problem(source, message, "sidecars hold settings; keep them small")])
    return data, key


def load_sidecar(path: Path, *, drop_dir: Path) -> SidecarSpec | list[Problem]:
    """Read, parse, check and resolve one sidecar file."""
    source = str(path)
    fmt = sidecar_format(path)
    if fmt is None:
        fix = "name it X.Modelfile, X.toml, X.yaml, X.yml or X.json"
        return [Problem(source, "not a sidecar format dropzone reads", fix)]
    inside = paths.resolve_inside(
        path.name, base_dir=path.parent, drop_dir=drop_dir, source=source, key="sidecar"
    )
    if isinstance(inside, Problem):
        return [inside]
    try:
        data, key = _read_limited(path, drop_dir)
        fields, warnings, locate = parse_sidecar(data, path=source, fmt=fmt)
    except ProblemError as e:
        return list(e.problems)
    problems: list[Problem] = []
    model = fields.pop("model", None)
    if model is not None:
        try:
            parse_name(model)
        except InvalidNameError:
            fix = "use [namespace/]model[:tag]: letters, digits, '_', '-', '.' (like qwen3:8b)"
            line = locate("model", model)
            problems.append(Problem(source, f"invalid model name: {model}", fix, line, key="model"))
    texts: dict[str, list[str]] = {
        k: fields.pop(k) for k in ("from", "adapters", "draft") if k in fields
    }
    refs = paths.resolve_references(texts, source=path, drop_dir=drop_dir, locate=locate)
    if isinstance(refs, list) or problems:
        return problems + (refs if isinstance(refs, list) else [])
    return SidecarSpec(
        path=path,
        model=model,
        from_name=refs.from_name,
        from_paths=refs.from_paths,
        adapter_paths=refs.adapter_paths,
        draft_paths=refs.draft_paths,
        folders=refs.folders,
        quantize=fields.pop("quantize", None),
        draft_quantize=fields.pop("draft_quantize", None),
        fields=fields,
        warnings=tuple(warnings),
        key=key,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
    )


def read_hf_side_files(
    folder: Path, *, drop_dir: Path, skip: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], list[Problem]]:
    """Ollama's ``template``, ``system`` and ``params`` (JSON) files in a Hugging Face folder
    as sidecar fields. ``skip`` holds fields a sidecar sets: their files are not even read."""
    fields: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, key in HF_SIDE_FILES.items():
        path = folder / name
        if key in skip or not os.path.isfile(path):
            continue
        found = paths.resolve_inside(
            name, base_dir=folder, drop_dir=drop_dir, source=str(path), key=key
        )
        try:
            if isinstance(found, Problem):
                raise ProblemError([found])
            data, _ = _read_limited(path, drop_dir)
            fields[key] = _side_file_value(data, path=str(path), key=key)
        except ProblemError as e:
            problems.extend(e.problems)
    return fields, problems


def _side_file_value(data: bytes, *, path: str, key: str) -> Any:
    text = decode_utf8(data, path=path)
    if key != "parameters":
        return text
    try:
        document = _load_document(text, path=path, fmt="json")
        _refuse_lone_surrogates({"parameters": document}, path=path, find=lambda _k, _p: None)
        checked, _warned, failed = rules.check_sidecar_fields({"parameters": document})
    except RecursionError:
        raise ProblemError(
            [Problem(path, "nested too deeply", "write a flat JSON object")]
        ) from None
    if failed:
        find = _key_finder(text)
        raise ProblemError([Problem(path, i.message, i.fix, find(i.key, None)) for i in failed])
    return checked["parameters"]


def hf_folder(artifact: Artifact, drop_dir: Path) -> Path | None:
    """Where an artifact's Hugging Face side files would be: its folder, or the GGUF's folder
    unless that is the drop folder itself (side files there would apply to every file)."""
    if artifact.kind in (ArtifactKind.SAFETENSORS, ArtifactKind.SAFETENSORS_ADAPTER):
        return artifact.path
    if artifact.kind is ArtifactKind.RECIPE:
        return None  # a recipe says everything itself; its folder holds no weights
    parent = artifact.path.parent
    return None if os.path.abspath(parent) == os.path.abspath(drop_dir) else parent


def load_spec(artifact: Artifact, *, drop_dir: Path) -> SidecarSpec | list[Problem]:
    """The artifact's sidecar (if any), with Hugging Face side files filling the fields it
    leaves unset. ``SidecarSpec(path=None)`` with no fields means nothing was said."""
    spec = SidecarSpec(path=None)
    if artifact.sidecar is not None:
        loaded = load_sidecar(artifact.sidecar, drop_dir=drop_dir)
        if isinstance(loaded, list):
            return loaded
        spec = loaded
    folder = hf_folder(artifact, drop_dir)
    if folder is None:
        return spec
    extra, problems = read_hf_side_files(folder, drop_dir=drop_dir, skip=frozenset(spec.fields))
    if problems:
        return problems
    return replace(spec, fields={**extra, **spec.fields}) if extra else spec
