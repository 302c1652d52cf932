"""Post-import hooks (issue 16): ``on_imported`` and ``on_refused`` commands.

``notice`` (pure) decides which events are worth telling: ``artifact.done`` with result
``done`` (imported) or ``failed``, and ``artifact.refused`` (refused, with the fix). The same
notice is what the webhook posts.

``HookRunner`` runs the command of a notice on one worker thread, never on the thread that
logged the event: ``offer`` only puts it in a bounded queue (a full queue drops it with
``hook.dropped``). The command runs as an argv list without a shell, in its own process group,
with a small clean environment (PATH, LANG and the ``DROPZONE_*`` fields of the event; never
the daemon's own environment, whose EnvironmentFile holds tokens), stdin from /dev/null, its
output (stdout and stderr) kept to the last ``OUTPUT_BYTES`` in a temporary file, and a
timeout after which the whole group is killed. What happened is one event, ``hook.done`` or
``hook.failed``; nothing a hook does changes the import's outcome.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("dropzone.hooks")

QUEUE_SIZE = 100
OUTPUT_BYTES = 4096
# How long a stopping daemon waits for queued hooks: a stop completes within seconds (§10).
DRAIN_SECONDS = 3.0
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_FIELDS = {  # notice field → environment variable
    "model": "DROPZONE_MODEL",
    "host": "DROPZONE_HOST",
    "path": "DROPZONE_ARTIFACT",
    "result": "DROPZONE_RESULT",
    "error": "DROPZONE_REASON",
    "fix": "DROPZONE_FIX",
    "status": "DROPZONE_STATUS",
    "timestamp": "DROPZONE_TIMESTAMP",
}


@dataclass(frozen=True)
class Notice:
    kind: str  # "imported" or "refused"
    fields: Mapping[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The ``DROPZONE_*`` variables a hook sees."""
        env = {"DROPZONE_EVENT": self.kind}
        for name, var in _FIELDS.items():
            if self.fields.get(name) is not None:
                env[var] = str(self.fields[name])
        env["DROPZONE_DIGESTS"] = " ".join(str(d) for d in self.fields.get("digests") or ())
        return env

    def payload(self) -> dict[str, Any]:
        """The JSON the webhook posts: the event's own fields plus ``kind``."""
        return {"kind": self.kind, **self.fields}


def notice(event: Mapping[str, Any]) -> Notice | None:
    """The notice an event makes, or None for the events nobody is told about."""
    name = event.get("event")
    if name == "artifact.done" and event.get("result") in ("done", "failed"):
        kind = "imported" if event["result"] == "done" else "refused"
    elif name == "artifact.refused":
        kind = "refused"
    else:
        return None
    keep = ("event", "timestamp", "path", "model", "host", "result", "error", "fix", "status",
            "digests")  # fmt: skip
    return Notice(kind, {k: event[k] for k in keep if event.get(k) is not None})


class HookRunner:
    def __init__(
        self,
        *,
        on_imported: Sequence[str],
        on_refused: Sequence[str],
        timeout: float,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._argv = {"imported": list(on_imported), "refused": list(on_refused)}
        self._timeout = timeout
        self._queue: queue.Queue[Notice | None] = queue.Queue(queue_size)
        self._closed = threading.Event()
        self._current: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._work, name="hooks", daemon=True)
        self._thread.start()

    def offer(self, event: Mapping[str, Any]) -> None:
        """Called on the logging thread: enqueue the hook this event runs, never wait."""
        n = notice(event)
        if n is None or not self._argv[n.kind] or self._closed.is_set():
            return
        try:
            self._queue.put_nowait(n)
        except queue.Full:
            log.warning(
                "hook.dropped",
                hook=_hook_name(n),
                model=n.fields.get("model"),
                host=n.fields.get("host"),
                error=f"{self._queue.maxsize} hooks already queued; the hook is slower than"
                " the imports",
            )

    def close(self, grace: float = DRAIN_SECONDS) -> None:
        """Stop taking hooks; let queued ones run for ``grace`` seconds, then kill the rest."""
        self._closed.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(grace)
        if self._thread.is_alive():
            _kill(self._current)
            self._thread.join(1.0)

    def _work(self) -> None:
        while True:
            try:
                n = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if n is None:
                if self._queue.empty():
                    return
                continue
            self._run(n)

    def _run(self, n: Notice) -> None:
        argv = self._argv[n.kind]
        ctx = {"hook": _hook_name(n), "command": argv[0], "model": n.fields.get("model"),
               "host": n.fields.get("host"), "path": n.fields.get("path")}  # fmt: skip
        env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", **n.env()}
        started = time.monotonic()
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(  # noqa: S603 - an argv list from the operator's config
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd="/",
                    start_new_session=True,  # its own group: a timeout kills its children too
                    close_fds=True,
                )
            except OSError as exc:
                log.warning("hook.failed", **ctx, error=f"cannot run: {exc.strerror or exc}")
                return
            self._current = proc
            try:
                status: int | None = proc.wait(self._timeout)
                error = None if status == 0 else f"exit status {status}"
            except subprocess.TimeoutExpired:
                _kill(proc)
                status = None
                error = f"timed out after {self._timeout:g} s; killed"
            finally:
                self._current = None
            output = _tail(out)
        seconds = round(time.monotonic() - started, 3)
        if error is None:
            log.info("hook.done", **ctx, exit_status=0, seconds=seconds, output=output)
        else:
            log.warning(
                "hook.failed",
                **ctx,
                exit_status=status,
                seconds=seconds,
                error=error,
                output=output,
            )


def _hook_name(n: Notice) -> str:
    return "on_imported" if n.kind == "imported" else "on_refused"


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1.0)


def _tail(f: Any) -> str:
    """The last ``OUTPUT_BYTES`` a hook wrote, as text (a hook may print gigabytes)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - OUTPUT_BYTES))
    text: str = f.read().decode("utf-8", "replace")
    return ("…" if size > OUTPUT_BYTES else "") + text
