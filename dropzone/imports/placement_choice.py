"""Which way a same-host blob is placed (issue 17): ``auto`` decides per host and per file
system of the drop files, once, and logs the method and why (``local_import.method``); a
refusal for the whole host (no blobs folder, not writable) or for a configured method that
cannot apply is logged as ``local_import.refused`` with the fix, and the blob goes by HTTP."""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import structlog

from dropzone.imports.blobfiles import blobs_problem, reflink_supported

log = structlog.get_logger("dropzone.placement")

Mode = Literal["auto", "reflink", "link", "copy", "off"]
LINK_POLICIES = ("delete", "move")
ACCESS_FIX = (
    "add the dropzone user to the server's group (usermod -aG ollama dropzone), make the blobs"
    " folder group-writable (chmod g+w), and list it in the unit's ReadWritePaths="
)


class Method(StrEnum):
    REFLINK = "reflink"
    LINK = "link"
    COPY = "copy"


@dataclass
class Decision:
    methods: list[Method]
    reason: str


class MethodChoice:
    """The methods that apply to one host's store, by device of the drop files."""

    def __init__(self, models_dir: Path, mode: str, *, on_success: str, host: str) -> None:
        self.models_dir = models_dir
        self.blobs = models_dir / "blobs"
        self.mode = mode
        self.on_success = on_success
        self.host = host
        self._lock = threading.Lock()
        self._decisions: dict[int, Decision] = {}  # st_dev of drop files → what applies
        self._refusal: str | None = None  # for the whole host (no blobs folder, not writable)

    def decide(self, dev: int) -> Decision:
        """What applies to drop files on device ``dev``: decided (and logged) once."""
        with self._lock:
            if self._refusal is not None:
                return Decision([], self._refusal)
            known = self._decisions.get(dev)
            if known is not None:
                return known
            problem = blobs_problem(self.blobs)
            if problem is not None:
                self._refusal = problem
                log.warning(
                    "local_import.refused",
                    host=self.host,
                    method=self.mode,
                    reason=problem,
                    fix=ACCESS_FIX,
                    models_dir=str(self.models_dir),
                )
                return Decision([], problem)
            decision = self.choose(dev)
            self._decisions[dev] = decision
            self._log_decision(decision)
            return decision

    def choose(self, dev: int) -> Decision:
        same_fs = os.stat(self.blobs).st_dev == dev
        clones = same_fs and reflink_supported(self.blobs)
        linkable = self.on_success in LINK_POLICIES
        where = "the same file system" if same_fs else "another file system"
        no_link = f'on_success is "{self.on_success}": a hard link would let a later write into'
        no_link += " the drop file reach the server's blob"
        if self.mode == "copy":
            return Decision([Method.COPY], "configured: in-kernel copy")
        if self.mode == "reflink":
            if not same_fs:
                return Decision(
                    [], "reflink needs the drop folder on the models folder's file system"
                )
            if not clones:
                return Decision([], "this file system has no reflinks (FICLONE refused)")
            return Decision([Method.REFLINK], "configured: reflink")
        if self.mode == "link":
            if not same_fs:
                return Decision([], "a hard link needs the drop folder on the same file system")
            if not linkable:
                return Decision([], no_link)
            return Decision([Method.LINK], "configured: hard link")
        methods = [Method.REFLINK] if clones else []
        methods += [Method.LINK] if same_fs and linkable else []
        methods.append(Method.COPY)
        notes = [f"drop folder and models folder on {where}"]
        if same_fs:
            notes.append("reflink supported" if clones else "no reflink on this file system")
            if not linkable:
                notes.append(f'no hard links under on_success "{self.on_success}"')
        return Decision(methods, "; ".join(notes))

    def _log_decision(self, decision: Decision) -> None:
        if decision.methods:
            log.info(
                "local_import.method",
                host=self.host,
                method=str(decision.methods[0]),
                then=[str(m) for m in decision.methods[1:]],
                reason=decision.reason,
            )
        else:
            log.warning(
                "local_import.refused",
                host=self.host,
                method=self.mode,
                reason=decision.reason,
                fix="set local_import to auto (or copy), or move the drop folder",
            )

    def drop_reflink(self, dev: int, exc: OSError) -> None:
        """``FICLONE`` refused on ``dev`` after all: the next method applies from now on."""
        with self._lock:
            decision = self._decisions.get(dev)
            if decision is None or Method.REFLINK not in decision.methods:
                return
            decision.methods.remove(Method.REFLINK)
            decision.reason = f"reflink refused ({errno.errorcode.get(exc.errno or 0, exc)})"
            self._log_decision(decision)
