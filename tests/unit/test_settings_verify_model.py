"""A host's own load check (issue 16): ``verify_model = "show" | "load"`` in its table or in
the JSON form of DROPZONE_OLLAMA_HOSTS; left out, the global ``verify`` applies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropzone.config.loading import load_settings
from dropzone.errors import ConfigError

NO_FILE = Path("/nonexistent/dropzone.toml")


def test_a_toml_table_sets_one_hosts_load_check(tmp_path: Path) -> None:
    config = tmp_path / "dropzone.toml"
    config.write_text(
        'verify = "show"\n'
        'ollama_hosts = [{ url = "http://a:11434", verify_model = "load" }, "http://b:11434"]\n'
    )
    settings = load_settings(config_path=config, env={}, default_config_path=NO_FILE)
    assert [h.verify_model for h in settings.ollama_hosts] == ["load", None]
    assert settings.ollama_hosts[0].verify is True  # the TLS key is untouched


def test_the_json_form_in_the_environment_takes_it() -> None:
    raw = json.dumps([{"url": "http://a:11434", "verify_model": "show"}])
    settings = load_settings(
        config_path=None,
        env={"DROPZONE_OLLAMA_HOSTS": raw, "DROPZONE_VERIFY": "load"},
        default_config_path=NO_FILE,
    )
    assert settings.verify == "load" and settings.ollama_hosts[0].verify_model == "show"


def test_an_unknown_value_is_refused_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "dropzone.toml"
    config.write_text('ollama_hosts = [{ url = "http://a", verify_model = "run" }]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=config, env={}, default_config_path=NO_FILE)
    text = "\n".join(caught.value.problems)
    assert "verify_model" in text and 'one of "show", "load"' in text
