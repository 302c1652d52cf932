"""Values the scanner works with and returns: listing entries, per-artifact scan results.

``Entry`` is one line of a drop-folder listing (``scanner.list_tree``); ``ScanResult`` is what
``scanner.scan`` makes of a listing. ``Draft`` collects one artifact's files, progress and
problems while it is being classified and freezes into a ``ScannedArtifact``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from dropzone.errors import Problem
from dropzone.formats.completeness import Expected, total
from dropzone.recipes.types import Artifact, ArtifactFile, ArtifactKind

# Shared by every artifact without Ollama side files (nearly all): one object, not one each.
NO_SIDE_FILES: Mapping[str, Path] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Entry:
    """A file or folder under the drop folder (stat through symlinks); see ``special``."""

    path: str  # relative to the drop folder, "/"-separated
    size: int
    mtime_ns: int
    dev: int
    inode: int
    is_dir: bool
    is_symlink: bool = False
    # For a symlink: the resolved target relative to the drop folder, or None when the link
    # leads out of the drop folder (``outside``) or nowhere (dangling).
    target: str | None = None
    outside: bool = False
    # Part of the file's identity: ``utime`` cannot set it back (see ``identity.FileKey``).
    ctime_ns: int = 0
    # "FIFO", "socket", "device": not a regular file, never opened; listed only so that one
    # named like an artifact is refused with an event instead of silently left out (issue 13).
    special: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        """The containing folder's relative path; "" for the drop folder itself."""
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def unsafe_link(self) -> bool:
        """A symlink that must not be followed: out of the drop folder, or dangling."""
        return self.is_symlink and self.target is None


class Status(StrEnum):
    COMPLETE = "complete"  # every file there, every header parsed, every length reached
    INCOMPLETE = "incomplete"  # still arriving: short files, unfinished headers, missing shards
    INVALID = "invalid"  # refused: see ``problems``


@dataclass(frozen=True, slots=True)
class FileProgress:
    path: str  # relative to the drop folder
    have: int  # bytes present
    expected: Expected | None  # the complete file's length; None while the header is unreadable

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.expected.complete(self.have)


@dataclass(frozen=True, slots=True)
class ScannedArtifact:
    artifact: Artifact
    status: Status
    rel_path: str  # the artifact's identity, relative to the drop folder
    progress: tuple[FileProgress, ...]  # one per present file of the artifact
    missing: tuple[str, ...] = ()  # relative paths of files named but not there (shards)
    problems: tuple[Problem, ...] = ()  # why it is INVALID; empty otherwise
    sidecar_rel: str | None = None
    # Ollama's own side files beside the weights ("template", "system", "params" → path).
    side_files: Mapping[str, Path] = field(default_factory=lambda: NO_SIDE_FILES)

    @property
    def have_bytes(self) -> int:
        return sum(p.have for p in self.progress)

    @property
    def expected(self) -> Expected | None:
        """What the present files need together; None if any header is still unread."""
        parts = [p.expected for p in self.progress]
        return None if None in parts else total(p for p in parts if p is not None)

    @property
    def expected_bytes(self) -> int | None:
        """The bytes of ``expected`` (a minimum if any file is a GGUF)."""
        expected = self.expected
        return None if expected is None else expected.size


@dataclass(frozen=True, slots=True)
class ScanResult:
    artifacts: tuple[ScannedArtifact, ...]  # sorted by rel_path
    problems: tuple[Problem, ...] = ()  # not tied to one artifact (stray links out, loose files)
    ignored: tuple[str, ...] = ()  # relative paths the ignore rules removed
    unclaimed: tuple[str, ...] = ()  # visible files no artifact uses (stray sidecars, …)

    def by_rel_path(self) -> dict[str, ScannedArtifact]:
        return {a.rel_path: a for a in self.artifacts}


@dataclass
class Draft:
    """An artifact under construction. ``soft`` problems (a companion file not there yet)
    only count once no file of the artifact is still arriving."""

    kind: ArtifactKind
    rel_path: str
    sidecar_candidates: tuple[str, ...] = ()
    side_dir: str | None = None
    files: list[ArtifactFile] = field(default_factory=list)
    progress: list[FileProgress] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    hard: list[Problem] = field(default_factory=list)
    soft: list[Problem] = field(default_factory=list)
    architecture: str | None = None
    file_type: str | None = None

    def add(self, root: Path, key: str, entry: Entry, expected: Expected | None) -> None:
        """Add a file and the length its format says it must have (None: not known yet)."""
        self.files.append(ArtifactFile(key, root / entry.path, entry.size))
        self.progress.append(FileProgress(entry.path, entry.size, expected))

    def status(self) -> Status:
        if self.hard:
            return Status.INVALID
        if self.missing or not all(p.complete for p in self.progress):
            return Status.INCOMPLETE
        return Status.INVALID if self.soft else Status.COMPLETE

    def finish(
        self, root: Path, sidecar_rel: str | None, side_files: Mapping[str, str]
    ) -> ScannedArtifact:
        status = self.status()
        # A single-file artifact is its file: one Path object, not two (100,000 artifacts).
        # (A weight-less recipe has progress but no files: the two lists need not pair up.)
        own = root / self.rel_path
        artifact = Artifact(
            kind=self.kind,
            path=next((f.path for f in self.files if f.path == own), own),
            files=tuple(self.files),
            sidecar=root / sidecar_rel if sidecar_rel else None,
            file_type=self.file_type,
            architecture=self.architecture,
        )
        return ScannedArtifact(
            artifact=artifact,
            status=status,
            rel_path=self.rel_path,
            progress=tuple(self.progress),
            missing=tuple(self.missing),
            problems=tuple(self.hard + self.soft) if status is Status.INVALID else (),
            sidecar_rel=sidecar_rel,
            side_files=MappingProxyType({k: root / v for k, v in side_files.items()})
            if side_files
            else NO_SIDE_FILES,
        )
