"""Keyed stateful operators and the context they run in.

An operator reads one input topic (which may carry several event types, e.g. both halves of a
join, so their relative order is the log's and a replay sees the same order). Its state lives
per input partition: a keyed store, event-time timers, the watermark and the counters. A
partition's state is checkpointed together with the position it reflects, so a restart (or
another worker taking the partition over) continues exactly where the state left off.

Event time drives everything: the watermark of a partition is the largest event time seen
minus the bounded out-of-orderness, advanced *before* each event is processed, so outputs do
not depend on how records were batched by polls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wearwatch.events import DeadLetter, Event, encode, utc
from wearwatch.runtime.timers import TimerService
from wearwatch.topics import DEAD_LETTERS

DEAD_LETTER_TOPIC = DEAD_LETTERS.name


@dataclass
class PartitionState:
    """Everything a partition's processing depends on; pickled into checkpoints."""

    keyed: dict[str, Any] = field(default_factory=dict)
    timers: TimerService = field(default_factory=TimerService)
    watermark: float = float("-inf")
    counters: Counter[str] = field(default_factory=Counter)
    position: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Emitted:
    """An output waiting for the next checkpoint: topic, key, encoded event, idempotency id,
    and the input partition whose processing produced it."""

    topic: str
    key: bytes
    value: bytes
    rid: str
    source_partition: int


class Context:
    """What an operator may touch while processing one partition."""

    __slots__ = ("_n", "_outputs", "_rid_prefix", "offset", "partition", "state")

    def __init__(self, partition: int, state: PartitionState, outputs: list[Emitted]) -> None:
        self.partition = partition
        self.state = state
        self._outputs = outputs
        self._rid_prefix = ""
        self._n = 0
        #: Offset of the input record being processed (dead letters name it).
        self.offset = -1

    @property
    def keyed(self) -> dict[str, Any]:
        return self.state.keyed

    @property
    def watermark(self) -> float:
        return self.state.watermark

    def begin_record(self, rid_prefix: str, offset: int = -1) -> None:
        self._rid_prefix = rid_prefix
        self._n = 0
        self.offset = offset

    def emit(self, topic: str, key: str, event: Event) -> None:
        """Queue an output; its id derives from the source position, so replays dedupe."""
        self._outputs.append(
            Emitted(
                topic, key.encode(), encode(event), f"{self._rid_prefix}/{self._n}", self.partition
            )
        )
        self._n += 1
        self.state.counters["out"] += 1

    def set_timer(self, key: str, when: float) -> None:
        self.state.timers.set(key, when)

    def delete_timer(self, key: str) -> None:
        self.state.timers.delete(key)

    def count(self, name: str, n: int = 1) -> None:
        self.state.counters[name] += n

    def dead_letter(
        self, source_topic: str, offset: int, raw: bytes, reason: str, field: str, ts: float
    ) -> None:
        """Send an input that cannot be processed to the dead-letter topic, with its bytes."""
        letter = DeadLetter(
            ts=utc(ts),
            source_topic=source_topic,
            partition=self.partition,
            offset=offset,
            reason=reason,
            field=field,
            raw=raw,
        )
        self._outputs.append(
            Emitted(
                DEAD_LETTER_TOPIC,
                source_topic.encode(),
                encode(letter),
                f"{self._rid_prefix}/{self._n}",
                self.partition,
            )
        )
        self._n += 1
        self.state.counters["dead_lettered"] += 1


class KeyedOperator:
    """Base class: subclasses set the class attributes and implement :meth:`process`.

    ``outputs`` lists the topics the operator may emit to (the worker creates them).
    """

    name: ClassVar[str] = "operator"
    input_topic: ClassVar[str]
    input_type: ClassVar[Any]
    outputs: ClassVar[tuple[str, ...]] = ()
    #: True: events behind the watermark go to :meth:`process` too, and the operator decides
    #: (e.g. a window by its grace) what is late, counts and dead-letters it.
    decides_lateness: ClassVar[bool] = False
    #: Optional ``(event, ts, delay_us, state) -> watermark`` replacing the default candidate
    #: ``ts - delay`` (a stage reading a repartition topic takes its upstreams' minimum).
    watermark_candidate: ClassVar[Any] = None

    def key(self, event: Any) -> str:
        raise NotImplementedError

    def process(self, event: Any, key: str, ts: float, ctx: Context) -> None:
        raise NotImplementedError

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        """Called when the watermark passes a timer set for ``key``."""

    def on_late(self, event: Any, raw: bytes, offset: int, ts: float, ctx: Context) -> None:
        """An event behind the watermark: counted, and kept visible in the dead letters with
        the bytes it arrived as (``raw``; ``offset`` is its record's)."""
        ctx.dead_letter(
            self.input_topic,
            offset,
            raw,
            f"late: event time {utc(ts).isoformat()} is behind the watermark "
            f"{utc(ctx.watermark).isoformat()}",
            "ts",
            ts,
        )
