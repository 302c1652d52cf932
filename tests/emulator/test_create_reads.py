"""What a create from GGUF ``files`` reads of the blob, as in Ollama's ``server/create.go``.

``ggufLayersWithMediaType`` decodes the blob with ``ggml.Decode``, which reads the header and
tensor infos and seeks past the tensor data. From v0.30 on, ``createModel`` then rewrites a
text-only model layer with ``llama-quantize … COPY`` (a full read and a full write) and
``manifest.NewLayer`` hashes that output into a new blob; before v0.30 the uploaded blob is the
layer as it is. The emulator must not cost more than the server: benchmarks of the same-host
placement (issue 17) time the create. Bytes read and written are the process's own
(``/proc/self/io``: the emulator runs in this process), so no timing is involved.
"""

from __future__ import annotations

from pathlib import Path

from emulator_helpers import Api, manifest_layers

TENSOR_BYTES = 3 * (4 << 20) * 2  # three F16 tensors of 4 Mi elements


def io_counters() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def blobs(api: Api) -> set[str]:
    return {p.name for p in (api.emulator.store.root / "blobs").iterdir()}


def test_a_pre_030_create_reads_the_header_only_and_copies_nothing(old_api: Api) -> None:
    uploaded = old_api.gguf(tensor_elems=4 << 20)
    before_blobs = blobs(old_api)
    read0, written0 = io_counters()
    reply = old_api.create(model="m", files={"model.gguf": uploaded})
    read, written = io_counters()
    assert reply.statuses[-1] == "success"
    assert read - read0 < TENSOR_BYTES // 16 and written - written0 < TENSOR_BYTES // 16
    (model_layer,) = manifest_layers(old_api.emulator, "m")[:1]
    assert model_layer["digest"] == uploaded
    new = blobs(old_api) - before_blobs
    assert len(new) == 1  # the config layer only


def test_a_v033_create_reads_the_blob_and_writes_one_validated_copy(api: Api) -> None:
    uploaded = api.gguf(tensor_elems=4 << 20)
    before_blobs = blobs(api)
    read0, written0 = io_counters()
    reply = api.create(model="m", files={"model.gguf": uploaded})
    read, written = io_counters()
    assert reply.statuses[-1] == "success"
    # llama-quantize's COPY pass reads the blob and writes it out; NewLayer hashes that output
    # (and Ollama writes it once more into NewLayer's temp: the emulator's create is lighter).
    assert read - read0 >= 2 * TENSOR_BYTES
    assert written - written0 >= TENSOR_BYTES
    model_layer = manifest_layers(api.emulator, "m")[0]
    assert model_layer["digest"] != uploaded
    assert len(blobs(api) - before_blobs) == 2  # the validated copy and the config
