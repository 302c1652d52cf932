"""No secret in any output (design §10.8, issue 15): a configuration error names the key and
the problem, never a header value or a URL's password; a host URL with a user and password
keeps them only as an ``Authorization`` header, never in the URL that events and the state
store show."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import pytest

from dropzone.config.loading import load_settings
from dropzone.errors import ConfigError

TOKEN = "tok-3f9a1c7e55"
NO_FILE = Path("/nonexistent/dropzone.toml")


def problems(env: Mapping[str, str], toml: str | None = None, tmp: Path | None = None) -> str:
    config = None
    if toml is not None and tmp is not None:
        config = tmp / "dropzone.toml"
        config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=config, env=env, default_config_path=NO_FILE)
    return "\n".join(caught.value.problems)


@pytest.mark.parametrize(
    "raw",
    [
        # Invalid JSON: the quote before Bearer is missing.
        f'[{{"url": "https://ollama.example", "headers": {{"Authorization": Bearer {TOKEN}"}}}}]',
        f'{{"url": "https://ollama.example", "headers": {{"Authorization": "Bearer {TOKEN}"}}',
        f'[{{"url": "https://ollama.example", "header": {{"Authorization": "Bearer {TOKEN}"}}}}]',
        f'[{{"url": "https://u:{TOKEN}@bad host", "headers": {{}}}}]',
        f"https://u:{TOKEN}@bad host,http://other",
    ],
)
def test_a_bad_host_list_in_the_environment_names_the_key_not_the_token(raw: str) -> None:
    text = problems({"DROPZONE_OLLAMA_HOSTS": raw})
    assert text.startswith("ollama_hosts"), text
    assert TOKEN not in text


def test_a_misspelt_variable_holding_a_token_is_named_without_its_value() -> None:
    text = problems({"DROPZONE_OLLAMA_HOST": f'[{{"headers": {{"X-Token": "{TOKEN}"}}}}]'})
    assert "DROPZONE_OLLAMA_HOST" in text and "DROPZONE_OLLAMA_HOSTS" in text
    assert TOKEN not in text


def test_a_misspelt_toml_key_holding_a_token_is_named_without_it(tmp_path: Path) -> None:
    toml = f'ollama_host = [{{ url = "http://u:{TOKEN}@gpu1", headers = {{ A = "{TOKEN}" }} }}]\n'
    text = problems({}, toml, tmp_path)
    assert "ollama_host" in text
    assert TOKEN not in text


def test_a_url_with_user_and_password_becomes_a_basic_authorization_header() -> None:
    settings = load_settings(
        config_path=None,
        env={"DROPZONE_OLLAMA_HOSTS": f"https://ops:{TOKEN}@ollama.example/base,gpu2"},
        default_config_path=NO_FILE,
    )
    first, second = settings.ollama_hosts
    assert first.url == "https://ollama.example:443/base"
    expected = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert first.header_values() == {"Authorization": f"Basic {expected}"}
    assert TOKEN not in repr(settings)
    assert second.url == "http://gpu2:11434" and second.header_values() == {}


def test_a_url_password_beside_an_authorization_header_is_one_problem_without_either() -> None:
    raw = (
        f'[{{"url": "http://ops:{TOKEN}@gpu1", "headers": {{"authorization": "Bearer {TOKEN}"}}}}]'
    )
    text = problems({"DROPZONE_OLLAMA_HOSTS": raw})
    assert text.startswith("ollama_hosts[0]") and "Authorization" in text, text
    assert TOKEN not in text
