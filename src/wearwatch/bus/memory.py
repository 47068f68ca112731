"""An in-memory log: the test harness's backend (``Flow.test``), never durable.

It implements the :class:`~wearwatch.bus.base.Log` protocol with plain lists, so the harness
runs the very worker and stage operators a deployment runs, on records that live only as long
as the object. One consumer per group takes every partition at its first poll and reads them
round-robin in partition order, so a run is deterministic.

>>> log = MemoryLog()
>>> log.create_topic("t", 2)
>>> log.produce([OutRecord("t", b"a", b"1", partition=0), OutRecord("t", b"b", b"2")])
>>> [(r.partition, r.offset, r.value) for r in log.appended("t")]
[(0, 0, b'1'), (1, 0, b'2')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from wearwatch.bus.base import (
    AssignCallback,
    OutRecord,
    Record,
    TopicPartition,
    partition_for,
)


class MemoryLog:
    """Topics as lists of records per partition; ``appended(topic)`` keeps append order."""

    def __init__(self, *, default_partitions: int = 1) -> None:
        self.url = "memory://"
        self.default_partitions = default_partitions
        self._records: dict[str, list[list[Record]]] = {}
        #: Per topic, every record in the order it was appended (across partitions).
        self._order: dict[str, list[Record]] = {}
        self._committed: dict[tuple[str, TopicPartition], int] = {}

    def create_topic(
        self, name: str, partitions: int | None = None, *, compact: bool = False
    ) -> None:
        if name in self._records:
            return
        count = partitions or self.default_partitions
        if count < 1:
            raise ValueError(f"partitions={count}: must be at least 1")
        self._records[name] = [[] for _ in range(count)]
        self._order[name] = []

    def partitions(self, topic: str) -> int:
        try:
            return len(self._records[topic])
        except KeyError:
            raise KeyError(f"topic {topic!r} does not exist") from None

    def topics(self) -> dict[str, int]:
        return {name: len(parts) for name, parts in self._records.items()}

    def produce(self, records: Iterable[OutRecord]) -> None:
        for rec in records:
            parts = self._records[rec.topic]
            partition = rec.partition
            if partition is None:
                partition = partition_for(rec.key, len(parts))
            # No append time (0): the harness must not depend on when it runs, and a record
            # without one is not judged by the worker's event-time guard (that guard protects
            # the real logs and is tested there).
            record = Record(
                rec.topic,
                partition,
                len(parts[partition]),
                rec.key,
                rec.value,
                0,
                rec.rid,
            )
            parts[partition].append(record)
            self._order[rec.topic].append(record)

    def flush(self) -> None:
        """Appends are visible at once."""

    def appended(self, topic: str) -> list[Record]:
        """Every record of ``topic`` in append order."""
        return list(self._order.get(topic, ()))

    def read(self, topic: str, partition: int, start: int, max_records: int) -> list[Record]:
        records = self._records[topic][partition]
        return records[max(start, 0) : max(start, 0) + max(max_records, 0)]

    def end_offsets(self, topic: str) -> dict[int, int]:
        if topic not in self._records:
            raise KeyError(f"topic {topic!r} does not exist")
        return {p: len(records) for p, records in enumerate(self._records[topic])}

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        on_assign: AssignCallback | None = None,
        on_revoke: AssignCallback | None = None,
    ) -> MemoryConsumer:
        return MemoryConsumer(self, group, topics, on_assign, on_revoke)

    def committed_offsets(self, group: str, tps: Sequence[TopicPartition]) -> dict:
        return {tp: self._committed.get((group, tp), 0) for tp in tps}

    def commit_offsets(self, group: str, positions: dict[TopicPartition, int]) -> None:
        for tp, offset in positions.items():
            self._committed[(group, tp)] = offset

    def apply_retention(self) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""


class MemoryConsumer:
    """The only member of its group: every partition of its topics, from the first poll."""

    def __init__(
        self,
        log: MemoryLog,
        group: str,
        topics: Sequence[str],
        on_assign: AssignCallback | None,
        on_revoke: AssignCallback | None,
    ) -> None:
        self.log = log
        self.group = group
        self._topics = list(dict.fromkeys(topics))
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._next = 0
        self.settled = False

    def _join(self) -> None:
        tps = [(t, p) for t in self._topics for p in range(self.log.partitions(t))]
        committed = self.log.committed_offsets(self.group, tps)
        self._assigned = tps
        self._positions = dict(committed)
        self.settled = True
        if self._on_assign is not None:
            self._on_assign(list(tps))

    def poll(self, max_records: int = 500, timeout_s: float = 0.2) -> list[Record]:
        if not self.settled:
            self._join()
        out: list[Record] = []
        count = len(self._assigned)
        for step in range(count):
            tp = self._assigned[(self._next + step) % count]
            chunk = self.log.read(tp[0], tp[1], self._positions[tp], max_records - len(out))
            if chunk:
                out.extend(chunk)
                self._positions[tp] = chunk[-1].offset + 1
            if len(out) >= max_records:
                self._next = (self._next + step + 1) % count
                break
        return out

    def assignment(self) -> list[TopicPartition]:
        return list(self._assigned)

    def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def commit(self, positions: dict[TopicPartition, int] | None = None) -> None:
        self.log.commit_offsets(
            self.group, dict(self._positions) if positions is None else positions
        )

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return self.log.committed_offsets(self.group, tps)

    def close(self) -> None:
        if self._assigned and self._on_revoke is not None:
            self._on_revoke(list(self._assigned))
        self._assigned = []
