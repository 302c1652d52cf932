"""Issue 12: weight-less recipes (a Modelfile or sidecar whose FROM names a model) through the
real Daemon against emulators over real HTTP: made from a base, the base pulled where missing,
refused per host, ordered by dependencies, re-created on edits and cascades, removed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Running
from structlog.testing import LogCapture

from dropzone.config.loading import load_settings
from dropzone.config.settings import Settings
from dropzone.service.daemon import Daemon
from dropzone.testing.builders import FILE_TYPE_Q4_K_M, build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.seed import seed_model

MARIO = "FROM llama3.2\nSYSTEM You are Mario from Super Mario Bros.\nPARAMETER temperature 0.7\n"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """The store of models the emulators can "pull from the registry"."""
    return tmp_path / "registry"


@pytest.fixture
def hosts(tmp_path: Path, registry: Path) -> Iterator[list[Emulator]]:
    """Two emulators that pull from ``registry``."""
    with (
        Emulator(tmp_path / "ollama-a", registry=registry) as a,
        Emulator(tmp_path / "ollama-b", registry=registry) as b,
    ):
        yield [a, b]


def base(tmp_path: Path, where: Path | Emulator, name: str = "llama3.2", **kw: Any) -> None:
    """Put a base model on an emulator, or into the registry store."""
    gguf = build_gguf(tmp_path / "seeds" / f"{name.replace(':', '-')}.gguf", **kw)
    if isinstance(where, Emulator):
        seed_model(where.url, name, gguf)
        return
    with Emulator(where) as registry:
        seed_model(registry.url, name, gguf)


@pytest.fixture
def start(
    tmp_path: Path, drop: Path, hosts: list[Emulator], capture: LogCapture
) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def start_daemon(n_hosts: int = 1, **overrides: object) -> Running:
        settings: Settings = load_settings(
            config_path=None,
            env={},
            overrides={
                "drop_dir": drop,
                "state_dir": tmp_path / "state",
                "ollama_hosts": [h.url for h in hosts[:n_hosts]],
                "settle_seconds": 0.2,
                **overrides,
            },
            default_config_path=tmp_path / "absent.toml",
        )
        running.append(Running(Daemon(settings, env={}), capture))
        running[-1].wait_for("scan.done")
        return running[-1]

    yield start_daemon
    for r in running:
        r.stop()
    assert not [e for e in capture.entries if e["event"] == "artifact.error"]


def test_a_lone_modelfile_from_a_present_base_creates_the_model(
    tmp_path: Path, drop: Path, hosts: list[Emulator], start: Any
) -> None:
    base(tmp_path, hosts[0])
    (drop / "Assistant.Modelfile").write_text(MARIO)
    daemon = start()
    daemon.wait_for("model.created", model="assistant:latest")
    layers = hosts[0].manifest("assistant:latest")
    assert layers is not None
    kinds = [layer["mediaType"].rsplit(".", 1)[-1] for layer in layers["layers"]]
    assert "system" in kinds and "params" in kinds
    assert hosts[0].models().count("llama3.2:latest") == 1


def test_a_toml_with_from_and_quantize_on_an_f16_base_creates_the_quantized_model(
    tmp_path: Path, drop: Path, hosts: list[Emulator], start: Any
) -> None:
    base(tmp_path, hosts[0], "base:f16")
    (drop / "helper.toml").write_text(
        'model = "helper:v1"\nfrom = "base:f16"\nquantize = "q4_K_M"\nsystem = "Be brief."\n'
    )
    daemon = start()
    daemon.wait_for("model.created", model="helper:v1")
    statuses = [e["status"] for e in daemon.find("model.create.status", model="helper:v1")]
    assert any(s.startswith("quantizing F16 model to Q4_K_M") for s in statuses)


def test_quantize_on_a_quantized_base_is_refused_before_the_create_with_the_servers_reason(
    tmp_path: Path, drop: Path, hosts: list[Emulator], start: Any
) -> None:
    base(tmp_path, hosts[0], "base:q4", file_type=FILE_TYPE_Q4_K_M)
    (drop / "helper.toml").write_text('model = "helper:v1"\nfrom = "base:q4"\nquantize = "q8_0"\n')
    daemon = start()
    done = daemon.wait_for("artifact.done", model="helper:v1")
    assert done["result"] == "failed"
    assert "quantization is only supported for F16, BF16 and F32 models" in done["error"]
    assert not daemon.find("model.create.status", model="helper:v1")  # never sent


def test_a_base_missing_on_one_host_is_pulled_there_with_progress_events(
    tmp_path: Path, drop: Path, hosts: list[Emulator], registry: Path, start: Any
) -> None:
    base(tmp_path, hosts[0])
    base(tmp_path, registry)
    (drop / "mario.Modelfile").write_text(MARIO)
    daemon = start(n_hosts=2)
    for host in hosts:
        daemon.wait_for("model.created", model="mario:latest", host=host.url)
    pulled = [e["status"] for e in daemon.find("model.create.status", host=hosts[1].url)]
    assert pulled[0] == "pulling manifest"
    assert any(s.startswith("pulling ") and s != "pulling manifest" for s in pulled)
    assert not daemon.find("model.create.status", host=hosts[0].url, status="pulling manifest")
    assert "llama3.2:latest" in hosts[1].models()


def test_a_base_that_cannot_be_pulled_is_refused_for_that_host_only(
    tmp_path: Path, drop: Path, hosts: list[Emulator], start: Any
) -> None:
    base(tmp_path, hosts[0])
    (drop / "mario.Modelfile").write_text(MARIO)
    daemon = start(n_hosts=2)
    daemon.wait_for("model.created", model="mario:latest", host=hosts[0].url)
    done = daemon.wait_for("artifact.done", model="mario:latest", host=hosts[1].url)
    assert done["result"] == "failed"
    assert "pull model manifest: file does not exist" in done["error"]
    assert "mario:latest" not in hosts[1].models()
    failed = daemon.wait_for("model.failed", model="mario:latest", host=hosts[1].url)
    assert "ollama pull llama3.2" in failed["fix"]


def test_a_chain_is_created_in_dependency_order(
    drop: Path, hosts: list[Emulator], start: Any
) -> None:
    build_gguf(drop / "base.gguf")
    (drop / "mid.Modelfile").write_text("FROM base\nSYSTEM middle\n")
    (drop / "top.Modelfile").write_text("FROM mid\nSYSTEM top\n")
    daemon = start()
    daemon.wait_for("model.created", model="top:latest")
    order = [daemon.index("model.created", model=m) for m in ("base:latest", "mid:latest")]
    assert order[0] < order[1] < daemon.index("model.created", model="top:latest")
    assert not daemon.find("model.create.status", status="pulling manifest")


def test_a_cycle_is_refused_naming_the_cycle(drop: Path, hosts: list[Emulator], start: Any) -> None:
    (drop / "a.Modelfile").write_text("FROM b\n")
    (drop / "b.Modelfile").write_text("FROM a\n")
    daemon = start()
    refused = daemon.wait_for("sidecar.invalid", path=str(drop / "a.Modelfile"))
    assert "a:latest → b:latest → a:latest" in str(refused)
    daemon.wait_for("sidecar.invalid", path=str(drop / "b.Modelfile"))
    assert not daemon.find("model.create.status")


def test_editing_the_modelfile_re_creates_the_model(
    tmp_path: Path, drop: Path, hosts: list[Emulator], start: Any
) -> None:
    base(tmp_path, hosts[0])
    recipe = drop / "mario.Modelfile"
    recipe.write_text(MARIO)
    daemon = start()
    daemon.wait_for("model.created", model="mario:latest")
    recipe.write_text("FROM llama3.2\nSYSTEM You are Luigi.\n")
    daemon.wait_for("model.created", model="mario:latest", count=2)
    manifest = hosts[0].manifest("mario:latest")
    assert manifest is not None
    system = [lay for lay in manifest["layers"] if lay["mediaType"].endswith(".system")]
    assert hosts[0].blob_path(system[0]["digest"]).read_text() == "You are Luigi."


def test_a_base_re_created_by_dropzone_cascades_to_the_models_made_from_it(
    drop: Path, hosts: list[Emulator], start: Any
) -> None:
    build_gguf(drop / "base.gguf")
    (drop / "mid.Modelfile").write_text("FROM base\nSYSTEM middle\n")
    daemon = start()
    daemon.wait_for("model.created", model="mid:latest")
    build_gguf(drop / "base.gguf", seed=7)
    daemon.wait_for("model.created", model="base:latest", count=2)
    daemon.wait_for("model.created", model="mid:latest", count=2)
    assert (
        daemon.indexes("model.created", model="base:latest")[1]
        < daemon.indexes("model.created", model="mid:latest")[1]
    )


def test_removing_a_recipe_under_on_removed_delete_deletes_its_model_not_the_base(
    tmp_path: Path, drop: Path, hosts: list[Emulator], start: Any
) -> None:
    base(tmp_path, hosts[0])
    recipe = drop / "mario.Modelfile"
    recipe.write_text(MARIO)
    daemon = start(on_removed="delete")
    daemon.wait_for("model.created", model="mario:latest")
    recipe.unlink()
    daemon.wait_for("model.deleted", model="mario:latest")
    assert hosts[0].models() == ["llama3.2:latest"]
