"""What a running worker process reports in its status file (``wearwatch worker --status-dir``).

One file per process (:mod:`wearwatch.runtime.status`), however many stages the process runs:
a flow's stages are aggregated — counters summed, lag per input topic (the source and each
repartition topic), the slowest latest checkpoint, the checkpoints summed, the latest event
time — so the API sees one component per process, as the supervisor starts them.

Each stage's worker calls :meth:`WorkerStatusReporter.on_progress` from its own thread after
each checkpoint interval (about once a second, idle or not: the worker's loop wakes up every
poll timeout). The callback takes a :class:`StageSnapshot` of that worker only — its own
state, read in its own thread, with its own log connection for the end offsets — and the file
is rewritten from the latest snapshots at most every ``every_s``. Wall-clock time here only
stamps the reports; it never reaches processing.

>>> import tempfile
>>> from collections import Counter
>>> from pathlib import Path
>>> from wearwatch.runtime.status import read_statuses
>>> d = Path(tempfile.mkdtemp())
>>> reporter = WorkerStatusReporter(d, "fleet", pid=7, clock=lambda: 100.0)
>>> reporter.record(StageSnapshot("fleet", "fleet.readings", Counter({"in": 5}), 2, 1.5, 3, 60.0))
>>> reporter.record(StageSnapshot("fleet.1", "fleet.1.repartition", Counter({"in": 4}), 0, 2.5, 3,
...                               None))
>>> reporter.stopped()
>>> [status] = read_statuses(d)
>>> status.state, status.counters, status.lag, status.checkpoint_ms, status.checkpoints
('stopped', {'in': 9}, {'fleet.readings': 2, 'fleet.1.repartition': 0}, 2.5, 6)
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wearwatch.bus.base import LogError
from wearwatch.runtime.status import ComponentStatus, write_status
from wearwatch.runtime.worker import Worker


@dataclass(frozen=True)
class StageSnapshot:
    """One worker's figures at one moment (taken in its own thread)."""

    group: str
    topic: str
    counters: Counter[str]
    #: Records behind the input topic's end over the partitions it holds (None: unknown).
    lag: int | None
    checkpoint_ms: float | None
    checkpoints: int
    event_time: float | None
    outage: str = ""

    @classmethod
    def of(cls, worker: Worker) -> StageSnapshot:
        try:
            lag: int | None = worker.lag()
        except LogError:  # the broker is away: the outage says so, the lag is unknown
            lag = None
        outage = worker.outage
        return cls(
            worker.group,
            worker.topic,
            worker.counters(),
            lag,
            worker.last_checkpoint_ms,
            worker.checkpoints,
            worker.event_time(),
            "" if outage is None else f"{outage.what} ({outage.detail})",
        )


class WorkerStatusReporter:
    """Writes ``<directory>/<name>.json`` for one worker process (any number of stages)."""

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        group: str = "",
        info: dict[str, str] | None = None,
        every_s: float = 1.0,
        pid: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.name = name
        self.group = group
        self.info = dict(info or {})
        self.every_s = every_s
        self.pid = os.getpid() if pid is None else pid
        self.clock = clock
        self.started_at = clock()
        self._stages: dict[str, StageSnapshot] = {}
        self._lock = threading.Lock()
        self._written = float("-inf")
        # A bad name fails here, before any worker starts.
        self._write("starting")
        self._written = float("-inf")  # the first progress is reported at once

    def on_progress(self, worker: Worker) -> None:
        """The workers' progress callback: snapshot this worker, write at most every
        ``every_s``."""
        self.record(StageSnapshot.of(worker))

    def record(self, snapshot: StageSnapshot) -> None:
        with self._lock:
            self._stages[snapshot.group] = snapshot
            if self.clock() - self._written >= self.every_s:
                self._write_locked(None)

    def stopped(self) -> None:
        """The final report after a clean exit (the workers' last snapshots follow their final
        checkpoint)."""
        self._write("stopped")

    def failed(self, detail: str) -> None:
        self._write("failed", detail)

    def _write(self, state: str, detail: str = "") -> None:
        with self._lock:
            self._write_locked(state, detail)

    def _write_locked(self, state: str | None, detail: str = "") -> None:
        stages = [self._stages[g] for g in sorted(self._stages)]
        counters: Counter[str] = Counter()
        lag: dict[str, int] = {}
        for stage in stages:
            counters.update(stage.counters)
            if stage.lag is not None:
                lag[stage.topic] = lag.get(stage.topic, 0) + stage.lag
        outages = [s.outage for s in stages if s.outage]
        if state is None:
            state = "outage" if outages else "running"
            detail = "; ".join(outages)
        timings = [s.checkpoint_ms for s in stages if s.checkpoint_ms is not None]
        times = [s.event_time for s in stages if s.event_time is not None]
        now = self.clock()
        write_status(
            self.directory,
            ComponentStatus(
                name=self.name,
                kind="worker",
                pid=self.pid,
                updated_at=now,
                started_at=self.started_at,
                state=state,  # type: ignore[arg-type]
                group=self.group,
                counters={k: int(v) for k, v in sorted(counters.items())},
                lag=lag,
                checkpoint_ms=max(timings) if timings else None,
                checkpoints=sum(s.checkpoints for s in stages),
                event_time=max(times) if times else None,
                info=self.info,
                detail=detail,
            ),
        )
        self._written = now
