"""Pure verdicts of ``dropzone doctor``: findings from facts already gathered.

The checks in ``dropzone.commands.doctor`` collect the facts (an HTTP request, a probe file,
``/proc`` limits); the rules that turn them into ok / warning / problem with a fix live here,
so they are tested with tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dropzone.fs import info as fsinfo
from dropzone.imports.steps import SPLIT_GGUF_SINCE, parse_version, unsupported_feature
from dropzone.recipes.types import ArtifactKind

SUGGESTED_POLL = 2
FEW_INSTANCES = 8
MIN_WATCHES_ADVICE = 524_288
IMPORTED = ".imported"


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "check": self.check,
            "ok": self.status is not Status.PROBLEM,
            "status": str(self.status),
            "detail": self.detail,
            "fix": self.fix,
        }


def version_finding(name: str, version: str, shards: Sequence[str]) -> Finding:
    """Pure: what a host's version means for what the drop folder holds now."""
    parsed = parse_version(version)
    if parsed is None or parsed == (0, 0, 0):
        return Finding(name, Status.OK, f"version {version} (a development build)")
    since = ".".join(map(str, SPLIT_GGUF_SINCE))
    if shards and (why := unsupported_feature(ArtifactKind.GGUF_SPLIT, version)):
        more = f" and {len(shards) - 1} more" if len(shards) > 1 else ""
        return Finding(
            name,
            Status.PROBLEM,
            f"{why}; the drop folder holds split GGUF shards ({shards[0]}{more})",
            f"upgrade Ollama on this host to {since} or newer, or merge the shards"
            " (llama-gguf-split --merge)",
        )
    if parsed < SPLIT_GGUF_SINCE:
        return Finding(
            name,
            Status.WARNING,
            f"version {version} is older than {since}: no split GGUF support, no GGUF validation",
            f"upgrade Ollama on this host to {since} or newer",
        )
    return Finding(name, Status.OK, f"version {version}")


def fs_type_finding(
    mount: fsinfo.Mount | None, poll_interval: float, watch_mode: str = "auto"
) -> Finding:
    """Pure: the advice for the drop folder's file system (``watch_mode`` as configured)."""
    name = "file system"
    if mount is None:
        return Finding(
            name,
            Status.WARNING,
            f"unknown: {fsinfo.MOUNTINFO} is unreadable",
            "check the mount with findmnt",
        )
    where = f"{mount.fs_type} (mounted at {mount.mount_point} from {mount.source})"
    reason = fsinfo.polling_reason(mount.fs_type)
    if reason is None:
        return Finding(name, Status.OK, where)
    if poll_interval > 0 or watch_mode == "polling":
        return Finding(name, Status.OK, f"{where}: {reason}; polling as configured")
    if fsinfo.remote_writes_unseen(mount.fs_type) is None:
        fix = f"set poll_interval = {SUGGESTED_POLL}"  # overlay: only a hint, not a decision
    elif watch_mode == "auto":
        return Finding(name, Status.OK, f"{where}: {reason}; polled (watch_mode = auto)")
    else:
        fix = 'set watch_mode = "auto" (polls here) or "polling"'
    return Finding(name, Status.WARNING, f"{where}: {reason}", fix)


def check_inotify(
    poll_interval: float, survey: fsinfo.FolderSurvey, limits: fsinfo.InotifyLimits
) -> Iterator[Finding]:
    """Pure: the inotify limits against what watching the drop folder takes."""
    if poll_interval > 0:
        yield Finding("inotify", Status.OK, "not used: polling")
        return
    unknown = f"unknown ({limits.error})"
    outside = "read it outside the service: sysctl fs.inotify"
    need = survey.folders + 1  # the drop folder itself and every folder below it
    watches, name = limits.max_user_watches, "inotify watches"
    raise_it = (
        f"raise it: echo fs.inotify.max_user_watches={max(MIN_WATCHES_ADVICE, 4 * need)}"
        " > /etc/sysctl.d/90-dropzone.conf && sysctl --system;"
        f" or set poll_interval = {SUGGESTED_POLL}"
    )
    if watches is None:
        yield Finding(name, Status.WARNING, f"{need} needed, max_user_watches {unknown}", outside)
    elif need > watches:
        yield Finding(
            name,
            Status.PROBLEM,
            f"{need} folders to watch but max_user_watches = {watches}: changes in the folders"
            " beyond the limit raise no events",
            raise_it,
        )
    elif need > watches // 2:
        yield Finding(
            name,
            Status.WARNING,
            f"{need} of max_user_watches = {watches}, shared with every program of the same user",
            raise_it,
        )
    else:
        yield Finding(name, Status.OK, f"{need} needed of max_user_watches = {watches}")
    instances, name = limits.max_user_instances, "inotify instances"
    if instances is None:
        yield Finding(name, Status.WARNING, f"max_user_instances {unknown}", outside)
    elif instances < FEW_INSTANCES:
        yield Finding(
            name,
            Status.WARNING,
            f"max_user_instances = {instances}: dropzone needs 1 (2 while probing), shared with"
            " every program of the same user",
            "raise it: sysctl fs.inotify.max_user_instances=128",
        )
    else:
        yield Finding(name, Status.OK, f"max_user_instances = {instances}; dropzone needs 1")


def space_finding(free: int, target_dev: int, files: Sequence[fsinfo.FileInfo]) -> Finding:
    """Pure: is there room to move ``files`` into ``.imported/`` (on device ``target_dev``)?"""
    name = "free space"
    copied = [f for f in files if f.dev != target_dev]
    if not copied:
        return Finding(
            name,
            Status.OK,
            f"{_size(free)} free; moving to {IMPORTED}/ is a rename on the same file system",
        )
    largest = max(copied, key=lambda f: f.size)
    if largest.size > free:
        return Finding(
            name,
            Status.PROBLEM,
            f"{largest.rel_path} ({_size(largest.size)}) lies on another file system, so moving"
            f" it to {IMPORTED}/ copies it, but only {_size(free)} are free there",
            'free space, or set on_success = "keep" or "delete"',
        )
    return Finding(
        name,
        Status.OK,
        f"{_size(free)} free for {len(copied)} file(s) that moving must copy"
        f" (largest {_size(largest.size)})",
    )


# -- the state store ------------------------------------------------------------------------


# -- output -----------------------------------------------------------------------------------


def render(findings: Sequence[Finding]) -> str:
    width = max((len(f.check) for f in findings), default=0)
    lines: list[str] = []
    for f in findings:
        lines.append(f"{f.status:<8} {f.check:<{width}}  {f.detail}")
        if f.fix and f.status is not Status.OK:
            lines.append(f"{'':<8} {'':<{width}}  fix: {f.fix}")
    problems = sum(f.status is Status.PROBLEM for f in findings)
    warnings = sum(f.status is Status.WARNING for f in findings)
    if problems or warnings:
        lines.append(f"{_count(problems, 'problem')}, {_count(warnings, 'warning')}")
    else:
        lines.append("all checks passed")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
