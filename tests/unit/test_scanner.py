"""Drop-folder listing and classification: every artifact kind and every broken variant."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import gguf as gguf_py
import numpy as np
import pytest
from safetensors.numpy import save_file
from structlog.testing import capture_logs

from dropzone.formats.completeness import for_gguf
from dropzone.formats.gguf import read_header_file
from dropzone.recipes.types import ArtifactKind
from dropzone.scan.ignore import IgnoreRules
from dropzone.scan.scanner import (
    Entry,
    HeaderCache,
    ScannedArtifact,
    ScanResult,
    Status,
    list_tree,
    scan,
)
from dropzone.testing import builders as b


def run(root: Path, **kwargs: object) -> ScanResult:
    return scan(root, list_tree(root), **kwargs)  # type: ignore[arg-type]


def only(result: ScanResult) -> ScannedArtifact:
    assert len(result.artifacts) == 1, result.artifacts
    return result.artifacts[0]


def keys(a: ScannedArtifact) -> list[str]:
    return sorted(f.key for f in a.artifact.files)


def messages(a: ScannedArtifact) -> str:
    return " | ".join(p.describe() for p in a.problems)


# --- list_tree -------------------------------------------------------------------------------


def test_list_tree_lists_files_and_folders_with_their_stat(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.bin").write_bytes(b"12345")
    (tmp_path / "a.gguf").write_bytes(b"x")
    entries = list_tree(tmp_path)
    assert [e.path for e in entries] == ["a.gguf", "d", "d/e", "d/e/f.bin"]
    f = entries[-1]
    st = (tmp_path / "d/e/f.bin").stat()
    assert (f.size, f.mtime_ns, f.dev, f.inode) == (5, st.st_mtime_ns, st.st_dev, st.st_ino)
    assert (f.name, f.parent, f.is_dir, f.is_symlink) == ("f.bin", "d/e", False, False)
    assert entries[1].is_dir


def test_list_tree_resolves_symlinks_and_never_descends_them(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    root = tmp_path / "drop"
    (outside / "sub").mkdir(parents=True)
    (outside / "w.gguf").write_bytes(b"abc")
    (root / "real").mkdir(parents=True)
    (root / "real" / "m.gguf").write_bytes(b"abcd")
    os.symlink(root / "real" / "m.gguf", root / "in.gguf")
    os.symlink(outside / "w.gguf", root / "out.gguf")
    os.symlink(outside / "sub", root / "outdir")
    os.symlink(root / "real", root / "indir")
    os.symlink(root / "nowhere", root / "dangling.gguf")
    os.mkfifo(root / "fifo.gguf")
    by = {e.path: e for e in list_tree(root)}
    # Listed as special, never opened; the scan refuses it (issue 13, tests/adversarial).
    assert by["fifo.gguf"].special == "FIFO" and by["fifo.gguf"].size == 0
    assert (by["in.gguf"].target, by["in.gguf"].outside, by["in.gguf"].size) == (
        "real/m.gguf",
        False,
        4,
    )
    assert (by["out.gguf"].target, by["out.gguf"].outside, by["out.gguf"].size) == (None, True, 3)
    assert by["outdir"].is_dir and by["outdir"].outside
    assert by["indir"].is_dir and by["indir"].target == "real"
    assert not any(p.startswith(("indir/", "outdir/")) for p in by)
    assert by["dangling.gguf"].unsafe_link and not by["dangling.gguf"].outside


def test_list_tree_prunes_folders_the_rules_drop(tmp_path: Path) -> None:
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "x.incomplete").write_bytes(b"")
    paths = [e.path for e in list_tree(tmp_path, prune=IgnoreRules().prune_dir)]
    assert paths == [".cache"]


def test_list_tree_lists_names_that_are_not_utf8_as_python_gives_them(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    os.mkdir(os.path.join(root, b"caf\xe9"))
    with open(os.path.join(root, b"caf\xe9", b"mod\xe8le.gguf"), "wb") as f:
        f.write(b"x")
    paths = [e.path for e in list_tree(tmp_path)]
    assert paths == [os.fsdecode(b"caf\xe9"), os.fsdecode(b"caf\xe9/mod\xe8le.gguf")]
    assert (tmp_path / paths[1]).read_bytes() == b"x"  # the name leads back to the file


def failing_listing(broken: str, after: int) -> Callable[[str], Any]:
    """``os.scandir`` whose listing of the folder named ``broken`` fails with EIO after
    ``after`` entries, as a listing on NFS or FUSE can (issue 13)."""

    @contextmanager
    def scandir(path: str) -> Iterator[Iterator[os.DirEntry[str]]]:
        with os.scandir(path) as it:
            if os.path.basename(path) != broken:
                yield it
                return

            def entries() -> Iterator[os.DirEntry[str]]:
                for n, entry in enumerate(sorted(it, key=lambda e: e.name)):
                    if n == after:
                        raise OSError(errno.EIO, "Input/output error", path)
                    yield entry

            yield entries()

    return scandir


def test_a_folder_whose_listing_fails_midway_is_skipped_with_one_event(tmp_path: Path) -> None:
    for folder in ("flaky", "fine"):
        (tmp_path / folder / "sub").mkdir(parents=True)
        for name in ("a.gguf", "b.gguf", "c.gguf"):
            (tmp_path / folder / name).write_bytes(b"x")
    with capture_logs() as events:
        entries = list_tree(tmp_path, scandir=failing_listing("flaky", after=2))
    # Nothing of a half-listed folder: its half could look like an incomplete artifact.
    assert [e.path for e in entries] == [
        "fine", "fine/a.gguf", "fine/b.gguf", "fine/c.gguf", "fine/sub", "flaky",
    ]  # fmt: skip
    assert events == [
        {
            "event": "scan.unreadable",
            "log_level": "warning",
            "path": str(tmp_path / "flaky"),
            "error": f"[Errno 5] Input/output error: '{tmp_path / 'flaky'}'",
        }
    ]


# --- GGUF artifacts --------------------------------------------------------------------------


def test_single_gguf_is_one_complete_model(tmp_path: Path) -> None:
    path = b.build_gguf(tmp_path / "Qwen3-8B.gguf", file_type=b.FILE_TYPE_Q4_K_M)
    a = only(run(tmp_path))
    assert (a.status, a.artifact.kind, a.rel_path) == (
        Status.COMPLETE,
        ArtifactKind.GGUF,
        "Qwen3-8B.gguf",
    )
    assert a.artifact.path == path
    (f,) = a.artifact.files
    assert (f.key, f.path, f.seen_size) == ("Qwen3-8B.gguf", path, path.stat().st_size)
    assert (a.artifact.file_type, a.artifact.architecture) == ("Q4_K_M", "llama")
    assert a.have_bytes == a.expected_bytes == path.stat().st_size


def test_gguf_longer_than_its_tensor_data_is_complete_at_its_whole_size(tmp_path: Path) -> None:
    # gguf-py pads after the last tensor (issue 11): the file is complete, and the size hashing
    # must find is the whole file's, not the end of the tensor data.
    path = b.build_padded_gguf(tmp_path / "m.gguf")
    end = b.tensor_data_end(path)
    a = only(run(tmp_path))
    assert a.status is Status.COMPLETE
    assert a.progress[0].expected == for_gguf(end)
    assert a.artifact.files[0].seen_size == path.stat().st_size > end


def test_split_shards_form_one_artifact_complete_only_with_every_shard(tmp_path: Path) -> None:
    shards = b.build_split_gguf(tmp_path / "big", "Big-Model", 3)
    a = only(run(tmp_path))
    assert (a.status, a.artifact.kind) == (Status.COMPLETE, ArtifactKind.GGUF_SPLIT)
    assert a.rel_path == "big/Big-Model-00001-of-00003.gguf"
    assert keys(a) == [p.name for p in shards]
    shards[1].unlink()
    a = only(run(tmp_path))
    assert a.status is Status.INCOMPLETE
    assert a.missing == ("big/Big-Model-00002-of-00003.gguf",)
    shards[0].unlink()
    a = only(run(tmp_path))
    assert (a.status, a.rel_path) == (Status.INCOMPLETE, "big/Big-Model-00001-of-00003.gguf")
    assert len(a.missing) == 2


def test_projector_joins_the_model_in_its_folder(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "vis" / "gemma.gguf")
    b.build_mmproj_gguf(tmp_path / "vis" / "mmproj-gemma-f16.gguf")
    a = only(run(tmp_path))
    assert a.status is Status.COMPLETE
    assert keys(a) == ["gemma.gguf", "mmproj-gemma-f16.gguf"]


def test_projector_found_by_metadata_whatever_its_name(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "vis" / "gemma.gguf")
    b.build_mmproj_gguf(tmp_path / "vis" / "vision.gguf")
    assert keys(only(run(tmp_path))) == ["gemma.gguf", "vision.gguf"]


def test_one_projector_serves_every_model_of_its_folder(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "q4.gguf")
    b.build_gguf(tmp_path / "q8.gguf", seed=3)
    b.build_mmproj_gguf(tmp_path / "mmproj.gguf")
    result = run(tmp_path)
    assert [keys(a) for a in result.artifacts] == [
        ["mmproj.gguf", "q4.gguf"],
        ["mmproj.gguf", "q8.gguf"],
    ]


def test_two_projectors_for_one_model_are_ambiguous(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "m.gguf")
    b.build_mmproj_gguf(tmp_path / "mmproj-f16.gguf")
    b.build_mmproj_gguf(tmp_path / "mmproj-f32.gguf", seed=5)
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert "several vision projectors" in messages(a)


def test_projector_without_a_model_is_unclaimed(tmp_path: Path) -> None:
    b.build_mmproj_gguf(tmp_path / "mmproj.gguf")
    result = run(tmp_path)
    assert result.artifacts == ()
    assert result.unclaimed == ("mmproj.gguf",)


def test_gguf_adapter_is_an_adapter_artifact(tmp_path: Path) -> None:
    b.build_adapter_gguf(tmp_path / "lora.gguf")
    a = only(run(tmp_path))
    assert (a.status, a.artifact.kind, a.artifact.is_adapter) == (
        Status.COMPLETE,
        ArtifactKind.GGUF_ADAPTER,
        True,
    )


# --- safetensors artifacts -------------------------------------------------------------------


def test_safetensors_folder_sends_the_cli_file_set(tmp_path: Path) -> None:
    folder = b.build_safetensors_model(tmp_path / "llama", shards=2, tokenizer="tokenizer.model")
    (folder / "chat_template.jinja").write_text("{{ x }}")
    (folder / "README.md").write_text("hi")
    # A sentence-transformers module folder one level down belongs to the model.
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text("{}")
    save_file({"w": np.ones(4, dtype=np.float32)}, str(folder / "2_Dense" / "model.safetensors"))
    a = only(run(tmp_path))
    assert (a.status, a.artifact.kind, a.rel_path) == (
        Status.COMPLETE,
        ArtifactKind.SAFETENSORS,
        "llama",
    )
    assert keys(a) == [
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "chat_template.jinja",
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
    assert a.artifact.architecture == "LlamaForCausalLM"
    sizes = {f.key: f.seen_size for f in a.artifact.files}
    assert sizes["config.json"] == (folder / "config.json").stat().st_size
    assert (
        sizes["model-00001-of-00002.safetensors"]
        == (folder / "model-00001-of-00002.safetensors").stat().st_size
    )


def test_safetensors_adapter_folder_is_an_adapter(tmp_path: Path) -> None:
    b.build_safetensors_adapter(tmp_path / "lora")
    a = only(run(tmp_path))
    assert (a.status, a.artifact.kind) == (Status.COMPLETE, ArtifactKind.SAFETENSORS_ADAPTER)
    assert keys(a) == ["adapter_config.json", "adapter_model.safetensors"]


def test_safetensors_directly_in_the_drop_folder_is_refused(tmp_path: Path) -> None:
    b.build_safetensors_model(tmp_path)
    result = run(tmp_path)
    assert result.artifacts == ()
    assert "directly in the drop folder" in result.problems[0].message


# --- sidecars and side files -----------------------------------------------------------------


@pytest.mark.parametrize("sidecar", ["m.toml", "m.Modelfile", "m.yaml", "m.yml", "m.json"])
def test_sidecar_beside_a_gguf(tmp_path: Path, sidecar: str) -> None:
    b.build_gguf(tmp_path / "m.gguf")
    (tmp_path / sidecar).write_text("x")
    (tmp_path / "other.toml").write_text("x")
    result = run(tmp_path)
    a = only(result)
    assert a.sidecar_rel == sidecar and a.artifact.sidecar == tmp_path / sidecar
    assert result.unclaimed == ("other.toml",)


def test_sidecar_of_a_shard_group_is_named_after_its_prefix(tmp_path: Path) -> None:
    b.build_split_gguf(tmp_path, "big", 2)
    (tmp_path / "big.yaml").write_text("x")
    assert only(run(tmp_path)).sidecar_rel == "big.yaml"


@pytest.mark.parametrize(
    "sidecar", ["m/Modelfile", "m/dropzone.toml", "m/dropzone.json", "m.toml", "m.Modelfile"]
)
def test_sidecar_of_a_folder_inside_or_beside_it(tmp_path: Path, sidecar: str) -> None:
    b.build_safetensors_model(tmp_path / "m")
    (tmp_path / sidecar).write_text("{}")
    a = only(run(tmp_path))
    assert (a.status, a.sidecar_rel) == (Status.COMPLETE, sidecar)
    assert "dropzone.json" not in keys(a)


def test_folder_sidecar_serves_the_one_gguf_model_of_its_folder(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "qwen" / "qwen.gguf")
    b.build_mmproj_gguf(tmp_path / "qwen" / "mmproj.gguf")
    (tmp_path / "qwen" / "Modelfile").write_text("SYSTEM hi")
    assert only(run(tmp_path)).sidecar_rel == "qwen/Modelfile"
    b.build_gguf(tmp_path / "qwen" / "other.gguf", seed=4)  # two models: whose is it?
    result = run(tmp_path)
    assert [a.sidecar_rel for a in result.artifacts] == [None, None]
    assert result.unclaimed == ("qwen/Modelfile",)


def test_two_sidecars_for_one_artifact_are_a_problem(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "m.gguf")
    (tmp_path / "m.toml").write_text("x")
    (tmp_path / "m.Modelfile").write_text("x")
    a = only(run(tmp_path))
    assert (a.status, a.sidecar_rel) == (Status.INVALID, None)
    assert "more than one sidecar (m.Modelfile, m.toml)" in messages(a)


def test_ollama_side_files_of_a_model_folder_are_reported(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / "hf" / "m.gguf")
    (tmp_path / "hf" / "template").write_text("{{ .Prompt }}")
    (tmp_path / "hf" / "params").write_text("{}")
    result = run(tmp_path)
    assert dict(only(result).side_files) == {
        "template": tmp_path / "hf" / "template",
        "params": tmp_path / "hf" / "params",
    }
    assert result.unclaimed == ()


# --- ignored files ---------------------------------------------------------------------------


def test_hidden_and_temporary_files_are_ignored(tmp_path: Path) -> None:
    for name in [".m.gguf.aB12cD", "x.gguf.part", ".hidden/x.gguf", "c.gguf.aria2", "c.gguf"]:
        b.build_gguf(tmp_path / name)
    result = run(tmp_path)
    assert result.artifacts == ()
    assert set(result.ignored) >= {".m.gguf.aB12cD", "x.gguf.part", ".hidden/x.gguf", "c.gguf"}


# --- broken variants -------------------------------------------------------------------------


def test_gguf_cut_anywhere_is_incomplete_never_invalid(tmp_path: Path) -> None:
    src = b.build_gguf(tmp_path / "src.gguf", n_tensors=2)
    full, expected = src.read_bytes(), read_header_file(src).expected_length
    drop = tmp_path / "drop"
    drop.mkdir()
    for cut in [*range(0, 200), *range(200, expected, 29)]:
        (drop / "m.gguf").write_bytes(full[:cut])
        a = only(run(drop))
        assert a.status is Status.INCOMPLETE, (cut, messages(a))
        assert a.progress[0].have == cut
        assert a.progress[0].expected in (None, for_gguf(expected))
    (drop / "m.gguf").write_bytes(full[:expected])
    assert only(run(drop)).status is Status.COMPLETE


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: b.write_random(p, 4096), "is not a valid GGUF file: at offset 0"),
        (b.corrupt_magic, "expected the GGUF magic"),
        (b.lfs_pointer, "git-LFS pointer"),
    ],
    ids=["random", "bad-magic", "lfs"],
)
def test_broken_gguf_is_invalid_with_the_reason(tmp_path: Path, damage, message: str) -> None:
    path = b.build_gguf(tmp_path / "m.gguf")
    damage(path)
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert message in messages(a)
    assert a.problems[0].path == str(path) and a.problems[0].fix


def test_valid_header_with_short_data_reports_bytes_have_and_expected(tmp_path: Path) -> None:
    path = b.build_gguf(tmp_path / "m.gguf", n_tensors=4)
    size = path.stat().st_size
    b.truncate(path, -100)
    a = only(run(tmp_path))
    assert a.status is Status.INCOMPLETE
    assert (a.have_bytes, a.expected_bytes) == (size - 100, size)


def test_split_metadata_must_match_the_shard_names(tmp_path: Path) -> None:
    shards = b.build_split_gguf(tmp_path, "big", 2)
    # Swap the two shards' contents: each name now disagrees with its split.no.
    tmp = tmp_path / "swap"
    shards[0].rename(tmp)
    shards[1].rename(shards[0])
    tmp.rename(shards[1])
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert "split.no = 1, but its name says shard 1" in messages(a)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda d: b.build_gguf(d / "x-00001-of-00002.gguf"), "lacks split.count/split.no"),
        (lambda d: b.build_gguf(d / "x-00001-of-00002.gguf", split=(0, 3)), "says split.count = 3"),
        (lambda d: b.build_gguf(d / "x.gguf", split=(0, 2)), "lacks the -0000K-of-0000N.gguf"),
        (
            lambda d: [
                b.build_gguf(d / "x-00001-of-00002.gguf", split=(0, 2)),
                b.build_gguf(d / "x-00002-of-00003.gguf", split=(1, 3)),
            ],
            "disagree on the shard count",
        ),
        (lambda d: b.build_split_gguf(d, "ad", 2, general_type="adapter"), "split adapter"),
        (
            lambda d: [
                b.build_gguf(d / "x-00001-of-00002.gguf", split=(0, 2)),
                b.build_gguf(d / "x-00002-of-00002.gguf", split=(1, 2), n_tensors=1),
            ],
            "split.tensors.count says 6",
        ),
    ],
    ids=[
        "no-split-metadata",
        "count-mismatch",
        "unnamed-shard",
        "two-counts",
        "adapter",
        "tensors",
    ],
)
def test_inconsistent_split_metadata_is_refused(tmp_path: Path, build, message: str) -> None:
    build(tmp_path)
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert message in messages(a)


def test_big_endian_gguf_is_refused_before_upload(tmp_path: Path) -> None:
    writer = gguf_py.GGUFWriter(
        str(tmp_path / "be.gguf"), "llama", endianess=gguf_py.GGUFEndian.BIG
    )
    writer.add_tensor("t", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert "big-endian" in messages(only(run(tmp_path)))


def test_safetensors_cut_short_is_incomplete_and_longer_is_invalid(tmp_path: Path) -> None:
    folder = b.build_safetensors_model(tmp_path / "m")
    weights = folder / "model.safetensors"
    full = weights.read_bytes()
    for cut in [0, 5, 8, 40, len(full) - 1]:
        weights.write_bytes(full[:cut])
        assert only(run(tmp_path)).status is Status.INCOMPLETE, cut
    weights.write_bytes(full + b"\0")
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert "1 bytes longer than its header describes" in messages(a)


@pytest.mark.parametrize(
    ("damage", "status", "message"),
    [
        (
            lambda f: b.corrupt_safetensors_header(f / "model.safetensors"),
            Status.INVALID,
            "not a valid safetensors file",
        ),
        (lambda f: b.lfs_pointer(f / "model.safetensors"), Status.INVALID, "git-LFS pointer"),
        (
            lambda f: b.lfs_pointer(f / "tokenizer.json"),
            Status.INVALID,
            "tokenizer.json: is a git-LFS pointer",
        ),
        (lambda f: (f / "config.json").unlink(), Status.INVALID, "has no config.json"),
        (lambda f: (f / "tokenizer.json").unlink(), Status.INVALID, "has no tokenizer"),
        (
            lambda f: (f / "config.json").write_text('{"architectures": ["LlamaFor'),
            Status.INCOMPLETE,
            "",
        ),
        (
            lambda f: (f / "config.json").write_text('{"architectures": ]'),
            Status.INVALID,
            "not a valid JSON file",
        ),
        (
            lambda f: (f / "config.json").write_text('{"architectures": []}'),
            Status.INVALID,
            "names no architecture",
        ),
        (lambda f: (f / "config.json").write_text("{}"), Status.INVALID, "names no architecture"),
    ],
    ids=[
        "corrupt-header",
        "lfs-weights",
        "lfs-tokenizer",
        "no-config",
        "no-tokenizer",
        "config-being-copied",
        "config-corrupt",
        "no-architecture",
        "empty-config",
    ],
)
def test_broken_safetensors_folder(tmp_path: Path, damage, status: Status, message: str) -> None:
    folder = b.build_safetensors_model(tmp_path / "m")
    damage(folder)
    a = only(run(tmp_path))
    assert a.status is status
    assert message in messages(a)


def test_unsupported_architecture_is_refused_with_the_conversion_fix(tmp_path: Path) -> None:
    b.build_safetensors_model(tmp_path / "m", architecture="Qwen3ForCausalLM")
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert a.problems[0].path == str(tmp_path / "m" / "config.json")
    assert "'Qwen3ForCausalLM', which Ollama cannot convert" in a.problems[0].message
    assert "convert_hf_to_gguf.py" in a.problems[0].fix


def test_missing_companion_waits_while_weights_are_still_arriving(tmp_path: Path) -> None:
    folder = b.build_safetensors_model(tmp_path / "m", with_config=False)
    b.truncate(folder / "model.safetensors", -10)
    assert only(run(tmp_path)).status is Status.INCOMPLETE


def test_shards_named_by_the_index_must_all_be_there(tmp_path: Path) -> None:
    folder = b.build_safetensors_model(tmp_path / "m", shards=3)
    (folder / "model-00002-of-00003.safetensors").unlink()
    a = only(run(tmp_path))
    assert a.status is Status.INCOMPLETE
    assert a.missing == ("m/model-00002-of-00003.safetensors",)


def test_index_with_a_path_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = b.build_safetensors_model(tmp_path / "m")
    (folder / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "../x.safetensors"}}'
    )
    a = only(run(tmp_path))
    assert a.status is Status.INVALID
    assert "not a valid index" in messages(a)


def test_symlink_out_of_the_drop_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    target = b.build_gguf(tmp_path / "elsewhere.gguf")
    os.symlink(target, root / "m.gguf")
    os.symlink(tmp_path, root / "dir")
    result = run(root)
    a = only(result)
    assert a.status is Status.INVALID
    assert "leads out of the drop folder" in messages(a)
    assert "leads out of the drop folder" in result.problems[0].message


def test_symlink_within_the_drop_folder_is_followed(tmp_path: Path) -> None:
    b.build_gguf(tmp_path / ".store" / "real.gguf")
    os.symlink(tmp_path / ".store" / "real.gguf", tmp_path / "m.gguf")
    assert only(run(tmp_path)).status is Status.COMPLETE


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = b.build_gguf(tmp_path / "m.gguf")

    def open_file(rel: str) -> BinaryIO:
        raise PermissionError(13, "Permission denied", str(tmp_path / rel))

    a = only(scan(tmp_path, list_tree(tmp_path), open_file=open_file))
    assert a.status is Status.INVALID
    assert a.problems[0].describe() == (
        f"{path}: cannot be read (Permission denied); fix: make it readable by the dropzone user"
    )


# --- purity: a listing and an in-memory opener, no disk --------------------------------------


def entry(path: str, size: int, *, is_dir: bool = False, inode: int = 1) -> Entry:
    return Entry(path, size, 0, 1, inode, is_dir)


def test_classification_reads_only_through_open_file(tmp_path: Path) -> None:
    data = {
        "q/m.gguf": b.build_gguf(tmp_path / "m.gguf").read_bytes(),
        "q/m.toml": b"model = 'x'",
    }
    opened: list[str] = []

    def open_file(rel: str) -> BinaryIO:
        opened.append(rel)
        return io.BytesIO(data[rel])

    entries = [entry("q", 0, is_dir=True)] + [
        entry(p, len(v), inode=i) for i, (p, v) in enumerate(data.items())
    ]
    result = scan("/nonexistent", entries, open_file=open_file)
    a = only(result)
    assert (a.status, a.sidecar_rel, a.artifact.path) == (
        Status.COMPLETE,
        "q/m.toml",
        Path("/nonexistent/q/m.gguf"),
    )
    assert opened == ["q/m.gguf"]  # once, though classification and checks both need it


def test_header_cache_spares_rereads_until_the_file_changes(tmp_path: Path) -> None:
    blob = b.build_gguf(tmp_path / "m.gguf").read_bytes()
    opened: list[str] = []

    def open_file(rel: str) -> BinaryIO:
        opened.append(rel)
        return io.BytesIO(blob)

    cache = HeaderCache()
    scan("/x", [entry("m.gguf", len(blob))], open_file=open_file, cache=cache)
    scan("/x", [entry("m.gguf", len(blob))], open_file=open_file, cache=cache)
    assert opened == ["m.gguf"]
    scan("/x", [Entry("m.gguf", len(blob), 5, 1, 1, False)], open_file=open_file, cache=cache)
    assert opened == ["m.gguf", "m.gguf"]
    assert len(cache) == 1  # a changed file replaces its entry


def test_scan_copes_with_a_file_vanishing_after_the_listing(tmp_path: Path) -> None:
    path = b.build_gguf(tmp_path / "m.gguf")
    entries = list_tree(tmp_path)
    path.unlink()
    a = only(scan(tmp_path, entries))
    assert a.status is Status.INCOMPLETE
