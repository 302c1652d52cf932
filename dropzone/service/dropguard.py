"""Is the drop folder the one this state store knows? Nothing destructive happens otherwise.

An unmounted share looks exactly like "every file was removed": acting on that would delete
every model under ``on_removed = "delete"``. So the store records the folder's identity on first
start (device, inode, and the id in a marker file ``.dropzone-id`` that dropzone writes inside
it), and every full look at the folder asks ``DropGuard.check`` first. The folder is trusted when
its marker carries the recorded id (a remount may change the device number), or, with the marker
gone, when it is the same directory (device and inode) and not empty. Otherwise — missing, another
folder, an empty mount point — the daemon imports nothing, deletes nothing, cleans nothing, says
``drop_dir.suspicious`` with what it saw and the fix, and keeps checking.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MARKER = ".dropzone-id"
MARKER_MAX_BYTES = 256


class MetaStore(Protocol):
    def meta(self, key: str) -> str | None: ...
    def set_meta(self, values: dict[str, str]) -> None: ...
    def knows_artifacts(self) -> bool: ...


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    fix: str = ""


OK = Verdict(True)


class DropGuard:
    def __init__(self, drop_dir: Path, store: MetaStore) -> None:
        self.drop_dir = drop_dir
        self._store = store

    def check(self, *, create: bool = False) -> Verdict:
        """Whether the folder may be acted on now. ``create``: make a missing folder, but only
        on a first start (a store that has never seen a drop folder)."""
        recorded = self._store.meta("drop_dir.id")
        try:
            st = os.stat(self.drop_dir)
        except FileNotFoundError:
            if recorded is None and create and not self._store.knows_artifacts():
                self.drop_dir.mkdir(parents=True, exist_ok=True)
                return self.check()
            return self._suspicious("is missing", "mount the share or restore the folder")
        except OSError as exc:
            return self._suspicious(f"cannot be read ({exc.strerror})", "check its permissions")
        marker = self._read_marker()
        same_dir = (str(st.st_dev), str(st.st_ino)) == (
            self._store.meta("drop_dir.dev"),
            self._store.meta("drop_dir.ino"),
        )
        if recorded is not None and marker is not None and marker != recorded:
            return self._suspicious(
                f"holds another folder's marker ({MARKER} = {marker}, expected {recorded})",
                "point drop_dir at the folder this state store was made for",
            )
        if recorded is not None and marker is None and not same_dir:
            return self._suspicious(
                f"is another folder than the one recorded, and has no {MARKER}",
                "mount the share (an empty mount point looks like this)",
            )
        if marker is None and self._empty() and self._store.knows_artifacts():
            return self._suspicious(
                "is empty, yet the state store knows imported artifacts",
                "mount the share or restore the folder",
            )
        self._record(recorded or marker or uuid.uuid4().hex, st, write_marker=marker is None)
        return OK

    def _suspicious(self, what: str, fix: str) -> Verdict:
        recorded = self._store.meta("drop_dir.id")
        if recorded is not None:
            fix += (
                f"; if this folder is the right one, write its marker: "
                f"echo {recorded} > {self.drop_dir / MARKER}"
            )
        return Verdict(False, f"the drop folder {what}", fix)

    def _read_marker(self) -> str | None:
        try:
            fd = os.open(
                self.drop_dir / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            text = f.read(MARKER_MAX_BYTES).decode("ascii", "replace").strip()
        return text or None

    def _empty(self) -> bool:
        with os.scandir(self.drop_dir) as it:
            return not any(e.name != MARKER for e in it)

    def _record(self, ident: str, st: os.stat_result, *, write_marker: bool) -> None:
        if write_marker:
            tmp = self.drop_dir / f"{MARKER}.tmp"
            try:
                tmp.write_text(ident + "\n")
                os.replace(tmp, self.drop_dir / MARKER)
            except OSError:
                pass  # a read-only drop folder: device and inode still identify it
        values = {
            "drop_dir.id": ident,
            "drop_dir.dev": str(st.st_dev),
            "drop_dir.ino": str(st.st_ino),
        }
        if any(self._store.meta(k) != v for k, v in values.items()):
            self._store.set_meta(values)
