"""The daemon's watch mode from facts: an NFS drop folder is polled though the probe would pass
there, and a kernel that refuses inotify watches means polling, not an exit.

The file-system type comes from the mount table, which a test cannot change without an NFS
server: it points ``fsinfo.MOUNTINFO`` at a table of its own. The events are real ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dropzone.fs import info as fsinfo
from dropzone.testing.builders import build_gguf


def mount_table(tmp_path: Path, drop: Path, fs_type: str) -> Path:
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"40 22 0:52 / {drop} rw,relatime shared:9 - {fs_type} fileserver:/export rw\n"
    )
    return table


def test_an_nfs_drop_folder_is_polled_and_the_event_says_why(
    start: Any, drop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsinfo, "MOUNTINFO", mount_table(tmp_path, drop, "nfs4"))
    daemon = start(poll_interval=0.2)
    (event,) = daemon.find("watcher.mode")
    assert (event["log_level"], event["mode"], event["fs_type"]) == ("info", "polling", "nfs4")
    assert event["reason"].startswith("nfs4: network file system")
    assert event["poll_interval"] == 0.2
    assert not list(tmp_path.rglob(".dropzone-probe-*"))  # the type decided: no probe
    build_gguf(drop / "Polled.gguf")
    daemon.wait_for("model.created", model="polled:latest")


def test_watch_mode_native_is_obeyed_on_nfs(
    start: Any, drop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsinfo, "MOUNTINFO", mount_table(tmp_path, drop, "nfs4"))
    daemon = start(watch_mode="native")
    (event,) = daemon.find("watcher.mode")
    assert (event["mode"], event["reason"]) == ("native", "configured: watch_mode = native")


def test_a_local_drop_folder_is_watched_natively_after_the_probe(start: Any) -> None:
    (event,) = start().find("watcher.mode")
    assert (event["log_level"], event["mode"]) == ("info", "native")
    assert "probe's event arrived" in event["reason"]


# In a user namespace of its own with no inotify watches, the kernel answers ENOSPC: real, and
# bound to that namespace (fs.inotify.max_user_watches of the machine is not touched). The probe
# is told to pass, so the refusal comes from starting the observer itself.
CHILD = """
import json, sys
from pathlib import Path
from dropzone.service.watcher import ChangeQueue, Watcher
w = Watcher(Path(sys.argv[1]), ChangeQueue(), probe=lambda _root: True)
mode = w.start()
w.stop()
print(json.dumps({"mode": mode, "reason": w.plan.reason, "fallback": w.fallback}))
"""
NO_WATCHES = 'echo 0 > /proc/sys/user/max_inotify_watches && exec "$@"'


def test_no_inotify_watches_for_the_observer_means_polling(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    command = ["unshare", "--user", "--map-root-user", "sh", "-c", NO_WATCHES, "sh"]
    done = subprocess.run(
        [*command, sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "max_inotify_watches" in done.stderr:
        pytest.skip(f"no user namespace with its own inotify limits here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["mode"], result["fallback"]) == ("polling", True)
    assert "inotify refused (inotify watch limit reached)" in result["reason"]
