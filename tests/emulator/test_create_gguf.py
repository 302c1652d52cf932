"""Checklist §10 create from GGUF ``files`` (ollama-api.md §4.4.3a, §12.3, §12.4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from emulator_helpers import Api, manifest_layers

from dropzone.testing import builders
from dropzone.testing.emulator.gguf_view import decode_gguf
from dropzone.testing.ollama import Emulator, modern

MODEL = "application/vnd.ollama.image.model"
PROJECTOR = "application/vnd.ollama.image.projector"
ADAPTER = "application/vnd.ollama.image.adapter"
ZEROS = "0" * 19


def test_one_parsing_gguf_per_file_in_sorted_key_order_with_projector_detected(
    api: Api, emulator: Emulator
) -> None:
    model = api.gguf("model.gguf")
    # A projector type given: no "mlp" rewrite (see test_create_arch_defaults).
    built = builders.build_mmproj_gguf(api.work / "mmproj.gguf", projector_type="mlp")
    projector = api.upload_file(built)
    reply = api.create(model="vision", files={"model.gguf": model, "mmproj.gguf": projector})
    assert reply.statuses[:2] == ["parsing GGUF", "parsing GGUF"]
    assert reply.statuses[-1] == "success"
    kinds = [
        (layer["mediaType"], layer.get("from")) for layer in manifest_layers(emulator, "vision")
    ]
    # sorted keys: mmproj.gguf first; the projector is reused as uploaded, the model re-written
    assert kinds == [(PROJECTOR, "mmproj.gguf"), (MODEL, None)]


def test_adapter_gguf_in_files_becomes_an_adapter_layer(api: Api, emulator: Emulator) -> None:
    model = api.gguf("base.gguf")
    adapter = api.upload_file(builders.build_adapter_gguf(api.work / "lora.gguf"))
    reply = api.create(model="m", files={"base.gguf": model, "lora.gguf": adapter}, stream=False)
    assert reply.status == 200
    media = [layer["mediaType"] for layer in manifest_layers(emulator, "m")]
    assert media == [MODEL, ADAPTER]


def test_non_gguf_companion_file_fails_after_parsing_gguf(api: Api) -> None:
    files = {"model.gguf": api.gguf(), "config.json": api.upload(b"{}")}
    reply = api.create(model="m", files=files)
    assert reply.status == 200  # the error follows a progress line
    assert reply.lines == [
        {"status": "parsing GGUF"},
        {"error": "supplied file was not in GGUF format"},
    ]
    reply = api.create(model="m", files=files, stream=False)
    assert (reply.status, reply.json()) == (400, {"error": "supplied file was not in GGUF format"})


def test_missing_blob_for_a_gguf_key_is_an_os_error(api: Api, emulator: Emulator) -> None:
    absent = "sha256:" + "2" * 64
    reply = api.create(model="m", files={"model.gguf": absent}, stream=False)
    assert reply.status == 500
    path = emulator.store.blobs / ("sha256-" + "2" * 64)
    assert reply.json() == {"error": f"open {path}: no such file or directory"}


def test_malformed_digest_in_gguf_mode_fails_after_parsing_gguf(api: Api) -> None:
    reply = api.create(model="m", files={"model.gguf": "sha256:nothex"})
    assert reply.lines == [{"status": "parsing GGUF"}, {"error": "invalid digest format"}]
    reply = api.create(model="m", files={"model.gguf": "sha256:nothex"}, stream=False)
    assert reply.status == 500


def test_validation_copy_rewrites_a_text_model_into_a_new_layer(
    api: Api, emulator: Emulator
) -> None:
    uploaded = api.gguf()
    size = emulator.blob_path(uploaded).stat().st_size
    reply = api.create(model="m", files={"model.gguf": uploaded})
    lines = reply.lines
    assert lines[0] == {"status": "parsing GGUF"}
    validating = [line for line in lines if line.get("status") == "validating GGUF model"]
    assert validating[0] == {"status": "validating GGUF model", "digest": ZEROS, "total": size}
    assert all(line["digest"] == ZEROS and line["total"] == size for line in validating)
    assert validating[-1]["completed"] == size
    model_layer = manifest_layers(emulator, "m")[0]
    assert model_layer["digest"] != uploaded
    assert "from" not in model_layer
    after = reply.statuses[reply.statuses.index("verifying conversion") + 1 :]
    assert after[0] == f"creating new layer {model_layer['digest']}"
    assert after[-2:] == ["writing manifest", "success"]
    assert emulator.has_blob(uploaded)  # the upload stays, unreferenced, until a prune


def test_pre_030_server_references_the_uploaded_gguf_as_is(old_api: Api) -> None:
    uploaded = old_api.gguf()
    reply = old_api.create(model="m", files={"model.gguf": uploaded})
    assert reply.statuses == [
        "parsing GGUF",
        f"using existing layer {uploaded}",
        "writing manifest",
        "success",
    ]
    manifest = old_api.emulator.manifest("m")
    assert manifest is not None
    assert manifest["layers"][0] == {
        "mediaType": MODEL,
        "digest": uploaded,
        "size": old_api.emulator.blob_path(uploaded).stat().st_size,
        "from": "model.gguf",
    }


def test_validate_gguf_flag_overrides_the_version(tmp_path: Path) -> None:
    assert Emulator(tmp_path / "a", validate_gguf=False).validate_gguf is False
    assert Emulator(tmp_path / "b", version="0.29.0").validate_gguf is False
    assert Emulator(tmp_path / "c", version="0.29.0", validate_gguf=True).validate_gguf is True
    assert Emulator(tmp_path / "d").validate_gguf is True


def test_vision_model_gguf_is_not_validated(api: Api, emulator: Emulator) -> None:
    uploaded = api.gguf("vl.gguf", tensor_prefix="v.blk.0")
    reply = api.create(model="m", files={"vl.gguf": uploaded})
    assert "validating GGUF model" not in reply.statuses
    assert f"using existing layer {uploaded}" in reply.statuses


def test_truncated_gguf_is_rejected_in_validation_mode(api: Api) -> None:
    path = builders.truncate(builders.build_gguf(api.work / "cut.gguf"), -50)
    reply = api.create(model="m", files={"cut.gguf": api.upload_file(path)})
    assert reply.status == 200
    assert reply.error is not None
    assert reply.error.startswith(
        "failed to validate GGUF with llama-quantize without compatibility patches: "
    )
    assert reply.statuses[0] == "parsing GGUF"


def test_truncated_gguf_is_accepted_by_a_pre_030_server(old_api: Api) -> None:
    path = builders.truncate(builders.build_gguf(old_api.work / "cut.gguf"), -50)
    reply = old_api.create(model="m", files={"cut.gguf": old_api.upload_file(path)})
    assert reply.statuses[-1] == "success"


def padded_gguf(api: Api) -> Path:
    """gguf-py's padding after the last tensor: bytes past the end of the tensor data."""
    path = builders.build_padded_gguf(api.work / "padded.gguf")
    assert decode_gguf(path).data_end == builders.tensor_data_end(path) < path.stat().st_size
    return path


def test_bytes_after_the_last_tensor_pass_validation(api: Api) -> None:
    # Ollama's decoder (fs/ggml/gguf.go, gguf.Decode) refuses only tensor data that ends past
    # the end of the file; bytes after the last tensor are not an error (issue 11).
    reply = api.create(model="m", files={"padded.gguf": api.upload_file(padded_gguf(api))})
    assert reply.error is None
    assert reply.statuses[-1] == "success"


def test_bytes_after_the_last_tensor_stay_in_the_layer_of_a_pre_030_server(old_api: Api) -> None:
    path = padded_gguf(old_api)
    uploaded = old_api.upload_file(path)
    reply = old_api.create(model="m", files={"padded.gguf": uploaded})
    assert reply.statuses[-1] == "success"
    (layer,) = manifest_layers(old_api.emulator, "m")
    assert (layer["digest"], layer["size"]) == (uploaded, path.stat().st_size)


def test_corrupt_gguf_header_is_an_error(api: Api) -> None:
    path = builders.truncate(builders.build_gguf(api.work / "head.gguf"), 40)
    reply = api.create(model="m", files={"head.gguf": api.upload_file(path)}, stream=False)
    assert reply.status == 500
    assert reply.json()["error"]


def split_files(api: Api, count: int = 3, stem: str = "big") -> dict[str, str]:
    """Shards like llama.cpp's: each holds different tensors (``build_split_gguf`` repeats
    the same names in every shard, which a merging server refuses as duplicates)."""
    files = {}
    for no in range(count):
        name = f"{stem}-{no + 1:05d}-of-{count:05d}.gguf"
        path = builders.build_gguf(
            api.work / name, split=(no, count), seed=no, tensor_prefix=f"blk.{no}"
        )
        files[name] = api.upload_file(path)
    return files


def test_split_shards_repeating_tensor_names_are_refused(api: Api) -> None:
    paths = builders.build_split_gguf(api.work, "dup", 2, tensor_prefix="blk.0")
    reply = api.create(model="dup", files={p.name: api.upload_file(p) for p in paths})
    assert reply.error == (
        'invalid split GGUF: split GGUF "dup-00002-of-00002.gguf" '
        'contains duplicate tensor "blk.0.t0.weight"'
    )


def test_split_shards_are_merged_into_one_model_layer(api: Api, emulator: Emulator) -> None:
    files = split_files(api)
    reply = api.create(model="big", files=files)
    assert reply.statuses.count("parsing GGUF") == 3
    assert reply.statuses[-1] == "success", reply.text
    big = manifest_layers(emulator, "big")
    assert [layer["mediaType"] for layer in big] == [MODEL]
    header = decode_gguf(emulator.blob_path(str(big[0]["digest"])))
    assert len(header.tensors) == 9
    assert not any(key.startswith("split.") for key in header.metadata)


def test_pre_030_server_keeps_split_shards_as_separate_layers(old_api: Api) -> None:
    files = split_files(old_api)
    old_api.create(model="big", files=files, stream=False)
    manifest = old_api.emulator.manifest("big")
    assert manifest is not None
    assert [layer["digest"] for layer in manifest["layers"]] == [files[k] for k in sorted(files)]


def test_split_shard_under_a_non_split_name_is_refused(api: Api) -> None:
    files = split_files(api)
    first = sorted(files)[0]
    files["renamed.gguf"] = files.pop(first)
    reply = api.create(model="big", files=files, stream=False)
    assert reply.status == 500
    assert reply.json()["error"] == (
        'invalid split GGUF: split GGUF "renamed.gguf" must use llama.cpp split filename pattern'
    )


def test_split_count_in_name_must_match_metadata(api: Api) -> None:
    files = split_files(api)
    first = sorted(files)[0]
    files["big-00001-of-00002.gguf"] = files.pop(first)
    reply = api.create(model="big", files=files, stream=False)
    assert reply.json()["error"] == (
        'invalid split GGUF: split GGUF "big-00001-of-00002.gguf" filename count 2 '
        "does not match metadata count 3"
    )


def test_split_index_in_name_must_match_metadata(api: Api) -> None:
    files = split_files(api)
    a, b = sorted(files)[:2]
    files[a], files[b] = files[b], files[a]
    reply = api.create(model="big", files=files, stream=False)
    assert reply.json()["error"] == (
        f'invalid split GGUF: split GGUF "{a}" filename index 0 does not match metadata index 1'
    )


def test_split_with_a_missing_shard_is_refused(api: Api) -> None:
    files = split_files(api)
    del files[sorted(files)[-1]]
    reply = api.create(model="big", files=files)
    assert (
        reply.error
        == 'invalid split GGUF: split GGUF "big-00001-of-00003.gguf" has 2 shards, expected 3'
    )


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.30.0", True), ("0.33.0-rc2", True), ("0.0.0", True), ("0.29.9", False), ("0.5.5", False)],
)
def test_v030_features_start_at_030_and_in_source_builds(version: str, expected: bool) -> None:
    assert modern(version) is expected
