"""Which paths in the drop folder dropzone never looks at (design §4.1). Pure.

Paths are relative to the drop folder, ``/``-separated. A path is ignored if any of its
components is: hidden (leading dot: covers rsync's ``.NAME.XXXXXX`` temporaries, the
Hugging Face ``.cache/huggingface/download/*.incomplete`` files, ``.DS_Store`` and
dropzone's own ``.imported/``), a temporary download name (``*.part``, ``*.aria2`` …), system
clutter, or matched by a configured pattern. A file or folder ``X`` is also ignored while
``X.aria2`` (aria2's control file) exists beside it: aria2 preallocates ``X`` at full size.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass

TEMP_SUFFIXES = (
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".filepart",
    ".tmp",
    ".aria2",
    "~",
)
CLUTTER = frozenset(
    name.lower()
    for name in (
        "@eaDir",
        "Thumbs.db",
        "desktop.ini",
        "lost+found",
        "__MACOSX",
        "$RECYCLE.BIN",
        "System Volume Information",
    )
)
# rsync writes ".NAME.XXXXXX" beside NAME; already hidden, named here for the record.
RSYNC_TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9]{6}$")
ARIA2_CONTROL = ".aria2"


@dataclass(frozen=True)
class IgnoreRules:
    """The built-in rules plus ``patterns`` from configuration.

    A pattern without ``/`` is a glob matched against every path component (``*.bak``,
    ``scratch``); a pattern with ``/`` is matched against the whole relative path and each
    of its parent folders (``archive/*``, ``*/old``). Matching is case-insensitive.
    """

    patterns: Sequence[str] = ()

    def reason(self, rel_path: str, tree: Container[str] = frozenset()) -> str | None:
        """Why ``rel_path`` is ignored, or None if it is not.

        ``tree`` holds the other relative paths in the drop folder (a set); it is consulted
        only for aria2 control files.
        """
        parts = rel_path.split("/")
        for i, part in enumerate(parts):
            why = _component_reason(part)
            if why:
                return why
            prefix = "/".join(parts[: i + 1])
            if prefix + ARIA2_CONTROL in tree:
                return "being downloaded by aria2"
            for pattern in self.patterns:
                if _matches(pattern, part, prefix):
                    return f"matches the configured pattern {pattern!r}"
        return None

    def is_ignored(self, rel_path: str, tree: Container[str] = frozenset()) -> bool:
        return self.reason(rel_path, tree) is not None

    def prune_dir(self, rel_path: str) -> bool:
        """True if nothing below this folder can matter (no sibling knowledge needed)."""
        return self.reason(rel_path) is not None


DEFAULT_RULES = IgnoreRules()


def is_ignored(
    rel_path: str, tree: Container[str] = frozenset(), rules: IgnoreRules = DEFAULT_RULES
) -> bool:
    return rules.is_ignored(rel_path, tree)


def _component_reason(name: str) -> str | None:
    if name.startswith("."):
        if RSYNC_TEMP.match(name):
            return "hidden (possibly an rsync temporary)"
        return "hidden"
    lower = name.lower()
    if lower in CLUTTER:
        return "system clutter"
    if lower.endswith(TEMP_SUFFIXES):
        return "a temporary download name"
    return None


def _matches(pattern: str, name: str, prefix: str) -> bool:
    pattern = pattern.lower()
    if "/" in pattern:
        return fnmatch.fnmatchcase(prefix.lower(), pattern.strip("/"))
    return fnmatch.fnmatchcase(name.lower(), pattern)
