"""The daemon's memory of which artifact makes which model from which; the rules are in
``recipes.deps``."""

from __future__ import annotations

import threading

from dropzone.recipes.deps import Key, base_key, dependents, provider
from dropzone.recipes.names import parse_name
from dropzone.recipes.types import Recipe


class Dependencies:
    """The daemon's memory of which artifact makes which model from which (thread-safe).

    ``note`` is called for every recipe built; ``forget`` when an artifact goes or is refused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, Key] = {}  # rel → key of the model it makes
        self._bases: dict[str, Key] = {}  # rel → key of the model it is made from

    def note(self, rel: str, recipe: Recipe) -> None:
        with self._lock:
            self._models[rel] = parse_name(recipe.model).key()
            base = base_key(recipe)
            if base is None:
                self._bases.pop(rel, None)
            else:
                self._bases[rel] = base

    def forget(self, rel: str) -> None:
        with self._lock:
            self._models.pop(rel, None)
            self._bases.pop(rel, None)

    def provider(self, rel: str) -> str | None:
        with self._lock:
            return provider(self._models, self._bases, rel)

    def dependents(self, rel: str) -> list[str]:
        with self._lock:
            return dependents(self._models, self._bases, rel)
