"""Request binding like gin's ``ShouldBindJSON`` into Ollama's Go request structs.

Go's decoder ignores unknown keys, matches field names case-insensitively (preferring an exact
match), treats ``null`` as "not given", and reports the first type mismatch as
``json: cannot unmarshal <json type> into Go struct field <Struct>.<field> of type <Go type>``.
"""

from __future__ import annotations

import re
from typing import Any

STRING, BOOL, ANY = "string", "bool", "interface {}"
STRING_MAP, ANY_MAP, MESSAGES = "map[string]string", "map[string]interface {}", "[]api.Message"

CREATE_FIELDS = {
    "model": STRING, "name": STRING, "from": STRING, "template": STRING, "system": STRING,
    "quantize": STRING, "quantization": STRING, "renderer": STRING, "parser": STRING,
    "requires": STRING, "remote_host": STRING, "draft_quantize": STRING,
    "files": STRING_MAP, "adapters": STRING_MAP, "draft_files": STRING_MAP,
    "parameters": ANY_MAP, "info": ANY_MAP, "messages": MESSAGES, "stream": BOOL, "license": ANY,
}  # fmt: skip
SHOW_FIELDS = {
    "model": STRING, "name": STRING, "system": STRING, "template": STRING,
    "verbose": BOOL, "options": ANY_MAP,
}  # fmt: skip
DELETE_FIELDS = {"model": STRING, "name": STRING}
COPY_FIELDS = {"source": STRING, "destination": STRING}


def json_type(value: Any) -> str:
    """The JSON kind Go names in UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def bind(value: Any, struct: str, fields: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """Bind decoded JSON to ``fields``: (field → value or None, first error text or None)."""
    out: dict[str, Any] = dict.fromkeys(fields)
    if value is None:
        return out, None
    if not isinstance(value, dict):
        return out, f"json: cannot unmarshal {json_type(value)} into Go value of type api.{struct}"
    error = None
    for field, go_type in fields.items():
        raw = _lookup(value, field)
        if raw is None:
            continue
        bound, problem = _convert(raw, go_type, f"{struct}.{field}")
        if problem and error is None:
            error = problem
        out[field] = bound
    return out, error


def _lookup(obj: dict[str, Any], field: str) -> Any:
    if field in obj:
        return obj[field]
    for key in reversed(list(obj)):
        if key.lower() == field:
            return obj[key]
    return None


def _mismatch(raw: Any, path: str, go_type: str) -> str:
    return f"json: cannot unmarshal {json_type(raw)} into Go struct field {path} of type {go_type}"


def _convert(raw: Any, go_type: str, path: str) -> tuple[Any, str | None]:
    if go_type == ANY:
        return raw, None
    if go_type == STRING:
        return (raw, None) if isinstance(raw, str) else (None, _mismatch(raw, path, STRING))
    if go_type == BOOL:
        return (raw, None) if isinstance(raw, bool) else (None, _mismatch(raw, path, BOOL))
    if go_type in (STRING_MAP, ANY_MAP):
        if not isinstance(raw, dict):
            return None, _mismatch(raw, path, go_type)
        if go_type == ANY_MAP:
            return raw, None
        out: dict[str, str] = {}
        for key, item in raw.items():
            if item is None:
                out[key] = ""
            elif isinstance(item, str):
                out[key] = item
            else:
                return out, _mismatch(item, path, STRING)
        return out, None
    return _messages(raw, path)


def _messages(raw: Any, path: str) -> tuple[Any, str | None]:
    if not isinstance(raw, list):
        return None, _mismatch(raw, path, MESSAGES)
    messages: list[dict[str, str]] = []
    for entry in raw:
        item = {} if entry is None else entry
        if not isinstance(item, dict):
            return messages, _mismatch(item, path, "api.Message")
        message: dict[str, str] = {"role": "", "content": ""}
        for key in ("role", "content"):
            value = _lookup(item, key)
            if value is None:
                continue
            if not isinstance(value, str):
                return messages, _mismatch(value, f"Message.{key}", STRING)
            message[key] = value
        message["role"] = message["role"].lower()  # api.Message lower-cases roles on input
        messages.append(message)
    return messages, None


def valid_path(name: str) -> bool:
    """Go's ``io/fs.ValidPath``: relative, slash-separated, no empty, ``.`` or ``..`` element."""
    if name == ".":
        return True
    return all(part not in ("", ".", "..") for part in name.split("/"))


def license_strings(value: Any) -> list[str]:
    """``license`` as a list of strings; ValueError with Go's decoder text otherwise."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise ValueError(
                    f"json: cannot unmarshal {json_type(item)} into Go value of type string"
                )
        return list(value)
    raise ValueError(f"json: cannot unmarshal {json_type(value)} into Go value of type []string")


_ACTION_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_BLOCK_WORDS = ("if", "range", "with", "block", "define")
# In a Go template a bare identifier is a keyword or a function: Go's builtins, and those of
# Ollama's template.Parse (template/template.go ``funcs``). Any other is a parse error.
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
    | {"nil", "true", "false"}
)
_FUNCTIONS = frozenset(
    {"and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf"}
    | {"println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"}
    | {"json", "currentDate", "yesterdayDate", "toTypeScriptType"}
)
_LITERALS_RE = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\'(?:[^\'\\]|\\.)*\'')
_BARE_WORD_RE = re.compile(r"(?<![\w.$])[A-Za-z_]\w*")


def _undefined_function(body: str) -> str | None:
    """The first bare identifier in an action that is neither keyword nor known function."""
    for word in _BARE_WORD_RE.findall(_LITERALS_RE.sub('""', body)):
        if word not in _KEYWORDS and word not in _FUNCTIONS:
            return str(word)
    return None


def template_problem(text: str) -> str | None:
    """A Go ``text/template`` parse error for unbalanced ``{{ }}`` or block/``end`` pairs.

    Only the structure and the function names are checked; expressions are not parsed.
    """
    stack: list[int] = []
    pos = 0
    while (start := text.find("{{", pos)) != -1:
        line = text.count("\n", 0, start) + 1
        match = _ACTION_RE.match(text, start)
        if match is None:
            return f"template: :{line}: unclosed action"
        pos = match.end()
        body = match[1].strip().removeprefix("-").removesuffix("-").strip()
        if body.startswith("/*"):
            continue
        undefined = _undefined_function(body)
        if undefined is not None:
            return f'template: :{line}: function "{undefined}" not defined'
        word = body.split(None, 1)[0] if body else ""
        if word in _BLOCK_WORDS:
            stack.append(line)
        elif word == "end":
            if not stack:
                return f"template: :{line}: unexpected {{{{end}}}}"
            stack.pop()
        elif word == "else" and not stack:
            return f"template: :{line}: unexpected {{{{else}}}}"
        elif not body:
            return f"template: :{line}: missing value for command"
    if stack:
        return f"template: :{text.count(chr(10)) + 1}: unexpected EOF"
    return None
