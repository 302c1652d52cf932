"""Events about artifacts that are not being worked on: detected, pending, arriving, refused.

Each is logged once per reason until the reason changes, so a file that stays incomplete or
invalid is reported once, not on every rescan. The summary counts what each artifact is now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from dropzone.errors import Problem
from dropzone.imports.progress import Progress
from dropzone.scan.scanner import ScannedArtifact

log = structlog.get_logger("dropzone.daemon")

# Per scan, at most this many ``artifact.detected`` and ``artifact.pending`` lines each; the
# rest is counted into one ``scan.pending`` line (100,000 empty ``*.gguf`` wrote 43 MB of
# pending lines, issue 13). ``dropzone status`` lists every artifact.
PENDING_DETAIL_LIMIT = 50


@dataclass
class PassSummary:
    """What each artifact is now: one of the four sets (``dropzone scan``'s exit status)."""

    refused: set[str] = field(default_factory=set)  # invalid artifacts or sidecars
    failed: set[str] = field(default_factory=set)  # a host failed (permanently or for now)
    pending: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)

    def mark(self, rel: str, kind: str) -> None:
        for name in ("refused", "failed", "pending", "done"):
            getattr(self, name).discard(rel)
        getattr(self, kind).add(rel)

    def forget(self, rel: str) -> None:
        for name in ("refused", "failed", "pending", "done"):
            getattr(self, name).discard(rel)


class Notes(Protocol):
    """Where the reporter writes why an artifact waits or was refused (the state store)."""

    def note_artifact(self, path: str, *, kind: str, note: str | None) -> None: ...


@dataclass
class _Arrival:
    update: Callable[[int, int | None], None]
    finished: Callable[[], None]


class Reporter:
    def __init__(
        self, drop_dir: Path, notes: Notes | None = None, *, progress: Progress | None = None
    ) -> None:
        self.drop_dir = drop_dir
        self.summary = PassSummary()
        self._notes = notes
        # Issue 15: a 38 s copy showed one pending line, then nothing. Each look at a file
        # still arriving feeds its progress: a live line on a terminal, else an event every
        # ``progress_seconds``.
        self._progress = progress or Progress()
        self._arriving: dict[str, _Arrival] = {}
        self._last_bytes: dict[str, int] = {}
        self._reported: dict[str, str] = {}  # rel → signature of the last event
        self._known: set[str] = set()
        self._shown = {"detected": 0, "pending": 0}  # detail lines in this scan
        self._not_shown = {"detected": 0, "pending": 0}

    def begin_scan(self) -> None:
        self._shown = {"detected": 0, "pending": 0}
        self._not_shown = {"detected": 0, "pending": 0}

    def end_scan(self) -> None:
        """One ``scan.pending`` line when this scan had more news than it showed line by line."""
        if any(self._not_shown.values()):
            log.info(
                "scan.pending",
                path=str(self.drop_dir),
                count=len(self.summary.pending),
                not_shown=self._not_shown["pending"],
                detected_not_shown=self._not_shown["detected"],
                fix="dropzone status lists every artifact with its state and reason",
            )
        self.begin_scan()

    def _detail(self, kind: str) -> bool:
        """True while this scan may still log ``kind`` line by line."""
        if self._shown[kind] < PENDING_DETAIL_LIMIT:
            self._shown[kind] += 1
            return True
        self._not_shown[kind] += 1
        return False

    def detected(self, sa: ScannedArtifact) -> None:
        if sa.rel_path not in self._known:
            self._known.add(sa.rel_path)
            if not self._detail("detected"):
                return
            log.info(
                "artifact.detected",
                path=str(sa.artifact.path),
                kind=str(sa.artifact.kind),
                sidecar=str(sa.artifact.sidecar) if sa.artifact.sidecar else None,
            )

    def pending(self, sa: ScannedArtifact, reason: str, *, wait: float | None = None) -> None:
        self.summary.mark(sa.rel_path, "pending")
        self._arrival(sa, reason)
        if not self._first(sa.rel_path, "pending:" + reason.split(" ", 1)[0]):
            return
        detail = reason
        if reason == "incomplete" and sa.expected_bytes is not None:
            detail = f"incomplete: {sa.have_bytes} of {sa.expected_bytes} bytes"
        self._note(sa.rel_path, f"pending: {detail}", str(sa.artifact.kind))
        if not self._detail("pending"):
            return
        log.info(
            "artifact.pending",
            path=str(sa.artifact.path),
            reason=reason,
            bytes=sa.have_bytes,
            expected_bytes=sa.expected_bytes,
            missing=list(sa.missing) or None,
            wait_seconds=round(wait, 1) if wait is not None else None,
        )

    def _arrival(self, sa: ScannedArtifact, reason: str) -> None:
        """Still arriving: incomplete, or settling while it grew since the last look."""
        rel, have = sa.rel_path, sa.have_bytes
        grew = self._last_bytes.get(rel, have) != have
        self._last_bytes[rel] = have
        # An empty file is not arriving until it grows: tracking each of 100,000 empty files
        # cost ~1 KiB apiece.
        incomplete = reason == "incomplete" and (have > 0 or grew)
        if not (incomplete or (reason == "settling" and grew)):
            self._stop_arriving(rel)
            return
        arrival = self._arriving.get(rel)
        if arrival is None:
            label = "arriving " + rel
            update, finished = self._progress.arrival(
                label, have, sa.expected_bytes, path=str(sa.artifact.path)
            )
            self._arriving[rel] = _Arrival(update, finished)
            return
        arrival.update(have, sa.expected_bytes)

    def _stop_arriving(self, rel: str) -> None:
        arrival = self._arriving.pop(rel, None)
        if arrival is not None:
            arrival.finished()

    def refuse(
        self, rel: str, event: str, problems: list[Problem], kind: str = "unknown"
    ) -> None:
        self.summary.mark(rel, "refused")
        self._stop_arriving(rel)
        self._last_bytes.pop(rel, None)
        if not self._first(rel, event + ":" + "|".join(p.describe() for p in problems)):
            return
        first = problems[0] if problems else Problem(rel, "invalid")
        self._note(rel, "refused: " + "; ".join(p.describe() for p in problems), kind)
        log.error(
            event,
            path=str(self.drop_dir / rel),
            **first.event_fields(),
            problems=[p.describe() for p in problems],
        )

    def warn(self, rel: str, warnings: tuple[Problem, ...]) -> None:
        """Sidecar warnings (deprecated parameters, …): once per sidecar content."""
        key = "warn:" + rel
        signature = "|".join(p.describe() for p in warnings)
        if not warnings or self._reported.get(key) == signature:
            return
        self._reported[key] = signature
        for p in warnings:
            log.warning("sidecar.warning", path=str(self.drop_dir / rel), **p.event_fields())

    def clear(self, rel: str) -> None:
        """Work starts: the next pending or refusal is news again."""
        self._stop_arriving(rel)
        self._last_bytes.pop(rel, None)
        if self._reported.pop(rel, None) is not None:
            self._note(rel, None)

    def _note(self, rel: str, note: str | None, kind: str = "unknown") -> None:
        """``kind`` names a new row's artifact kind; an existing row keeps its own."""
        if self._notes is not None:
            self._notes.note_artifact(rel, kind=kind, note=note)

    def forget(self, rel: str) -> None:
        self._stop_arriving(rel)
        self._last_bytes.pop(rel, None)
        self._reported.pop(rel, None)
        self._known.discard(rel)
        self.summary.forget(rel)

    def _first(self, rel: str, signature: str) -> bool:
        if self._reported.get(rel) == signature:
            return False
        self._reported[rel] = signature
        return True
