"""Classify weight-less recipes (issue 12): a Modelfile or sidecar that no weights claim.

A ``*.Modelfile`` (or a ``Modelfile`` in a folder without weights) and a
``*.toml``/``*.yaml``/``*.yml``/``*.json`` (or ``D/dropzone.*``) with a ``from`` key, none of
them claimed as the sidecar of an artifact, are artifacts of their own: the model is made
``from`` an existing model (``ollama-api.md`` §4.4.1). Whether FROM names a model or a path,
and every other check, is the recipe builder's; this only decides what is a candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from dropzone.errors import ProblemError
from dropzone.formats.completeness import Expected
from dropzone.recipes.names import FOLDER_RECIPE_STEM
from dropzone.recipes.sidecar import MAX_SIDECAR_BYTES, parse_sidecar, sidecar_format
from dropzone.recipes.types import ArtifactKind
from dropzone.scan._tree import Tree
from dropzone.scan.values import Draft, Entry, FileProgress

WEIGHT_SUFFIXES = (".gguf", ".safetensors")  # D/dropzone.toml is named after D, like D/Modelfile


def classify(tree: Tree, unclaimed: Iterable[str]) -> list[Draft]:
    """Drafts for the recipe files among ``unclaimed`` (relative paths no artifact uses)."""
    drafts = []
    for rel in sorted(unclaimed):
        e = tree.file(rel)
        if e is None or not _is_recipe(tree, e):
            continue
        draft = Draft(kind=ArtifactKind.RECIPE, rel_path=rel, sidecar_candidates=(rel,))
        draft.progress.append(FileProgress(rel, e.size, Expected(e.size)))
        tree.safe_to_read(draft, e)  # a link out or a dangling one: refused, with the reason
        drafts.append(draft)
    return drafts


def _is_recipe(tree: Tree, e: Entry) -> bool:
    fmt = sidecar_format(tree.abs(e.path))
    if fmt is None:
        return False
    stem = e.name.rpartition(".")[0] or e.name
    folder_sidecar = e.name.lower() == "modelfile" or stem == FOLDER_RECIPE_STEM
    # A folder's own sidecar left over beside weights (two models: whose is it?) is not a
    # recipe; only in a folder without weights does it stand alone.
    if folder_sidecar and any(f.name.endswith(WEIGHT_SUFFIXES) for f in tree.files(e.parent)):
        return False
    if fmt == "modelfile":
        return True  # a Modelfile has no other use than making a model
    if e.unsafe_link or e.size > MAX_SIDECAR_BYTES:
        return False

    def has_from(f: BinaryIO) -> bool:
        try:
            fields, _warnings, _locate = parse_sidecar(
                f.read(MAX_SIDECAR_BYTES), path=e.path, fmt=fmt
            )
        except ProblemError:
            return False
        return bool(fields.get("from"))

    found = tree.read_with(has_from, "recipe", e)
    return found is True
