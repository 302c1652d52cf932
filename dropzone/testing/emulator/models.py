"""Model queries of the Ollama emulator: ``/api/tags``, ``/api/show``, ``/api/delete``,
``/api/copy`` (ollama-api.md §5.3-5.6)."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dropzone.recipes.names import InvalidNameError, Name, parse_name
from dropzone.testing.emulator.gguf_view import GGUFError, GGUFView, decode_gguf
from dropzone.testing.emulator.gojson import go_time, go_value
from dropzone.testing.emulator.http import Handler, parse_json_body, read_body
from dropzone.testing.emulator.refs import RefError, local_ref, pull_ref
from dropzone.testing.emulator.request import COPY_FIELDS, DELETE_FIELDS, SHOW_FIELDS, bind
from dropzone.testing.emulator.store import (
    ADAPTER,
    LICENSE,
    MESSAGES,
    MODEL,
    PARAMS,
    PROJECTOR,
    SYSTEM,
    TEMPLATE,
    Store,
    StoredModel,
)

if TYPE_CHECKING:
    from dropzone.testing.emulator.app import App

DEFAULT_TEMPLATE = "{{ .Prompt }}"
_headers: dict[str, GGUFView] = {}
_headers_lock = threading.Lock()


def gguf_header(store: Store, digest: str) -> GGUFView | None:
    """A blob's GGUF header, cached by digest (blobs never change under one digest)."""
    with _headers_lock:
        if digest in _headers:
            return _headers[digest]
    try:
        header = decode_gguf(store.blob_path(digest))
    except (OSError, GGUFError, ValueError):
        return None
    with _headers_lock:
        if len(_headers) > 256:
            _headers.clear()
        _headers[digest] = header
    return header


@dataclass
class ModelView:
    """What the stored layers of one model say, read from their blobs."""

    stored: StoredModel
    config: dict[str, Any]
    model_from: str = ""
    model_path: str = ""
    header: GGUFView | None = None
    projectors: list[GGUFView] = field(default_factory=list)
    projector_paths: list[str] = field(default_factory=list)
    adapter_paths: list[str] = field(default_factory=list)
    template: str | None = None
    system: str = ""
    licenses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)


def view(store: Store, stored: StoredModel) -> ModelView:
    def text(digest: str) -> str:
        return store.blob_path(digest).read_text(errors="replace")

    try:
        config = json.loads(text(stored.config.digest))
    except (OSError, ValueError):
        config = {}
    v = ModelView(stored, config if isinstance(config, dict) else {})
    for layer in stored.layers:
        path = str(store.blob_path(layer.digest).resolve())
        media = layer.media_type
        try:
            if media == MODEL and v.header is None:
                v.model_from, v.model_path = layer.from_, path
                v.header = gguf_header(store, layer.digest)
            elif media == PROJECTOR:
                v.projector_paths.append(path)
                if (header := gguf_header(store, layer.digest)) is not None:
                    v.projectors.append(header)
            elif media == ADAPTER:
                v.adapter_paths.append(path)
            elif media in (TEMPLATE, "application/vnd.ollama.image.prompt"):
                v.template = text(layer.digest)
            elif media == SYSTEM:
                v.system = text(layer.digest)
            elif media == LICENSE:
                v.licenses.append(text(layer.digest))
            elif media == PARAMS:
                v.params = json.loads(text(layer.digest))
            elif media == MESSAGES:
                v.messages = json.loads(text(layer.digest))
        except (OSError, ValueError):
            continue  # a missing blob shows as missing information, as in Ollama
    return v


def details(v: ModelView, *, lengths: bool) -> dict[str, Any]:
    c = v.config
    out: dict[str, Any] = {
        "parent_model": v.model_from,
        "format": c.get("model_format", ""),
        "family": c.get("model_family", ""),
        "families": c.get("model_families"),
        "parameter_size": c.get("model_type", ""),
        "quantization_level": c.get("file_type", ""),
    }
    if lengths and v.header is not None:
        for key in ("context_length", "embedding_length"):
            value = v.header.arch_value(key)
            if isinstance(value, int) and value:
                out[key] = value
    return out


def capabilities(v: ModelView) -> list[str]:
    caps = [c for c in v.config.get("capabilities") or [] if isinstance(c, str)]

    def add(cap: str) -> None:
        if cap not in caps:
            caps.append(cap)

    if v.header is not None:
        add("embedding" if v.header.arch_value("pooling_type") is not None else "completion")
        if v.projectors or v.header.arch_value("vision.block_count") is not None:
            add("vision")
    template = v.template or ""
    for marker, cap in ((".Tools", "tools"), (".Suffix", "insert"), (".Think", "thinking")):
        if marker in template:
            add(cap)
    return caps


def tags(app: App, h: Handler) -> None:
    entries = []
    for stored in app.store.models():
        v = view(app.store, stored)
        entry: dict[str, Any] = {
            "name": stored.name.display_shortest(),
            "model": stored.name.display_shortest(),
            "modified_at": go_time(stored.mtime_ns),
            "size": stored.config.size + sum(layer.size for layer in stored.layers),
            "digest": stored.digest_hex,
            "details": details(v, lengths=True),
        }
        if caps := capabilities(v):
            entry["capabilities"] = caps
        entries.append((stored.mtime_ns // 1_000_000_000, entry))
    entries.sort(key=lambda item: -item[0])  # newest first, second resolution, stable
    h.respond_json(200, {"models": [entry for _, entry in entries]})


def _bind(h: Handler, struct: str, fields: dict[str, str]) -> dict[str, Any] | None:
    raw = read_body(h)
    if raw is None:
        return None
    value, error = parse_json_body(raw)
    bound: dict[str, Any] = {}
    if error is None:
        bound, error = bind(value, struct, fields)
    if error is not None:
        h.respond_error(400, error)
        return None
    return bound


def show(app: App, h: Handler) -> None:
    req = _bind(h, "ShowRequest", SHOW_FIELDS)
    if req is None:
        return
    text = _model_field(h, req)
    if text is None:
        return
    try:
        name = app.store.existing_name(local_ref(text))
    except RefError as exc:
        h.respond_error(exc.status, exc.message)
        return
    stored = app.store.load(name)
    if stored is None:
        h.respond_error(404, f"model '{name.display_shortest()}' not found")
        return
    h.respond_json(200, show_body(app.store, stored, verbose=bool(req["verbose"])))


def show_body(store: Store, stored: StoredModel, *, verbose: bool) -> dict[str, Any]:
    v = view(store, stored)
    out: dict[str, Any] = {}
    if v.licenses:
        out["license"] = "\n".join(v.licenses)
    out["modelfile"] = modelfile(v, stored.name)
    if lines := parameter_lines(v.params):
        out["parameters"] = lines
    out["template"] = v.template if v.template is not None else DEFAULT_TEMPLATE
    if v.system:
        out["system"] = v.system
    out["details"] = details(v, lengths=False)
    # An older server's config may lack the level: the GGUF's own type, if Ollama names it.
    unknown = out["details"]["quantization_level"] in ("", "unknown")
    if unknown and v.header is not None and v.header.file_type != "unknown":
        out["details"]["quantization_level"] = v.header.file_type
    if v.messages:
        out["messages"] = [{"role": m.get("role"), "content": m.get("content")} for m in v.messages]
    out["model_info"] = model_info(v.header, verbose) if v.header else {}
    if v.projectors:
        out["projector_info"] = model_info(v.projectors[0], verbose)
    if v.header is not None:
        out["tensors"] = [
            {"name": t.name, "type": t.type_name, "shape": list(t.dims)} for t in v.header.tensors
        ]
    if caps := capabilities(v):
        out["capabilities"] = caps
    out["modified_at"] = go_time(stored.mtime_ns)
    if requires := v.config.get("requires"):
        out["requires"] = requires
    return out


def model_info(header: GGUFView, verbose: bool) -> dict[str, Any]:
    info = {
        k: ([] if isinstance(value, list) and len(value) > 5 and not verbose else value)
        for k, value in header.metadata.items()
        if k not in ("general.name", "tokenizer.chat_template")
    }
    info["general.parameter_count"] = header.parameter_count
    return dict(sorted(info.items()))  # a Go map: keys sorted


def parameter_lines(params: dict[str, Any]) -> str:
    lines: list[str] = []
    for key in sorted(params):  # Go iterates its map in random order
        values = params[key] if isinstance(params[key], list) else [params[key]]
        lines.extend(f"{key:<30} {go_value(value, quote_strings=True)}" for value in values)
    return "\n".join(lines)


def _quote(value: str) -> str:
    """The Modelfile quoting of ``ollama show`` (parser ``quote``)."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def modelfile(v: ModelView, name: Name) -> str:
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {name.display_shortest()}",
        "",
        f"FROM {v.model_path}",
    ]
    lines += [f"ADAPTER {_quote(path)}" for path in v.adapter_paths]
    lines += [f"FROM {path}" for path in v.projector_paths]
    lines.append(f"TEMPLATE {_quote(v.template if v.template is not None else DEFAULT_TEMPLATE)}")
    if v.system:
        lines.append(f"SYSTEM {_quote(v.system)}")
    for key in ("renderer", "parser"):
        if value := v.config.get(key):
            lines.append(f"{key.upper()} {_quote(value)}")
    for key in sorted(v.params):
        values = v.params[key] if isinstance(v.params[key], list) else [v.params[key]]
        lines += [f"PARAMETER {key} {_quote(go_value(x, quote_strings=False))}" for x in values]
    lines += [f"LICENSE {_quote(text)}" for text in v.licenses]
    lines += [f"MESSAGE {m.get('role')} {_quote(str(m.get('content')))}" for m in v.messages]
    return "\n".join(lines) + "\n"


def delete(app: App, h: Handler) -> None:
    req = _bind(h, "DeleteRequest", DELETE_FIELDS)
    if req is None:
        return
    text = _model_field(h, req)
    if text is None:
        return
    try:
        name = pull_ref(text, invalid=f"name {_go_q(text)} is invalid")
    except RefError as exc:
        h.respond_error(exc.status, exc.message)
        return
    with app.store.lock:
        stored = app.store.load(app.store.existing_name(name))
        if stored is None:
            h.respond_error(404, f"model '{text}' not found")
            return
        app.store.delete_model(stored)
    h.respond(200)


def copy(app: App, h: Handler) -> None:
    req = _bind(h, "CopyRequest", COPY_FIELDS)
    if req is None:
        return
    source, destination = req["source"] or "", req["destination"] or ""
    src = _parse_or_400(h, source, "source")
    dst = None if src is None else _parse_or_400(h, destination, "destination")
    if src is None or dst is None:
        return
    with app.store.lock:
        stored = app.store.load(app.store.existing_name(src))
        if stored is None:
            h.respond_error(404, f"model {_go_q(source)} not found")
            return
        target = app.store.manifest_path(app.store.existing_name(dst))
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.copy")
        temp.write_bytes(stored.raw)
        os.replace(temp, target)
    h.respond(200)


def _go_q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _parse_or_400(h: Handler, text: str, what: str) -> Name | None:
    """The parsed name; None after answering ``400 <what> "<text>" is invalid``."""
    try:
        return parse_name(text)
    except InvalidNameError:
        h.respond_error(400, f"{what} {_go_q(text)} is invalid")
        return None


def _model_field(h: Handler, req: dict[str, Any]) -> str | None:
    """``model``, or the deprecated ``name``; None after answering 400 when both are empty."""
    text: str = req["model"] or req["name"] or ""
    if not text:
        h.respond_error(400, "model is required")
        return None
    return text
