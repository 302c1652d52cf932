"""Which recipe builds on which (issue 12): pure, over recipes and their model names.

A recipe whose ``from`` names the model another recipe of the drop folder makes depends on it:
it is created after it on each host, and again when it is re-created. A ring of such
dependencies can never be made: each member is refused, naming the ring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dropzone.errors import Problem
from dropzone.recipes.names import InvalidNameError, parse_name, parse_ref
from dropzone.recipes.types import Recipe

Key = tuple[str, ...]


def model_key(name: str) -> Key | None:
    try:
        return parse_name(name).key()
    except InvalidNameError:
        return None


def base_key(recipe: Recipe) -> Key | None:
    """The key of the model ``recipe`` is made from, if it names one."""
    base = recipe.fields.get("from")
    if not isinstance(base, str):
        return None
    try:
        # Read as the server reads a FROM: " base " and "base:local" are the model base.
        return parse_ref(base).name.key()
    except InvalidNameError:
        return None


def _shown(name: str) -> str:
    return parse_name(name).display_shortest()


def find_cycles(recipes: Sequence[Recipe]) -> dict[int, list[Problem]]:
    """One problem per recipe on a ring of ``from`` dependencies, naming the ring."""
    by_key = {parse_name(r.model).key(): i for i, r in enumerate(recipes)}
    found: dict[int, list[Problem]] = {}
    for start, recipe in enumerate(recipes):
        path = [start]
        key = base_key(recipe)
        while key is not None and key in by_key:
            nxt = by_key[key]
            if nxt == start:
                ring = " → ".join(_shown(recipes[i].model) for i in [*path, start])
                message = f"its FROM dependencies form a cycle: {ring}"
                fix = "make one of them from weights or from an existing model"
                source = str(recipe.sidecar or recipe.artifact.path)
                found[start] = [Problem(source, message, fix, key="from")]
                break
            if nxt in path:
                break  # a ring further on, not through this recipe: reported for its members
            path.append(nxt)
            key = base_key(recipes[nxt])
    return found


def dependents(models: Mapping[str, Key], bases: Mapping[str, Key], rel: str) -> list[str]:
    """The artifacts (by rel path) made from the model ``rel`` makes."""
    made = models.get(rel)
    return sorted(r for r, b in bases.items() if made is not None and b == made and r != rel)


def provider(models: Mapping[str, Key], bases: Mapping[str, Key], rel: str) -> str | None:
    """The artifact of the drop folder that makes the model ``rel`` is made from, if any."""
    base = bases.get(rel)
    if base is None:
        return None
    return next((r for r, k in sorted(models.items()) if k == base and r != rel), None)
