"""The configuration reference, generated from the ``Settings`` fields: the Markdown table in
the README and the commented TOML of ``config/dropzone.toml``, so both can be checked."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Literal

from dropzone.config.hosts import OllamaHost
from dropzone.config.loading import ENV_PREFIX
from dropzone.config.settings import Settings


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
