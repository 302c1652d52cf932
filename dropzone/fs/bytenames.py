"""Names that are not UTF-8: bytes until they are shown (issue 13).

A Linux file name is bytes. Python hands one that is not valid UTF-8 over as a ``str`` with
surrogate escapes (``os.fsdecode``: the byte 0xE8 becomes ``'\\udce8'``). Such a string leads
back to the file, but cannot be encoded as UTF-8: not into SQLite, not into JSON for a server,
not into the journal. JSON and YAML sidecars can also hold a lone surrogate (``"\\ud800"``).

One function per use:

- ``shown``: the text a person reads (events, ``dropzone status``, ``files`` keys sent to a
  server): valid UTF-8, each undecodable byte as ``\\xNN``, any other lone surrogate as
  ``\\udNNN``. Not reversible (a name may hold a backslash); never a key.
- ``to_column``/``from_column``: a state-store key, losslessly (see ``to_column``).
- ``shown_in``: ``shown`` applied to every string in nested data (an event, a JSON answer).
- ``has_surrogates``: whether a string needs any of this.

Pure functions.
"""

from __future__ import annotations

import os
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_BYTE = range(0xDC80, 0xDD00)  # what os.fsdecode makes of the bytes 0x80-0xFF


def has_surrogates(text: str) -> bool:
    """True when ``text`` cannot be encoded as UTF-8 (it holds a lone surrogate)."""
    return _SURROGATE.search(text) is not None


def shown(text: str) -> str:
    """``text`` as valid UTF-8 for people and JSON: ``mod\\xe8le.gguf``. Valid text unchanged."""
    if not has_surrogates(text):
        return text
    return _SURROGATE.sub(_escape, text)


def shown_in(value: Any) -> Any:
    """``value`` with ``shown`` applied to every string in it, in dicts (keys too), lists and
    tuples: data about to become JSON or a line of text."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown_in(k): shown_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown_in(v) for v in value]
    if type(value) is tuple:
        return tuple(shown_in(v) for v in value)
    return value


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code in _ESCAPED_BYTE:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def to_column(name: str) -> str | bytes:
    """A file-system name as an SQLite key: TEXT when it is valid UTF-8, else its bytes (BLOB).

    Why a BLOB, not an escaped text form: SQLite never finds a BLOB equal to a TEXT value, so
    the key of ``caf<0xE9>`` can never meet the key of a file really named ``caf\\xe9`` (an
    escape needs a rule for backslashes and would change no row now, but every reader would
    have to unescape). Valid names stay TEXT exactly as before, so existing rows keep matching
    and the schema does not change; the bytes are the name itself (``os.fsencode``). For
    names from the file system: a lone surrogate from elsewhere has no bytes and raises.
    """
    return os.fsencode(name) if has_surrogates(name) else name


def from_column(value: str | bytes) -> str:
    """Inverse of ``to_column``: a name as Python's ``os`` functions take it."""
    return os.fsdecode(value) if isinstance(value, bytes) else value
