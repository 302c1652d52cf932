"""Which artifact claims which model name, across the whole drop folder.

Names compare as the server compares them (case-insensitively, with defaults filled in). Both
directions are indexed so a claim costs O(1) however many artifacts there are.
"""

from __future__ import annotations

from collections import defaultdict

from dropzone.recipes.names import parse_name


class Claims:
    def __init__(self) -> None:
        self._by_rel: dict[str, tuple[str, ...]] = {}
        self._by_name: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)

    def claim(self, rel: str, model: str) -> list[str]:
        """Record that ``rel`` makes ``model``; return the other artifacts claiming it too."""
        self.release(rel)
        key = parse_name(model).key()
        self._by_rel[rel] = key
        holders = self._by_name[key]
        holders.add(rel)
        return sorted(holders - {rel})

    def release(self, rel: str) -> None:
        key = self._by_rel.pop(rel, None)
        if key is not None:
            self._by_name[key].discard(rel)
            if not self._by_name[key]:
                del self._by_name[key]
