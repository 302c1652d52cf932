"""Chat-template auto-detection of ``/api/create`` (ollama-api.md §4.4.3a; issue 15).

Ollama v0.33.0-rc2 (``server/model.go`` ``detectChatTemplate``, ``template/template.go``
``Named``): for each GGUF layer whose ``tokenizer.chat_template`` is set, the entry of
``template/index.json`` at the smallest Levenshtein distance (the first on a tie) is taken when
that distance is below 100; its Go template becomes a template layer announced as
``using autodetected template <name>``, followed by a params layer of its stop tokens.

``templates/`` holds Ollama's own files (MIT, ``LICENSE.ollama``): the whole ``index.json``, so
the choice is the server's, and the ``.gotmpl``/``.json`` pair of a subset of names only:
``chatml``, ``llama3-instruct``, ``gemma-instruct``, ``mistral-instruct``, ``phi-3``, the
families dropzone's users import and its tests need. A chat template whose closest entry is
outside that subset fails the create with a text saying so, rather than silently differing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from dropzone.testing.emulator.gojson import go_json_line
from dropzone.testing.emulator.sources import CreateFailureError, WeightLayer
from dropzone.testing.emulator.store import PARAMS, TEMPLATE, Store

LIMIT = 100  # Named accepts a distance strictly below this
CHAT_TEMPLATE = "tokenizer.chat_template"


@dataclass(frozen=True)
class IndexEntry:
    name: str
    template: str


def _folder() -> resources.abc.Traversable:
    return resources.files("dropzone.testing").joinpath("templates")


@cache
def index() -> tuple[IndexEntry, ...]:
    entries = json.loads(_folder().joinpath("index.json").read_text(encoding="utf-8"))
    return tuple(IndexEntry(e["name"], e["template"]) for e in entries)


def bounded_distance(a: str, b: str, limit: int = LIMIT) -> int | None:
    """The Levenshtein distance (over code points, as Go's over runes) if below ``limit``.

    Only cells within ``limit - 1`` of the diagonal can hold a smaller distance (Ukkonen), so
    the work is linear in the length: real chat templates run to several thousand characters.
    """
    if abs(len(a) - len(b)) >= limit:
        return None
    if len(a) > len(b):
        a, b = b, a
    k, big, m = limit - 1, limit, len(b)
    prev = [j if j <= k else big for j in range(m + 1)]
    cur = [big] * (m + 1)
    for i in range(1, len(a) + 1):
        lo, hi = max(1, i - k), min(m, i + k)
        left = cur[lo - 1] = i if lo == 1 and i <= k else big
        char = a[i - 1]
        for j in range(lo, hi + 1):  # values above ``big`` are all "too far": no cap needed
            cur[j] = left = min(prev[j - 1] + (char != b[j - 1]), prev[j] + 1, left + 1)
        if hi < m:
            cur[hi + 1] = big  # the next row reads one cell past this band
        if min(cur[lo - 1 : hi + 1]) >= big:
            return None
        prev, cur = cur, prev
    return prev[m] if prev[m] < limit else None


def named(chat_template: str) -> str | None:
    """``template.Named``: the closest index entry's name, or None when none is close."""
    best: tuple[int, str] | None = None
    for entry in index():
        distance = bounded_distance(chat_template, entry.template)
        if distance is not None and (best is None or distance < best[0]):
            best = (distance, entry.name)
    return best[1] if best else None


def _named_files(name: str) -> tuple[bytes, list[str] | None]:
    """The template text (CRLF normalised, as ``templatesOnce``) and its stop tokens."""
    try:
        text = _folder().joinpath(f"{name}.gotmpl").read_bytes()
    except FileNotFoundError:
        raise CreateFailureError(
            f"emulator: the chat template matches Ollama's {name!r} template, "
            "whose text the emulator does not bundle"
        ) from None
    params = json.loads(_folder().joinpath(f"{name}.json").read_bytes())
    return text.replace(b"\r\n", b"\n"), params.get("stop")


def detect_chat_template(store: Store, layers: list[WeightLayer]) -> list[WeightLayer]:
    """``detectChatTemplate``: ``layers`` plus a template (and params) layer per GGUF layer
    whose chat template is recognised, in layer order."""
    out = list(layers)
    for w in layers:
        chat = w.header.metadata.get(CHAT_TEMPLATE) if w.header else None
        if not isinstance(chat, str) or not chat:
            continue
        name = named(chat)
        if name is None:
            continue
        text, stop = _named_files(name)
        template = store.new_layer(text, TEMPLATE)
        template.status = f"using autodetected template {name}"
        out.append(WeightLayer(template))
        # Parameters is a struct with one field: Encode writes {"stop":…} (null if absent)
        out.append(WeightLayer(store.new_layer(go_json_line({"stop": stop}), PARAMS)))
    return out
