"""dropzone's configuration: one typed, frozen settings object, loaded once by the CLI.

Sources, strongest first: explicit overrides (command-line flags), environment variables
``DROPZONE_<KEY>``, the TOML file (``--config``, else ``$DROPZONE_CONFIG``, else
``/etc/dropzone/dropzone.toml`` if it exists), defaults (two of which come from the environment:
``$STATE_DIRECTORY`` and ``$OLLAMA_HOST``). The environment is passed in, never read here
from ``os.environ``, so tests and callers decide what it holds.

``load_settings`` collects every problem and raises one ``ConfigError`` with a message each.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import json
import re
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dropzone.errors import ConfigError
from dropzone.recipes.names import InvalidNameError, parse_name

DEFAULT_CONFIG_PATH = Path("/etc/dropzone/dropzone.toml")
ENV_PREFIX = "DROPZONE_"
CONFIG_ENV = "DROPZONE_CONFIG"
OLLAMA_DEFAULT_PORT = 11434
EMULATOR_PREFIX = "emulator:"

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOST_CHARS = re.compile(r"[A-Za-z0-9._~%-]+")
_USERINFO = re.compile(r"(^|://)[^/@\s\"']*@")


def normalize_host(text: str) -> str:
    """``host``, ``host:port`` or a URL → ``scheme://host:port[/path]``, as Ollama's envconfig.

    No scheme means http on port 11434; ``http://`` alone defaults to port 80 and ``https://``
    to 443, exactly as the ``ollama`` CLI reads ``OLLAMA_HOST``. Unlike Ollama, a bad port is
    an error rather than silently replaced.
    """
    s = text.strip().strip("\"'").strip()
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport, default_port = "http", s, OLLAMA_DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {scheme!r}")
        default_port = 80 if scheme == "http" else 443
    hostport, _, path = hostport.partition("/")
    split = _split_host_port(hostport)
    if split is None:
        host, port_text = hostport.strip("[]") or "127.0.0.1", ""
    else:
        host, port_text = split
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOST_CHARS.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name or IP address") from None
    if port_text == "":
        port = default_port
    elif port_text.isdigit() and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    joined = f"[{host}]" if ":" in host else host
    path = path.strip("/")
    return f"{scheme}://{joined}:{port}" + (f"/{path}" if path else "")


def _emulator_url(text: str) -> str:
    """``emulator:./emulator`` → ``emulator:/abs/emulator``: the folder is read from the working
    directory, as the other relative paths of ``config/local.toml`` are; the absolute form is
    the host's identity in the state store, whatever port the emulator gets."""
    folder = text.removeprefix(EMULATOR_PREFIX).strip()
    if not folder:
        raise ValueError("emulator: needs the folder of its model store, like emulator:./emulator")
    return EMULATOR_PREFIX + str(Path(folder).expanduser().absolute())


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


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``scheme://user:pass@host…`` → (``scheme://host…``, ``"user:pass"`` percent-decoded);
    a URL without userinfo comes back unchanged with ``None``."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", url.strip()
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    url = f"{scheme}{sep}{hostport}{slash}{path}"
    return url, f"{unquote(user)}:{unquote(password)}"


def redact_userinfo(text: str) -> str:
    """``http://user:pass@host`` → ``http://host`` wherever a URL appears in ``text``."""
    return _USERINFO.sub(r"\1", text)


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: None where it would fail (no port, or a bare IPv6 address)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or hostport[end + 1 : end + 2] != ":":
            return None
        return hostport[1:end], hostport[end + 2 :]
    if hostport.count(":") != 1:
        return None
    host, port = hostport.split(":")
    return host, port


class OllamaHost(BaseModel):
    """One Ollama server: its URL, extra headers (a proxy's bearer token), TLS verification,
    and, when it runs on this machine, its models folder as dropzone sees it (issue 17)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    verify: bool | str = True  # False, or a CA bundle file / directory
    models_dir: Path | None = None  # the server's OLLAMA_MODELS, as seen from here
    local_import: Literal["auto", "reflink", "link", "copy", "off"] | None = None
    # The load check for this host alone (issue 16); None: the global ``verify``. Not named
    # ``verify``: in a host table that key is the TLS setting.
    verify_model: Literal["show", "load"] | None = None

    @property
    def local_import_mode(self) -> str:
        """How blobs the server lacks are placed: ``auto`` by default when ``models_dir``
        is set, ``off`` (the HTTP upload) without one."""
        if self.local_import is not None:
            return self.local_import
        return "auto" if self.models_dir is not None else "off"

    @field_validator("models_dir", mode="before")
    @classmethod
    def _absolute_models_dir(cls, value: Any) -> Any:
        if isinstance(value, str | Path):
            path = Path(value).expanduser()
            if not path.is_absolute():
                raise ValueError("models_dir must be an absolute path")
            return path
        return value

    @model_validator(mode="after")
    def _mode_needs_folder(self) -> OllamaHost:
        if self.local_import not in (None, "off") and self.models_dir is None:
            raise ValueError(f'local_import = "{self.local_import}" needs models_dir')
        return self

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        value = {"url": value} if isinstance(value, str) else value
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            url, credentials = split_userinfo(value["url"])
            if credentials is not None:
                # A password in the URL would reach every event, the state store and
                # "dropzone status": it becomes a header (a secret) and leaves the URL.
                headers = value.get("headers") or {}
                if not isinstance(headers, dict):
                    return value
                if any(str(k).lower() == "authorization" for k in headers):
                    raise ValueError(
                        "the URL has a user and password and headers has an Authorization:"
                        " give only one"
                    )
                basic = base64.b64encode(credentials.encode()).decode()
                value = {
                    **value,
                    "url": url,
                    "headers": {**headers, "Authorization": f"Basic {basic}"},
                }
        return value

    @field_validator("url", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith(EMULATOR_PREFIX):
            return _emulator_url(value.strip())
        return normalize_host(value) if isinstance(value, str) else value

    @property
    def emulator_store(self) -> Path | None:
        """The store folder of the bundled emulator this host names (``emulator:DIR``), which
        the daemon starts in-process; None for a real server."""
        if not self.url.startswith(EMULATOR_PREFIX):
            return None
        return Path(self.url.removeprefix(EMULATOR_PREFIX))

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if any(c in secret.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"header {name!r} has a line break in its value")
        return value

    @field_validator("verify", mode="before")
    @classmethod
    def _check_verify(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str | Path):
            path = Path(value).expanduser()
            if not path.exists():
                raise ValueError(f"CA bundle {str(path)!r} does not exist")
            return str(path)
        raise ValueError("must be true, false, or the path of a CA bundle")

    def header_values(self) -> dict[str, str]:
        return {name: secret.get_secret_value() for name, secret in self.headers.items()}


def _field(
    default: Any,
    meaning: str,
    *,
    type_text: str,
    fix: str,
    default_text: str | None = None,
    **constraints: Any,
) -> Any:
    extra: dict[str, Any] = {"type": type_text, "fix": fix}
    if default_text is not None:
        extra["default_text"] = default_text
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


class Settings(BaseSettings):
    """Every key of dropzone's configuration (design §3). Frozen: load once, pass down."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    drop_dir: Path = _field(
        Path("/srv/dropzone"),
        "the watched folder (recursive)",
        type_text="path",
        fix="an absolute directory path",
    )
    state_dir: Path = _field(
        Path("/var/lib/dropzone"),
        "SQLite state store and hash cache",
        type_text="path",
        default_text="$STATE_DIRECTORY or /var/lib/dropzone",
        fix="a directory path writable by the dropzone user",
    )
    ollama_hosts: tuple[OllamaHost, ...] = _field(
        (OllamaHost(url=f"http://127.0.0.1:{OLLAMA_DEFAULT_PORT}"),),
        "Ollama servers, each gets every model; a host is a URL or a table"
        " {url, headers = {…}, verify = true | false | CA path, models_dir = the server's"
        " models folder when it runs here, local_import = auto | reflink | link | copy | off,"
        " verify_model = show | load: this host's load check, else the global verify}"
        " (env: JSON list or comma-separated URLs)",
        type_text="list of hosts",
        default_text='[$OLLAMA_HOST] or ["http://127.0.0.1:11434"]',
        fix='a list such as ["http://127.0.0.1:11434"]; host, host:port or http(s) URLs',
    )
    settle_seconds: float = _field(
        5.0,
        "quiet period with unchanged size and mtime before a file counts as finished",
        type_text="seconds",
        fix="a number of seconds, 0 or more",
        ge=0,
    )
    watch_mode: Literal["auto", "native", "polling"] = _field(
        "auto",
        "auto = native file events on a local file system where a start-up probe sees them,"
        " polling on NFS, SMB, FUSE and 9p (writes from other machines raise no events there)"
        " or when inotify is refused; native / polling = always that",
        type_text='"auto" | "native" | "polling"',
        fix='one of "auto", "native", "polling"',
    )
    poll_interval: float = _field(
        0.0,
        "seconds between polls when polling (0 = 2 s); N > 0 with watch_mode = auto also"
        " chooses polling",
        type_text="seconds",
        fix="0, or a number of seconds",
        ge=0,
    )
    rescan_interval: float = _field(
        300.0,
        "seconds between full rescans, the safety net for lost events (0 = never)",
        type_text="seconds",
        fix="a number of seconds, 0 or more",
        ge=0,
    )
    require_sidecar: bool = _field(
        False,
        "if true, artifacts without a sidecar are left alone (reported as pending)",
        type_text="boolean",
        fix="true or false",
    )
    default_tag: str = _field(
        "latest",
        "tag for model names derived from file names",
        type_text="string",
        fix="letters, digits, '_', '-' and '.', at most 80, not starting with '-' or '.'",
    )
    on_success: Literal["keep", "delete", "move"] = _field(
        "keep",
        "after a successful import: keep the files, delete them (Ollama has its own copy),"
        " or move them to drop_dir/.imported/",
        type_text='"keep" | "delete" | "move"',
        fix='one of "keep", "delete", "move"',
    )
    on_removed: Literal["keep", "delete"] = _field(
        "keep",
        "when an artifact disappears from the drop dir: keep its model, or delete it on every host",
        type_text='"keep" | "delete"',
        fix='one of "keep", "delete"',
    )
    max_parallel_hashes: int = _field(
        1,
        "files hashed at once",
        type_text="integer",
        fix="a whole number, 1 or more",
        ge=1,
    )
    max_parallel_uploads: int = _field(
        2,
        "blob uploads at once, per host",
        type_text="integer",
        fix="a whole number, 1 or more",
        ge=1,
    )
    create_timeout_seconds: float = _field(
        3600.0,
        "how long one model create may run on a host, counted again from each progress report;"
        " past it the create fails and is retried with backoff",
        type_text="seconds",
        fix="a number of seconds, more than 0 (e.g. 3600)",
        gt=0,
    )
    log_format: Literal["auto", "json", "console"] = _field(
        "auto",
        "auto = console on a terminal, JSON lines otherwise",
        type_text='"auto" | "json" | "console"',
        fix='one of "auto", "json", "console"',
    )
    log_level: Literal["debug", "info", "warning", "error"] = _field(
        "info",
        "the least severe level logged",
        type_text='"debug" | "info" | "warning" | "error"',
        fix='one of "debug", "info", "warning", "error"',
    )
    progress_seconds: float = _field(
        10.0,
        "seconds between progress events (files arriving, hashing, uploads) when the log is not "
        "a terminal",
        type_text="seconds",
        fix="a number of seconds above 0",
        gt=0,
    )
    ignore_patterns: tuple[str, ...] = _field(
        (),
        "extra glob patterns to ignore, on top of hidden files, partial downloads and clutter",
        type_text="list of globs",
        fix='a list of glob patterns such as ["*.bak", "scratch/*"]',
    )
    # -- running it across a fleet (issue 16) --------------------------------------------
    metrics_listen: str = _field(
        "",
        'serve Prometheus metrics on this address: "127.0.0.1:9464" or a Unix socket path;'
        ' empty = off; every interface only if written so ("0.0.0.0:9464")',
        type_text="address",
        fix='"" (off), "127.0.0.1:9464", "[::1]:9464" or an absolute Unix socket path',
    )
    metrics_textfile: str = _field(
        "",
        "also write the metrics to this file every 15 s, atomically, for node_exporter's"
        " textfile collector (name it *.prom); empty = off",
        type_text="path",
        fix='"" (off) or an absolute path ending in .prom in a folder the service may write',
    )
    on_imported: tuple[str, ...] = _field(
        (),
        "a command run (no shell) after each model is made on a host, as an argv list;"
        " DROPZONE_MODEL, DROPZONE_HOST, DROPZONE_ARTIFACT, DROPZONE_DIGESTS … in its environment",
        type_text="argv list",
        fix='a list such as ["/usr/local/bin/announce", "--quiet"]; [] for none',
    )
    on_refused: tuple[str, ...] = _field(
        (),
        "a command run (no shell) when an artifact is refused or fails on a host; as"
        " on_imported, plus DROPZONE_REASON",
        type_text="argv list",
        fix='a list such as ["/usr/local/bin/page-oncall"]; [] for none',
    )
    hook_timeout_seconds: float = _field(
        60.0,
        "how long an on_imported or on_refused command may run before it is killed",
        type_text="seconds",
        fix="a number of seconds, more than 0",
        gt=0,
    )
    webhook_url: str = _field(
        "",
        "POST each imported or refused event as JSON to this URL (retried with backoff);"
        " empty = off",
        type_text="URL",
        fix='"" (off) or an http(s) URL',
    )
    webhook_headers: dict[str, SecretStr] = _field(
        {},
        "extra headers for the webhook (a shared secret); keep them in dropzone.env as"
        ' DROPZONE_WEBHOOK_HEADERS=\'{"X-Token": "…"}\'',
        type_text="table",
        fix='a table of header names to one-line values, e.g. {X-Token = "…"}',
    )
    verify: Literal["show", "load"] = _field(
        "show",
        "after create: show = ask the server for the model; load = also load it once"
        " (an empty generate request) and refuse it if the server cannot",
        type_text='"show" | "load"',
        fix='one of "show", "load"',
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges the sources itself (with an injected environment, and
        # remembering where each value came from for error messages); the class sees only
        # the merged values, never os.environ.
        return (init_settings,)

    @field_validator("drop_dir", "state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("ollama_hosts", "ignore_patterns", "on_imported", "on_refused", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @field_validator("ollama_hosts", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # Checked before the items: pydantic's min_length would also fire when items fail.
        if isinstance(value, list | tuple) and not value:
            raise ValueError("must list at least one host")
        return value

    @field_validator("ollama_hosts")
    @classmethod
    def _unique_hosts(cls, value: tuple[OllamaHost, ...]) -> tuple[OllamaHost, ...]:
        urls = [h.url for h in value]
        duplicates = sorted({u for u in urls if urls.count(u) > 1})
        if duplicates:
            raise ValueError(f"{', '.join(duplicates)} listed more than once")
        return value

    @field_validator(
        "on_success", "on_removed", "log_format", "log_level", "verify", "watch_mode", mode="before"
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("default_tag")
    @classmethod
    def _valid_tag(cls, value: str) -> str:
        try:
            ok = parse_name(f"model:{value}").tag == value
        except InvalidNameError:
            ok = False
        if not ok:
            raise ValueError("is not a valid Ollama tag")
        return value

    @field_validator("ignore_patterns")
    @classmethod
    def _no_empty_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in value):
            raise ValueError("an empty pattern would match nothing")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        from dropzone.config.listen import parse_listen  # noqa: PLC0415 - keeps settings light

        parse_listen(value)  # raises ValueError with the reason
        return value.strip()

    @field_validator("metrics_textfile")
    @classmethod
    def _textfile(cls, value: str) -> str:
        value = value.strip()
        if value and not Path(value).expanduser().is_absolute():
            raise ValueError("must be an absolute path")
        return str(Path(value).expanduser()) if value else ""

    @field_validator("on_imported", "on_refused")
    @classmethod
    def _argv(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and not Path(value[0]).expanduser().is_absolute():
            # No shell and no $PATH search: the service's PATH is not the operator's.
            raise ValueError("the command must be an absolute path (no shell, no PATH lookup)")
        if any("\0" in arg for arg in value):
            raise ValueError("an argument has a NUL character")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"https?://[^/\s]+", value, re.IGNORECASE):
            raise ValueError("must be an http or https URL")
        return value

    @field_validator("webhook_headers")
    @classmethod
    def _check_webhook_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return OllamaHost._check_headers(value)


KEYS: tuple[str, ...] = tuple(Settings.model_fields)
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


# -- the configuration reference ---------------------------------------------------------


def _default_text(key: str) -> str:
    field = Settings.model_fields[key]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "default_text" in extra:
        return str(extra["default_text"])
    return _toml_value(field.default)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, OllamaHost):
        return json.dumps(value.url)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def render_reference(fmt: Literal["markdown", "toml"] = "markdown") -> str:
    """The configuration reference from the Settings fields: a Markdown table, or a TOML file
    with every key commented out at its default, so README and config/ can be checked."""
    rows: list[str] = []
    if fmt == "markdown":
        rows += [
            "| key | type | default | environment | meaning |",
            "|---|---|---|---|---|",
        ]
    for key, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        env_name = ENV_PREFIX + key.upper()
        meaning = field.description or ""
        if fmt == "markdown":
            cells = [
                f"`{key}`",
                str(extra.get("type", "")),
                f"`{_default_text(key)}`",
                f"`{env_name}`",
                meaning,
            ]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        else:
            rows += textwrap.wrap(meaning, 98, initial_indent="# ", subsequent_indent="# ")
            rows.append(f"# type: {extra.get('type')}; environment: {env_name}")
            if "default_text" in extra:
                rows.append(f"# default: {extra['default_text']}")
            rows += [f"# {key} = {_toml_value(field.default)}", ""]
    return "\n".join(rows).rstrip("\n") + "\n"
