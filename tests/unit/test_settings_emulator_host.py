"""``emulator:DIR`` as an Ollama host: the bundled emulator, for local trials only (issue 15)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from dropzone.config.hosts import OllamaHost
from dropzone.config.loading import load_settings
from dropzone.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NO_FILE = Path("/nonexistent/dropzone.toml")


def hosts_of(
    tmp_path: Path, toml: str, env: Mapping[str, str] | None = None, default: Path = NO_FILE
) -> tuple[OllamaHost, ...]:
    config = tmp_path / "dropzone.toml"
    config.write_text(toml)
    return load_settings(
        config_path=config, env=env or {}, default_config_path=default
    ).ollama_hosts


def test_emulator_host_names_its_store_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (host,) = hosts_of(tmp_path, 'ollama_hosts = ["emulator:./emulator"]')
    assert host.emulator_store == tmp_path / "emulator"
    assert host.url == f"emulator:{tmp_path / 'emulator'}"


def test_an_http_host_is_not_an_emulator(tmp_path: Path) -> None:
    (host,) = hosts_of(tmp_path, 'ollama_hosts = ["127.0.0.1:11434"]')
    assert host.emulator_store is None


def test_the_shipped_local_configuration_names_the_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    settings = load_settings(
        config_path=REPO / "config/local.toml", env={}, default_config_path=NO_FILE
    )
    assert [h.emulator_store for h in settings.ollama_hosts] == [REPO / "emulator"]


def test_emulator_host_without_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        hosts_of(tmp_path, 'ollama_hosts = ["emulator:"]')
    assert "emulator:" in str(caught.value) and "folder" in str(caught.value)


def test_emulator_refused_under_systemd(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        hosts_of(tmp_path, 'ollama_hosts = ["emulator:./e"]', env={"NOTIFY_SOCKET": "/run/x"})
    (problem,) = caught.value.problems
    assert problem.startswith("ollama_hosts:")
    assert "local trials only" in problem and "NOTIFY_SOCKET" in problem


def test_emulator_refused_in_the_system_configuration(tmp_path: Path) -> None:
    system = tmp_path / "dropzone.toml"  # stands in for /etc/dropzone/dropzone.toml
    with pytest.raises(ConfigError) as caught:
        hosts_of(tmp_path, 'ollama_hosts = ["emulator:./e"]', default=system)
    (problem,) = caught.value.problems
    assert "local trials only" in problem and str(system) in problem


def test_emulator_refused_from_the_environment_under_systemd(tmp_path: Path) -> None:
    env = {"DROPZONE_OLLAMA_HOSTS": "emulator:/srv/e", "NOTIFY_SOCKET": "/run/x"}
    with pytest.raises(ConfigError, match="local trials only"):
        load_settings(config_path=None, env=env, default_config_path=NO_FILE)
