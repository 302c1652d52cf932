"""dropzone's exception tree. Library errors are converted at one boundary each.

::

    DropzoneError
    ├── ConfigError              bad configuration: the daemon refuses to start (exit 2)
    ├── ProblemError             an artifact or sidecar is invalid; carries Problem records
    ├── FileChangedError         a file changed while being hashed: look again later (transient)
    ├── StoppedError             work abandoned because the daemon is stopping (not a failure)
    └── OllamaError              anything that went wrong talking to an Ollama host
        ├── TransientError       worth retrying with backoff: the same request may succeed later
        │   ├── UnreachableError     connection refused, DNS failure, connection reset
        │   ├── RequestTimeoutError      connect/read/write/pool timeout, or a whole-answer deadline
        │   ├── ServerError          HTTP 5xx, a broken create stream, an answer past its byte cap
        │   └── RedirectError        HTTP 3xx (a proxy): not followed; the host URL needs fixing
        │                            (transient: retried with backoff until the operator fixes it)
        └── PermanentError       retrying the same request cannot help until inputs change
            ├── RequestError         HTTP 4xx (status and the server's error text)
            │   └── DigestMismatchError   400 "digest mismatch": the file changed, re-hash
            └── CreateError          an {"error": …} line in the create stream (even with HTTP 200)

``error.transient`` tells the importer whether to schedule a retry.
"""

from __future__ import annotations

from dataclasses import dataclass


class DropzoneError(Exception):
    """Base of every error dropzone raises on purpose."""

    transient: bool = False


class ConfigError(DropzoneError):
    """Invalid configuration; ``problems`` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where, what, and how to fix it."""

    path: str
    message: str
    fix: str = ""
    line: int | None = None
    column: int | None = None
    key: str | None = None

    def describe(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.detail()}"

    def detail(self) -> str:
        """The message with its key and fix, without the place."""
        text = self.message
        if self.key:
            text += f" (key {self.key!r})"
        if self.fix:
            text += f"; fix: {self.fix}"
        return text

    def event_fields(self) -> dict[str, object]:
        """The fields of a refusal or warning event: which file, where, what, how to fix."""
        return {
            "file": self.path,
            "line": self.line,
            "key": self.key,
            "error": self.message,
            "fix": self.fix,
        }


class ProblemError(DropzoneError):
    """An artifact or sidecar is invalid. Permanent until the file changes."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.describe() for p in problems))
        self.problems = problems


class FileChangedError(DropzoneError):
    """A file changed (grew, shrank, was replaced or rewritten) while it was being hashed."""

    transient = True

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoppedError(DropzoneError):
    """Work was abandoned because a stop was requested; nothing is wrong with the input."""

    transient = True


class OllamaError(DropzoneError):
    """A failure talking to one Ollama host."""

    def __init__(self, message: str, *, host: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.status = status


class TransientError(OllamaError):
    transient = True


class UnreachableError(TransientError):
    pass


class RequestTimeoutError(TransientError):
    pass


class ServerError(TransientError):
    pass


class RedirectError(TransientError):
    """A 3xx answer, typically a proxy sending http to https or to a login page. Redirects are
    never followed (a request body and its headers could go elsewhere): the host URL is wrong.
    Transient rather than permanent, so the artifact is retried with backoff and imports once
    the operator fixes the URL, with no ``dropzone retry`` needed."""

    def __init__(
        self, message: str, *, host: str = "", status: int | None = None, location: str = ""
    ) -> None:
        super().__init__(message, host=host, status=status)
        self.location = location


class PermanentError(OllamaError):
    transient = False


class RequestError(PermanentError):
    pass


class DigestMismatchError(RequestError):
    pass


class CreateError(PermanentError):
    pass
