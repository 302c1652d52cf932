"""Issue 15: a GGUF Ollama cannot quantize is refused before anything is hashed or uploaded.

Ollama reads ``general.file_type`` 0 (F32) or a missing value as unknown and refuses to
quantize it (``fs/ggml/ggml.go`` ``KV.FileType``, ``server/create.go`` ``createModel``) after the
whole file was uploaded; dropzone used to send it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dropzone.testing.builders import FILE_TYPE_F16, FILE_TYPE_F32, build_gguf
from dropzone.testing.ollama import Emulator


@pytest.mark.parametrize("file_type", [FILE_TYPE_F32, None])
def test_quantize_of_an_f32_or_untyped_gguf_is_refused_before_upload(
    drop: Path, emulator: Emulator, start: Any, file_type: int | None
) -> None:
    build_gguf(drop / "big.gguf", file_type=file_type)
    (drop / "big.toml").write_text('quantize = "q4_K_M"\n')
    daemon = start()
    refused = daemon.wait_for("sidecar.invalid")
    assert refused["key"] == "quantize"
    assert "quantization is only supported for F16, BF16 and F32 models" in refused["error"]
    assert not list((emulator.root / "blobs").glob("sha256-*"))  # nothing uploaded
    assert "unknown" in refused["fix"]
    assert not daemon.find("artifact.ready")


def test_quantize_of_an_f16_gguf_goes_ahead(drop: Path, start: Any) -> None:
    build_gguf(drop / "big.gguf", file_type=FILE_TYPE_F16)
    (drop / "big.toml").write_text('quantize = "q4_K_M"\n')
    daemon = start()
    daemon.wait_for("model.created", model="big:latest")
