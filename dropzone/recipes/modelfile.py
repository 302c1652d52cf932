"""Modelfile text → create-request fields, and back (``ollama-api.md`` §7; ``parser/parser.go``).

Pure. ``parse_modelfile`` follows the CLI's rune-by-rune state machine exactly (encodings, line
ends, comments, quoting, dropped control characters, error texts) but runs in linear time and
reports positions as an editor counts them. ``modelfile_fields`` converts the commands the way
``Modelfile.CreateRequest`` does, in the sidecar vocabulary of ``sidecar.py``: ``from``,
``adapters`` and ``draft`` stay lists of the texts written (resolving them needs the disk).
``to_modelfile`` writes fields back, quoting each value in a form that parses back to it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from dropzone.errors import Problem, ProblemError
from dropzone.recipes import parameters as rules

INSTRUCTIONS = (
    "FROM", "ADAPTER", "DRAFT", "TEMPLATE", "SYSTEM", "LICENSE",
    "MESSAGE", "PARAMETER", "RENDERER", "PARSER", "REQUIRES",
)  # fmt: skip
COMMAND_ERROR = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
_ALPHA = re.compile(r"[A-Za-z]*")
_KEY = re.compile(r"[A-Za-z0-9_]*")
_PIECE = re.compile(r"([^ \t\r\n]*)([ \t\r\n]*)")
_LINE_END = re.compile(r"[\r\n]")
_BLANKS = re.compile(r"[ \t\r\n]*")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Command:
    instruction: str  # upper case, one of INSTRUCTIONS
    value: str
    key: str | None = None  # the PARAMETER name or the MESSAGE role
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Modelfile:
    path: str
    commands: tuple[Command, ...]
    warnings: tuple[Problem, ...] = ()

    def line_of(self, instruction: str, value: str) -> int | None:
        """The line of the last ``instruction`` whose value is ``value`` (for later errors)."""
        lines = [c.line for c in self.commands if (c.instruction, c.value) == (instruction, value)]
        return lines[-1] if lines else None


def decode(data: bytes) -> tuple[str, bool]:
    """Bytes → text as Go's ``unicode.BOMOverride(UTF8)``; True if bytes had to be replaced."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom) :], name
            break
    try:
        return data.decode(encoding), False
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace"), True


class _Lexer:
    def __init__(self, text: str, path: str) -> None:
        self.text, self.path = text, path
        self.pos, self.line, self.line_start = 0, 1, 0

    def fail(
        self, message: str, fix: str, at: int | None = None, key: str | None = None
    ) -> NoReturn:
        at = self.pos if at is None else at
        column = at - self.line_start + 1 if at < len(self.text) else None
        raise ProblemError([Problem(self.path, message, fix, self.line, column, key)])

    def count_lines(self, blanks: str, start: int) -> None:
        """Count the line breaks in ``blanks`` (found at ``start``); ``\\r\\n`` counts once."""
        breaks = blanks.count("\n") + blanks.count("\r") - blanks.count("\r\n")
        if breaks:
            self.line += breaks
            self.line_start = start + max(blanks.rfind("\n"), blanks.rfind("\r")) + 1

    def commands(self) -> list[Command]:
        text, found = self.text, []
        while self.pos < len(text):
            if text[self.pos] in " \t\r\n":
                blanks = _run(_BLANKS, text, self.pos)
                self.count_lines(blanks, self.pos)
                self.pos += len(blanks)
            elif text[self.pos] == "#":
                end = _LINE_END.search(text, self.pos)
                self.pos = end.start() if end else len(text)
            else:
                found.append(self.command())
        return found

    def command(self) -> Command:
        text, start = self.text, self.pos
        line, column = self.line, start - self.line_start + 1
        # Go starts a name with any rune (kept only if printable), then takes ASCII letters.
        letters = _run(_ALPHA, text, start + 1)
        name = (text[start] if text[start].isprintable() else "") + letters
        self.pos = start + 1 + len(letters)
        fix = _fix_command(name)
        self.expect_space(COMMAND_ERROR, fix, name)
        instruction = name.upper()
        if instruction not in INSTRUCTIONS:
            self.fail(COMMAND_ERROR, fix, key=name)
        self.pos += 1
        key = None
        if instruction == "PARAMETER":
            key = _run(_KEY, text, self.pos)
            self.pos += len(key)
            fix = "write PARAMETER <name> <value>; names use only letters, digits and '_'"
            self.expect_space(f"unexpected EOF: {key}", fix, key)
            self.pos += 1
        elif instruction == "MESSAGE":
            key = _run(_ALPHA, text, self.pos)
            self.pos += len(key)
            fix = "write MESSAGE <role> <text>, the role one of system, user, assistant"
            self.expect_space(f"unexpected EOF: {key}", fix, key)
            if key not in rules.MESSAGE_ROLES:
                self.fail(rules.ROLE_ERROR, "use system, user or assistant (lower case)", key=key)
            self.pos += 1
        return Command(instruction, self.value(line), key, line, column)

    def expect_space(self, error: str, fix: str, key: str) -> None:
        if self.pos >= len(self.text):
            self.fail("unexpected EOF", fix, key=key or None)
        if self.text[self.pos] not in " \t":
            self.fail(error, fix, key=key or None)

    def value(self, first_line: int) -> str:
        """Read a value up to the line break where it is complete (``unquote`` succeeds).

        Go re-checks the whole buffer at every line break; tracking where the trimmed text
        starts and ends, and its first and last three characters, keeps this linear.
        """
        text, parts, size, pos = self.text, [], 0, self.pos
        begin = end = -1  # the trimmed text is parts[begin:end]
        head = tail = last3 = ""  # its first three characters; its and the buffer's last three
        while True:
            piece = _PIECE.match(text, pos)
            assert piece is not None  # the pattern matches the empty string
            chunk, blanks = piece.groups()
            if not chunk.isprintable():
                chunk = "".join(c for c in chunk if c.isprintable())
            if chunk:
                begin = size if begin < 0 else begin
                parts.append(chunk)
                size += len(chunk)
                end, last3 = size, (last3 + chunk)[-3:]
                tail, head = last3, (head + chunk)[:3]
            span = end - begin
            if not blanks:  # the end of the text
                self.pos = len(text)
                if _complete(head[:span], tail, span):
                    break
                self.line = first_line
                self.fail("unexpected EOF", _fix_quote(head), len(text))
            # Blanks never change whether the text so far is complete: check once per run.
            breaks = [i for i in (blanks.find("\r"), blanks.find("\n")) if i >= 0]
            if breaks and _complete(head[:span], tail, span):
                self.pos = piece.start(2) + min(breaks)
                break
            self.count_lines(blanks, piece.start(2))
            parts.append(blanks)
            size += len(blanks)
            last3 = (last3 + blanks)[-3:]
            if begin >= 0:
                head = (head + blanks)[:3]
            pos = piece.end()
        return _unquote("".join(parts)[begin:end] if begin >= 0 else "")


def _run(pattern: re.Pattern[str], text: str, pos: int) -> str:
    match = pattern.match(text, pos)
    return match.group() if match else ""


def _complete(head: str, tail: str, span: int) -> bool:
    if head.startswith('"""'):
        return span >= 6 and tail.endswith('"""')
    if head.startswith('"'):
        return span >= 2 and tail.endswith('"')
    return True


def _unquote(text: str) -> str:
    if text.startswith('"""'):
        return text[3:-3]
    return text[1:-1] if text.startswith('"') else text


def _fix_command(name: str) -> str:
    if name.upper() in INSTRUCTIONS:
        return f"write a space and then the value after {name.upper()}"
    hint = "start each line with an instruction and a space (FROM, PARAMETER, SYSTEM, …)"
    close = rules.did_you_mean(name.upper(), INSTRUCTIONS)
    return f"{close} {hint}" if close else hint + ", or with '#' for a comment"


def _fix_quote(head: str) -> str:
    quote = '"""' if head.startswith('"""') else '"'
    return (
        f"close the value with {quote} at the end of a line; nothing may follow the closing quote"
    )


def parse_modelfile(
    data: bytes | str, *, path: str = "Modelfile", require_from: bool = True
) -> Modelfile:
    """Parse a Modelfile; ProblemError with the first syntax error (the grammar cannot resume).

    ``require_from=False`` for a sidecar, where a missing FROM means the dropped weights.
    """
    warnings: list[Problem] = []
    if isinstance(data, bytes):
        data, replaced = decode(data)
        if replaced:
            warnings.append(
                Problem(path, "not valid UTF-8: bad bytes read as U+FFFD", "save it as UTF-8")
            )
    commands = tuple(_Lexer(data, path).commands())
    if require_from and not any(c.instruction == "FROM" for c in commands):
        raise ProblemError([Problem(path, "no FROM line", "add FROM <model name or path>")])
    return Modelfile(path, commands, tuple(warnings))


def modelfile_fields(modelfile: Modelfile) -> tuple[dict[str, Any], list[Problem]]:
    """The request fields the CLI would derive, and warnings; ProblemError with every error.

    As ``Modelfile.CreateRequest``: FROM/DRAFT values accumulate, ADAPTER and text instructions
    take the last value, LICENSE and MESSAGE keep all, ``stop`` accumulates, other parameters
    take the last value, deprecated parameters are skipped with a warning.
    """
    fields: dict[str, Any] = {}
    params: dict[str, Any] = {}
    errors: list[Problem] = []
    warnings = list(modelfile.warnings)
    for cmd in modelfile.commands:
        name = cmd.instruction
        if name in ("FROM", "DRAFT", "LICENSE"):
            fields.setdefault({"FROM": "from"}.get(name, name.lower()), []).append(cmd.value)
        elif name == "ADAPTER":
            if "adapters" in fields:
                message = "ADAPTER given more than once: only the last one is used"
                warnings.append(_problem(modelfile, cmd, message, "keep one ADAPTER line"))
            fields["adapters"] = [cmd.value]
        elif name == "MESSAGE":
            fields.setdefault("messages", []).append({"role": cmd.key, "content": cmd.value})
        elif name in ("REQUIRES", "PARAMETER"):
            key = cmd.key or ""
            if name == "PARAMETER" and key in rules.DEPRECATED:
                message = f"warning: parameter {key} is deprecated"
                fix = "remove the line: Ollama ignores it"
                warnings.append(_problem(modelfile, cmd, message, fix))
                continue
            try:
                if name == "REQUIRES":
                    fields["requires"] = rules.normalize_requires(cmd.value)
                elif key == "stop":
                    params.setdefault("stop", []).append(cmd.value)
                else:
                    params[key] = rules.parse_text_value(key, cmd.value)
            except rules.FieldError as e:
                errors.append(_problem(modelfile, cmd, e.message, e.fix, cmd.key or name))
        else:
            fields[name.lower()] = cmd.value
    if errors:
        raise ProblemError(errors)
    if params:
        fields["parameters"] = params
    return fields, warnings


def _problem(
    modelfile: Modelfile, cmd: Command, message: str, fix: str, key: str | None = None
) -> Problem:
    return Problem(modelfile.path, message, fix, cmd.line, cmd.column, key or cmd.key)


# Fields a Modelfile cannot carry: they are command-line flags of ``ollama create``.
_FLAG_FIELDS = frozenset({"model", "quantize", "draft_quantize"})
_ORDER = (
    "from", "adapters", "draft", "template", "system", "license",
    "parameters", "messages", "renderer", "parser", "requires",
)  # fmt: skip


def to_modelfile(fields: Mapping[str, Any]) -> str:
    """A Modelfile that ``modelfile_fields`` reads back as ``fields`` (normalised: lists for
    ``from``/``adapters``/``draft``/``license``/``stop``, float32 floats).

    ``model``, ``quantize`` and ``draft_quantize`` are skipped (CLI flags). ValueError for an
    unknown field, more than one adapter, or a value no Modelfile quoting can carry.
    """
    unknown = set(fields) - set(_ORDER) - _FLAG_FIELDS
    if unknown:
        raise ValueError(f"not expressible in a Modelfile: {sorted(unknown)}")
    lines: list[str] = []
    for name in _ORDER:
        if name not in fields:
            continue
        value = fields[name]
        if name == "parameters":
            for key, param in value.items():
                for item in param if isinstance(param, list) else [param]:
                    lines.append(f"PARAMETER {key} {quote_value(_param_text(item))}")
        elif name == "messages":
            for message in value:
                lines.append(f"MESSAGE {message['role']} {quote_value(message['content'])}")
        else:
            values = [value] if isinstance(value, str) else list(value)
            if name == "adapters" and len(values) > 1:
                raise ValueError("a Modelfile carries one adapter")
            instruction = {"from": "FROM", "adapters": "ADAPTER"}.get(name, name.upper())
            lines.extend(f"{instruction} {quote_value(v)}" for v in values)
    return "".join(line + "\n" for line in lines)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def quote_value(value: str) -> str:
    """``value`` as written after an instruction so that the parser reads back exactly it.

    Bare when it can be, else in one quote, else in three: the first form in which no line
    break before the closing quote would already end the value. ValueError if neither works
    (one line ends in three quotes, another in one), or for control characters the parser drops.
    """
    if not all(c.isprintable() or c in "\t\r\n" for c in value):
        raise ValueError(f"control characters cannot be written in a Modelfile: {value!r}")
    blank = " \t\r\n"
    single_line = "\r" not in value and "\n" not in value
    if single_line and value and value[0] not in blank + '"' and value[-1] not in blank:
        return value
    for quote in ('"', '"""'):
        if quote == '"' and (quote + value + quote).startswith('"""'):
            continue
        if not _closes_early(quote, value):
            return quote + value + quote
    raise ValueError(f"no Modelfile quoting can carry {value!r}")


def _closes_early(quote: str, value: str) -> bool:
    """Would the parser find ``quote + value`` complete at one of the value's line breaks?"""
    last = -1  # the last non-blank character before the current position
    for i, char in enumerate(value):
        if char in "\r\n":
            text = quote + value[max(0, last - 2) : last + 1]
            span = len(quote) + last + 1
            if _complete((quote + value[:2])[:span], text[-3:], span):
                return True
        elif char not in " \t":
            last = i
    return False
