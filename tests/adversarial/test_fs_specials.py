"""FIFOs, sockets and devices named like artifacts, and files that are secrets (issue 13).

A FIFO or socket named ``*.gguf`` was left out of the listing without a word: the operator saw
nothing. Each now gets one ``artifact.invalid`` event, and is never opened. A file that is not a
model (a hard link to a secret, named ``*.gguf``) is refused without its bytes in the log.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_env import Dropzone

from dropzone.formats import gguf, safetensors
from dropzone.formats.headers import HeaderError
from dropzone.recipes.sidecar import load_sidecar
from dropzone.scan.scanner import list_tree, scan
from dropzone.testing.builders import build_gguf

SECRET = b"root:$6$hunter2salt$s3cr3tHash:19000:0:99999:7:::\n"


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX) as s:
        yield s


@pytest.mark.timeout(60)
def test_a_fifo_and_a_socket_named_like_artifacts_get_one_invalid_event_each(
    dropzone: Dropzone, unix_socket: socket.socket
) -> None:
    fifo, sock = dropzone.drop / "x.gguf", dropzone.drop / "y.gguf"
    os.mkfifo(fifo)
    unix_socket.bind(str(sock))
    build_gguf(dropzone.drop / "real.gguf")
    process = dropzone.run()
    process.wait_for("model.created", timeout=20)
    for path, what in ((fifo, "FIFO"), (sock, "socket")):
        event = process.wait_for("artifact.invalid", path=str(path), timeout=10)
        assert what in event["error"]
    process.rescan()
    process.rescan()
    assert len(process.find("artifact.invalid", path=str(fifo))) == 1
    assert len(process.find("artifact.invalid", path=str(sock))) == 1


def test_a_fifo_named_like_an_artifact_is_listed_as_special_and_never_opened(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "x.gguf")
    os.mkfifo(tmp_path / "x.json")  # a sidecar name: the operator's settings would be lost

    def never(rel: str) -> io.BufferedReader:
        raise AssertionError(f"opened {rel}")

    result = scan(tmp_path, list_tree(tmp_path), open_file=never)
    assert not result.artifacts
    assert sorted(Path(p.path).name for p in result.problems) == ["x.gguf", "x.json"]


@pytest.mark.timeout(10)
def test_reading_a_sidecar_that_became_a_fifo_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tiny.json")
    done = threading.Event()
    outcome: list[object] = []

    def read() -> None:
        outcome.append(load_sidecar(tmp_path / "tiny.json", drop_dir=tmp_path))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(3), "load_sidecar blocked on a FIFO"
    assert isinstance(outcome[0], list)


# --- refusals never quote the file -----------------------------------------------------------


def _message(reader: object, data: bytes) -> str:
    with pytest.raises(HeaderError) as caught:
        reader(io.BytesIO(data))  # type: ignore[operator]
    return str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        SECRET,
        b"root",
        b"ab\x00\x00" + SECRET,  # a magic of two printable bytes and zeros
        b'{"token": "hunter2"}' + bytes(64),
    ],
)
def test_header_errors_of_a_file_that_is_no_model_do_not_quote_its_bytes(data: bytes) -> None:
    for reader in (gguf.read_header, safetensors.read_header, safetensors.read_index):
        try:
            message = _message(reader, data)
        except pytest.fail.Exception:
            continue  # this reader accepts it or reads it as incomplete: no message
        for secret in (b"root", b"hunter2", b"s3cr3t", b"token", data[:8]):
            assert secret.decode("latin-1") not in message, (reader, message)
        # Nor the bytes as a number: "a header length of at most …, got 8386658…"
        number = str(int.from_bytes(data[:8].ljust(8, b"\0"), "little"))
        assert number not in message, (reader, message)


def test_an_index_that_is_a_secret_json_is_refused_without_quoting_it() -> None:
    doc = json.dumps({"password": "hunter2", "weight_map": {"a": "b.bin"}}).encode()
    message = _message(safetensors.read_index, doc)
    assert "hunter2" not in message and "b.bin" not in message
    message = _message(safetensors.read_index, json.dumps({"password": "hunter2"}).encode())
    assert "hunter2" not in message


@pytest.mark.timeout(60)
def test_a_hard_linked_secret_named_like_a_model_is_refused_without_its_bytes(
    dropzone: Dropzone, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    os.link(secret, dropzone.drop / "x.gguf")
    (dropzone.drop / "y").mkdir()
    os.link(secret, dropzone.drop / "y" / "model.safetensors")
    process = dropzone.run()
    process.wait_for("artifact.invalid", path=str(dropzone.drop / "x.gguf"), timeout=10)
    process.wait_for("artifact.invalid", path=str(dropzone.drop / "y"), timeout=10)
    process.rescan()  # whatever a second look logs is in the output too
    output = "\n".join(process.output())
    for fragment in ("root:", "b'root", "hunter2", "s3cr3t", "19000"):  # paths hold "-of-root"
        assert fragment not in output
