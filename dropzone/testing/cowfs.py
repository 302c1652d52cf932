"""A loop-mounted copy-on-write file system (XFS with reflink, else btrfs) for tests and
benchmarks of reflink placement (issue 17). Needs root, ``mount`` and ``mkfs.xfs`` or
``mkfs.btrfs`` (Debian: xfsprogs, btrfs-progs); ``CowUnavailableError`` says which is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# mkfs.xfs wants 300 MB at least; the image is sparse, so it costs only what is written.
MIN_BYTES = 320 << 20

_MKFS = (
    ("mkfs.xfs", ["-q", "-m", "reflink=1"]),
    ("mkfs.btrfs", ["-q"]),
)


class CowUnavailableError(RuntimeError):
    """This machine cannot mount a copy-on-write file system here; the message says why."""


@contextmanager
def loop_mounted_cow(workdir: Path, size: int = MIN_BYTES) -> Iterator[Path]:
    """A freshly made XFS (reflink) or btrfs file system mounted at ``workdir/mnt``."""
    if os.geteuid() != 0:
        raise CowUnavailableError("mounting a loop image needs root")
    found = [(tool, args) for tool, args in _MKFS if shutil.which(tool)]
    if not found or shutil.which("mount") is None:
        raise CowUnavailableError("no mkfs.xfs or mkfs.btrfs (apt-get install xfsprogs)")
    tool, args = found[0]
    image, mnt = workdir / "cow.img", workdir / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as f:
        f.truncate(max(size, MIN_BYTES))
    _run([tool, *args, str(image)], f"{tool} failed")
    _run(["mount", "-o", "loop", str(image), str(mnt)], "mount -o loop failed")
    try:
        yield mnt
    finally:
        subprocess.run(  # noqa: S603 - fixed argv
            ["umount", str(mnt)],  # noqa: S607 - found on PATH, as mount itself
            check=False,
            capture_output=True,
        )
        image.unlink(missing_ok=True)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 - fixed argv
    if done.returncode != 0:
        raise CowUnavailableError(f"{what}: {done.stderr.decode(errors='replace').strip()}")
