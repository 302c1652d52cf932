"""Loading the configuration once, and reporting what is wrong with it.

Sources, strongest first: explicit overrides (command-line flags), environment variables
``DROPZONE_<KEY>``, the TOML file (``--config``, else ``$DROPZONE_CONFIG``, else
``/etc/dropzone/dropzone.toml`` if it exists), defaults (two of which come from the environment:
``$STATE_DIRECTORY`` and ``$OLLAMA_HOST``). The environment is passed in, never read here
from ``os.environ``, so tests and callers decide what it holds.

``load_settings`` collects every problem and raises one ``ConfigError`` with a message each,
with tokens and passwords masked.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from dropzone.config.hosts import redact_userinfo
from dropzone.config.settings import KEYS, Settings
from dropzone.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/dropzone/dropzone.toml")
ENV_PREFIX = "DROPZONE_"
CONFIG_ENV = "DROPZONE_CONFIG"

_LIST_KEYS = {"ollama_hosts", "ignore_patterns", "on_imported", "on_refused"}
_TABLE_KEYS = {"webhook_headers"}


def load_settings(
    *,
    config_path: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
    default_config_path: Path = DEFAULT_CONFIG_PATH,
) -> Settings:
    """Merge overrides > ``DROPZONE_*`` in ``env`` > TOML file > defaults, and validate.

    ``config_path`` is ``--config``; without it ``env["DROPZONE_CONFIG"]``, else
    ``default_config_path`` if that file exists. Overrides whose value is None are unset flags.
    Raises ``ConfigError`` listing every problem, each as ``<key>: <what> (<value>); fix: …``.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def layer(found: Mapping[str, Any], where: Mapping[str, str]) -> None:
        values.update(found)
        origin.update(where)

    layer(*_environment_defaults(env, problems))
    path = config_path or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    if path is None and default_config_path.is_file():
        path = default_config_path
    if path is not None:
        layer(*_read_toml(path, problems))
    layer(*_read_env(env, problems))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        if key not in KEYS:
            problems.append(_unknown(key, value, "the command-line overrides"))
    layer(
        {k: v for k, v in given.items() if k in KEYS},
        {k: "the command line" for k in given if k in KEYS},
    )
    try:
        settings = Settings(**values)
    except ValidationError as e:
        problems.extend(_describe(err, values, origin) for err in e.errors())
    else:
        emulators = [h.url for h in settings.ollama_hosts if h.emulator_store is not None]
        refusal = emulator_refusal(env, path, default_config_path) if emulators else None
        if refusal is not None:
            problems.append(
                f"ollama_hosts: the bundled emulator is for local trials only, and {refusal}"
                f" ({emulators[0]}, from {origin.get('ollama_hosts', 'the defaults')});"
                ' fix: name a real Ollama server, such as "http://127.0.0.1:11434"'
            )
    if problems:
        raise ConfigError(problems)
    return settings


def emulator_refusal(env: Mapping[str, str], config: Path | None, system: Path) -> str | None:
    """Why the bundled emulator may not serve this run, or None. It is for trying dropzone out:
    a service (systemd hands it ``NOTIFY_SOCKET``) or the system configuration means
    production, where models made in a local folder would be lost to every client."""
    if env.get("NOTIFY_SOCKET"):
        return "NOTIFY_SOCKET is set (dropzone runs as a systemd service)"
    if config is not None:
        where = config.expanduser().absolute()
        if where == system.absolute() or where.is_relative_to(DEFAULT_CONFIG_PATH.parent):
            return f"{config} is the system configuration"
    return None


def _environment_defaults(
    env: Mapping[str, str], problems: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    found: dict[str, Any] = {}
    where: dict[str, str] = {}
    if state := env.get("STATE_DIRECTORY", "").strip():
        # systemd joins several StateDirectory= entries with ':'; ours is the first.
        found["state_dir"], where["state_dir"] = state.split(":")[0], "$STATE_DIRECTORY"
    if (host := env.get("OLLAMA_HOST", "").strip().strip("\"'").strip()) != "":
        found["ollama_hosts"], where["ollama_hosts"] = [host], "$OLLAMA_HOST"
    return found, where


def _read_toml(path: Path, problems: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        problems.append(
            f"config: cannot read {path} ({e.strerror or e}); "
            "fix: pass an existing file with --config or DROPZONE_CONFIG"
        )
        return {}, {}
    except tomllib.TOMLDecodeError as e:
        problems.append(f"config: {path} is not valid TOML ({e}); fix: correct the syntax there")
        return {}, {}
    found = {k: v for k, v in data.items() if k in KEYS}
    for key, value in data.items():
        if key not in KEYS:
            problems.append(_unknown(key, value, str(path)))
    return found, {k: str(path) for k in found}


def _read_env(env: Mapping[str, str], problems: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    found: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name, raw in env.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        key = upper.removeprefix(ENV_PREFIX).lower()
        if key not in KEYS:
            problems.append(_unknown(name, raw, "the environment", env=True))
            continue
        if raw.strip() == "":
            continue  # an empty assignment in an EnvironmentFile means unset
        if key in _TABLE_KEYS:
            try:
                found[key] = json.loads(raw)
            except json.JSONDecodeError as e:
                # Never the raw value: it carries the secret.
                problems.append(
                    f"{key}: is not a JSON table ({e.msg}) (from {name}); fix: {_fix(key)}"
                )
                continue
            where[key] = name
            continue
        if key in _LIST_KEYS:
            parsed = _parse_env_list(raw)
            if isinstance(parsed, str):
                # Never the raw value: a host list carries tokens (issue 15).
                problems.append(f"{key}: {parsed} (from {name}); fix: {_fix(key)}")
                continue
            found[key] = parsed
        else:
            found[key] = raw.strip()
        where[key] = name
    return found, where


def _parse_env_list(raw: str) -> list[Any] | str:
    """A JSON list (or one JSON table), else comma-separated; a str is the problem."""
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            return f"is not valid JSON ({e.msg} at column {e.colno})"
        return value if isinstance(value, list) else [value]
    return [item.strip() for item in text.split(",") if item.strip()]


def _unknown(shown: str, value: Any, where: str, *, env: bool = False) -> str:
    key = shown.upper().removeprefix(ENV_PREFIX).lower() if env else shown
    close = difflib.get_close_matches(key, KEYS, n=1)
    if isinstance(value, dict) and not env:
        fix = "settings are top-level keys; remove the [" + shown + "] table header"
    elif close:
        fix = f"did you mean {ENV_PREFIX + close[0].upper() if env else close[0]}?"
    else:
        fix = f"remove it; the keys are {', '.join(KEYS)}"
    if env:
        # The name is enough, and a misspelt DROPZONE_OLLAMA_HOST may hold a token.
        return f"{shown}: unknown setting (in {where}); fix: {fix}"
    shown_value = "<table>" if isinstance(value, dict) else repr(_mask(value))
    return f"{shown}: unknown setting ({shown_value}, in {where}); fix: {fix}"


_HOST_FIXES = {
    "headers": 'a table of header names to one-line values, e.g. {Authorization = "Bearer …"}',
    "verify": "true, false, or the path of an existing CA bundle file or directory",
    "models_dir": "the server's models folder (its OLLAMA_MODELS) as an absolute path",
    "local_import": 'one of "auto", "reflink", "link", "copy", "off" (and set models_dir)',
    "verify_model": 'one of "show", "load" (leave it out to use the global verify)',
}


def _fix(key: str, loc: tuple[int | str, ...] = ()) -> str:
    if key == "ollama_hosts" and len(loc) > 2 and loc[2] in _HOST_FIXES:
        return _HOST_FIXES[str(loc[2])]
    field = Settings.model_fields.get(key)
    extra = field.json_schema_extra if field is not None else None
    return str(extra.get("fix", "")) if isinstance(extra, dict) else ""


def _describe(err: ErrorDetails, values: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    loc = err["loc"]
    key = str(loc[0]) if loc else "config"
    where = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    message = err["msg"].removeprefix("Value error, ")
    message = message.replace("Input should be", "must be", 1)
    if message[1:2].islower():
        message = message[:1].lower() + message[1:]
    value: Any = err.get("input", values.get(key))
    hidden = "headers" in loc[1:] or key == "webhook_headers"
    value = "<hidden>" if hidden else _mask(value)
    source = origin.get(key, "the default")
    return f"{where}: {message} ({value!r}, from {source}); fix: {_fix(key, loc)}"


def _mask(value: Any) -> Any:
    """The value with tokens hidden, so that none reaches a log or terminal: in a table only
    ``url`` and ``verify`` are shown (a misspelt ``header`` is hidden as well as
    ``headers``), and a URL's user and password are cut out."""
    if isinstance(value, dict):
        shown = ("url", "verify", "models_dir", "local_import", "verify_model")
        return {k: _mask(v) if k in shown else "<hidden>" for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return redact_userinfo(value)
    return value
