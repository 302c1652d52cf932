"""Value rules shared by Modelfiles and structured sidecars (``ollama-api.md`` §4.10, §7.2, §7.3).

Pure functions. A Modelfile gives every value as text and is parsed exactly as the Ollama CLI
parses it (``api.FormatParams``: Go's ``ParseInt``, ``ParseFloat(s, 32)``, ``ParseBool``), with
the CLI's error texts. A TOML/YAML/JSON sidecar gives typed values, checked against the same
table. Both produce the JSON values the CLI would send: ints, float32-rounded floats, bools and
``stop`` as a list of strings.
"""

from __future__ import annotations

import difflib
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INT, FLOAT, BOOL, STRINGS = "int", "float", "bool", "strings"

PARAMETERS: dict[str, str] = {
    "num_ctx": INT,
    "num_batch": INT,
    "num_gpu": INT,
    "main_gpu": INT,
    "use_mmap": BOOL,
    "num_thread": INT,
    "draft_num_predict": INT,
    "num_keep": INT,
    "seed": INT,
    "num_predict": INT,
    "top_k": INT,
    "top_p": FLOAT,
    "min_p": FLOAT,
    "typical_p": FLOAT,
    "repeat_last_n": INT,
    "temperature": FLOAT,
    "repeat_penalty": FLOAT,
    "presence_penalty": FLOAT,
    "frequency_penalty": FLOAT,
    "stop": STRINGS,
}
# Skipped with a warning by the CLI (parser.deprecatedParameters).
DEPRECATED = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)
# Gone from api.Options: the CLI says "unknown parameter"; we add why in the fix.
REMOVED = frozenset(
    {"numa", "num_gqa", "tfs_z", "embedding_only", "rope_frequency_base", "rope_frequency_scale"}
)
MESSAGE_ROLES = ("system", "user", "assistant")
ROLE_ERROR = 'message role must be one of "system", "user", or "assistant"'
# ParseFileType in fs/ggml/type.go, after upper-casing; Q4_K is an alias of Q4_K_M.
QUANTIZE_TYPES = frozenset({"F32", "F16", "BF16", "Q8_0", "Q4_K_S", "Q4_K_M", "Q4_K"})
# The server's list is F16, BF16 and F32, but its KV.FileType() (fs/ggml/ggml.go) reads
# general.file_type 0 (F32) or a missing value as "unknown", so an F32 GGUF is refused too.
QUANTIZABLE_SOURCES = frozenset({"F16", "BF16"})
REQUIRES_ERROR = "requires must be a valid semver (e.g. 0.14.0)"

_INT64 = 1 << 63
_INT_RE = re.compile(r"[+-]?[0-9]+")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_DIGITS = r"[0-9](?:_?[0-9])*"
_HEX = r"[0-9A-Fa-f](?:_?[0-9A-Fa-f])*"
_DEC_FLOAT_RE = re.compile(
    rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?"
)
_HEX_FLOAT_RE = re.compile(rf"[+-]?0[xX]_?(?:{_HEX}(?:\.(?:{_HEX})?)?|\.{_HEX})[pP][+-]?{_DIGITS}")
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
# golang.org/x/mod/semver accepts the shorthands v1 and v1.2, but pre-release/build only on x.y.z.
_SEMVER_RE = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?)?)?"
)


class FieldError(ValueError):
    """A value breaks a rule: ``message`` (the CLI's text where it has one) and a ``fix``."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def unknown_parameter(key: str) -> FieldError:
    if key in REMOVED:
        fix = f"remove it: Ollama no longer has the {key!r} option"
    else:
        fix = did_you_mean(key, PARAMETERS) or "known parameters: " + ", ".join(PARAMETERS)
    return FieldError(f"unknown parameter '{key}'", fix)


def float32(value: float) -> float:
    """Round to float32 and return the shortest decimal that reads back as the same float32.

    Go marshals a float32 with its shortest representation (``0.7``, not ``0.699999988…``).
    Raises OverflowError beyond float32's range.
    """
    packed = struct.pack("<f", value)
    (single,) = struct.unpack("<f", packed)
    for digits in range(1, 10):
        shortest = float(f"{single:.{digits}g}")
        if struct.pack("<f", shortest) == packed:
            return shortest
    return float(single)  # pragma: no cover - 9 significant digits always round-trip


def parse_text_value(key: str, text: str) -> Any:
    """A Modelfile ``PARAMETER key text`` value as the CLI converts it (``stop``: one string)."""
    kind = PARAMETERS.get(key)
    if kind is None:
        raise unknown_parameter(key)
    if kind == INT:
        number = _go_parse_int(text)
        if number is not None:
            return number
        raise FieldError(f"invalid int value [{text}]", f"{key} takes a whole number, like 4096")
    if kind == FLOAT:
        value = _go_parse_float32(text)
        if value is None:
            raise FieldError(f"invalid float value [{text}]", f"{key} takes a number, like 0.7")
        return value
    if kind == BOOL:
        if text in _GO_TRUE or text in _GO_FALSE:
            return text in _GO_TRUE
        raise FieldError(f"invalid bool value [{text}]", f"{key} takes true or false")
    return text


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64); None on a syntax or range error."""
    if not _INT_RE.fullmatch(text):
        return None
    # Python refuses int() of very long digit strings; Go's leading zeros are harmless.
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19:
        return None
    number = -int(digits) if text[0] == "-" else int(digits)
    return number if -_INT64 <= number < _INT64 else None


def _go_parse_float32(text: str) -> float | None:
    """strconv.ParseFloat(text, 32); None on a syntax or range error, or a non-finite result.

    Go also accepts inf and nan, but the CLI then cannot encode the request as JSON: refused.
    """
    try:
        if _DEC_FLOAT_RE.fullmatch(text):
            value = float(text.replace("_", ""))
        elif _HEX_FLOAT_RE.fullmatch(text):
            value = float.fromhex(text.replace("_", ""))
        else:
            return None
        result = float32(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def check_typed_value(key: str, value: Any) -> Any:
    """A typed sidecar parameter value, checked against the same table as the Modelfile's."""
    kind = PARAMETERS.get(key)
    if kind is None:
        raise unknown_parameter(key)
    shown = _show(value)
    if kind == INT:
        if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
            return value
        raise FieldError(f"parameter {key!r} must be a whole number, not {shown}", f"{key} = 4096")
    if kind == FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                result = float32(float(value))
            except OverflowError:
                result = math.inf
            if math.isfinite(result):
                return result
        raise FieldError(f"parameter {key!r} must be a number, not {shown}", f"{key} = 0.7")
    if kind == BOOL:
        if isinstance(value, bool):
            return value
        raise FieldError(f"parameter {key!r} must be true or false, not {shown}", f"{key} = true")
    items = [value] if isinstance(value, str) else value
    if isinstance(items, list) and all(isinstance(item, str) for item in items):
        return list(items)
    raise FieldError(
        f"parameter {key!r} must be a string or a list of strings, not {shown}",
        'stop = ["<|im_end|>", "</s>"] (quote each string)',
    )


def check_quantize(value: str) -> str:
    """The value as written, if ``/api/create`` accepts it (case-insensitive)."""
    if value.upper() in QUANTIZE_TYPES:
        return value
    raise FieldError(
        f"unsupported quantization type {value.upper()} - "
        "supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0",
        "use q4_K_M or q8_0 (or f16, bf16, f32, q4_K_S)",
    )


def normalize_requires(text: str) -> str:
    """``0.14.0`` or ``v0.14.0`` → ``0.14.0``, as the CLI sends it."""
    version = text if text.startswith("v") else "v" + text
    if not _SEMVER_RE.fullmatch(version):
        raise FieldError(REQUIRES_ERROR, "write the minimum Ollama version, like 0.14.0")
    return version[1:]


def check_role(role: str) -> str:
    if role in MESSAGE_ROLES:
        return role
    raise FieldError(ROLE_ERROR, "use system, user or assistant (lower case)")


def _show(value: Any) -> str:
    kind = type(value).__name__
    text = repr(value)
    return f"{kind} {text[:60]}" if len(text) <= 60 else f"{kind} {text[:57]}..."


# --- structured sidecars (TOML/YAML/JSON): the /api/create fields by name ----------------------

SIDECAR_KEYS = (
    "model", "from", "system", "template", "license", "parameters", "messages", "quantize",
    "adapters", "draft", "draft_quantize", "renderer", "parser", "requires",
)  # fmt: skip
_ALIASES = {"name": "model", "options": "parameters", "params": "parameters", "files": "from"}
_TEXT_KEYS = ("model", "system", "template", "renderer", "parser", "quantize", "draft_quantize")
_LIST_KEYS = ("from", "license", "adapters", "draft")  # a string or a list of strings


@dataclass(frozen=True)
class Issue:
    """A problem (or warning) in a structured sidecar: the key, its parent key, what, the fix."""

    key: str
    message: str
    fix: str = ""
    parent: str | None = None


def check_sidecar_fields(
    data: Mapping[Any, Any],
) -> tuple[dict[str, Any], list[Issue], list[Issue]]:
    """Checked fields (lists for ``from``/``license``/``adapters``/``draft``), warnings, errors."""
    fields: dict[str, Any] = {}
    warnings: list[Issue] = []
    errors: list[Issue] = []
    for key, value in data.items():
        if not isinstance(key, str) or key not in SIDECAR_KEYS:
            hint = _ALIASES.get(str(key))
            fix = f"did you mean {hint!r}?" if hint else did_you_mean(str(key), SIDECAR_KEYS)
            fix = fix or "known keys: " + ", ".join(SIDECAR_KEYS)
            errors.append(Issue(str(key), f"unknown key {key!r}", fix))
            continue
        try:
            fields[key] = _check_field(key, value, warnings, errors)
        except FieldError as e:
            errors.append(Issue(key, e.message, e.fix))
    return fields, warnings, errors


def _check_field(key: str, value: Any, warnings: list[Issue], errors: list[Issue]) -> Any:
    shown = _show(value)
    if key in _TEXT_KEYS or key == "requires":
        if not isinstance(value, str):
            raise FieldError(f"{key!r} must be a string, not {shown}", f'quote it: {key} = "…"')
        if key == "requires":
            return normalize_requires(value)
        return check_quantize(value) if key.endswith("quantize") else value
    if key in _LIST_KEYS:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise FieldError(
                f"{key!r} must be a string or a list of strings, not {shown}", f'{key} = ["…"]'
            )
        return list(items)
    if key == "parameters":
        if not isinstance(value, Mapping):
            raise FieldError(f"'parameters' must be a table, not {shown}", "parameters = {…}")
        params: dict[str, Any] = {}
        for name, param in value.items():
            if str(name) in DEPRECATED:
                message = f"warning: parameter {name} is deprecated"
                warnings.append(Issue(str(name), message, "remove it: Ollama ignores it", key))
                continue
            try:
                params[str(name)] = check_typed_value(str(name), param)
            except FieldError as e:
                errors.append(Issue(str(name), e.message, e.fix, key))
        return params
    return _check_messages(value)


def _check_messages(value: Any) -> list[dict[str, str]]:
    fix = 'messages = [{role = "user", content = "…"}, {role = "assistant", content = "…"}]'
    if not isinstance(value, list):
        raise FieldError(f"'messages' must be a list, not {_show(value)}", fix)
    messages = []
    for number, item in enumerate(value, 1):
        where = f"message {number}"
        if not isinstance(item, Mapping) or set(item) != {"role", "content"}:
            raise FieldError(f"{where} must have exactly the keys role and content", fix)
        role, content = item["role"], item["content"]
        if not isinstance(role, str) or not isinstance(content, str):
            raise FieldError(f"{where}: role and content must be strings", fix)
        try:
            check_role(role)
        except FieldError as e:
            raise FieldError(f"{where}: {e.message}", e.fix) from None
        messages.append({"role": role, "content": content})
    return messages
