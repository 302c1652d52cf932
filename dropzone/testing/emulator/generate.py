"""``POST /api/generate`` as far as a load check needs it (issue 16).

Ollama's ``GenerateHandler``: a request with a model and no prompt loads the model (or, with
``keep_alive: 0``, unloads it) and answers at once with one JSON object, ``done: true`` and
``done_reason`` ``"load"`` or ``"unload"``; no model is a 400 ``model is required``, an unknown
one a 404. A runner that cannot load the model answers 500 with its text (armed here with
``faults.fail_load``). Generating text is not emulated (501).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dropzone.testing.emulator.gojson import go_time
from dropzone.testing.emulator.http import Handler, parse_json_body, read_body
from dropzone.testing.emulator.refs import RefError, local_ref

if TYPE_CHECKING:
    from dropzone.testing.emulator.app import App


def generate(app: App, h: Handler) -> None:
    raw = read_body(h)
    if raw is None:
        return
    req, error = parse_json_body(raw)
    if error is not None or not isinstance(req, dict):
        h.respond_error(400, error or "invalid request")
        return
    text = req.get("model") or ""
    if not isinstance(text, str) or not text:
        h.respond_error(400, "model is required")
        return
    try:
        name = app.store.existing_name(local_ref(text))
    except RefError as exc:
        h.respond_error(exc.status, exc.message)
        return
    if app.store.load(name) is None:
        h.respond_error(404, f"model '{name.display_shortest()}' not found")
        return
    if req.get("prompt") or req.get("images") or req.get("suffix"):
        h.respond_error(501, "generating text is not emulated")
        return
    unload = req.get("keep_alive") in (0, "0", "0s")
    if not unload:
        failure = app.faults.take_load_failure()
        if failure is not None:
            h.respond_error(500, failure)
            return
    body: dict[str, Any] = {
        "model": text,
        "created_at": go_time(time.time_ns()),
        "response": "",
        "done": True,
        "done_reason": "unload" if unload else "load",
    }
    h.respond_json(200, body)
