"""Checkpoints: operator state stored together with the input positions it reflects.

Two stores, one per backend:

* :class:`SqliteCheckpointStore` appends the outputs, saves the state and commits the input
  positions in ONE SQLite transaction: exactly once, with nothing to deduplicate.
* :class:`KafkaCheckpointStore` flushes the outputs, then writes one snapshot per partition to
  a state topic, then commits offsets. A crash in between replays from the last snapshot; the
  replayed outputs carry the same ids, so an idempotent sink keeps exactly one of each.

Snapshots are pickles; each carries its sha256 (an HMAC-SHA256 when
``WEARWATCH_CHECKPOINT_KEY`` is set, so a writer without the key cannot forge one) and is
verified before it is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
import time
from collections.abc import Sequence
from typing import Protocol

from wearwatch.bus.base import (
    Consumer,
    Log,
    LogError,
    OutRecord,
    Record,
    TopicPartition,
    read_all,
)
from wearwatch.runtime.operator import Emitted, PartitionState

logger = logging.getLogger(__name__)


class CorruptCheckpoint(RuntimeError):
    """A stored snapshot whose bytes do not match their checksum."""


def _digest(blob: bytes) -> str:
    """HMAC-SHA256 with ``WEARWATCH_CHECKPOINT_KEY`` when set, else a plain sha256."""
    from wearwatch.config import get_settings

    key = get_settings().checkpoint_key
    if key:
        return "hmac-" + hmac.new(key.encode(), blob, hashlib.sha256).hexdigest()
    return hashlib.sha256(blob).hexdigest()


def dump_state(state: PartitionState) -> tuple[bytes, str]:
    blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return blob, _digest(blob)


def load_state(blob: bytes, digest: str, where: str) -> PartitionState:
    """Unpickle a snapshot only after its digest (signature, with a key) matches."""
    actual = _digest(blob)
    if not hmac.compare_digest(actual, digest):
        raise CorruptCheckpoint(
            f"checkpoint {where}: digest {actual[:17]}… does not match stored {digest[:17]}… "
            "(corrupted, tampered with, or signed with another WEARWATCH_CHECKPOINT_KEY)"
        )
    state = pickle.loads(blob)
    if not isinstance(state, PartitionState):
        raise CorruptCheckpoint(f"checkpoint {where}: not a PartitionState")
    return state


def _out_records(outputs: Sequence[Emitted]) -> list[OutRecord]:
    return [OutRecord(o.topic, o.key, o.value, o.rid) for o in outputs]


class CheckpointStore(Protocol):
    def load(self, topic: str, partitions: Sequence[int]) -> dict[int, PartitionState]: ...

    def commit(
        self,
        outputs: Sequence[Emitted],
        states: dict[TopicPartition, PartitionState],
        consumer: Consumer,
    ) -> None: ...


class SqliteCheckpointStore:
    """State lives in the log's own database, so one transaction covers everything."""

    def __init__(self, log: Log, group: str) -> None:
        from wearwatch.bus.sqlite import SqliteLog

        if not isinstance(log, SqliteLog):
            raise TypeError("SqliteCheckpointStore needs the embedded (sqlite) log")
        self.log = log
        self.group = group
        with log.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS checkpoints (grp TEXT NOT NULL, topic TEXT NOT NULL,"
                " partition INTEGER NOT NULL, state BLOB NOT NULL, sha256 TEXT NOT NULL,"
                " updated_ms INTEGER NOT NULL, PRIMARY KEY (grp, topic, partition))"
            )

    def load(self, topic: str, partitions: Sequence[int]) -> dict[int, PartitionState]:
        out: dict[int, PartitionState] = {}
        for partition in partitions:
            row = self.log.conn.execute(
                "SELECT state, sha256 FROM checkpoints WHERE grp=? AND topic=? AND partition=?",
                (self.group, topic, partition),
            ).fetchone()
            if row is not None:
                out[partition] = load_state(row[0], row[1], f"{self.group}/{topic}/{partition}")
        return out

    def commit(
        self,
        outputs: Sequence[Emitted],
        states: dict[TopicPartition, PartitionState],
        consumer: Consumer,
    ) -> None:
        now_ms = int(time.time() * 1000)
        rows = []
        for (topic, partition), state in states.items():
            blob, digest = dump_state(state)
            rows.append((self.group, topic, partition, blob, digest, now_ms))
        with self.log.transaction() as conn:
            # Fencing: refuse (PartitionsLostError, nothing written) partitions whose lease
            # another member holds now, in the transaction that would commit them.
            fence = getattr(consumer, "fence", None)
            if fence is not None:
                fence(conn, list(states))
            self.log.produce(_out_records(outputs))
            conn.executemany(
                "INSERT OR REPLACE INTO checkpoints"
                "(grp, topic, partition, state, sha256, updated_ms) VALUES (?,?,?,?,?,?)",
                rows,
            )
            self.log.commit_offsets(
                self.group, {tp: state.position for tp, state in states.items()}
            )


class KafkaCheckpointStore:
    """Snapshots go to ``<group>.checkpoints`` keyed by topic/partition; the last one wins.

    A snapshot's value is ``<digest>:<pickle>`` (the digest has no colon).
    """

    def __init__(self, log: Log, group: str) -> None:
        self.log = log
        self.group = group
        self.topic = f"{group}.checkpoints"
        log.create_topic(self.topic, 1, compact=True)

    def load(self, topic: str, partitions: Sequence[int]) -> dict[int, PartitionState]:
        wanted = {f"{topic}/{p}".encode(): p for p in partitions}
        newest: dict[int, Record] = {}
        for record in read_all(self.log, self.topic):
            partition = wanted.get(record.key or b"")
            if partition is not None:
                newest[partition] = record
        # Only the newest snapshot per partition is verified and unpickled.
        restored: dict[int, PartitionState] = {}
        for partition, record in newest.items():
            digest, _, blob = record.value.partition(b":")
            restored[partition] = load_state(blob, digest.decode(), f"{self.topic}@{record.offset}")
        return restored

    def commit(
        self,
        outputs: Sequence[Emitted],
        states: dict[TopicPartition, PartitionState],
        consumer: Consumer,
    ) -> None:
        self.log.produce(_out_records(outputs))
        self.log.flush()
        snapshots = []
        for (topic, partition), state in states.items():
            blob, digest = dump_state(state)
            key = f"{topic}/{partition}".encode()
            snapshots.append(OutRecord(self.topic, key, digest.encode() + b":" + blob, "", 0))
        self.log.produce(snapshots)
        self.log.flush()
        try:
            consumer.commit({tp: state.position for tp, state in states.items()})
        except LogError as exc:
            # Restores seek to the snapshot's position, not the group's offset: the
            # snapshot just written is what counts, so a failed commit (e.g. mid-rebalance)
            # costs nothing.
            logger.warning("offset commit failed after a durable snapshot: %s", exc)


def checkpoint_store_for(log: Log, group: str) -> CheckpointStore:
    if log.url.startswith("sqlite:"):
        return SqliteCheckpointStore(log, group)
    return KafkaCheckpointStore(log, group)
