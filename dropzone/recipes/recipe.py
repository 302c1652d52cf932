"""Artifact + sidecar spec → Recipe: what to create, checked before anything is hashed.

Pure. The model name is the sidecar's (as written) or derived from the file or folder name.
The weights are the artifact, or what FROM names: files in the drop folder or an existing
model. Checks that need both the artifact and the sidecar happen here: an adapter needs a
base, Ollama takes one adapter, only F16/BF16 GGUFs can be quantized, and two recipes may
not claim one model name (``find_conflicts``).
"""

from __future__ import annotations

import os
from collections import ChainMap, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dropzone.errors import Problem
from dropzone.recipes import parameters as rules
from dropzone.recipes.deps import find_cycles
from dropzone.recipes.names import InvalidNameError, derive_name, model_stem, parse_name
from dropzone.recipes.paths import file_keys
from dropzone.recipes.sidecar import SidecarSpec
from dropzone.recipes.types import Artifact, ArtifactKind, Recipe


def _norm(path: Path) -> Path:
    return Path(os.path.normpath(os.path.abspath(path)))


def _shown(path: Path, drop_dir: Path) -> str:
    relative = os.path.relpath(_norm(path), _norm(drop_dir))
    return path.name if relative.startswith("..") else relative


def build_recipe(
    artifact: Artifact,
    spec: SidecarSpec | None,
    *,
    drop_dir: Path,
    default_tag: str,
    artifacts: Sequence[Artifact] = (),
) -> Recipe | list[Problem]:
    """The recipe for ``artifact`` as its sidecar ``spec`` describes it, or every problem found.

    ``artifacts`` are the other artifacts of the drop folder: a path the sidecar names that is
    one of them (a base GGUF, an adapter folder) contributes that artifact's files.
    """
    return _build(artifact, spec, drop_dir, default_tag, _index(artifacts))


def _index(artifacts: Sequence[Artifact]) -> dict[Path, Artifact]:
    return {_norm(a.path): a for a in artifacts}


def _build(
    artifact: Artifact,
    spec: SidecarSpec | None,
    drop_dir: Path,
    default_tag: str,
    known: dict[Path, Artifact],
) -> Recipe | list[Problem]:
    builder = _Builder(artifact, spec or SidecarSpec(path=None), drop_dir, known)
    model = builder.name(default_tag)
    files, adapters, drafts = builder.sources()
    builder.check_quantize()
    if builder.problems or model is None:
        return builder.problems
    spec = builder.spec
    fields: dict[str, Any] = {"from": spec.from_name} if spec.from_name else {}
    # Like the CLI's omitempty JSON tags: empty text or lists are not sent (empty = inherit).
    fields.update((k, v) for k, v in spec.fields.items() if v not in ("", [], {}, None))
    for key in ("quantize", "draft_quantize"):
        if getattr(spec, key) is not None:
            fields[key] = getattr(spec, key)
    return Recipe(
        model=model,
        artifact=artifact,
        sidecar=spec.path,
        files=files,
        adapters=adapters,
        fields=fields,
        draft_files=drafts,
        sidecar_key=spec.key,
        sidecar_digest=spec.digest,
    )


class _Builder:
    def __init__(
        self,
        artifact: Artifact,
        spec: SidecarSpec,
        drop_dir: Path,
        others: dict[Path, Artifact],
    ) -> None:
        self.artifact, self.spec, self.drop_dir = artifact, spec, drop_dir
        self.source = str(spec.path or artifact.path)
        self.problems: list[Problem] = []
        # Indexed once per drop folder by the caller: per recipe it would be quadratic.
        self.known: Mapping[Path, Artifact] = ChainMap({_norm(artifact.path): artifact}, others)
        self.me = _norm(artifact.path)
        self.shown = _shown(artifact.path, drop_dir)

    def problem(self, message: str, fix: str, key: str) -> None:
        self.problems.append(Problem(self.source, message, fix, key=key))

    def name(self, default_tag: str) -> str | None:
        model = self.spec.model
        try:
            if model is None and self.artifact.kind is ArtifactKind.RECIPE:
                rel = self.artifact.path.relative_to(self.drop_dir).as_posix()
                return derive_name(model_stem(rel), default_tag)
            if model is None:
                return derive_name(self.artifact.path.name, default_tag)
            parse_name(model)
        except InvalidNameError as e:
            fix = 'name the model in a sidecar: model = "name:tag"'
            if model is None:
                fix = "rename the file or folder, or " + fix
            self.problem(str(e), fix, "model")
            return None
        return model

    def sources(self) -> tuple[dict[str, Path], dict[str, Path], dict[str, Path]]:
        """``files``, ``adapters`` and ``draft_files``: the artifact's role and what FROM says."""
        spec, artifact, me = self.spec, self.artifact, self.me
        if artifact.kind is ArtifactKind.RECIPE:
            return self.recipe_sources()
        used = {_norm(p) for p in (*spec.from_paths, *spec.adapter_paths, *spec.draft_paths)}
        adapter_sources = list(spec.adapter_paths)
        if artifact.is_adapter and me not in used:
            adapter_sources.append(artifact.path)
        files: dict[str, Path] = {}
        if spec.from_paths:
            files = self.files(spec.from_paths, "from")
        elif artifact.is_adapter and not spec.from_name:
            fix = 'name its base model: FROM llama3.2 (Modelfile) or from = "llama3.2"'
            self.problem(f"adapter {self.shown} has no base model", fix, "from")
        elif not spec.from_name:
            files = {f.key: f.path for f in artifact.files}
        if not artifact.is_adapter and (spec.from_name or spec.from_paths) and me not in used:
            what = repr(spec.from_name) if spec.from_name else "other files"
            message = f"FROM names {what}, so the dropped weights {self.shown} would not be used"
            fix = "remove FROM to build from the dropped weights, or use ADAPTER for an adapter"
            self.problem(message, fix, "from")
        if artifact.is_adapter and me in {_norm(p) for p in spec.from_paths}:
            message = f"{self.shown} is an adapter, not weights to build on"
            self.problem(message, "name it with ADAPTER", "from")
        if len(adapter_sources) > 1:
            names = ", ".join(_shown(p, self.drop_dir) for p in adapter_sources)
            message = f"more than one adapter ({names}): Ollama takes one"
            self.problem(message, "keep one", "adapters")
        drafts = self.files(spec.draft_paths, "draft")
        if spec.draft_quantize is not None and not drafts:
            fix = "add DRAFT, or remove draft_quantize"
            self.problem("draft_quantize without a draft model", fix, "draft_quantize")
        return files, self.files(adapter_sources, "adapters"), drafts

    def recipe_sources(self) -> tuple[dict[str, Path], dict[str, Path], dict[str, Path]]:
        """A weight-less recipe: FROM must name a model; adapters and drafts as usual."""
        spec = self.spec
        if spec.from_paths or not spec.from_name:
            what = "names files" if spec.from_paths else "names no model to build on"
            fix = "name an existing model (FROM llama3.2), or put this file beside the weights"
            fix += " it is for (X.gguf with X.Modelfile)"
            self.problem(f"{self.shown} {what}", fix, "from")
        if len(spec.adapter_paths) > 1:
            names = ", ".join(_shown(p, self.drop_dir) for p in spec.adapter_paths)
            self.problem(
                f"more than one adapter ({names}): Ollama takes one", "keep one", "adapters"
            )
        drafts = self.files(spec.draft_paths, "draft")
        return {}, self.files(spec.adapter_paths, "adapters"), drafts

    def files(self, sources: Sequence[Path], key: str) -> dict[str, Path]:
        """The ``files``-style map for paths a sidecar names (keys as the CLI names them)."""
        if len(sources) == 1 and _norm(sources[0]) in self.known:
            return {f.key: f.path for f in self.known[_norm(sources[0])].files}
        collected: list[Path] = []
        for path in sources:
            artifact = self.known.get(_norm(path))
            if artifact is not None:
                collected.extend(f.path for f in artifact.files)
            elif path in self.spec.folders:
                message = f"{path.name}/ is not a model or adapter folder dropzone recognised"
                fix = "name the weights file itself, or a complete model or adapter folder"
                self.problem(message, fix, key)
            else:
                collected.append(path)
        return file_keys(collected)

    def check_quantize(self) -> None:
        """The server quantizes only F16/BF16 sources: it names F32 too (``ollama-api.md``
        §4.10), but reads general.file_type 0 as unknown (issue 15)."""
        spec = self.spec
        if spec.quantize is None:
            return
        sources = [self.known.get(_norm(p)) for p in spec.from_paths] or [self.artifact]
        for found in sources:
            file_type = found.file_type if found is not None else None
            if found is None or file_type is None:
                continue
            if file_type.upper() not in rules.QUANTIZABLE_SOURCES:
                shown = _shown(found.path, self.drop_dir)
                fix = f"{shown} is {file_type}: remove quantize, or drop an F16 or BF16 GGUF"
                if file_type.upper() in ("F32", "UNKNOWN"):
                    what = (
                        "is F32 (general.file_type 0)"
                        if file_type.upper() == "F32"
                        else ("has no general.file_type Ollama knows")
                    )
                    fix = (
                        f"{shown} {what}, which the server reads as unknown and will not "
                        "quantize: remove quantize, or convert it to F16 or BF16 first"
                    )
                message = "quantization is only supported for F16, BF16 and F32 models"
                self.problem(message, fix, "quantize")


def find_conflicts(recipes: Sequence[Recipe]) -> list[Problem]:
    """One problem per recipe whose model name (case-insensitive) another recipe also claims."""
    return [p for group in _conflicts(recipes).values() for p in group]


def _conflicts(recipes: Sequence[Recipe]) -> dict[int, list[Problem]]:
    by_name: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, recipe in enumerate(recipes):
        by_name[parse_name(recipe.model).key()].append(index)
    found: dict[int, list[Problem]] = {}
    for indexes in by_name.values():
        if len(indexes) < 2:
            continue
        claims = [str(recipes[i].sidecar or recipes[i].artifact.path) for i in indexes]
        for i, claim in zip(indexes, claims, strict=True):
            others = ", ".join(c for c in claims if c != claim)
            name = parse_name(recipes[i].model).display_shortest()
            message = f"model name {name} is also claimed by {others}: neither is created"
            fix = "give each its own name with the model key of its sidecar"
            found[i] = [Problem(claim, message, fix, key="model")]
    return found


def build_recipes(
    artifacts: Sequence[Artifact],
    specs: Mapping[Path, SidecarSpec | list[Problem]],
    *,
    drop_dir: Path,
    default_tag: str,
) -> dict[Path, Recipe | list[Problem]]:
    """A recipe or the problems for every artifact (keyed by ``artifact.path``), conflicts
    applied. ``specs`` maps ``artifact.path`` to what ``sidecar.load_spec`` returned.

    An adapter without a sidecar of its own that another artifact's sidecar uses has no entry:
    it is made as part of that model.
    """
    results: dict[Path, Recipe | list[Problem]] = {}
    known = _index(artifacts)
    for artifact in artifacts:
        spec = specs.get(artifact.path)
        if isinstance(spec, list):
            results[artifact.path] = spec
            continue
        results[artifact.path] = _build(artifact, spec, drop_dir, default_tag, known)
    for artifact in artifacts:
        if not artifact.is_adapter or artifact.sidecar is not None:
            continue
        mine = {_norm(f.path) for f in artifact.files}
        for path, result in results.items():
            theirs = result.adapters.values() if isinstance(result, Recipe) else ()
            if path != artifact.path and mine and mine <= {_norm(p) for p in theirs}:
                results.pop(artifact.path, None)
                break
    recipes = [r for r in results.values() if isinstance(r, Recipe)]
    for index, problems in _conflicts(recipes).items():
        results[recipes[index].artifact.path] = problems
    recipes = [r for r in results.values() if isinstance(r, Recipe)]
    for index, problems in find_cycles(recipes).items():
        results[recipes[index].artifact.path] = problems
    return results
