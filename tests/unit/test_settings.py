"""Settings: source precedence, host normalisation, one message per problem, the reference."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError

from dropzone.config.hosts import normalize_host
from dropzone.config.loading import load_settings
from dropzone.config.reference import render_reference
from dropzone.config.settings import KEYS, Settings
from dropzone.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NO_FILE = Path("/nonexistent/dropzone.toml")
MESSAGE = re.compile(r"^\S+: .+ \(.+\); fix: .+$")


def load(
    tmp_path: Path,
    toml: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    config = None
    if toml is not None:
        config = tmp_path / "dropzone.toml"
        config.write_text(toml)
    return load_settings(
        config_path=config, env=env or {}, overrides=overrides, default_config_path=NO_FILE
    )


def problems(tmp_path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **kwargs)  # type: ignore[arg-type]
    for p in info.value.problems:
        assert MESSAGE.match(p), p
    return info.value.problems


def test_defaults_match_the_design(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert s.drop_dir == Path("/srv/dropzone")
    assert s.state_dir == Path("/var/lib/dropzone")
    assert [h.url for h in s.ollama_hosts] == ["http://127.0.0.1:11434"]
    assert (s.settle_seconds, s.poll_interval, s.rescan_interval) == (5, 0, 300)
    assert (s.require_sidecar, s.default_tag) == (False, "latest")
    assert (s.on_success, s.on_removed) == ("keep", "keep")
    assert (s.max_parallel_hashes, s.max_parallel_uploads) == (1, 2)
    assert (s.log_format, s.log_level, s.ignore_patterns) == ("auto", "info", ())


def test_an_empty_config_file_is_valid(tmp_path: Path) -> None:
    assert load(tmp_path, toml="") == load(tmp_path)


@pytest.mark.parametrize(
    ("toml", "env", "overrides", "expected"),
    [
        ("settle_seconds = 7", {}, None, 7),
        ("settle_seconds = 7", {"DROPZONE_SETTLE_SECONDS": "8"}, None, 8),
        ("settle_seconds = 7", {"DROPZONE_SETTLE_SECONDS": "8"}, {"settle_seconds": 9}, 9),
        (None, {"DROPZONE_SETTLE_SECONDS": "8"}, {"settle_seconds": None}, 8),  # unset flag
        (None, {"dropzone_settle_seconds": "0.5"}, None, 0.5),  # names are case-insensitive
        (None, {"DROPZONE_SETTLE_SECONDS": ""}, None, 5),  # empty means unset
    ],
)
def test_overrides_beat_environment_beats_toml_beats_defaults(
    tmp_path: Path,
    toml: str | None,
    env: dict[str, str],
    overrides: dict[str, object] | None,
    expected: float,
) -> None:
    assert load(tmp_path, toml=toml, env=env, overrides=overrides).settle_seconds == expected


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (None, {"STATE_DIRECTORY": "/var/lib/dz"}, "/var/lib/dz"),
        (None, {"STATE_DIRECTORY": "/var/lib/dz:/var/lib/other"}, "/var/lib/dz"),
        ('state_dir = "/srv/state"', {"STATE_DIRECTORY": "/var/lib/dz"}, "/srv/state"),
        (
            'state_dir = "/srv/state"',
            {"STATE_DIRECTORY": "/x", "DROPZONE_STATE_DIR": "/env"},
            "/env",
        ),
    ],
)
def test_state_directory_from_systemd_is_only_a_default(
    tmp_path: Path, toml: str | None, env: dict[str, str], expected: str
) -> None:
    assert load(tmp_path, toml=toml, env=env).state_dir == Path(expected)


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (None, {"OLLAMA_HOST": "gpu1"}, ["http://gpu1:11434"]),
        (None, {"OLLAMA_HOST": "  "}, ["http://127.0.0.1:11434"]),
        ('ollama_hosts = ["gpu2"]', {"OLLAMA_HOST": "gpu1"}, ["http://gpu2:11434"]),
        (
            None,
            {"DROPZONE_OLLAMA_HOSTS": "a, b:8080", "OLLAMA_HOST": "c"},
            [
                "http://a:11434",
                "http://b:8080",
            ],
        ),
        (
            None,
            {"DROPZONE_OLLAMA_HOSTS": '["https://a", {"url": "b"}]'},
            [
                "https://a:443",
                "http://b:11434",
            ],
        ),
        (None, {"DROPZONE_OLLAMA_HOSTS": '{"url": "b"}'}, ["http://b:11434"]),
        ('ollama_hosts = "solo"', {}, ["http://solo:11434"]),
    ],
)
def test_ollama_hosts_come_from_config_env_or_ollama_host(
    tmp_path: Path, toml: str | None, env: dict[str, str], expected: list[str]
) -> None:
    assert [h.url for h in load(tmp_path, toml=toml, env=env).ollama_hosts] == expected


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("gpu1", "http://gpu1:11434"),
        ("gpu1:8080", "http://gpu1:8080"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("10.0.0.5:11434", "http://10.0.0.5:11434"),
        ("http://gpu1", "http://gpu1:80"),  # as the ollama CLI: an explicit scheme means :80
        ("https://gpu1", "https://gpu1:443"),
        ("HTTPS://gpu1:8443/", "https://gpu1:8443"),
        ("https://proxy.example/ollama/", "https://proxy.example:443/ollama"),
        ("::1", "http://[::1]:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("[::1]:9", "http://[::1]:9"),
        ('"gpu1:1234"', "http://gpu1:1234"),  # Ollama strips quotes left by env files
        (" gpu1 ", "http://gpu1:11434"),
    ],
)
def test_normalize_host_follows_ollama_envconfig(given: str, url: str) -> None:
    assert normalize_host(given) == url


@pytest.mark.parametrize("bad", ["ftp://gpu1", "gpu1:99999", "gpu1:port", "a b", "user@host:1"])
def test_normalize_host_refuses_what_cannot_be_a_server(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_host(bad)


def test_a_host_table_carries_headers_and_tls_verification(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    toml = f"""
ollama_hosts = [
  "http://127.0.0.1:11434",
  {{ url = "https://gpu2.example", headers = {{ Authorization = "Bearer t0k" }}, verify = "{ca}" }},
  {{ url = "https://gpu3.example", verify = false }},
]
"""
    local, proxied, insecure = load(tmp_path, toml=toml).ollama_hosts
    assert (local.verify, local.header_values()) == (True, {})
    assert proxied.header_values() == {"Authorization": "Bearer t0k"}
    assert proxied.verify == str(ca)
    assert "t0k" not in repr(proxied)
    assert insecure.verify is False


def test_every_problem_gets_its_own_message_naming_key_value_source_and_fix(
    tmp_path: Path,
) -> None:
    found = problems(
        tmp_path,
        toml='settle_seconds = -1\non_success = "archive"\ndefault_tag = "-bad"\n',
        env={"DROPZONE_LOG_LEVEL": "loud", "DROPZONE_REQUIRE_SIDECAR": "maybe"},
        overrides={"max_parallel_uploads": 0},
    )
    by_key = {p.split(":")[0]: p for p in found}
    assert len(found) == 6 == len(by_key)
    assert "(-1, from " in by_key["settle_seconds"]
    assert "dropzone.toml)" in by_key["settle_seconds"]
    assert "'archive'" in by_key["on_success"] and '"move"' in by_key["on_success"]
    assert "not a valid Ollama tag" in by_key["default_tag"]
    assert "from DROPZONE_LOG_LEVEL" in by_key["log_level"]
    assert "from DROPZONE_REQUIRE_SIDECAR" in by_key["require_sidecar"]
    assert "from the command line" in by_key["max_parallel_uploads"]


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("settle_secnds = 3", {}, "settle_secnds: unknown setting (3, in "),
        ("settle_secnds = 3", {}, "fix: did you mean settle_seconds?"),
        ("", {"DROPZONE_POLL_INTERVL": "1"}, "fix: did you mean DROPZONE_POLL_INTERVAL?"),
        ("[dropzone]\nsettle_seconds = 3", {}, "remove the [dropzone] table header"),
        ("frobnicate = 1", {}, "fix: remove it; the keys are drop_dir, state_dir"),
    ],
)
def test_unknown_keys_are_errors_with_a_hint(
    tmp_path: Path, toml: str, env: dict[str, str], expected: str
) -> None:
    (problem,) = problems(tmp_path, toml=toml, env=env)
    assert expected in problem


def test_header_values_never_appear_in_error_messages(tmp_path: Path) -> None:
    toml = """ollama_hosts = [
  { url = "https://a", headers = { Authorization = "Bearer s3cret\\n" } },
  { headers = { Authorization = "Bearer s3cret" } },
]"""
    found = problems(tmp_path, toml=toml)
    assert len(found) == 2
    assert not any("s3cret" in p for p in found)
    assert "ollama_hosts[0].headers" in found[0] and "line break" in found[0]
    assert "ollama_hosts[1].url: field required" in found[1]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('ollama_hosts = ["gpu1", "http://gpu1:11434"]', "listed more than once"),
        ("ollama_hosts = []", "ollama_hosts: must list at least one host"),
        ('ollama_hosts = [{ url = "a", verify = "/no/such/ca.pem" }]', "does not exist"),
        ('ollama_hosts = [{ url = "a", tls = false }]', "ollama_hosts[0].tls: extra inputs"),
        ('ollama_hosts = ["gpu1:99999"]', "port '99999' is not a number from 1 to 65535"),
        ('ignore_patterns = [""]', "an empty pattern"),
    ],
)
def test_invalid_hosts_and_patterns_are_explained(tmp_path: Path, toml: str, expected: str) -> None:
    (problem,) = problems(tmp_path, toml=toml)
    assert expected in problem


def test_environment_lists_that_are_not_valid_json_are_explained(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, env={"DROPZONE_IGNORE_PATTERNS": '["*.bak"'})
    assert problem.startswith("ignore_patterns: is not valid JSON")
    assert load(tmp_path, env={"DROPZONE_IGNORE_PATTERNS": "*.bak, scratch/*"}).ignore_patterns == (
        "*.bak",
        "scratch/*",
    )


def test_choices_and_levels_accept_any_case(tmp_path: Path) -> None:
    s = load(tmp_path, env={"DROPZONE_LOG_LEVEL": "DEBUG", "DROPZONE_ON_SUCCESS": "Move"})
    assert (s.log_level, s.on_success) == ("debug", "move")


def test_relative_paths_are_made_absolute_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load(tmp_path, toml='drop_dir = "drop"\nstate_dir = "~/state"')
    assert s.drop_dir == tmp_path / "drop"
    assert s.state_dir == Path.home() / "state"


def test_config_file_comes_from_flag_then_dropzone_config_then_the_default_path(
    tmp_path: Path,
) -> None:
    flag, env_file, default = (tmp_path / n for n in ("flag.toml", "env.toml", "etc.toml"))
    flag.write_text("settle_seconds = 1")
    env_file.write_text("settle_seconds = 2")
    default.write_text("settle_seconds = 3")
    env = {"DROPZONE_CONFIG": str(env_file)}

    def settle(config: Path | None, env: dict[str, str], default: Path) -> float:
        s = load_settings(config_path=config, env=env, default_config_path=default)
        return s.settle_seconds

    assert settle(flag, env, default) == 1
    assert settle(None, env, default) == 2
    assert settle(None, {}, default) == 3
    assert settle(None, {}, tmp_path / "absent.toml") == 5


def test_a_named_config_file_that_is_missing_or_broken_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config: cannot read .*missing\.toml"):
        load_settings(config_path=tmp_path / "missing.toml", env={}, default_config_path=NO_FILE)
    (problem,) = problems(tmp_path, toml="settle_seconds = = 3")
    assert "is not valid TOML" in problem and "line 1" in problem


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load(tmp_path)
    with pytest.raises(ValidationError):
        s.settle_seconds = 1  # type: ignore[misc]


def test_settings_class_alone_never_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DROPZONE_SETTLE_SECONDS", "42")
    assert Settings().settle_seconds == 5


def test_the_toml_reference_lists_every_key_commented_out_at_its_default(tmp_path: Path) -> None:
    text = render_reference("toml")
    assert tomllib.loads(text) == {}  # everything commented out: an empty, valid config
    assignment = re.compile(rf"# ({'|'.join(KEYS)}) = ")
    assignments = [line[2:] for line in text.splitlines() if assignment.match(line)]
    assert [a.split(" = ")[0] for a in assignments] == list(KEYS)
    assert all(len(line) <= 100 for line in text.splitlines())
    # Uncommented, the reference's values are exactly the defaults.
    assert load(tmp_path, toml="\n".join(assignments)) == load(tmp_path)


def test_the_markdown_reference_has_a_row_per_key_with_its_environment_variable() -> None:
    lines = render_reference("markdown").splitlines()
    assert lines[0].startswith("| key | type | default | environment | meaning |")
    rows = lines[2:]
    assert len(rows) == len(KEYS)
    for key, row in zip(KEYS, rows, strict=True):
        assert row.startswith(f"| `{key}` |") and f"`DROPZONE_{key.upper()}`" in row
        assert row.count(" | ") == 4  # pipes inside cells are escaped


def test_the_shipped_config_file_loads_and_mentions_every_key() -> None:
    shipped = REPO / "config" / "dropzone.toml"
    if not shipped.exists():
        pytest.skip("config/dropzone.toml not written yet")
    load_settings(config_path=shipped, env={}, default_config_path=NO_FILE)
    text = shipped.read_text()
    assert [k for k in KEYS if not re.search(rf"^#? ?{k} = ", text, re.M)] == []
