"""Names that refer to a model, as the server answers them (``server/model_resolver.go``,
``writeModelRefParseError``): the show, generate, delete and create-``from`` side of names."""

from __future__ import annotations

from dropzone.recipes.names import (
    CONFLICTING_SOURCES,
    MODEL_REQUIRED,
    InvalidNameError,
    Name,
    parse_name,
    parse_ref,
)

INVALID = "invalid model name"


class RefError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def local_ref(text: str, *, invalid: str = INVALID) -> Name:
    """The local model ``text`` refers to; RefError with the server's status and text if it
    names none. ``invalid`` is the handler's text for a name that does not parse."""
    try:
        ref = parse_ref(text)
    except InvalidNameError as exc:
        message = str(exc)
        if message == MODEL_REQUIRED or message.startswith(CONFLICTING_SOURCES):
            raise RefError(400, message) from None
        raise RefError(400, invalid) from None
    if ref.source == "cloud":
        # The server forwards these to ollama.com, which a local emulator cannot stand in for.
        raise RefError(501, f"cloud models are not emulated ({text.strip()!r} names one)")
    return ref.name


def pull_ref(text: str, *, invalid: str) -> Name:
    """As ``parseNormalizePullModelRef`` (delete, pull): a cloud reference becomes the local
    name its legacy form had (``m:cloud``, ``m:8b-cloud``), which the store may hold."""
    try:
        ref = parse_ref(text)
        if ref.source != "cloud":
            return ref.name
        tagged = ref.base.rfind(":") > ref.base.rfind("/")
        return parse_name(ref.base + ("-cloud" if tagged else ":cloud"))
    except InvalidNameError as exc:
        message = str(exc)
        if message == MODEL_REQUIRED or message.startswith(CONFLICTING_SOURCES):
            raise RefError(400, message) from None
        raise RefError(400, invalid) from None
