"""Issue 15: "no sign of life while a file arrives". The real process, JSON log: a file copied
slowly is an ``artifact.arriving`` event every ``progress_seconds`` with its bytes, the size its
header declares and the rate; the model is still made once, after the copy."""

from __future__ import annotations

import threading
import time

from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator

CHUNK = 16 * 1024
WANTED_EVENTS = 3


def test_a_slow_copy_reports_arriving_events_with_bytes_expected_size_and_rate(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    source = build_gguf(dropzone.tmp / "Slow.gguf", n_tensors=4, tensor_elems=512 * 1024)
    data = source.read_bytes()
    target = dropzone.drop / "Slow.gguf"
    daemon = dropzone.run(DROPZONE_PROGRESS_SECONDS="0.3")
    pace = threading.Event()  # never set: its wait() is the writer's pause between chunks
    written: list[int] = []

    def arriving() -> int:
        return len(daemon.find("artifact.arriving", path=str(target)))

    def copy_slowly() -> None:
        # Condition-paced: the copy goes on until the daemon has told WANTED_EVENTS arrivals
        # (or the file is written), so the test does not depend on how fast this machine is.
        deadline = time.monotonic() + 30
        with target.open("wb", buffering=0) as out:
            for start in range(0, len(data), CHUNK):
                out.write(data[start : start + CHUNK])
                written.append(start + CHUNK)
                if arriving() >= WANTED_EVENTS or time.monotonic() > deadline:
                    out.write(data[start + CHUNK :])
                    return
                pace.wait(0.02)

    writer = threading.Thread(target=copy_slowly)
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive()

    events = daemon.find("artifact.arriving", path=str(target))
    assert len(events) >= WANTED_EVENTS, daemon.transcript()
    sizes = [e["bytes"] for e in events]
    assert sizes == sorted(sizes) and 0 < sizes[0] < len(data)
    assert {e["expected_bytes"] for e in events} == {len(data)}  # from the GGUF header
    assert all(e["rate_mb_s"] >= 0 for e in events)
    daemon.wait_for("model.created", model="slow:latest", timeout=20)
    after = daemon.mark()
    assert not daemon.find("artifact.arriving", since=after)
