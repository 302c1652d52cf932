"""Quantizing needs a source Ollama reads as F16, BF16 or F32 (issue 15).

Ollama's ``KV.FileType`` (``fs/ggml/ggml.go``) answers ``FileTypeUnknown`` when
``general.file_type`` is 0 (F32) or missing, and ``createModel`` (``server/create.go``) refuses
"unknown" with a plain error: HTTP 500 without streaming, an error line after the progress with it.
"""

from __future__ import annotations

import pytest
from emulator_helpers import Api
from gguf import GGUFValueType

from dropzone.testing import builders

REFUSAL = "quantization is only supported for F16, BF16 and F32 models"


@pytest.mark.parametrize("file_type", [builders.FILE_TYPE_F32, None])
def test_quantizing_an_f32_or_untyped_gguf_is_refused_like_ollama(
    api: Api, file_type: int | None
) -> None:
    files = {"model.gguf": api.gguf(file_type=file_type)}
    reply = api.create(model="m", files=files, quantize="q4_K_M", stream=False)
    assert (reply.status, reply.json()) == (500, {"error": REFUSAL})
    reply = api.create(model="m", files=files, quantize="q4_K_M")
    assert reply.status == 200  # "parsing GGUF" went first
    assert reply.lines[-1] == {"error": REFUSAL}


def test_an_f32_gguf_shows_unknown_quantization_level(api: Api) -> None:
    files = {"model.gguf": api.gguf(file_type=builders.FILE_TYPE_F32)}
    assert api.create(model="m", files=files, stream=False).status == 200
    assert api.show("m").json()["details"]["quantization_level"] == "unknown"


def test_an_int32_file_type_is_unknown_to_ollama(api: Api) -> None:
    # KV.Uint reads only a uint32 value; any other integer type falls back to 0, i.e. unknown.
    path = builders.build_gguf(
        api.work / "m.gguf", file_type=None, extra={"general.file_type": (GGUFValueType.INT32, 1)}
    )
    files = {"model.gguf": api.upload_file(path)}
    reply = api.create(model="m", files=files, quantize="q8_0", stream=False)
    assert (reply.status, reply.json()) == (500, {"error": REFUSAL})


def test_quantizing_an_f16_gguf_still_works(api: Api) -> None:
    files = {"model.gguf": api.gguf(file_type=builders.FILE_TYPE_F16)}
    reply = api.create(model="m", files=files, quantize="q8_0", stream=False)
    assert reply.status == 200
    assert api.show("m").json()["details"]["quantization_level"] == "Q8_0"
