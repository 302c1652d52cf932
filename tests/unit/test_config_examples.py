"""The shipped configuration files load through the real settings loader and say what it does:
config/dropzone.toml (every key at its default), config/local.toml (the first run without
root), systemd/dropzone.env.example (environment overrides and tokens), and the example
sidecars in config/examples/ parse without a problem."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dropzone.config.loading import load_settings
from dropzone.config.settings import KEYS, Settings
from dropzone.errors import Problem
from dropzone.recipes.sidecar import SidecarSpec, load_sidecar

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "dropzone.toml"
LOCAL = ROOT / "config" / "local.toml"
EXAMPLES = ROOT / "config" / "examples"
ENV_EXAMPLE = ROOT / "systemd" / "dropzone.env.example"

# Keys whose default comes from the environment (systemd's $STATE_DIRECTORY, $OLLAMA_HOST):
# the sample file shows them commented out, since a value there would hide the environment.
FROM_ENVIRONMENT = {"state_dir", "ollama_hosts"}
_COMMENTED = re.compile(r"#\s*([a-z_]+)\s*=\s*(.+)")


def documented_values(text: str) -> dict[str, Any]:
    """Every key the file sets, plus every ``# key = value`` line naming a known key."""
    values: dict[str, Any] = dict(tomllib.loads(text))
    for line in text.splitlines():
        found = _COMMENTED.fullmatch(line.strip())
        if found and found.group(1) in KEYS:
            values |= tomllib.loads(f"{found.group(1)} = {found.group(2)}")
    return values


def test_sample_configuration_loads_to_the_defaults() -> None:
    loaded = load_settings(config_path=CONFIG, env={})
    assert loaded == Settings()


def test_sample_configuration_names_every_setting_with_its_default() -> None:
    values = documented_values(CONFIG.read_text())
    assert sorted(values) == sorted(KEYS)
    defaults = Settings()
    for key, value in values.items():
        assert getattr(Settings(**{key: value}), key) == getattr(defaults, key), key


def test_sample_configuration_leaves_environment_defaults_to_the_environment() -> None:
    text = CONFIG.read_text()
    assert set(tomllib.loads(text)) == set(KEYS) - FROM_ENVIRONMENT
    loaded = load_settings(
        config_path=CONFIG,
        env={"STATE_DIRECTORY": "/var/lib/dropzone-test", "OLLAMA_HOST": "gpu1:11434"},
    )
    assert loaded.state_dir == Path("/var/lib/dropzone-test")
    assert [host.url for host in loaded.ollama_hosts] == ["http://gpu1:11434"]


def test_every_setting_in_the_sample_configuration_has_a_comment_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    for key in KEYS:
        at = next(i for i, line in enumerate(lines) if re.match(rf"#?\s*{key}\s*=", line))
        above = lines[at - 1].strip()
        assignment = _COMMENTED.fullmatch(above)
        assert above.startswith("#") and not (assignment and assignment[1] in KEYS), key


def test_local_configuration_uses_folders_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_settings(config_path=LOCAL, env={})
    assert loaded.drop_dir == tmp_path / "drop"
    assert loaded.state_dir == tmp_path / "state"
    # The bundled emulator, its store next to the others: no Ollama needed (issue 15).
    assert [host.emulator_store for host in loaded.ollama_hosts] == [tmp_path / "emulator"]
    others = set(tomllib.loads(LOCAL.read_text())) - {"drop_dir", "state_dir", "ollama_hosts"}
    assert others == set()  # everything else keeps the defaults documented in dropzone.toml


def environment_examples() -> list[tuple[str, str]]:
    """Each commented-out assignment of the env example, read by sh as systemd would read it
    (single-quoted values mean the same to both)."""
    examples = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        found = re.fullmatch(r"#([A-Z_]+)=(.*)", line)
        if found:
            name = found.group(1)
            result = subprocess.run(
                ["sh", "-c", f'{name}={found.group(2)}; printf %s "${name}"'],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            examples.append((name, result.stdout))
    return examples


def test_environment_example_has_examples_of_hosts_and_tokens() -> None:
    names = [name for name, _ in environment_examples()]
    assert "OLLAMA_HOST" in names
    assert names.count("DROPZONE_OLLAMA_HOSTS") >= 2


@pytest.mark.parametrize(("name", "value"), environment_examples())
def test_each_environment_example_loads_with_the_sample_configuration(
    name: str, value: str
) -> None:
    loaded = load_settings(config_path=CONFIG, env={name: value})
    if name == "OLLAMA_HOST":
        assert [host.url for host in loaded.ollama_hosts] == ["http://127.0.0.1:11434"]
    elif name == "DROPZONE_OLLAMA_HOSTS" and "Bearer" in value:
        [host] = loaded.ollama_hosts
        assert host.header_values() == {"Authorization": "Bearer CHANGE-ME"}
        assert "CHANGE-ME" not in repr(loaded)  # a token never reaches a log line
    elif name == "DROPZONE_OLLAMA_HOSTS":
        assert len(loaded.ollama_hosts) == value.count(",") + 1
    else:
        key = name.removeprefix("DROPZONE_").lower()
        assert getattr(loaded, key) != getattr(Settings(), key)


# --- example sidecars ----------------------------------------------------------------------


def load_example(relative: str) -> SidecarSpec:
    spec: SidecarSpec | list[Problem] = load_sidecar(EXAMPLES / relative, drop_dir=EXAMPLES)
    assert isinstance(spec, SidecarSpec), [p.describe() for p in spec]
    assert spec.warnings == ()
    return spec


def test_toml_sidecar_names_the_model_and_sets_stop_tokens() -> None:
    spec = load_example("qwen3-8b-q4_k_m.toml")
    assert spec.model == "qwen3:8b"
    assert spec.fields["parameters"]["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert spec.fields["license"]


def test_yaml_sidecar_carries_template_and_few_shot_messages() -> None:
    spec = load_example("mistral-7b-instruct-v0.3-q4_k_m.yaml")
    assert spec.model == "mistral:7b-instruct-v0.3-q4_K_M"
    assert "{{ .Prompt }}" in spec.fields["template"]
    assert [m["role"] for m in spec.fields["messages"]] == ["user", "assistant"]


def test_modelfile_sidecar_without_from_uses_the_weights_beside_it() -> None:
    spec = load_example("llama3.2-3b-instruct-q4_k_m.Modelfile")
    assert spec.model is None  # named after the file
    assert (spec.from_name, spec.from_paths) == (None, ())
    assert spec.fields["template"].endswith("{{ .Response }}<|eot_id|>")
    assert len(spec.fields["parameters"]["stop"]) == 3
    assert [m["role"] for m in spec.fields["messages"]] == ["user", "assistant"]


def test_safetensors_folder_sidecar_asks_for_quantization() -> None:
    spec = load_example("my-finetune/dropzone.toml")
    assert spec.model == "my-finetune:q4_K_M"
    assert spec.quantize == "q4_K_M"
