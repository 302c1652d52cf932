"""Recipes: artifact + sidecar spec → what to create; names, sources, pre-checks, conflicts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropzone.errors import Problem
from dropzone.recipes.recipe import build_recipe, build_recipes, find_conflicts
from dropzone.recipes.sidecar import SidecarSpec, load_spec
from dropzone.recipes.types import Artifact, ArtifactFile, ArtifactKind, Recipe
from dropzone.testing.builders import (
    build_adapter_gguf,
    build_gguf,
    build_safetensors_adapter,
    build_safetensors_model,
    build_split_gguf,
)

DROP = Path("/srv/dropzone")


def gguf(
    path: Path,
    *,
    file_type: str | None = "F16",
    kind: ArtifactKind = ArtifactKind.GGUF,
    sidecar: Path | None = None,
) -> Artifact:
    return Artifact(kind, path, (ArtifactFile(path.name, path),), sidecar, file_type)


def folder(path: Path, keys: list[str], kind: ArtifactKind = ArtifactKind.SAFETENSORS) -> Artifact:
    return Artifact(kind, path, tuple(ArtifactFile(k, path / k) for k in keys))


def recipe(artifact: Artifact, spec: SidecarSpec | None = None, **kwargs: object) -> Recipe:
    found = build_recipe(artifact, spec, drop_dir=DROP, default_tag="latest", **kwargs)  # type: ignore[arg-type]
    assert isinstance(found, Recipe), found
    return found


def problems(
    artifact: Artifact, spec: SidecarSpec | None = None, **kwargs: object
) -> list[Problem]:
    found = build_recipe(artifact, spec, drop_dir=DROP, default_tag="latest", **kwargs)  # type: ignore[arg-type]
    assert isinstance(found, list), found
    assert all(p.fix and p.key for p in found)
    return found


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("Z-Model.gguf", "z-model:latest"),
        ("qwen3-8b-q4_k_m.gguf", "qwen3-8b-q4_k_m:latest"),
        ("Llama 3 (8B).gguf", "llama-3-8b:latest"),
        ("big-00001-of-00003.gguf", "big:latest"),
    ],
)
def test_model_name_derived_from_the_file_name(name: str, model: str) -> None:
    assert recipe(gguf(DROP / name)).model == model


def test_model_name_from_a_folder_and_the_default_tag() -> None:
    artifact = folder(DROP / "Fred-7B", ["config.json", "model.safetensors"])
    found = build_recipe(artifact, None, drop_dir=DROP, default_tag="v1")
    assert isinstance(found, Recipe)
    assert found.model == "fred-7b:v1"


def test_a_name_that_cannot_be_derived_is_a_problem() -> None:
    (problem,) = problems(gguf(DROP / "___.gguf".replace("_", "-")))
    assert problem.key == "model"
    assert "cannot derive" in problem.message


def test_sidecar_name_is_kept_as_written() -> None:
    found = recipe(gguf(DROP / "x.gguf"), SidecarSpec(path=DROP / "x.toml", model="Qwen3:8B"))
    assert (found.model, found.sidecar) == ("Qwen3:8B", DROP / "x.toml")


def test_plain_gguf_recipe_and_request() -> None:
    artifact = gguf(DROP / "m.gguf")
    spec = SidecarSpec(path=None, fields={"system": "hi", "template": "", "license": ["MIT"]})
    found = recipe(artifact, spec)
    assert found.files == {"m.gguf": DROP / "m.gguf"}
    body = found.request({DROP / "m.gguf": "sha256:" + "a" * 64})
    # empty text is not sent, like the CLI's omitempty
    assert body == {
        "model": "m:latest",
        "files": {"m.gguf": "sha256:" + "a" * 64},
        "system": "hi",
        "license": ["MIT"],
    }


def test_from_a_model_name_with_an_adapter_artifact() -> None:
    adapter = gguf(DROP / "lora.gguf", kind=ArtifactKind.GGUF_ADAPTER)
    found = recipe(adapter, SidecarSpec(path=DROP / "lora.toml", from_name="llama3.2"))
    assert (found.files, found.adapters) == ({}, {"lora.gguf": DROP / "lora.gguf"})
    assert found.fields == {"from": "llama3.2"}


def test_adapter_on_a_base_file_in_the_drop_folder() -> None:
    base = gguf(DROP / "base.gguf", file_type="Q4_K_M")
    adapter = gguf(DROP / "lora.gguf", kind=ArtifactKind.GGUF_ADAPTER)
    spec = SidecarSpec(path=DROP / "lora.toml", from_paths=(DROP / "base.gguf",))
    found = recipe(adapter, spec, artifacts=[base, adapter])
    assert found.files == {"base.gguf": DROP / "base.gguf"}
    assert found.adapters == {"lora.gguf": DROP / "lora.gguf"}
    assert found.blob_paths() == [DROP / "base.gguf", DROP / "lora.gguf"]


def test_safetensors_adapter_folder_named_by_a_model_sidecar() -> None:
    base = gguf(DROP / "m.gguf", sidecar=DROP / "m.Modelfile")
    lora = folder(
        DROP / "lora",
        ["adapter_config.json", "adapter_model.safetensors"],
        ArtifactKind.SAFETENSORS_ADAPTER,
    )
    spec = SidecarSpec(
        path=DROP / "m.Modelfile",
        adapter_paths=(DROP / "lora",),
        folders=frozenset({DROP / "lora"}),
    )
    found = recipe(base, spec, artifacts=[base, lora])
    assert found.adapters == {
        "adapter_config.json": DROP / "lora/adapter_config.json",
        "adapter_model.safetensors": DROP / "lora/adapter_model.safetensors",
    }


def test_from_the_folder_itself_uses_the_artifacts_files() -> None:
    fred = folder(DROP / "fred", ["config.json", "2_Dense/config.json", "model.safetensors"])
    found = recipe(fred, SidecarSpec(path=DROP / "fred/Modelfile", from_paths=(DROP / "fred",)))
    assert sorted(found.files) == ["2_Dense/config.json", "config.json", "model.safetensors"]


def test_from_two_files_keys_them_like_the_cli() -> None:
    model = gguf(DROP / "vision" / "m.gguf")
    spec = SidecarSpec(
        path=DROP / "vision/m.Modelfile",
        from_paths=(DROP / "vision/m.gguf", DROP / "vision/mmproj.gguf"),
    )
    assert sorted(recipe(model, spec).files) == ["m.gguf", "mmproj.gguf"]


def test_draft_files_go_into_the_request() -> None:
    spec = SidecarSpec(path=None, draft_paths=(DROP / "d.gguf",), draft_quantize="q8_0")
    found = recipe(gguf(DROP / "m.gguf"), spec)
    assert found.draft_files == {"d.gguf": DROP / "d.gguf"}
    body = found.request({DROP / "m.gguf": "sha256:1", DROP / "d.gguf": "sha256:2"})
    assert (body["draft_files"], body["draft_quantize"]) == ({"d.gguf": "sha256:2"}, "q8_0")


@pytest.mark.parametrize("file_type", ["F16", "BF16", None])
def test_quantize_allowed_from_f16_bf16_or_a_header_not_read(file_type: str | None) -> None:
    spec = SidecarSpec(path=None, quantize="q4_K_M")
    assert recipe(gguf(DROP / "m.gguf", file_type=file_type), spec).fields == {"quantize": "q4_K_M"}


@pytest.mark.parametrize("file_type", ["F32", "unknown"])
def test_quantize_refused_from_f32_or_no_file_type_as_ollama_reads_them(file_type: str) -> None:
    # Ollama's KV.FileType() (fs/ggml/ggml.go) returns FileTypeUnknown for general.file_type 0
    # (F32) or a missing value, and createModel (server/create.go) refuses "unknown": the server
    # fails after the whole file was uploaded, so dropzone refuses before hashing (issue 15).
    (problem,) = problems(
        gguf(DROP / "m.gguf", file_type=file_type), SidecarSpec(path=None, quantize="q4_K_M")
    )
    assert problem.message == "quantization is only supported for F16, BF16 and F32 models"
    assert problem.key == "quantize"
    assert "unknown" in problem.fix and "m.gguf" in problem.fix


@pytest.mark.parametrize("file_type", ["Q4_K_M", "Q8_0"])
def test_quantize_refused_from_a_quantized_gguf(file_type: str) -> None:
    (problem,) = problems(
        gguf(DROP / "m.gguf", file_type=file_type), SidecarSpec(path=None, quantize="q4_K_M")
    )
    assert problem.message == "quantization is only supported for F16, BF16 and F32 models"
    assert file_type in problem.fix


def test_quantize_checks_the_base_a_sidecar_names() -> None:
    base = gguf(DROP / "base.gguf", file_type="Q4_0")
    adapter = gguf(DROP / "lora.gguf", kind=ArtifactKind.GGUF_ADAPTER)
    spec = SidecarSpec(path=None, from_paths=(base.path,), quantize="q8_0")
    (problem,) = problems(adapter, spec, artifacts=[base])
    assert problem.key == "quantize"


@pytest.mark.parametrize(
    ("artifact", "spec", "key", "text"),
    [
        (
            gguf(DROP / "lora.gguf", kind=ArtifactKind.GGUF_ADAPTER),
            None,
            "from",
            "has no base model",
        ),
        (
            gguf(DROP / "m.gguf"),
            SidecarSpec(path=None, from_name="llama3"),
            "from",
            "would not be used",
        ),
        (
            gguf(DROP / "m.gguf"),
            SidecarSpec(path=None, from_paths=(DROP / "o.gguf",)),
            "from",
            "would not be used",
        ),
        (
            gguf(DROP / "lora.gguf", kind=ArtifactKind.GGUF_ADAPTER),
            SidecarSpec(path=None, from_name="x", adapter_paths=(DROP / "other.gguf",)),
            "adapters",
            "Ollama takes one",
        ),
        (
            gguf(DROP / "lora.gguf", kind=ArtifactKind.GGUF_ADAPTER),
            SidecarSpec(path=None, from_paths=(DROP / "lora.gguf",)),
            "from",
            "is an adapter",
        ),
        (
            gguf(DROP / "m.gguf"),
            SidecarSpec(path=None, draft_quantize="q8_0"),
            "draft_quantize",
            "without a draft",
        ),
        (
            gguf(DROP / "m.gguf"),
            SidecarSpec(path=None, model="bad name"),
            "model",
            "invalid model name",
        ),
        (
            gguf(DROP / "m.gguf"),
            SidecarSpec(
                path=None, adapter_paths=(DROP / "dir",), folders=frozenset({DROP / "dir"})
            ),
            "adapters",
            "not a model or adapter folder",
        ),
    ],
)
def test_prechecks(artifact: Artifact, spec: SidecarSpec | None, key: str, text: str) -> None:
    assert any(p.key == key and text in p.message for p in problems(artifact, spec))


def test_model_used_as_adapter_by_its_own_sidecar_is_fine() -> None:
    # The scanner may call a GGUF without general.type = adapter a model; ADAPTER says otherwise.
    lora = gguf(DROP / "lora.gguf")
    spec = SidecarSpec(path=None, from_name="llama3", adapter_paths=(lora.path,))
    assert recipe(lora, spec).adapters == {"lora.gguf": lora.path}


def test_conflicting_names_are_reported_for_both() -> None:
    a = recipe(gguf(DROP / "a.gguf"), SidecarSpec(path=DROP / "a.toml", model="Mario"))
    b = recipe(gguf(DROP / "b.gguf"), SidecarSpec(path=DROP / "b.toml", model="mario:LATEST"))
    c = recipe(gguf(DROP / "c.gguf"), SidecarSpec(path=DROP / "c.toml", model="mario:v2"))
    found = find_conflicts([a, b, c])
    assert [p.path for p in found] == [str(DROP / "a.toml"), str(DROP / "b.toml")]
    assert str(DROP / "b.toml") in found[0].message and "mario:latest" in found[1].message.lower()
    assert find_conflicts([a, c]) == []


# --- build_recipes over real files and sidecars -----------------------------------------


def test_build_recipes_end_to_end(tmp_path: Path) -> None:
    drop = tmp_path
    base = build_gguf(drop / "base.gguf")
    lora = build_adapter_gguf(drop / "lora.gguf")
    (drop / "lora.Modelfile").write_text("FROM ./base.gguf\nSYSTEM You are Mario.\n")
    shards = build_split_gguf(drop, "big", 2)
    fred = build_safetensors_model(drop / "fred")
    (fred / "dropzone.yaml").write_text("model: base\nquantize: q8_0\n")  # claims base's name
    artifacts = [
        gguf(base),
        gguf(lora, kind=ArtifactKind.GGUF_ADAPTER, sidecar=drop / "lora.Modelfile"),
        Artifact(
            ArtifactKind.GGUF_SPLIT,
            shards[0],
            tuple(ArtifactFile(p.name, p) for p in shards),
            None,
            "F16",
        ),
        Artifact(
            ArtifactKind.SAFETENSORS,
            fred,
            tuple(ArtifactFile(p.name, p) for p in sorted(fred.glob("*.*"))),
            fred / "dropzone.yaml",
        ),
    ]
    specs = {a.path: load_spec(a, drop_dir=drop) for a in artifacts}
    results = build_recipes(artifacts, specs, drop_dir=drop, default_tag="latest")
    lora_recipe = results[lora]
    assert isinstance(lora_recipe, Recipe)
    assert (lora_recipe.model, sorted(lora_recipe.files), sorted(lora_recipe.adapters)) == (
        "lora:latest",
        ["base.gguf"],
        ["lora.gguf"],
    )
    assert lora_recipe.fields == {"system": "You are Mario."}
    big = results[shards[0]]
    assert isinstance(big, Recipe) and big.model == "big:latest" and len(big.files) == 2
    # base.gguf derives "base:latest", fred's sidecar says "base": neither is created
    assert [p.key for p in results[base]] == ["model"]  # type: ignore[union-attr]
    assert [p.path for p in results[fred]] == [str(fred / "dropzone.yaml")]  # type: ignore[union-attr]


def test_an_adapter_used_by_another_sidecar_has_no_entry_of_its_own(tmp_path: Path) -> None:
    base = gguf(build_gguf(tmp_path / "m.gguf"), sidecar=tmp_path / "m.Modelfile")
    lora_dir = build_safetensors_adapter(tmp_path / "lora")
    lora = folder(
        lora_dir,
        ["adapter_config.json", "adapter_model.safetensors"],
        ArtifactKind.SAFETENSORS_ADAPTER,
    )
    (tmp_path / "m.Modelfile").write_text("ADAPTER ./lora\n")
    specs = {a.path: load_spec(a, drop_dir=tmp_path) for a in (base, lora)}
    results = build_recipes([base, lora], specs, drop_dir=tmp_path, default_tag="latest")
    assert list(results) == [base.path]
    made = results[base.path]
    assert isinstance(made, Recipe) and sorted(made.adapters) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_an_unused_adapter_without_a_base_is_reported(tmp_path: Path) -> None:
    lora = gguf(build_adapter_gguf(tmp_path / "lora.gguf"), kind=ArtifactKind.GGUF_ADAPTER)
    results = build_recipes([lora], {}, drop_dir=tmp_path, default_tag="latest")
    assert "has no base model" in results[lora.path][0].message  # type: ignore[index]


# --- names that are not UTF-8 (issue 13) ---------------------------------------------------

UNDECODABLE = DROP / os.fsdecode(b"mod\xe8le.gguf")


def test_an_undecodable_file_name_is_refused_with_rename_or_sidecar_as_the_fix() -> None:
    (problem,) = problems(gguf(UNDECODABLE))
    assert (problem.path, problem.key) == (str(UNDECODABLE), "model")
    assert "not valid UTF-8" in problem.message
    assert "rename" in problem.fix and 'model = "name:tag"' in problem.fix


def test_an_undecodable_name_with_a_sidecar_name_is_sent_under_its_escaped_key() -> None:
    # The server takes the ``files`` keys as JSON text; the upload goes from the real path.
    spec = SidecarSpec(path=DROP / os.fsdecode(b"mod\xe8le.toml"), model="modele")
    found = recipe(gguf(UNDECODABLE), spec)
    assert found.model == "modele"
    assert found.files == {UNDECODABLE.name: UNDECODABLE}
    assert found.request({UNDECODABLE: "sha256:1"})["files"] == {"mod\\xe8le.gguf": "sha256:1"}
