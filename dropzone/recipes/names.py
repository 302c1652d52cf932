"""Ollama model names (types/model/name.go, v0.33): parse, validate, display, derive.

Pure functions. ``parse_name`` follows the server's grammar exactly, so dropzone refuses
a name the server would refuse before uploading anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dropzone.fs.bytenames import has_surrogates, shown

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_FIRST = "A-Za-z0-9_"
_PART_RE = {
    "host": re.compile(rf"[{_FIRST}][A-Za-z0-9_.:-]{{0,349}}"),
    "namespace": re.compile(rf"[{_FIRST}][A-Za-z0-9_-]{{0,79}}"),
    "model": re.compile(rf"[{_FIRST}][A-Za-z0-9_.-]{{0,79}}"),
    "tag": re.compile(rf"[{_FIRST}][A-Za-z0-9_.-]{{0,79}}"),
}
_SHARD_RE = re.compile(r"-\d{5}-of-\d{5}$")
_INVALID_MODEL_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str

    def display_shortest(self) -> str:
        """``model:tag``, ``ns/model:tag`` or ``host/ns/model:tag`` as Ollama shows it."""
        if self.host.lower() == DEFAULT_HOST:
            if self.namespace.lower() == DEFAULT_NAMESPACE:
                return f"{self.model}:{self.tag}"
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def key(self) -> tuple[str, str, str, str]:
        """Case-insensitive identity, as the server matches existing names."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())


class InvalidNameError(ValueError):
    pass


def parse_name(text: str) -> Name:
    """Parse ``[scheme://][host/][namespace/]model[:tag]``; InvalidNameError if a part fails."""
    # As ParseNameBare: cut tag, model and namespace from the right (an empty part is a
    # missing one), and only then drop a "scheme://" from what is left, the host part; so
    # "a://b" has an empty namespace and "x://y/m:t" a host "x:/", both refused (issue 15).
    rest, tag = text, DEFAULT_TAG
    if text.rfind(":") > text.rfind("/"):
        rest, _, tag = text.rpartition(":")
        if not tag:
            raise InvalidNameError(f"invalid model name {text!r}: empty tag")
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if "/" not in rest:
        model = rest
    else:
        rest, _, model = rest.rpartition("/")
        if "/" not in rest:
            namespace = rest
        else:
            rest, _, namespace = rest.rpartition("/")
            scheme, sep, after = rest.partition("://")
            host = after if sep else scheme
    name = Name(host, namespace, model, tag)
    for part in ("host", "namespace", "model", "tag"):
        value = getattr(name, part)
        if not value.isascii() or not _PART_RE[part].fullmatch(value):
            raise InvalidNameError(f"invalid model name {text!r}: bad {part} {value!r}")
    return name


@dataclass(frozen=True)
class Ref:
    """A name that refers to a model (``modelref.ParseRef``): ``base`` is the text without its
    spaces and source suffix, ``source`` ``"local"``, ``"cloud"`` or None (unspecified)."""

    base: str
    source: str | None
    name: Name


MODEL_REQUIRED = "model is required"
CONFLICTING_SOURCES = "use either :local or :cloud, not both"


def parse_ref(text: str) -> Ref:
    """A reference to a model as the server reads one (the ``from`` of a create; show,
    generate, delete, pull): surrounding spaces trimmed, then a ``:local`` or ``:cloud`` (or
    legacy ``-cloud``) suffix taken off, then ``parse_name``. Unlike the name a create
    makes, which the server parses as sent (``parse_name``). InvalidNameError with the
    server's text for an empty name or two suffixes."""
    raw = text.strip()
    if not raw:
        raise InvalidNameError(MODEL_REQUIRED)
    base, source = _source_suffix(raw)
    if source is not None and _source_suffix(base)[1] is not None:
        raise InvalidNameError(f"{CONFLICTING_SOURCES}: {json.dumps(raw, ensure_ascii=False)}")
    return Ref(base, source, parse_name(base))


def _source_suffix(raw: str) -> tuple[str, str | None]:
    head, colon, suffix = raw.rpartition(":")
    if not colon:
        return raw, None
    word = suffix.strip().lower()
    if word in ("local", "cloud"):
        return head, word
    # The legacy form "model:tag-cloud" is the cloud model "model:tag"; a "/" after the last
    # colon means that colon belonged to a host, not a tag.
    if "/" not in suffix and word.endswith("-cloud"):
        return f"{head}:{suffix.strip()[: -len('-cloud')]}", "cloud"
    return raw, None


def is_valid_ref(text: str) -> bool:
    try:
        parse_ref(text)
    except InvalidNameError:
        return False
    return True


def is_valid_name(text: str) -> bool:
    try:
        parse_name(text)
    except InvalidNameError:
        return False
    return True


def derive_name(file_or_folder: str, default_tag: str = DEFAULT_TAG) -> str:
    """A model name from a file or folder name: ``Z-Model.gguf`` → ``z-model:latest``.

    Characters Ollama forbids become ``-``; leading ``-``/``.`` are dropped. A name that is still
    invalid (empty, too long, bad tag) raises InvalidNameError rather than being guessed at,
    as does a name that is not UTF-8: what its bytes mean is unknown (issue 13).
    """
    if has_surrogates(file_or_folder):
        raise InvalidNameError(
            f"cannot derive a model name from '{shown(file_or_folder)}': it is not valid UTF-8"
        )
    stem = file_or_folder
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    stem = _SHARD_RE.sub("", stem).lower()
    stem = _INVALID_MODEL_CHARS.sub("-", stem).strip("-.")
    if not stem:
        raise InvalidNameError(
            f"cannot derive a model name from {file_or_folder!r}: nothing usable left"
        )
    name = f"{stem}:{default_tag}"
    parse_name(name)
    return name


FOLDER_RECIPE_STEM = "dropzone"  # D/dropzone.toml is a recipe named after D


def model_stem(rel: str) -> str:
    """What a recipe's model is named after: ``Assistant.Modelfile`` → ``Assistant``,
    ``Mario/Modelfile`` and ``Mario/dropzone.toml`` → ``Mario``."""
    parent, _, name = rel.rpartition("/")
    stem = name.rpartition(".")[0] if "." in name else name
    if parent and (name.lower() == "modelfile" or stem == FOLDER_RECIPE_STEM):
        return parent.rpartition("/")[2]
    return stem
