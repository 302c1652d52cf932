"""A bounded forward cursor over a binary file, for reading untrusted headers.

Bytes are read through a window of 64 KiB growing to ``WINDOW`` bytes (or the largest single
value a caller asks for), so memory does not grow with the file or with lengths found in it.
Every request is checked first against ``MAX_HEADER_BYTES`` (past it: corrupt) and then
against the file size (past it: the header is cut short).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from dropzone.formats.headers import CorruptHeaderError, TruncatedHeaderError

FIRST_WINDOW = 64 << 10  # most headers without a vocabulary fit here
WINDOW = 1 << 20
MAX_HEADER_BYTES = 1 << 30


class Cursor:
    __slots__ = ("_buf", "_f", "_start", "_u32", "_u64", "_want", "order", "pos", "size")

    def __init__(self, f: BinaryIO, size: int, order: str) -> None:
        self._f = f
        self.size = size
        self.order = order
        self.pos = 0
        self._buf = b""
        self._start = 0
        self._want = FIRST_WINDOW
        self._u32 = struct.Struct(order + "I")
        self._u64 = struct.Struct(order + "Q")

    def _check_end(self, end: int, n: int, what: str) -> None:
        if end > MAX_HEADER_BYTES:
            raise CorruptHeaderError(self.pos, what, f"a header longer than {MAX_HEADER_BYTES}")
        if end > self.size:
            have = max(self.size - self.pos, 0)
            raise TruncatedHeaderError(self.pos, what, f"end of file after {have} of {n} bytes")

    def _window(self, n: int, what: str) -> int:
        """Make bytes ``[pos, pos + n)`` available; return where they start in the buffer."""
        self._check_end(self.pos + n, n, what)
        i = self.pos - self._start
        if i < 0 or i + n > len(self._buf):
            self._f.seek(self.pos)
            want = max(n, self._want)
            self._want = min(self._want * 4, WINDOW)
            data = self._f.read(want)
            while len(data) < n:  # a raw file may return short reads
                more = self._f.read(want - len(data))
                if not more:
                    # The file shrank since its size was taken: it is being rewritten.
                    raise TruncatedHeaderError(self.pos, what, "end of file (file shrank)")
                data += more
            self._buf, self._start, i = data, self.pos, 0
        return i

    def check_room(self, n: int, what: str) -> None:
        """Fail now if ``n`` more bytes cannot be there (cut short, or past the header cap)."""
        self._check_end(self.pos + n, n, what)

    def skip(self, n: int, what: str) -> None:
        self._check_end(self.pos + n, n, what)
        self.pos += n

    def take(self, n: int, what: str) -> bytes:
        i = self._window(n, what)
        self.pos += n
        return self._buf[i : i + n]

    def u32(self, what: str) -> int:
        i = self._window(4, what)
        self.pos += 4
        value: int = self._u32.unpack_from(self._buf, i)[0]
        return value

    def u64(self, what: str) -> int:
        i = self._window(8, what)
        self.pos += 8
        value: int = self._u64.unpack_from(self._buf, i)[0]
        return value

    def scalar(self, fmt: str, what: str) -> int | float | bool:
        width = struct.calcsize(fmt)
        i = self._window(width, what)
        self.pos += width
        value: int | float | bool = struct.unpack_from(self.order + fmt, self._buf, i)[0]
        return value

    def string(self, what: str, max_bytes: int, keep_bytes: int) -> str | int:
        """A length-prefixed string: the text if it has at most ``keep_bytes`` bytes, else
        its length (skipped, not read). Longer than ``max_bytes`` is corrupt."""
        at = self.pos
        n = self.u64(f"the length of {what}")
        if n > max_bytes:
            raise CorruptHeaderError(at, f"{what} of at most {max_bytes} bytes", f"{n} bytes")
        if n > keep_bytes:
            self.skip(n, what)
            return n
        return self.take(n, what).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, max_bytes: int) -> None:
        """Skip ``count`` length-prefixed strings; the hot loop of a tokenizer vocabulary."""
        what = "the length of an array string"
        # Even empty strings take 8 bytes each: fail now if they cannot all be there.
        self.check_room(count * 8, f"{count} array strings")
        unpack = self._u64.unpack_from
        remaining = count
        while remaining:
            off = start = self._window(8, what)
            buf, limit, n, done = self._buf, len(self._buf) - 8, 0, remaining
            for k in range(remaining):  # the hot loop: keep it bare
                if off > limit:
                    done = k
                    break
                (n,) = unpack(buf, off)
                if n > max_bytes:
                    at = self._start + off
                    raise CorruptHeaderError(at, f"a string of at most {max_bytes} bytes", str(n))
                off += 8 + n
            remaining -= done
            last = off - 8 - n  # where the last string read starts
            self.pos += last - start  # so that an error names the string that does not fit
            self.skip(off - last, "an array string")
