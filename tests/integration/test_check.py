"""``dropzone check``: offline validation, the exact create request, exit 0/1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from dropzone.cli import main
from dropzone.testing import builders

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    code = main(["check", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_gguf_with_a_toml_sidecar_prints_the_request_with_digests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = builders.build_gguf(tmp_path / "Tiny.gguf")
    (tmp_path / "Tiny.toml").write_text('model = "tiny:q"\nsystem = "Be brief."\n')
    code, out = run_json(capsys, str(tmp_path))
    assert code == 0
    assert out == [
        {
            "model": "tiny:q",
            "artifact": str(gguf),
            "sidecar": str(tmp_path / "Tiny.toml"),
            "request": {
                "model": "tiny:q",
                "files": {"Tiny.gguf": sha(gguf)},
                "system": "Be brief.",
            },
            "errors": [],
        }
    ]


def test_a_gguf_padded_after_its_last_tensor_prints_the_digest_of_the_whole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 11: gguf-py pads after the last tensor too. Ollama keeps the whole file as the
    # blob, so the request names the digest of every byte, padding included.
    gguf = builders.build_padded_gguf(tmp_path / "Padded.gguf")
    assert builders.tensor_data_end(gguf) < gguf.stat().st_size
    code, out = run_json(capsys, str(gguf))
    assert code == 0
    assert out[0]["errors"] == []
    assert out[0]["request"] == {"model": "padded:latest", "files": {"Padded.gguf": sha(gguf)}}


def test_no_hash_leaves_digests_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builders.build_gguf(tmp_path / "Z-Model.gguf")
    code, out = run_json(capsys, "--no-hash", str(tmp_path / "Z-Model.gguf"))
    assert code == 0
    assert out[0]["model"] == "z-model:latest"
    assert "not computed" in out[0]["request"]["files"]["Z-Model.gguf"]


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda p: builders.truncate(p, 300), "incomplete"),
        (builders.corrupt_magic, "GGUF"),
    ],
)
def test_a_broken_gguf_is_invalid_with_a_fix(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage,
    needle: str,  # type: ignore[no-untyped-def]
) -> None:
    gguf = builders.build_gguf(tmp_path / "m.gguf")
    damage(gguf)
    code, out = run_json(capsys, str(gguf))
    assert code == 1
    (finding,) = out
    assert finding["request"] is None
    assert needle in json.dumps(finding["errors"])
    assert all("fix:" in e["message"] for e in finding["errors"])


def test_a_sidecar_typo_names_file_line_and_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builders.build_gguf(tmp_path / "m.gguf")
    (tmp_path / "m.toml").write_text('model = "m"\nsytem = "x"\n')
    code, out = run_json(capsys, str(tmp_path / "m.toml"))
    assert code == 1
    (error,) = out[0]["errors"]
    assert error["path"] == str(tmp_path / "m.toml")
    assert error["line"] == 2
    assert "did you mean 'system'" in error["message"]


def test_a_sidecar_path_leaving_the_drop_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = tmp_path / "drop"
    builders.build_gguf(drop / "m.gguf")
    builders.build_adapter_gguf(tmp_path / "outside.gguf")
    (drop / "m.toml").write_text('adapters = ["../outside.gguf"]\n')
    code, out = run_json(capsys, str(drop))
    assert code == 1
    assert "outside.gguf" in json.dumps(out[0]["errors"])


def test_a_missing_path_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_json(capsys, str(tmp_path / "nope.gguf"))
    assert code == 1
    assert "no such file" in out[0]["errors"][0]["message"]


def test_text_output_names_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builders.build_gguf(tmp_path / "m.gguf")
    assert main(["check", "--no-hash", str(tmp_path)]) == 0
    assert "OK m:latest" in capsys.readouterr().out


# --- the shipped examples (config/examples) go through check as an operator would use them ---


@pytest.mark.parametrize(
    ("sidecar", "model", "fields"),
    [
        ("qwen3-8b-q4_k_m.toml", "qwen3:8b", {"system", "license", "parameters"}),
        ("mistral-7b-instruct-v0.3-q4_k_m.yaml", None, {"parameters"}),
        (
            "llama3.2-3b-instruct-q4_k_m.Modelfile",
            "llama3.2-3b-instruct-q4_k_m:latest",
            {"template", "parameters"},
        ),
    ],
)
def test_each_example_gguf_sidecar_is_valid(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sidecar: str,
    model: str | None,
    fields: set[str],
) -> None:
    shutil.copy(EXAMPLES / sidecar, tmp_path / sidecar)
    stem = sidecar.rsplit(".", 1)[0]
    builders.build_gguf(tmp_path / f"{stem}.gguf")
    code, out = run_json(capsys, str(tmp_path))
    assert code == 0, out
    (finding,) = out
    if model is not None:
        assert finding["model"] == model
    assert fields <= set(finding["request"])


def test_the_safetensors_example_folder_asks_for_quantize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = builders.build_safetensors_model(tmp_path / "my-finetune")
    shutil.copy(EXAMPLES / "my-finetune" / "dropzone.toml", folder / "dropzone.toml")
    code, out = run_json(capsys, str(folder))
    assert code == 0, out
    request = out[0]["request"]
    assert request["quantize"] == "q4_K_M"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(request["files"])


def test_a_name_that_is_not_utf8_is_shown_escaped_and_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 13: the undecodable byte went to stdout raw (or crashed a strict UTF-8 stdout).
    gguf = builders.build_gguf(tmp_path / "m.gguf")
    gguf.rename(tmp_path / os.fsdecode(b"mod\xe8le.gguf"))
    code, out = run_json(capsys, str(tmp_path))
    assert code == 1
    (finding,) = out
    json.dumps(finding, ensure_ascii=False).encode("utf-8")  # valid UTF-8 throughout
    assert finding["artifact"] == str(tmp_path / "mod\\xe8le.gguf")
    assert "not valid UTF-8" in finding["errors"][0]["message"]
    assert main(["check", str(tmp_path)]) == 1
    assert "INVALID " + str(tmp_path / "mod\\xe8le.gguf") in capsys.readouterr().out
