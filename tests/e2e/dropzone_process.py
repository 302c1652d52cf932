"""The real ``dropzone`` process under test: started with an environment, its JSON log events
read line by line by a thread into a list the test waits on.

Waiting is always on a condition with a deadline (``wait_for``); nothing here sleeps a fixed
time. ``mark()`` returns a position in the event list so a test can ask "what happened since".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Event = dict[str, Any]

STOP_SECONDS = 5.0  # systemd's stop timeout is 90 s; an operator expects a few seconds at most


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """os.environ without anything that would configure dropzone behind the test's back."""
    dropped = ("DROPZONE_", "OLLAMA_", "NOTIFY_SOCKET", "WATCHDOG_", "STATE_DIRECTORY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class DropzoneProcess:
    """``python -m dropzone <command> …`` with stdout parsed as JSON events."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        stderr_path: Path,
        program: Sequence[str] = (sys.executable, "-m", "dropzone"),
        cwd: Path | None = None,
    ) -> None:
        self.args = list(args)
        self._stderr_path = stderr_path
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._other: list[str] = []  # stdout lines that are not JSON events
        self._not_utf8: list[bytes] = []  # stdout lines jq would refuse (issue 13)
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [*program, *self.args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, name="dropzone-stdout", daemon=True)
        self._reader.start()

    # -- reading -------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout as out:
            for raw in out:
                try:
                    line = raw.decode("utf-8").rstrip("\n")
                except UnicodeDecodeError:
                    with self._cond:
                        self._not_utf8.append(raw)
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    event = None
                with self._cond:
                    if isinstance(event, dict) and "event" in event:
                        self._events.append(event)
                    else:
                        self._other.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    @property
    def not_json(self) -> list[str]:
        """Stdout lines that are not JSON events (none, with ``log_format = "json"``)."""
        with self._cond:
            return list(self._other)

    @property
    def not_utf8(self) -> list[bytes]:
        """Raw stdout lines that are not valid UTF-8 (none, ever: the journal is read by jq)."""
        with self._cond:
            return list(self._not_utf8)

    def mark(self) -> int:
        """A position in the event list: pass it as ``since`` to look only at later events."""
        with self._cond:
            return len(self._events)

    def find(self, name: str, *, since: int = 0, **fields: Any) -> list[Event]:
        """Events called ``name`` (after position ``since``) whose fields equal ``fields``."""
        with self._cond:
            return [e for e in self._events[since:] if _matches(e, name, fields)]

    def wait_for(self, name: str, *, since: int = 0, timeout: float = 15.0, **fields: Any) -> Event:
        """The first event called ``name`` after ``since`` matching ``fields``; fails (with the
        log so far) if none arrives within ``timeout`` or the process ends first."""
        return self.wait_until(
            lambda events: next((e for e in events[since:] if _matches(e, name, fields)), None),
            timeout=timeout,
            what=f"event {name} {fields or ''}",
        )

    def wait_until(
        self, found: Callable[[list[Event]], Any], *, timeout: float = 15.0, what: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = found(self._events)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(remaining, 0.1))
        raise AssertionError(
            f"{what} did not come within {timeout} s"
            f" (exit status {self.proc.poll()})\n{self.transcript()}"
        )

    def output(self) -> list[str]:
        """Everything the process wrote: each stdout line (events as JSON), then stderr's."""
        with self._cond:
            lines = [json.dumps(e) for e in self._events] + list(self._other)
        self._stderr.flush()
        return lines + self._stderr_path.read_text(errors="replace").splitlines()

    def transcript(self, last: int = 60) -> str:
        """The last events and stderr, for failure messages."""
        with self._cond:
            lines = [json.dumps(e) for e in self._events[-last:]] + self._other[-10:]
        self._stderr.flush()
        err = self._stderr_path.read_text(errors="replace")[-3000:]
        return "\n".join(lines) + ("\n--- stderr ---\n" + err if err.strip() else "")

    # -- controlling ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def rescan(self, timeout: float = 10.0) -> int:
        """SIGHUP, then wait for the full rescan it triggers; returns the mark before it.

        Work a rescan starts is announced (``artifact.ready``) before its ``scan.done``, so
        ``find("artifact.ready", since=mark)`` afterwards tells whether it started any."""
        since = self.mark()
        self.send(signal.SIGHUP)
        self.wait_for("scan.done", since=since, timeout=timeout)
        return since

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dropzone did not exit within {timeout} s\n{self.transcript()}"
            ) from None
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM; the exit status, which must come within ``timeout`` seconds."""
        if self.running:
            self.send(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as after a power cut or an OOM kill."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=5)

    def close(self) -> None:
        self.kill()
        self._stderr.close()


def _matches(event: Event, name: str, fields: Mapping[str, Any]) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())
