"""A host's models folder as dropzone sees it, and how blobs may be placed there (issue 17):
the TOML table and the JSON form in DROPZONE_OLLAMA_HOSTS; ``auto`` when ``models_dir`` is set,
``off`` otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropzone.config.hosts import OllamaHost
from dropzone.config.loading import load_settings
from dropzone.errors import ConfigError

NO_FILE = Path("/nonexistent/dropzone.toml")


def _hosts_from_toml(tmp_path: Path, text: str) -> tuple[OllamaHost, ...]:
    config = tmp_path / "dropzone.toml"
    config.write_text(text)
    return load_settings(config_path=config, env={}, default_config_path=NO_FILE).ollama_hosts


def test_a_toml_table_names_the_models_folder_and_defaults_to_auto(tmp_path: Path) -> None:
    (host,) = _hosts_from_toml(
        tmp_path,
        'ollama_hosts = [{ url = "http://127.0.0.1:11434",'
        ' models_dir = "/usr/share/ollama/.ollama/models" }]\n',
    )
    assert host.models_dir == Path("/usr/share/ollama/.ollama/models")
    assert host.local_import_mode == "auto"


@pytest.mark.parametrize("mode", ["auto", "reflink", "link", "copy", "off"])
def test_the_json_form_in_the_environment_takes_each_mode(mode: str) -> None:
    raw = json.dumps([{"url": "http://127.0.0.1:11434", "models_dir": "/m", "local_import": mode}])
    settings = load_settings(
        config_path=None, env={"DROPZONE_OLLAMA_HOSTS": raw}, default_config_path=NO_FILE
    )
    assert settings.ollama_hosts[0].local_import_mode == mode


def test_a_host_without_a_models_folder_uploads(tmp_path: Path) -> None:
    (host,) = _hosts_from_toml(tmp_path, 'ollama_hosts = ["http://127.0.0.1:11434"]\n')
    assert host.models_dir is None and host.local_import_mode == "off"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('{ url = "http://h", local_import = "copy" }', "needs models_dir"),
        ('{ url = "http://h", models_dir = "/m", local_import = "hardlink" }', "local_import"),
        ('{ url = "http://h", models_dir = "relative/models" }', "absolute"),
    ],
)
def test_invalid_local_import_settings_are_refused_with_the_fix(
    tmp_path: Path, table: str, expected: str
) -> None:
    config = tmp_path / "dropzone.toml"
    config.write_text(f"ollama_hosts = [{table}]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=config, env={}, default_config_path=NO_FILE)
    text = "\n".join(caught.value.problems)
    assert expected in text and "fix:" in text
