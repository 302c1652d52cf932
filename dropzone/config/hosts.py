"""Ollama hosts as configured: parsing ``OLLAMA_HOST``-style addresses as Ollama does, the
``OllamaHost`` model (URL, headers, TLS, models folder), and cutting a URL's user and password
out of what is shown."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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


def check_headers(value: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """HTTP headers a host (or the webhook) is given: valid names, no line break in a value."""
    for name, secret in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if any(c in secret.get_secret_value() for c in "\r\n\0"):
            raise ValueError(f"header {name!r} has a line break in its value")
    return value


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
        return check_headers(value)

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
