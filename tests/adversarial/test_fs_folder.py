"""The watch follows the drop folder (issue 13): deleted and re-created while the daemon runs,
inotify kept watching the dead inode and new files waited for the 300 s rescan.

The operator re-creates the folder the way the ``drop_dir.suspicious`` fix tells them: with the
marker ``.dropzone-id`` written back (a folder without it is suspicious, on purpose).
"""

from __future__ import annotations

import shutil

import pytest
from e2e_env import Dropzone

from dropzone.service.dropguard import MARKER
from dropzone.testing.builders import build_gguf


@pytest.mark.timeout(90)
def test_a_deleted_and_recreated_drop_folder_is_watched_again_without_a_rescan(
    dropzone: Dropzone,
) -> None:
    process = dropzone.run(DROPZONE_RESCAN_INTERVAL="300")
    marker = (dropzone.drop / MARKER).read_text()
    shutil.rmtree(dropzone.drop)
    process.wait_for("drop_dir.suspicious", timeout=15)
    dropzone.drop.mkdir()
    (dropzone.drop / MARKER).write_text(marker)
    process.wait_for("drop_dir.ok", timeout=15)
    late = dropzone.drop / "late.gguf"
    build_gguf(late)
    process.wait_for("model.created", path=str(late), timeout=20)
    # Watched, not found by a look at the whole folder: the next file comes as quickly.
    second = dropzone.drop / "second.gguf"
    build_gguf(second, seed=2)
    process.wait_for("model.created", path=str(second), timeout=10)
    assert process.running
