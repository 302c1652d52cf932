"""Errors shared by the GGUF and safetensors header readers; JSON and git-LFS sniffing.

A header read ends in one of three ways: a value, :class:`TruncatedHeaderError` (the bytes
are not all there yet: a file still being copied, or preallocated and not yet written; look
again later) or :class:`CorruptHeaderError` (no amount of waiting makes this a valid file).
Each error names the byte offset, what was expected there and what was found.
``load_json`` maps JSON failures (safetensors headers, index and config files) the same way.
"""

from __future__ import annotations

import json

from dropzone.errors import DropzoneError

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
LFS_POINTER_MAX_SIZE = 1024  # git-lfs pointers are ~130 bytes; the spec caps them at 1024


class HeaderError(DropzoneError):
    """A header could not be read: ``at offset N: expected X, got Y``."""

    def __init__(self, offset: int, expected: str, got: str) -> None:
        super().__init__(f"at offset {offset}: expected {expected}, got {got}")
        self.offset = offset
        self.expected = expected
        self.got = got


class TruncatedHeaderError(HeaderError):
    """The header is cut short (or still zeros): the file may still be arriving."""

    transient = True


class CorruptHeaderError(HeaderError):
    """The bytes that are there cannot be a valid header of this format."""


class NotGGUFError(CorruptHeaderError):
    """The file does not start with the GGUF magic in either byte order."""


def is_lfs_pointer(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) is a git-LFS pointer, not content."""
    return head.startswith(LFS_POINTER_PREFIX)


def load_json(data: bytes, what: str, *, base: int = 0, may_be_partial: bool = True) -> object:
    """Parse a small JSON document, mapping every failure to a HeaderError.

    ``base`` is the document's byte offset in its file. With ``may_be_partial``, a document
    that is empty or breaks off at its end (a file still being copied) is a
    TruncatedHeaderError; any other fault is a CorruptHeaderError.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptHeaderError(base + e.start, f"{what} in UTF-8", "an invalid byte") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = base + len(text[: e.pos].encode())
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
        if may_be_partial and cut:
            raise TruncatedHeaderError(at, what, f"end of file ({e.msg})") from e
        raise CorruptHeaderError(at, what, f"{e.msg} (line {e.lineno}, column {e.colno})") from e
    except RecursionError as e:  # hostile nesting such as "[[[[…"
        raise CorruptHeaderError(base, what, "JSON nested too deeply") from e
