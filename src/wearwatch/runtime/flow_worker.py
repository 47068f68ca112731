"""Run every stage of a flow in one process: one worker (and consumer group) per stage.

Each stage's :class:`~wearwatch.runtime.worker.Worker` runs in its own thread with its own
log connection, exactly as it would alone: its own checkpoints, leases and positions, so a
crash anywhere resumes every stage from its own last checkpoint (the repartition topics are
outputs of one stage's checkpoints and inputs of the next's). With ``exit_when_idle`` a stage
stops only once it is caught up *and* every stage before it has stopped, so nothing written
to a repartition topic is left unread.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from wearwatch.bus.base import Log
from wearwatch.runtime.dataflow import Flow, stage_group
from wearwatch.runtime.worker import Worker, WorkerOptions

logger = logging.getLogger(__name__)


class StageWorker(Worker):
    """A worker that counts as idle only once the stages before it have finished."""

    def __init__(self, *args: object, upstream_done: Callable[[], bool], **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.upstream_done = upstream_done

    def _idle(self) -> bool:
        return self.upstream_done() and super()._idle()


@dataclass
class _Stage:
    worker: StageWorker
    thread: threading.Thread | None = None
    counters: Counter[str] | None = None
    error: BaseException | None = None
    done: bool = False


class FlowWorker:
    """Runs ``flow`` against the log ``open_log()`` opens (called once per stage thread)."""

    def __init__(
        self,
        open_log: Callable[[], Log],
        flow: Flow,
        group: str,
        options: WorkerOptions | None = None,
        on_progress: Callable[[Worker], None] | None = None,
    ) -> None:
        self.open_log = open_log
        self.flow = flow
        self.group = group
        self.options = options or WorkerOptions()
        self.on_progress = on_progress
        self.stages: list[_Stage] = []

    def prepare(self, log: Log) -> None:
        """Create the source and repartition topics: a repartition topic gets as many
        partitions as the source (the same parallelism on both sides)."""
        source = self.flow.source
        log.create_topic(source.topic, source.partitions)
        partitions = log.partitions(source.topic)
        if source.partitions is not None and partitions != source.partitions:
            raise ValueError(
                f"topic {source.topic!r} has {partitions} partitions: flow {self.flow.name!r} "
                f"needs {source.partitions} (recreate the topic)"
            )
        for topic in self.flow.repartition_topics():
            log.create_topic(topic, partitions)

    def stop(self, *_: object) -> None:
        for stage in self.stages:
            stage.worker.stop()

    def run(self, install_signals: bool = True) -> Counter[str]:
        """Run until stopped (or, with ``exit_when_idle``, drained); the summed counters."""
        setup = self.open_log()
        try:
            self.prepare(setup)
            operators = self.flow.compile(setup.partitions)
        finally:
            setup.close()
        logs: list[Log] = []
        for k, operator in enumerate(operators):
            log = self.open_log()
            logs.append(log)
            previous = list(self.stages)
            worker = StageWorker(
                log,
                operator,
                stage_group(self.group, k),
                self.options,
                on_progress=self.on_progress,
                upstream_done=lambda previous=previous: all(s.done for s in previous),
            )
            stage = _Stage(worker)
            stage.thread = threading.Thread(
                target=self._run_stage, args=(stage,), name=operator.name, daemon=True
            )
            self.stages.append(stage)
        threads: list[threading.Thread] = []
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        try:
            threads = [stage.thread for stage in self.stages if stage.thread is not None]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # wakes up for signals
        finally:
            self.stop()
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
            for log in logs:
                log.close()
        for stage in self.stages:
            if stage.error is not None:
                raise stage.error
        totals: Counter[str] = Counter()
        for stage in self.stages:
            totals.update(stage.counters or Counter())
        return totals

    def _run_stage(self, stage: _Stage) -> None:
        try:
            stage.counters = stage.worker.run(install_signals=False)
        except BaseException as exc:
            stage.error = exc
            logger.error("stage %s failed: %s", stage.worker.group, exc)
            self.stop()
        finally:
            stage.done = True
