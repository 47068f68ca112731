"""The in-memory test harness behind :meth:`Flow.test <wearwatch.runtime.dataflow.Flow.test>`.

No second implementation: the flow's compiled stage operators run in the ordinary
:class:`~wearwatch.runtime.worker.Worker`, on a :class:`~wearwatch.bus.memory.MemoryLog`, one
stage after the other until each is idle. Results are those of the embedded log or Kafka (the
contract tests check it): windows and lateness do not depend on how records interleave, and
the in-memory run is deterministic anyway (logical clock, fixed poll order).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from wearwatch.bus.base import OutRecord, Record, partition_for
from wearwatch.bus.memory import MemoryLog
from wearwatch.events import Event, encode
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context, PartitionState
from wearwatch.runtime.worker import Worker, WorkerOptions

if TYPE_CHECKING:
    from wearwatch.runtime.dataflow import Flow

#: Events per input record (per partition, consecutive events only).
RECORD_EVENTS = 500


class FlowOutput(dict[str, list[Any]]):
    """``{topic: [events]}`` for every sink topic and ``dead_letters``; ``counters`` per stage
    (consumer group) and ``totals`` over all stages."""

    def __init__(self, outputs: dict[str, list[Any]], counters: dict[str, Counter[str]]):
        super().__init__(outputs)
        self.counters = counters
        self.totals: Counter[str] = Counter()
        for stage in counters.values():
            self.totals.update(stage)


def run_in_memory(
    flow: Flow,
    events: Iterable[Any],
    *,
    partitions: int = 1,
    watermark_delay_s: float = 5.0,
    key: Callable[[Any], Any] | None = None,
    options: WorkerOptions | None = None,
) -> FlowOutput:
    """Run every stage of ``flow`` over ``events`` on a fresh in-memory log; ``key(event)``
    is the record key its producers use (default: the source's ``partitioned_by``)."""
    from wearwatch.runtime.dataflow import event_union, stage_group

    source = flow.source
    if key is None and source.partitioned_by is not None:
        key = functools.partial(_attribute, source.partitioned_by)
    if key is None and partitions > 1:
        raise ValueError(
            f"Flow.test: partitions={partitions} but source {source.topic!r} has no "
            "partitioned_by and no key= was given: every record would go to partition 0, and "
            "the empty partitions would hold windows after a repartition open"
        )
    log = MemoryLog(default_partitions=partitions)
    log.create_topic(source.topic, source.partitions or partitions)
    for topic in flow.repartition_topics():
        log.create_topic(topic, partitions)
    log.produce(_records(source.topic, key, partitions, events))
    opts = options or WorkerOptions(
        watermark_delay_s=watermark_delay_s,
        checkpoint_interval_s=float("inf"),  # one checkpoint at the end of each stage
        poll_timeout_s=0.0,
        exit_when_idle=True,
        checkpoint_key="in-memory harness",
    )
    counters: dict[str, Counter[str]] = {}
    for k, operator in enumerate(flow.compile(log.partitions)):
        group = stage_group(flow.name, k)
        counters[group] = Worker(log, operator, group, opts).run(install_signals=False)
    decoder = msgspec.json.Decoder(event_union())
    outputs = {}
    for topic in [*flow.sink_topics(), DEAD_LETTER_TOPIC]:
        log.create_topic(topic)
        outputs[topic] = [decoder.decode(r.value) for r in log.appended(topic)]
    return FlowOutput(outputs, counters)


def _attribute(name: str, event: Any) -> Any:
    return getattr(event, name)


def _records(
    topic: str, key_of: Callable[[Any], Any] | None, partitions: int, events: Iterable[Any]
) -> list[OutRecord]:
    """Events keyed as the source's producers key them, consecutive events of a partition
    packed into one record (a JSON array, as producers batch); ``bytes`` as records of their
    own."""
    out: list[OutRecord] = []
    pending: dict[int, list[Event]] = {}

    def flush(partition: int) -> None:
        batch = pending.pop(partition, [])
        if batch:
            out.append(OutRecord(topic, None, encode(batch), "", partition))

    for event in events:
        if isinstance(event, bytes | bytearray):
            for partition in sorted(pending):
                flush(partition)
            out.append(OutRecord(topic, None, bytes(event)))
            continue
        if not isinstance(event, Event):
            raise TypeError(f"Flow.test: expected events or bytes, got {type(event).__name__}")
        key = None if key_of is None else str(key_of(event)).encode()
        partition = partition_for(key, partitions)
        batch = pending.setdefault(partition, [])
        batch.append(event)
        if len(batch) >= RECORD_EVENTS:
            flush(partition)
    for partition in sorted(pending):
        flush(partition)
    return out


class StreamRunner:
    """A single-stage flow driven in process, record by record, with no log behind it: the
    worker's own record path (decoding, validation, watermarks, timers, the operator) on one
    partition, minus the consumer and the checkpoints. For long virtual-time runs (a month of
    a fleet, training sets, replays) whose inputs and outputs should not pile up in a log:
    :meth:`feed` takes records and returns the events they caused, per sink topic.

    Outputs equal those of the worker on a log holding the same records in one partition.
    """

    def __init__(self, flow: Flow, *, watermark_delay_s: float = 5.0) -> None:
        from wearwatch.runtime.dataflow import event_union

        stages = flow.compile(1)
        if len(stages) != 1:
            raise ValueError(
                f"StreamRunner: flow {flow.name!r} has {len(stages)} stages; it runs one"
            )
        self.stage = stages[0]
        options = WorkerOptions(watermark_delay_s=watermark_delay_s, checkpoint_key="in process")
        self._worker = Worker(MemoryLog(), self.stage, flow.name, options)
        self.state = PartitionState()
        self._worker.states[0] = self.state
        self._worker.contexts[0] = Context(0, self.state, self._worker.outputs)
        self._decoder = msgspec.json.Decoder(event_union())
        self._offset = 0

    def feed(self, values: Iterable[bytes]) -> dict[str, list[Any]]:
        """Process records (their bytes: JSON events or columnar batches) in order; the events
        emitted meanwhile, ``{topic: [events]}`` (dead letters under their topic)."""
        for value in values:
            record = Record(self.stage.input_topic, 0, self._offset, None, value, 0, "")
            self._offset += 1
            self._worker._process_record(record)
        outputs: dict[str, list[Any]] = {}
        decode = self._decoder.decode
        for emitted in self._worker.outputs:
            outputs.setdefault(emitted.topic, []).append(decode(emitted.value))
        self._worker.outputs.clear()
        return outputs

    @property
    def counters(self) -> Counter[str]:
        return self.state.counters
