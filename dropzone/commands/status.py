"""``dropzone status``: what the state store knows, one row per artifact and host.

The store is opened read-only, so this works beside a running daemon (WAL lets a reader see
the last committed state while the daemon writes), and for any member of the service's group
(``readonly_store``): exit 0 whether or not this user could write the store; 2 only when it
cannot read it (one line naming the fix) or the configuration is bad. Artifacts without host
rows (pending or refused before any host was tried) get a row of their own with their note.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from dropzone.commands import _common
from dropzone.errors import ConfigError
from dropzone.fs.bytenames import shown
from dropzone.store.readonly import access_problem
from dropzone.store.state import DB_NAME, ArtifactRow, HostRow, HostState, StateStore, settled_state

SHORT_DIGEST = 12
_COLUMNS = (
    "PATH",
    "HOST",
    "STATE",
    "MODEL",
    "DIGESTS",
    "ATTEMPTS",
    "NEXT RETRY",
    "LAST ERROR / NOTE",
)


@dataclass(frozen=True)
class StatusRow:
    path: str  # relative to drop_dir where it lies inside it
    host: str | None  # None: no host has been tried for this artifact
    state: str | None
    model: str | None
    kind: str | None
    digests: dict[str, str]  # file key → full "sha256:<hex>"
    attempts: int
    last_error: str | None
    note: str | None
    next_retry_at: float | None  # seconds since the epoch
    updated_at: float | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")


def execute(args: argparse.Namespace) -> int:
    settings = _common.load(args)
    if isinstance(settings, int):
        return settings
    # A folder this user may not enter: one line with the fix, never a traceback (issue 15).
    problem = access_problem(settings.state_dir, DB_NAME)
    if problem is not None:
        _common.report_config_error(ConfigError([problem]))
        return _common.EXIT_CONFIG
    if not (settings.state_dir / DB_NAME).exists():
        where = settings.state_dir / DB_NAME
        print(
            f"no state store yet at {where}: the daemon creates it when it first starts",
            file=sys.stderr if args.json else sys.stdout,
        )
        if args.json:
            print("[]")
        return 0
    try:
        with StateStore.open(settings.state_dir, readonly=True) as store:
            rows = collect(store.artifacts(), store.rows(), settings.drop_dir)
    except ConfigError as e:
        _common.report_config_error(e)
        return _common.EXIT_CONFIG
    now = time.time()
    if args.json:
        print(json.dumps([as_json(r, now) for r in rows], indent=2))
    elif rows:
        print(render_table(rows, now))
    else:
        print(f"no artifacts recorded yet in {settings.state_dir / DB_NAME}")
    return 0


def collect(
    artifacts: Sequence[ArtifactRow], hosts: Sequence[HostRow], drop_dir: Path
) -> list[StatusRow]:
    """Pure: join artifact rows and host rows; ordered by path, then host."""
    by_path = {a.path: a for a in artifacts}
    rows: list[StatusRow] = []
    tried = set()
    for h in hosts:
        a = by_path.get(h.path)
        tried.add(h.path)
        rows.append(
            StatusRow(
                path=display_path(h.path, drop_dir),
                host=h.host,
                state=state_name(h, a.note if a else None),
                model=h.model or (a.model if a else None),
                kind=a.kind if a else None,
                digests=dict(a.digests) if a else {},
                attempts=h.attempts,
                last_error=h.last_error,
                note=a.note if a else None,
                next_retry_at=h.next_retry_at,
                updated_at=h.updated_at,
            )
        )
    for a in artifacts:
        if a.path not in tried:
            rows.append(
                StatusRow(
                    path=display_path(a.path, drop_dir),
                    host=None,
                    state=_note_state(a.note),
                    model=a.model,
                    kind=a.kind,
                    digests=dict(a.digests),
                    attempts=0,
                    last_error=None,
                    note=a.note,
                    next_retry_at=None,
                    updated_at=a.last_seen,
                )
            )
    rows.sort(key=lambda r: (r.path, r.host or ""))
    return rows


def state_name(h: HostRow, note: str | None = None) -> str:
    """The state machine's names (design §10): a failure with a retry time is ``waiting``,
    one without is ``refused`` (until the files change or ``dropzone retry``). A model made
    from an earlier version whose artifact is pending or refused now says so, not ``done``."""
    if h.state is HostState.DONE and _note_state(note) is not None:
        return str(_note_state(note))
    return str(settled_state(h.state, h.next_retry_at))


def _note_state(note: str | None) -> str | None:
    """An artifact no host has seen yet: ``pending`` or ``refused``, as its note says."""
    if note is None:
        return None
    head = note.split(":", 1)[0]
    return head if head in ("pending", "refused") else None


def display_path(stored: str, drop_dir: Path) -> str:
    """Relative to ``drop_dir`` where it lies inside it; a name that is not UTF-8 escaped."""
    path = Path(stored)
    if path.is_absolute() and path.is_relative_to(drop_dir):
        return shown(path.relative_to(drop_dir).as_posix() or ".")
    return shown(stored)


def as_json(row: StatusRow, now: float) -> dict[str, object]:
    out: dict[str, object] = asdict(row)
    out["next_retry_at"] = _iso(row.next_retry_at)
    out["next_retry_in"] = (
        None if row.next_retry_at is None else max(0, round(row.next_retry_at - now))
    )
    out["updated_at"] = _iso(row.updated_at)
    return out


def render_table(rows: Sequence[StatusRow], now: float) -> str:
    cells = [
        (
            r.path,
            r.host or "-",
            r.state or "-",
            r.model or "-",
            short_digests(r.digests),
            str(r.attempts) if r.host else "-",
            next_retry(r.next_retry_at, now),
            _one_line(r.last_error or r.note or ""),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [_COLUMNS, *cells]) for i in range(len(_COLUMNS))]
    lines = []
    for c in [_COLUMNS, *cells]:
        padded = [c[i].ljust(widths[i]) for i in range(len(c) - 1)] + [c[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def short_digests(digests: dict[str, str]) -> str:
    """The first file's digest, shortened, and how many more there are."""
    if not digests:
        return "-"
    first = digests[sorted(digests)[0]].removeprefix("sha256:")[:SHORT_DIGEST]
    return first if len(digests) == 1 else f"{first} +{len(digests) - 1}"


def next_retry(at: float | None, now: float) -> str:
    """``14:03:12 (in 42 s)`` in local time; a date too when not today; ``(due)`` if past."""
    if at is None:
        return "-"
    when = datetime.fromtimestamp(at).astimezone()
    today = datetime.fromtimestamp(now).astimezone().date()
    shown = when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")
    left = round(at - now)
    return f"{shown} (in {left} s)" if left > 0 else f"{shown} (due)"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _one_line(text: str) -> str:
    return " ".join(text.split())
