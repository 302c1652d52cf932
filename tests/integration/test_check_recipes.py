"""Issue 12: ``dropzone check`` on weight-less recipes: the exact request offline, and with
``--hosts`` which host lacks the base (and what would certainly fail there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropzone.cli import main
from dropzone.testing.builders import FILE_TYPE_Q4_K_M, build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.seed import seed_model

MARIO = "FROM llama3.2\nSYSTEM You are Mario from Super Mario Bros.\nPARAMETER temperature 0.7\n"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    code = main(["check", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_a_lone_modelfile_prints_the_create_request_from_its_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Assistant.Modelfile").write_text(MARIO)
    code, out = run_json(capsys, str(tmp_path))
    assert code == 0
    assert out == [
        {
            "model": "assistant:latest",
            "artifact": str(tmp_path / "Assistant.Modelfile"),
            "sidecar": str(tmp_path / "Assistant.Modelfile"),
            "request": {
                "model": "assistant:latest",
                "from": "llama3.2",
                "system": "You are Mario from Super Mario Bros.",
                "parameters": {"temperature": 0.7},
            },
            "errors": [],
        }
    ]


def test_a_toml_with_from_and_quantize_prints_its_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "helper.toml"
    toml.write_text('model = "helper:v1"\nfrom = "llama3.2"\nquantize = "q4_K_M"\nsystem = "Hi"\n')
    code, out = run_json(capsys, str(toml))
    assert code == 0
    assert out[0]["request"] == {
        "model": "helper:v1",
        "from": "llama3.2",
        "system": "Hi",
        "quantize": "q4_K_M",
    }


def test_a_modelfile_in_a_folder_without_weights_is_named_after_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Mario").mkdir()
    (tmp_path / "Mario" / "Modelfile").write_text(MARIO)
    code, out = run_json(capsys, str(tmp_path))
    assert code == 0
    assert out[0]["model"] == "mario:latest"


def test_a_chain_checks_and_a_cycle_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_gguf(tmp_path / "base.gguf")
    (tmp_path / "mid.Modelfile").write_text("FROM base\n")
    (tmp_path / "top.Modelfile").write_text("FROM mid\n")
    code, out = run_json(capsys, str(tmp_path))
    assert code == 0
    assert {f["model"] for f in out} == {"base:latest", "mid:latest", "top:latest"}
    (tmp_path / "x.Modelfile").write_text("FROM y\n")
    (tmp_path / "y.Modelfile").write_text("FROM x\n")
    code, out = run_json(capsys, str(tmp_path))
    assert code == 1
    errors = [e["message"] for f in out for e in f["errors"]]
    assert any("x:latest → y:latest → x:latest" in m for m in errors)


def test_hosts_says_which_host_lacks_the_base_and_refuses_a_certain_quantize_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Emulator(tmp_path / "a") as a, Emulator(tmp_path / "b") as b:
        seed_model(a.url, "llama3.2", build_gguf(tmp_path / "seed" / "l.gguf"))
        q4 = build_gguf(tmp_path / "seed" / "q.gguf", file_type=FILE_TYPE_Q4_K_M)
        seed_model(a.url, "q4", q4)
        drop = tmp_path / "drop"
        drop.mkdir()
        (drop / "mario.Modelfile").write_text(MARIO)
        code, out = run_json(capsys, "--hosts", a.url, b.url, "--", str(drop))
        assert code == 0
        assert out[0]["hosts"] == {a.url: "present", b.url: "missing"}
        code = main(["check", "--hosts", a.url, b.url, "--", str(drop)])
        text = capsys.readouterr().out
        assert code == 0
        assert f"llama3.2 missing on {b.url}" in text and "ollama pull llama3.2" in text
        (drop / "small.toml").write_text('from = "q4"\nquantize = "q8_0"\n')
        code, out = run_json(capsys, "--hosts", a.url, "--", str(drop / "small.toml"))
        assert code == 1
        assert "quantization is only supported for F16, BF16 and F32 models" in str(out)
