"""Run the platform's processes together: start them, restart a crashed one, stop them all.

Each child is a ``wearwatch …`` subprocess in its own session (so its own process group): a
Ctrl-C in the terminal reaches the supervisor only, which then stops every child the same way —
SIGTERM to its group (workers take a final checkpoint, twins write their position), a wait, and
SIGKILL for whatever is still running after ``stop_timeout_s``. A child that exits unasked is
restarted after a backoff that doubles per crash (``backoff_s`` … ``max_backoff_s``) and the
supervisor says so in one line; one that crashes ``max_crashes`` times within ``crash_window_s``
is given up (also said), so a child that cannot start does not spin. Output of a child goes to
``<log_dir>/<name>.log``.

>>> import sys, tempfile
>>> from pathlib import Path
>>> lines = []
>>> sup = Supervisor([ChildSpec("hello", [sys.executable, "-c", "print('hi')"], restart=False)],
...                  log_dir=Path(tempfile.mkdtemp()), report=lines.append)
>>> sup.start(); sup.wait_idle(10.0); sup.stop()
True
>>> lines
['hello finished']
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its name (also its log file's), command line and environment
    (added to the supervisor's own). ``restart``: start it again when it exits unasked, with
    any exit code (a long-running component that stops is a fault); False: a one-shot job
    (e.g. training), reported when it ends and never restarted. ``nice``: a lower CPU
    priority (a background job must not slow the live components)."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = True
    nice: int = 0


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    starts: int = 0
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    gave_up: bool = False
    exit_code: int | None = None


class Supervisor:
    """Start, watch and stop a set of child processes (see the module docstring).

    Not thread-safe except :meth:`request_stop`, which a signal handler may call.
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        log_dir: Path,
        report: Callable[[str], None] = print,
        backoff_s: float = 1.0,
        max_backoff_s: float = 15.0,
        max_crashes: int = 5,
        crash_window_s: float = 60.0,
        stop_timeout_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"names={names!r}: every child needs its own name")
        self._children = {s.name: _Child(s) for s in specs}
        self.log_dir = log_dir
        self.report = report
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_crashes = max_crashes
        self.crash_window_s = crash_window_s
        self.stop_timeout_s = stop_timeout_s
        self.clock = clock
        self.stopping = threading.Event()

    # --- queries ---------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._children)

    def pid(self, name: str) -> int | None:
        """The running process id of child ``name`` (None while it is not running)."""
        proc = self._children[name].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def starts(self, name: str) -> int:
        """How many times child ``name`` has been started."""
        return self._children[name].starts

    def finished(self, name: str) -> int | None:
        """The exit code of one-shot child ``name`` once it has ended (None: not yet)."""
        return self._children[name].exit_code

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # --- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every child."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self._children.values():
            self._spawn(child)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler or another thread)."""
        self.stopping.set()

    def run(self, duration_s: float | None = None, tick: Callable[[], None] | None = None) -> None:
        """Watch the children until :meth:`request_stop` or ``duration_s`` of wall time, then
        stop them all. ``tick`` is called about twice a second (the caller's own checks)."""
        deadline = None if duration_s is None else self.clock() + duration_s
        while not self.stopping.is_set():
            self.poll()
            if tick is not None:
                tick()
            if deadline is not None and self.clock() >= deadline:
                self.report(f"duration reached ({duration_s:g} s); stopping")
                break
            self.stopping.wait(0.5)
        self.stop()

    def poll(self) -> None:
        """Notice children that exited; restart those that are due."""
        now = self.clock()
        for child in self._children.values():
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                self._exited(child, proc.returncode, now)
            due = child.restart_at is not None and now >= child.restart_at
            if due and not self.stopping.is_set():
                child.restart_at = None
                self._spawn(child)

    def restart(self, name: str, why: str) -> None:
        """Stop child ``name`` cleanly (SIGTERM, then SIGKILL after the timeout) and start it
        again at once: not a crash (e.g. a new model to load)."""
        child = self._children[name]
        self.report(f"{name}: restarting ({why})")
        if child.proc is not None:
            self._terminate([child])
        child.restart_at = None
        child.gave_up, child.exit_code = False, None
        self._spawn(child)

    def stop(self) -> None:
        """SIGTERM every running child's process group, wait up to ``stop_timeout_s``, SIGKILL
        what is left; returns once every child has exited."""
        self.stopping.set()
        running = [c for c in self._children.values() if c.proc is not None]
        self._terminate(running)
        for child in self._children.values():
            child.restart_at = None
            if child.log is not None:
                child.log.close()
                child.log = None

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no child is running or due to restart (for tests and one-shot runs)."""
        deadline = self.clock() + timeout_s
        while self.clock() < deadline:
            self.poll()
            busy = any(
                (c.proc is not None and c.proc.poll() is None) or c.restart_at is not None
                for c in self._children.values()
            )
            if not busy:
                return True
            time.sleep(0.05)
        return False

    # --- internals -------------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        if child.log is None:
            child.log = self.log_path(spec.name).open("ab")
        child.starts += 1
        child.log.write(f"--- start {child.starts}: {' '.join(spec.argv)}\n".encode())
        child.log.flush()
        child.proc = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=child.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            start_new_session=True,  # its own process group: Ctrl-C reaches the supervisor only
        )
        if spec.nice:  # threads it starts later inherit it
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, child.proc.pid, spec.nice)

    def _exited(self, child: _Child, code: int, now: float) -> None:
        name = child.spec.name
        child.proc = None
        if self.stopping.is_set():
            return
        if not child.spec.restart:
            child.exit_code = code
            ended = "finished" if code == 0 else f"failed with {code} (see {self.log_path(name)})"
            self.report(f"{name} {ended}")
            return
        child.crashes.append(now)
        while child.crashes and child.crashes[0] < now - self.crash_window_s:
            child.crashes.popleft()
        if len(child.crashes) >= self.max_crashes:
            child.gave_up = True
            self.report(
                f"{name} exited with {code}; it crashed {len(child.crashes)} times within "
                f"{self.crash_window_s:g} s: giving up on it (see {self.log_path(name)})"
            )
            return
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (len(child.crashes) - 1))
        child.restart_at = now + delay
        self.report(f"{name} exited with {code}; restarting ({child.starts}) in {delay:g} s")

    def _terminate(self, children: list[_Child]) -> None:
        for child in children:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = self.clock() + self.stop_timeout_s
        for child in children:
            proc = child.proc
            if proc is None:
                continue
            try:
                proc.wait(max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                self.report(
                    f"{child.spec.name} did not stop within {self.stop_timeout_s:g} s; killing it"
                )
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            child.proc = None


def _signal_group(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
