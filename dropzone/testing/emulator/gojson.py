"""Go-compatible value formatting for the Ollama emulator (ollama-api.md §9.2).

Ollama writes manifests, config and params blobs with Go's ``encoding/json``: no whitespace,
``<``/``>``/``&`` and U+2028/U+2029 escaped, whole-number floats without a fraction, and a
trailing newline from ``json.Encoder``. Matching it byte for byte keeps emulator digests
computed the way a real server computes them. Dict key order is the caller's: build struct-like
dicts in Go declaration order and sort map-like dicts with ``sort_keys``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    for raw, escaped in _ESCAPES.items():
        if raw in encoded:
            encoded = encoded.replace(raw, escaped)
    return encoded


def go_json_float(value: float) -> str:
    """A float64 as ``encoding/json`` prints it ('f' form unless tiny or huge)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("json: unsupported value: " + repr(value))
    magnitude = abs(value)
    if value == 0 or 1e-6 <= magnitude < 1e21:
        text = format(Decimal(repr(value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    text = repr(value)  # e.g. 1e-07 or 1.5e+21; Go shortens "e-07" to "e-7"
    mantissa, _, exponent = text.partition("e")
    sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
    return f"{mantissa}e{sign}{digits}"


def go_json(value: Any, *, sort_keys: bool = False) -> str:
    """Compact Go-style JSON of plain Python data (no trailing newline)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_json_float(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, dict):
        items = sorted(value.items()) if sort_keys else list(value.items())
        inner = ",".join(f"{go_string(k)}:{go_json(v, sort_keys=sort_keys)}" for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v, sort_keys=sort_keys) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def go_json_line(value: Any, *, sort_keys: bool = False) -> bytes:
    """What ``json.NewEncoder(w).Encode(value)`` writes: the JSON plus ``\\n``."""
    return (go_json(value, sort_keys=sort_keys) + "\n").encode()


def go_float_g(value: float) -> str:
    """Go's ``%v``/``%#v`` of a float64: shortest digits, exponent form from 1e+06 up."""
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    numerals = "".join(map(str, digits))
    assert isinstance(exp, int)
    point = len(numerals) + exp  # position of the decimal point in the digit string
    x = point - 1
    prefix = "-" if sign else ""
    if x < -4 or x >= 6:  # Go uses precision 6 for this decision with shortest digits
        mantissa = numerals[0] + ("." + numerals[1:] if len(numerals) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{numerals}"
    if point >= len(numerals):
        return prefix + numerals + "0" * (point - len(numerals))
    return f"{prefix}{numerals[:point]}.{numerals[point:]}"


def go_value(value: Any, *, quote_strings: bool) -> str:
    """Go's ``%#v`` (``quote_strings``) or ``%v`` of a JSON-decoded value, as /api/show prints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_float_g(float(value))  # Go decodes every JSON number as float64
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if quote_strings else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def go_time(ns: int) -> str:
    """An mtime in ``time.Time`` JSON form: RFC 3339, nanoseconds trimmed, local offset."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    local = datetime.fromtimestamp(seconds, UTC).astimezone()
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = local.utcoffset()
    total = int(offset.total_seconds()) if offset is not None else 0
    if total == 0:
        return text + "Z"
    sign = "+" if total > 0 else "-"
    hours, minutes = divmod(abs(total) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def human_number(count: int) -> str:
    """``format.HumanNumber``: 8B, 3.2B, 494.03M, 7M, 12K, 999."""
    if count >= 1_000_000_000:
        number = count / 1_000_000_000
        return f"{number:.0f}B" if number.is_integer() else f"{number:.1f}B"
    if count >= 1_000_000:
        number = count / 1_000_000
        return f"{number:.0f}M" if number.is_integer() else f"{number:.2f}M"
    if count >= 1_000:
        return f"{count / 1_000:.0f}K"
    return str(count)
