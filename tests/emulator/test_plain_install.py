"""The emulator works from a plain ``pip install`` of the product (issue 15).

The project is installed without the ``test`` extra into a new virtual environment (from PyPI,
through pip's cache), and ``python -m dropzone.testing.ollama`` is run from there, away from the
source tree, so only what the package ships can be imported or read: its modules and its data
files (the chat templates). Marked ``slow``: CI runs it; ``-m "not slow"`` leaves it out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from emulator_helpers import digest_of, emulator_process

from dropzone.formats.completeness import for_gguf
from dropzone.formats.gguf import read_header_file
from dropzone.testing import builders

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
# A chat template close to Ollama's ChatML entries: detection reads the packaged templates.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _run(*argv: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a new venv holding ``pip install <project>`` and nothing else."""
    work = tmp_path_factory.mktemp("plain")
    # A copy of what the build reads, so the build writes nothing into the source tree.
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "dropzone", source / "dropzone", ignore=shutil.ignore_patterns("__pycache__")
    )
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    python = work / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", source, cwd=work)
    return python


def test_the_installed_package_has_no_test_extra_and_no_source_tree(plain_python: Path) -> None:
    probe = (
        "import importlib.util as u, json, dropzone; "
        "print(json.dumps([dropzone.__file__, "
        "[m for m in ('numpy', 'gguf', 'safetensors', 'pytest') if u.find_spec(m)]]))"
    )
    where, extra = json.loads(_run(plain_python, "-c", probe, cwd=plain_python.parent))
    assert Path(where).is_relative_to(plain_python.parents[1])
    assert extra == []


def test_the_installed_emulator_serves_creates(plain_python: Path, tmp_path: Path) -> None:
    gguf = builders.build_gguf(tmp_path / "m.gguf", chat_template=CHATML).read_bytes()
    folder = builders.build_safetensors_model(tmp_path / "st")
    store = str(tmp_path / "store")
    argv = [str(plain_python), "-m", "dropzone.testing.ollama", "--port", "0", "--store", store]
    with (
        emulator_process(argv, cwd=tmp_path) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):

        def upload(data: bytes) -> str:
            digest = digest_of(data)
            assert client.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
            return digest

        def create(**body: object) -> list[str]:
            reply = client.post("/api/create", json=body)
            assert reply.status_code == 200, reply.text
            lines = [json.loads(line) for line in reply.text.splitlines()]
            assert lines[-1] == {"status": "success"}, lines
            return [line["status"] for line in lines]

        statuses = create(model="chat", files={"m.gguf": upload(gguf)})
        assert "using autodetected template chatml" in statuses
        create(model="small", files={"m.gguf": upload(gguf)}, quantize="q8_0")
        files = {p.name: upload(p.read_bytes()) for p in sorted(folder.iterdir())}
        create(model="converted", files=files)
        shown = client.post("/api/show", json={"model": "small"}).json()
        assert shown["details"]["quantization_level"] == "Q8_0"
        assert "<|im_start|>" in client.post("/api/show", json={"model": "chat"}).json()["template"]
        names = {m["name"] for m in client.get("/api/tags").json()["models"]}
        assert names == {"chat:latest", "small:latest", "converted:latest"}


def test_the_readme_walkthrough_makes_its_tiny_gguf_from_a_plain_install(
    plain_python: Path, tmp_path: Path
) -> None:
    # The README's first command installs the product alone; its walkthrough then makes a
    # small GGUF to drop. That must not need the test extra (numpy, gguf-py).
    _run(plain_python, "-m", "dropzone.testing.tiny", tmp_path / "tiny.gguf", cwd=tmp_path)
    header = read_header_file(tmp_path / "tiny.gguf")
    assert header.architecture == "llama" and header.tensors
    assert for_gguf(header.expected_length).complete((tmp_path / "tiny.gguf").stat().st_size)
