"""dropzone's configuration: one typed, frozen settings object, loaded once by the CLI
(``loading.load_settings``). Each field carries its meaning, type and fix, from which error
messages and the reference (``reference.py``) are written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dropzone.config.hosts import OLLAMA_DEFAULT_PORT, OllamaHost, check_headers
from dropzone.recipes.names import InvalidNameError, parse_name


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
        return check_headers(value)


KEYS: tuple[str, ...] = tuple(Settings.model_fields)
