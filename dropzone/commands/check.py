"""``dropzone check PATH…``: validate artifacts and sidecars offline and print the exact
``/api/create`` request(s) dropzone would send, or the errors. Exit 0 valid, 1 invalid.

A PATH may be an artifact (a GGUF, a shard, a safetensors folder), a sidecar, or a folder
holding artifacts (a whole drop folder). Sidecar paths resolve inside the folder being checked,
or inside ``--drop-dir`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropzone.commands import _common
from dropzone.errors import DropzoneError, OllamaError, Problem
from dropzone.fs.bytenames import shown, shown_in
from dropzone.imports.hashing import hash_file
from dropzone.imports.precheck import quantize_refusal
from dropzone.ollama.client import OllamaClient, make_http_client
from dropzone.recipes.recipe import build_recipes
from dropzone.recipes.sidecar import SidecarSpec, load_spec
from dropzone.recipes.types import Recipe
from dropzone.scan.scanner import ScannedArtifact, Status, list_tree, scan

_FOLDER_MARKERS = ("config.json", "adapter_config.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="artifacts, sidecars or folders")
    parser.add_argument("--json", action="store_true", help="one JSON array on stdout")
    parser.add_argument("--no-hash", action="store_true", help="do not compute digests")
    parser.add_argument(
        "--drop-dir",
        help="the drop folder sidecar paths must stay inside (default: drop_dir from the"
        " configuration for paths inside it, else the folder being checked)",
    )
    parser.add_argument(
        "--default-tag", help="tag for derived names (default: default_tag from the configuration)"
    )
    parser.add_argument(
        "--hosts",
        nargs="+",
        metavar="URL",
        help="online: ask these Ollama hosts (/api/show) whether each recipe's base is there",
    )


@dataclass
class Finding:
    artifact: str
    sidecar: str | None
    model: str | None = None
    request: dict[str, Any] | None = None
    errors: list[Problem] = field(default_factory=list)
    hosts: dict[str, str] | None = None  # with --hosts: host → "present", "missing", …

    def as_json(self) -> dict[str, Any]:
        extra = {"hosts": self.hosts} if self.hosts is not None else {}
        return {
            **extra,
            "model": self.model,
            "artifact": self.artifact,
            "sidecar": self.sidecar,
            "request": self.request,
            "errors": [
                {"path": p.path, "line": p.line, "message": p.detail()} for p in self.errors
            ],
        }


def _root_and_selection(path: Path) -> tuple[Path, Path | None]:
    """The folder to scan, and the path inside it to report on (None: everything)."""
    if path.is_dir():
        if any((path / marker).is_file() for marker in _FOLDER_MARKERS):
            return path.parent, path
        return path, None
    return path.parent, path


def _selected(sa: ScannedArtifact, target: Path | None) -> bool:
    if target is None:
        return True
    art = sa.artifact
    paths = {art.path, *(f.path for f in art.files)}
    if art.sidecar is not None:
        paths.add(art.sidecar)
    return any(os.path.samefile(p, target) for p in paths if p.exists())


def _shown(path: Path, root: Path, given: Path) -> str:
    """As given on the command line, or relative to it."""
    if given.is_absolute():
        return str(path)
    return os.path.relpath(path)


def check_path(
    given: Path, *, drop_dir: Path | None, default_tag: str, hash_files: bool
) -> list[Finding]:
    if not given.exists():
        fix = "check the path; dropzone check takes artifacts, sidecars or folders"
        return [
            Finding(str(given), None, errors=[Problem(str(given), "no such file or folder", fix)])
        ]
    root, target = _root_and_selection(given)
    result = scan(root, list_tree(root))
    chosen = [sa for sa in result.artifacts if _selected(sa, target)]
    if not chosen:
        fix = "drop a *.gguf file or a folder with config.json and *.safetensors"
        message = "no artifact here" if target is None else "not part of any artifact"
        return [Finding(str(given), None, errors=[Problem(str(given), message, fix)])]
    usable = [sa for sa in result.artifacts if sa.status is Status.COMPLETE]
    specs: dict[Path, SidecarSpec | list[Problem]] = {
        sa.artifact.path: load_spec(sa.artifact, drop_dir=drop_dir or root) for sa in usable
    }
    recipes = build_recipes(
        [sa.artifact for sa in usable], specs, drop_dir=drop_dir or root, default_tag=default_tag
    )
    # As the daemon does: hash each file at the size the scan judged complete.
    seen = {f.path: f.seen_size for sa in result.artifacts for f in sa.artifact.files}
    findings = []
    for sa in chosen:
        art = sa.artifact
        finding = Finding(
            _shown(art.path, root, given),
            _shown(art.sidecar, root, given) if art.sidecar else None,
        )
        findings.append(finding)
        if sa.status is Status.INVALID:
            finding.errors.extend(sa.problems)
        elif sa.status is Status.INCOMPLETE:
            finding.errors.append(_incomplete(sa))
        elif art.path not in recipes:
            continue  # an adapter that another artifact's sidecar uses: reported there
        else:
            outcome = recipes[art.path]
            if isinstance(outcome, list):
                finding.errors.extend(outcome)
            else:
                finding.model = outcome.model
                finding.request = _request(outcome, hash_files, finding, seen)
    return [f for f in findings if f.errors or f.request is not None]


def _incomplete(sa: ScannedArtifact) -> Problem:
    expected = sa.expected
    have = f"{sa.have_bytes} of {expected} bytes" if expected else f"{sa.have_bytes} bytes"
    missing = f"; missing {', '.join(sa.missing)}" if sa.missing else ""
    return Problem(
        str(sa.artifact.path),
        f"incomplete: {have} present{missing}",
        "wait for the copy to finish, or copy the file again",
    )


def _request(
    recipe: Recipe, hash_files: bool, finding: Finding, seen: Mapping[Path, int | None]
) -> dict[str, Any] | None:
    digests: dict[Path, str] = {}
    for path in recipe.blob_paths():
        if not hash_files:
            digests[path] = f"sha256:<not computed: {path.name}>"
            continue
        try:
            digests[path] = hash_file(path, expected_size=seen.get(path)).digest
        except (OSError, DropzoneError) as exc:
            finding.errors.append(Problem(str(path), f"cannot hash: {exc}", "check the file"))
            return None
    return recipe.request(digests)


def run_check(
    paths: Sequence[str], *, drop_dir: str | None, default_tag: str, hash_files: bool
) -> list[Finding]:
    findings: list[Finding] = []
    for text in paths:
        findings.extend(
            check_path(
                Path(text),
                drop_dir=Path(drop_dir) if drop_dir else None,
                default_tag=default_tag,
                hash_files=hash_files,
            )
        )
    return findings


def execute(args: argparse.Namespace) -> int:
    # The daemon's own settings (issue 15): a model named here is the model it would create.
    settings = _common.load(args)
    if isinstance(settings, int):
        return settings
    print(f"dropzone check: {_common.describe_sources(args)}", file=sys.stderr)
    findings = run_check(
        args.paths,
        drop_dir=args.drop_dir or _configured_drop(args.paths, settings.drop_dir),
        default_tag=args.default_tag or settings.default_tag,
        hash_files=not args.no_hash,
    )
    if args.hosts:
        for finding in findings:
            if finding.request is not None and isinstance(finding.request.get("from"), str):
                ask_hosts(finding, args.hosts)
    if args.json:
        # A name that is not UTF-8 is shown escaped: the output is always valid UTF-8 (issue 13).
        out = shown_in([f.as_json() for f in findings])
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        for f in findings:
            _print_text(f)
    return 1 if any(f.errors for f in findings) else 0


def _configured_drop(paths: Sequence[str], drop_dir: Path) -> str | None:
    """The configured drop folder when every path lies inside it: sidecar paths are then
    confined as the daemon confines them. A staging folder elsewhere is its own root."""
    try:
        inside = all(Path(p).resolve().is_relative_to(drop_dir.resolve()) for p in paths)
    except OSError:
        return None
    return str(drop_dir) if inside else None


def _print_text(f: Finding) -> None:
    where = shown(f.artifact + (f" (sidecar {f.sidecar})" if f.sidecar else ""))
    if f.errors:
        print(f"INVALID {where}")
        for p in f.errors:
            print(f"  {shown(p.describe())}")
        return
    print(f"OK {f.model} from {where}")
    print("  POST /api/create " + json.dumps(f.request, ensure_ascii=False))
    base = (f.request or {}).get("from")
    for host, found in (f.hosts or {}).items():
        if found == "missing":
            print(
                f"  base {base} missing on {host}: Ollama pulls it there inside the create;"
                f" fix if it cannot: ollama pull {base} on that host, or name a local model"
            )
        elif found != "present":
            print(f"  base {base} on {host}: {found}")


def ask_hosts(finding: Finding, urls: Sequence[str]) -> None:
    """The opt-in online part: is the base on each host, and would the create certainly fail?"""
    request = finding.request or {}
    base = str(request["from"])
    finding.hosts = {}
    with make_http_client() as http:
        for url in urls:
            client = OllamaClient(url, http)
            try:
                show = client.show(base)
            except OllamaError as exc:
                finding.hosts[url] = "missing" if exc.status == 404 else f"unreachable: {exc}"
                continue
            finding.hosts[url] = "present"
            refusal = quantize_refusal(show, base) if request.get("quantize") else None
            if refusal is not None:
                finding.errors.append(
                    Problem(finding.sidecar or finding.artifact, f"{url}: {refusal}")
                )
