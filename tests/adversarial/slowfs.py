"""A FUSE file system whose reads past a point block until released: a hung NFS or FUSE server,
the one place where a read of a regular file does not return (issue 13).

``slow_file(workdir)`` mounts it in a child process (fusepy over libfuse2; needs root and
/dev/fuse, else ``SlowFsUnavailableError`` says why) and yields the path of its one file,
``big.gguf``: its first ``FAST_BYTES`` read at once, the rest only once ``release()`` is called.
Run as a script, it is that child: it serves until its standard input closes.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dropzone.testing.waiting import wait_until

SIZE = 64 << 20
FAST_BYTES = 4 << 20
NAME = "big.gguf"


class SlowFsUnavailableError(RuntimeError):
    pass


class SlowFile:
    def __init__(self, path: Path, child: subprocess.Popen[bytes]) -> None:
        self.path = path
        self._child = child

    def release(self) -> None:
        """Let every read, held or to come, return."""
        assert self._child.stdin is not None
        with contextlib.suppress(OSError):
            self._child.stdin.write(b"release\n")
            self._child.stdin.flush()


@contextlib.contextmanager
def slow_file(workdir: Path) -> Iterator[SlowFile]:
    try:
        importlib.import_module("fuse")  # fusepy loads libfuse2 when imported
    except (ImportError, OSError) as exc:  # fusepy missing, or libfuse2 missing
        raise SlowFsUnavailableError(f"fusepy/libfuse2 not available: {exc}") from exc
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        raise SlowFsUnavailableError("mounting FUSE needs root and /dev/fuse")
    mnt = workdir / "slowfs"
    mnt.mkdir()
    child = subprocess.Popen(
        [sys.executable, __file__, str(mnt)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    path = mnt / NAME
    try:
        try:
            wait_until(lambda: child.poll() is not None or path.exists(), timeout=10)
        except AssertionError:
            raise SlowFsUnavailableError("the FUSE mount did not appear") from None
        if child.poll() is not None:
            assert child.stderr is not None
            err = child.stderr.read().decode(errors="replace").strip()
            raise SlowFsUnavailableError(f"FUSE mount failed: {err}")
        slow = SlowFile(path, child)
        try:
            yield slow
        finally:
            slow.release()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
        for pipe in (child.stdin, child.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def _serve(mountpoint: str) -> None:
    # Imported here: without libfuse2 the import itself fails, and the suite must still load.
    from fuse import FUSE, FuseOSError, Operations  # noqa: PLC0415

    gate = threading.Event()
    mtime = time.time() - 3600  # long settled: complete for readiness

    class Slow(Operations):  # type: ignore[misc]
        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            if path == "/" + NAME:
                return {
                    "st_mode": stat.S_IFREG | 0o644,
                    "st_nlink": 1,
                    "st_size": SIZE,
                    "st_mtime": mtime,
                    "st_blocks": SIZE // 512,
                }
            raise FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", NAME]

        def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
            if offset + size > FAST_BYTES:
                gate.wait()
            return bytes(max(0, min(size, SIZE - offset)))

    def released() -> None:
        sys.stdin.readline()  # "release", or the end of input at teardown
        gate.set()

    threading.Thread(target=released, daemon=True).start()
    FUSE(Slow(), mountpoint, foreground=True, direct_io=True, ro=True)


if __name__ == "__main__":
    _serve(sys.argv[1])
