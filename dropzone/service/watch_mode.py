"""How to watch the drop folder, decided from facts: the configuration, the file-system type,
the start-up probe, and whether the kernel grants the inotify watches.

The probe alone is not enough: on NFS, SMB/CIFS, FUSE and 9p the probe's own write is made
through this machine's mount and raises its event, while writes from other machines never do.
So the type decides first and the probe only judges a local file system. Pure apart from the
probe, which is called only when the answer depends on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from dropzone.fs import info as fsinfo

WatchSetting = Literal["auto", "native", "polling"]
DEFAULT_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class WatchPlan:
    mode: Literal["native", "polling"]
    reason: str
    poll_interval: float = 0.0  # seconds between polls; 0 when native
    # Native events were wanted (not configured away, not ruled out by the file-system type)
    # but cannot be had: worth a warning, since polling costs more and reacts later.
    fallback: bool = False


def _polling(reason: str, interval: float, *, fallback: bool = False) -> WatchPlan:
    return WatchPlan("polling", reason, interval or DEFAULT_POLL_SECONDS, fallback)


def decide(
    setting: WatchSetting,
    poll_interval: float,
    fs_type: str | None,
    probe: Callable[[], bool],
) -> WatchPlan:
    """The plan for ``setting`` on a folder of ``fs_type`` (None when unknown)."""
    if setting == "polling":
        return _polling("configured: watch_mode = polling", poll_interval)
    if setting == "native":
        return WatchPlan("native", "configured: watch_mode = native")
    doubt = fsinfo.remote_writes_unseen(fs_type) if fs_type else None
    if doubt is not None:
        return _polling(f"{fs_type}: {doubt}", poll_interval)
    if poll_interval > 0:
        return _polling(f"configured: poll_interval = {poll_interval:g}", poll_interval)
    where = f"{fs_type} file system" if fs_type else "file system of unknown type"
    if probe():
        return WatchPlan("native", f"{where}: the start-up probe's event arrived")
    return _polling(
        f"{where}: the start-up probe's event did not arrive", poll_interval, fallback=True
    )


def out_of_watches(error: OSError, poll_interval: float) -> WatchPlan:
    """Polling instead of ``plan`` when the kernel refused inotify at start: exiting would only
    make systemd restart dropzone into the same refusal."""
    return _polling(
        f"inotify refused ({error.strerror or error}): raise fs.inotify.max_user_watches"
        " or max_user_instances, or set watch_mode = polling",
        poll_interval,
        fallback=True,
    )
