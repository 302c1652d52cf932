"""No file outside the drop folder is opened (issue 13), observed with strace on the real daemon.

The drop folder holds links out of it (a file link and a folder link to secret GGUFs), and a
file being hashed is swapped for a link to a secret file. The daemon runs under
``strace -f -y``: every successful ``open``/``openat``/``openat2`` of every thread is logged
with the path the kernel resolved for the returned descriptor, which is what was opened,
whatever links or relative names led there. The invariant: no descriptor for anything under the
test's folder except the drop folder, the state folder and the configuration file; the secrets'
bytes never reach the server.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dropzone_process import DropzoneProcess, clean_environment
from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator

# 1234  openat(AT_FDCWD</x>, "name", O_RDONLY|O_CLOEXEC) = 3</resolved/path>
_OPENED = re.compile(r"^\d+\s+open(?:at2?)?\(.*\)\s+=\s+\d+<(?P<path>[^>]*)>")


class TracedDaemon(DropzoneProcess):
    """``dropzone run`` under strace: signals go to the traced daemon, not to strace."""

    def send(self, sig: signal.Signals) -> None:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        os.kill(int(children.split()[0]), sig)


@pytest.fixture
def traced(dropzone: Dropzone) -> Iterator[tuple[TracedDaemon, Path]]:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace; .ci/run installs it)")
    log = dropzone.tmp / "opens.strace"
    program = [strace, "-f", "-qq", "-y", "-e", "trace=open,openat,openat2"]
    program += ["-e", "status=successful", "-o", str(log), sys.executable, "-m", "dropzone"]
    env = clean_environment(dropzone.env())
    process = TracedDaemon(["run"], env, dropzone.tmp / "traced.stderr", program=program)
    dropzone.processes.append(process)  # stopped (SIGTERM, exit 0) at teardown
    yield process, log


def opened(log: Path) -> set[str]:
    return {m["path"] for line in log.read_text().splitlines() if (m := _OPENED.match(line))}


@pytest.mark.timeout(120)
def test_links_out_of_the_drop_folder_and_a_link_swapped_in_during_hashing_open_nothing_outside(
    dropzone: Dropzone, emulator: Emulator, traced: tuple[TracedDaemon, Path]
) -> None:
    secret = dropzone.tmp / "secret"
    secret_folder = secret / "folder"
    secret_folder.mkdir(parents=True)
    secret_file = build_gguf(secret / "secret.gguf", seed=7)
    build_gguf(secret_folder / "inner.gguf", seed=8)
    (secret_folder / "inner.json").write_text('{"model": "inner"}')
    drop = dropzone.drop
    (drop / "file-link.gguf").symlink_to(secret_file)
    (drop / "folder-link").symlink_to(secret_folder, target_is_directory=True)
    build_gguf(drop / "good.gguf", seed=1)

    daemon, log = traced
    daemon.wait_for("scan.done", timeout=60)
    daemon.wait_for("model.created", model="good:latest", timeout=60)
    # A large file is hashed; as soon as it is ready it is swapped for a link to the secret.
    big = build_gguf(dropzone.tmp / "big.gguf", seed=9, n_tensors=64, tensor_elems=1 << 20)
    since = daemon.mark()
    big.rename(drop / "swapped.gguf")
    daemon.wait_for("artifact.ready", since=since, path=str(drop / "swapped.gguf"), timeout=60)
    (drop / "swap.tmp").symlink_to(secret_file)
    (drop / "swap.tmp").rename(drop / "swapped.gguf")
    daemon.rescan(timeout=30)
    daemon.rescan(timeout=30)
    assert daemon.stop() == 0

    paths = opened(log)
    assert any(p.startswith(str(drop)) for p in paths), "the trace saw the drop folder opened"
    allowed = (str(drop), str(dropzone.state), str(dropzone.config))
    under_test = str(dropzone.tmp) + os.sep
    outside = sorted(p for p in paths if p.startswith(under_test) and not p.startswith(allowed))
    assert outside == [], f"opened outside the drop folder and state: {outside}"
    assert not any(p.startswith(str(secret)) for p in paths)
    secret_digest = "sha256:" + hashlib.sha256(secret_file.read_bytes()).hexdigest()
    assert not emulator.store.has_blob(secret_digest)
    assert "inner:latest" not in emulator.models()
