"""The scanner's view of one listing: visible entries by folder, and header reads.

All reading goes through one injected ``open_file(rel_path) -> binary file`` callable, so
classification is tested with in-memory files and the daemon can memoise header reads in
a ``HeaderCache`` keyed by file identity and stat.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeAlias, TypeVar

from dropzone.errors import Problem
from dropzone.formats import gguf, safetensors
from dropzone.formats.completeness import Expected, as_is
from dropzone.formats.headers import (
    LFS_POINTER_MAX_SIZE,
    CorruptHeaderError,
    HeaderError,
    TruncatedHeaderError,
    is_lfs_pointer,
    load_json,
)
from dropzone.scan.ignore import IgnoreRules
from dropzone.scan.values import Draft, Entry

Opener = Callable[[str], BinaryIO]
T = TypeVar("T")
Outcome: TypeAlias = T | HeaderError | OSError  # what a read gives: the value, or why there is none
MAX_JSON_BYTES = 16 << 20

REFETCH = "copy the file again (from a download: download it again)"
LFS_FIX = "fetch the real file (git lfs pull, or huggingface-cli download) and copy that"


# Python objects cost more than the bytes they were parsed from: these per-item overheads
# (measured with tracemalloc on gguf-py and safetensors fixtures, rounded up) turn a header's
# length in the file into an estimate of what keeping it costs, without walking it.
ITEM_COST = 256  # a tensor entry (name, shape tuple, ints) or a metadata key and value
ENTRY_COST = 512  # a cache slot with its key, version and a small value (an error, a tuple)
JSON_COST_FACTOR = 4  # parsed JSON against its text


def estimated_cost(value: object, size: int) -> int:
    """Bytes a parsed ``value`` read from a file of ``size`` bytes is estimated to keep alive."""
    length = getattr(value, "header_length", None)
    if isinstance(length, int):
        tensors = getattr(value, "tensors", ())
        metadata = getattr(value, "metadata", {})
        return ENTRY_COST + length + ITEM_COST * (len(tensors) + len(metadata))
    if isinstance(value, BaseException):
        return ENTRY_COST
    return ENTRY_COST + JSON_COST_FACTOR * min(size, MAX_JSON_BYTES)


class HeaderCache:
    """Memo of header reads: one entry per (reader, path), valid while the file's (dev,
    inode, size, mtime_ns) is unchanged, so a growing file replaces its entry instead of
    piling up versions. Bounded by ``max_bytes`` of estimated cost (``estimated_cost``; each
    ``put`` says it) and by ``capacity`` entries: least recently used paths go first, and a
    value costing more than the whole budget is not kept. Read errors other than HeaderError
    are never cached. Not thread-safe: one scanner owns it."""

    def __init__(self, capacity: int = 4096, max_bytes: int | None = None) -> None:
        self._items: OrderedDict[Hashable, tuple[Hashable, object, int]] = OrderedDict()
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # the estimated cost of what is kept now
        # Equal read errors are kept once: 100,000 empty ``*.gguf`` held 100,000 copies of
        # one TruncatedHeaderError (issue 13). Bounded: errors have few distinct messages.
        self._errors: dict[tuple[type, str], object] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, version: Hashable) -> object | None:
        item = self._items.get(key)
        if item is None or item[0] != version:
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, version: Hashable, value: object, cost: int = 0) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        if self.max_bytes is not None and cost > self.max_bytes:
            return  # read again when needed: keeping it would evict everything else
        if isinstance(value, BaseException):
            if len(self._errors) > self.capacity:
                self._errors.clear()
            value = self._errors.setdefault((type(value), str(value)), value)
        self._items[key] = (version, value, cost)
        self.bytes += cost
        while len(self._items) > self.capacity or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            _, (_, _, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped


class Tree:
    def __init__(
        self,
        root: Path,
        entries: Iterable[Entry],
        open_file: Opener,
        rules: IgnoreRules,
        cache: HeaderCache | None,
    ) -> None:
        self.root = root
        self._open = open_file
        # Without a cache from the caller, still read each header once per scan.
        self._cache = cache if cache is not None else HeaderCache()
        listed = list(entries)
        # Never opened, never part of an artifact: only reported (``scanner._specials``).
        self.specials = tuple(e for e in listed if e.special)
        all_entries = [e for e in listed if not e.special]
        paths = {e.path for e in all_entries}
        self.ignored = tuple(sorted(e.path for e in all_entries if rules.is_ignored(e.path, paths)))
        hidden = set(self.ignored)
        self.entries = {e.path: e for e in all_entries if e.path not in hidden}
        self.children: defaultdict[str, list[Entry]] = defaultdict(list)
        for e in sorted(self.entries.values(), key=lambda e: e.path):
            self.children[e.parent].append(e)

    def files(self, folder: str) -> list[Entry]:
        return [e for e in self.children.get(folder, []) if not e.is_dir]

    def subdirs(self, folder: str) -> list[Entry]:
        return [e for e in self.children.get(folder, []) if e.is_dir and not e.is_symlink]

    def file(self, rel: str) -> Entry | None:
        e = self.entries.get(rel)
        return e if e is not None and not e.is_dir else None

    def abs(self, rel: str) -> Path:
        return self.root / rel

    # --- reading ---------------------------------------------------------------------------

    def _read(self, reader: Callable[[BinaryIO], T], tag: str, e: Entry) -> Outcome[T]:
        key, version = (tag, e.path), (e.dev, e.inode, e.size, e.mtime_ns, e.ctime_ns)
        if (hit := self._cache.get(key, version)) is not None:
            return hit  # type: ignore[return-value]  # stored by this method, same tag
        try:
            with self._open(e.path) as f:
                result: T | HeaderError = reader(f)
        except HeaderError as err:
            # Kept bare: a traceback holds the reader's frames, and a chained JSONDecodeError
            # the whole document (up to MAX_JSON_BYTES), for as long as the entry lives.
            result = err.with_traceback(None)
            result.__cause__ = result.__context__ = None
        except OSError as err:  # vanished or unreadable: worth another look, never cached
            return err
        self._cache.put(key, version, result, estimated_cost(result, e.size))
        return result

    def read_with(self, reader: Callable[[BinaryIO], T], tag: str, e: Entry) -> Outcome[T]:
        """``reader`` over the file's content, memoised under ``tag`` like the header reads."""
        return self._read(reader, tag, e)

    def gguf(self, e: Entry) -> Outcome[gguf.GGUFHeader]:
        return self._read(gguf.read_header, "gguf", e)

    def safetensors(self, e: Entry) -> Outcome[safetensors.SafetensorsHeader]:
        return self._read(safetensors.read_header, "safetensors", e)

    def index(self, e: Entry) -> Outcome[tuple[str, ...]]:
        return self._read(safetensors.read_index, "index", e)

    def json(self, e: Entry) -> Outcome[object]:
        def read(f: BinaryIO) -> object:
            data = f.read(MAX_JSON_BYTES + 1)
            if len(data) > MAX_JSON_BYTES:
                raise CorruptHeaderError(
                    0, f"a JSON file of at most {MAX_JSON_BYTES} bytes", "more"
                )
            return load_json(data, "a JSON document")

        return self._read(read, "json", e)

    def head(self, e: Entry, n: int = 64) -> bytes:
        try:
            with self._open(e.path) as f:
                return f.read(n)
        except OSError:
            return b""

    # --- checks shared by the classifiers ---------------------------------------------------

    def problem(
        self, draft: Draft, rel: str, message: str, fix: str, *, soft: bool = False
    ) -> None:
        (draft.soft if soft else draft.hard).append(Problem(str(self.abs(rel)), message, fix))

    def safe_to_read(self, draft: Draft, e: Entry) -> bool:
        """Refuse symlinks out of the drop folder (or dangling) and unreadable files; True if
        the file may be opened. Adds the problem to ``draft`` otherwise."""
        if e.is_symlink and e.outside:
            self.problem(
                draft,
                e.path,
                "is a symlink that leads out of the drop folder",
                "copy the file into the drop folder instead of linking to it",
            )
            return False
        if e.unsafe_link:
            self.problem(draft, e.path, "is a dangling symlink", "remove it or fix its target")
            return False
        return True

    def lfs_problem(self, draft: Draft, e: Entry) -> bool:
        """True (and a problem added) if ``e`` is a git-LFS pointer instead of content."""
        if e.size > LFS_POINTER_MAX_SIZE or not is_lfs_pointer(self.head(e)):
            return False
        self.problem(draft, e.path, "is a git-LFS pointer file, not the real content", LFS_FIX)
        return True

    def accept(
        self,
        draft: Draft,
        key: str,
        e: Entry,
        outcome: Outcome[T],
        *,
        label: str,
        expect: Callable[[T], Expected],
    ) -> T | None:
        """Add ``e`` to ``draft`` according to how reading it went; the value if it was read.

        Cut short or vanished: added with an unknown expected length (still arriving).
        Corrupt, an LFS pointer or unreadable: added, with a problem. Read: added with the
        length the format says the complete file has, ``expect(value)``.
        """
        if isinstance(outcome, TruncatedHeaderError | FileNotFoundError):
            draft.add(self.root, key, e, None)
            return None
        if isinstance(outcome, OSError):
            draft.add(self.root, key, e, as_is(e.size))
            reason = outcome.strerror or str(outcome)
            self.problem(
                draft, e.path, f"cannot be read ({reason})", "make it readable by the dropzone user"
            )
            return None
        if isinstance(outcome, HeaderError):
            draft.add(self.root, key, e, as_is(e.size))
            if not self.lfs_problem(draft, e):
                self.problem(draft, e.path, f"is not a valid {label}: {outcome}", REFETCH)
            return None
        draft.add(self.root, key, e, expect(outcome))
        return outcome
