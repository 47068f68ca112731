"""The log's interface, shared by the embedded (SQLite) and Kafka backends.

A topic has partitions; a record goes to the partition its key hashes to (the same stable hash
on both backends, so a key lands on the same partition everywhere); offsets grow by one per
record within a partition; a consumer group commits, per partition, the offset of the next
record it will read.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from wearwatch.events import decode_record

E = TypeVar("E")

TopicPartition = tuple[str, int]


class LogError(RuntimeError):
    """The log could not do what was asked (broker unreachable, delivery failed, …)."""


class PartitionsLostError(LogError):
    """A commit named partitions this group member no longer owns (another member took them
    over, e.g. after this one stalled past its lease): nothing of the commit was written."""

    def __init__(self, message: str, partitions: Sequence[TopicPartition]) -> None:
        super().__init__(message)
        self.partitions = list(partitions)


#: Partitions of a topic created without a count, and how long new topics keep records: the
#: backends' defaults when the app passes none (the app passes its settings' values).
DEFAULT_PARTITIONS = 4
DEFAULT_RETENTION_S = 7 * 24 * 3600.0

#: Longest finite retention, 1000 years: anything longer means "forever", which ``0`` says, and
#: its milliseconds (Kafka's ``retention.ms``, SQLite's cutoff) stay far inside 64-bit integers.
MAX_RETENTION_S = 1000 * 365.25 * 86400


def check_retention_s(retention_s: float) -> float:
    """``retention_s`` if valid: ``0`` keeps records forever, else seconds in (0, 1000 years].

    >>> check_retention_s(0.0), check_retention_s(3600.0)
    (0.0, 3600.0)
    >>> check_retention_s(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: retention_s=inf: expected 0 (keep forever) or finite seconds up to 31557600000
    """
    if not (retention_s == 0 or 0 < retention_s <= MAX_RETENTION_S):  # nan fails every test
        raise ValueError(
            f"retention_s={retention_s!r}: expected 0 (keep forever) or finite seconds up to "
            f"{MAX_RETENTION_S:.0f}"
        )
    return retention_s


def retention_ms(retention_s: float) -> int:
    """Kafka's ``retention.ms`` for a valid ``retention_s``: ``-1`` keeps records forever.

    >>> retention_ms(0.0), retention_ms(1.5)
    (-1, 1500)
    """
    check_retention_s(retention_s)
    return -1 if retention_s == 0 else math.ceil(retention_s * 1000)


AssignCallback = Callable[[list[TopicPartition]], None]


@dataclass(frozen=True, slots=True)
class Outage:
    """Why a consumer cannot read right now: its broker is unreachable (``kind="broker"``) or
    an input topic is gone (``kind="topic"``). A consumer that can have outages (Kafka's)
    exposes the current one as its ``outage`` attribute (None while healthy); the worker
    reports it and gives up after ``WorkerOptions.max_outage_s``."""

    kind: str
    #: What is wrong, e.g. "broker kafka://h:9092 unreachable".
    what: str
    #: The client's own words for it (last error seen).
    detail: str
    #: ``time.monotonic()`` when it began; a new outage has a new value.
    since_s: float


@dataclass(frozen=True, slots=True)
class Record:
    """One record read from the log. ``rid`` is the producer's idempotency id ('' if none)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    rid: str = ""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to append: the key picks the partition unless ``partition`` is given."""

    topic: str
    key: bytes | None
    value: bytes
    rid: str = ""
    partition: int | None = None


def partition_for(key: bytes | None, partitions: int) -> int:
    """Stable key → partition hash (CRC-32), identical across processes and backends.

    >>> partition_for(b"pump-7", 4) == partition_for(b"pump-7", 4)
    True
    >>> partition_for(None, 4)
    0
    """
    if key is None:
        return 0
    return zlib.crc32(key) % partitions


class Consumer(Protocol):
    """A member of a consumer group reading some partitions of some topics.

    ``on_assign``/``on_revoke`` callbacks are invoked from inside :meth:`poll` (as Kafka
    does); a :meth:`seek` made inside ``on_assign`` sets where the partition is read from.

    Optional attributes, read with ``getattr`` by the worker (a consumer without them is
    always settled and never in an outage): ``settled`` — False until the group has given
    this member an assignment (possibly empty) and while a rebalance took partitions away;
    ``outage`` — the current :class:`Outage` or None.
    """

    def poll(self, max_records: int = 500, timeout_s: float = 0.2) -> list[Record]:
        """Up to ``max_records`` records, in offset order within each partition."""
        ...

    def assignment(self) -> list[TopicPartition]: ...

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record :meth:`poll` will return for ``tp``."""
        ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on (used when restoring a checkpoint)."""
        ...

    def commit(self, positions: dict[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""
        ...

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def close(self) -> None: ...


class Log(Protocol):
    """A partitioned, durable, append-only log with consumer groups."""

    url: str

    def create_topic(
        self, name: str, partitions: int | None = None, *, compact: bool = False
    ) -> None:
        """Create ``name`` if missing (idempotent); an existing topic keeps its partitions.

        ``compact``: keep only the latest record per key (Kafka log compaction).
        """
        ...

    def partitions(self, topic: str) -> int: ...

    def topics(self) -> dict[str, int]:
        """Every topic and its partition count."""
        ...

    def produce(self, records: Iterable[OutRecord]) -> None:
        """Append records; durable once :meth:`flush` returns."""
        ...

    def flush(self) -> None: ...

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        on_assign: AssignCallback | None = None,
        on_revoke: AssignCallback | None = None,
    ) -> Consumer: ...

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""
        ...

    def read(self, topic: str, partition: int, start: int, max_records: int) -> list[Record]:
        """Read without a group (tools, tests, sinks that track their own positions)."""
        ...

    def apply_retention(self) -> int:
        """Delete records past their topic's retention; returns how many were deleted."""
        ...

    def close(self) -> None: ...


def read_all(log: Log, topic: str, batch: int = 5000) -> list[Record]:
    """Every retained record of ``topic``, partition by partition (tools and tests)."""
    out: list[Record] = []
    for partition, end in sorted(log.end_offsets(topic).items()):
        position = 0
        while position < end:
            chunk = log.read(topic, partition, position, batch)
            if not chunk:
                break
            out.extend(chunk)
            position = chunk[-1].offset + 1
    return out


def read_events(log: Log, topic: str, kind: type[E]) -> list[E]:
    """Every retained event of ``topic`` decoded as ``kind`` (records may hold batches); an
    undecodable one is a ValueError naming where it is — a figure computed on part of a topic
    would mislead (tools, evaluation, live metrics; streams dead-letter instead)."""
    events: list[E] = []
    for record in read_all(log, topic):
        decoded = decode_record(record.value, kind)
        if decoded.rejected:
            _, error = decoded.rejected[0]
            raise ValueError(f"{topic}/{record.partition}@{record.offset}: {error}")
        events.extend(decoded.events)
    return events


def caught_up(log: Log, consumer: Consumer, topics: Sequence[str]) -> bool:
    """Whether ``consumer`` has an assignment and has read each assigned partition to its end
    (a sink that drains topics stops there, without waiting for an empty poll)."""
    assigned = consumer.assignment()
    ends = {t: log.end_offsets(t) for t in topics}
    return bool(assigned) and all(
        consumer.position(tp) >= ends[tp[0]].get(tp[1], 0) for tp in assigned if tp[0] in ends
    )


def pack_by_partition(
    topic: str,
    events: Iterable[object],
    key_of: Callable[[object], str],
    partitions: int,
    encode_batch: Callable[[list[object]], bytes],
    max_batch: int = 1000,
) -> list[OutRecord]:
    """Pack events into batch records, one batch per partition per ``max_batch`` events.

    Each event goes to the partition its key hashes to, as if sent alone, so per-key order and
    partitioning are those of single-event records; the log's per-record cost is paid once per
    batch. Events keep their relative order within a partition.
    """
    pending: dict[int, list[object]] = {}
    first_key: dict[int, bytes] = {}
    out: list[OutRecord] = []
    for event in events:
        key = key_of(event).encode()
        partition = partition_for(key, partitions)
        batch = pending.setdefault(partition, [])
        if not batch:
            first_key[partition] = key
        batch.append(event)
        if len(batch) >= max_batch:
            out.append(OutRecord(topic, first_key[partition], encode_batch(batch), "", partition))
            pending[partition] = []
    for partition, batch in sorted(pending.items()):
        if batch:
            out.append(OutRecord(topic, first_key[partition], encode_batch(batch), "", partition))
    return out
