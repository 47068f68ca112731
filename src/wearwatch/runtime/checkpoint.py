"""Checkpoints: operator state stored together with the input positions it reflects.

Two stores, one per backend:

* :class:`SqliteCheckpointStore` appends the outputs, saves the state and commits the input
  positions in ONE SQLite transaction: exactly once, with nothing to deduplicate.
* :class:`KafkaCheckpointStore` flushes the outputs, then writes one snapshot per partition to
  a state topic, then commits offsets. A crash in between replays from the last snapshot; the
  replayed outputs carry the same ids, so an idempotent sink keeps one of each.

Snapshots are pickles, and unpickling runs code, so no byte of one is unpickled before its
authentication tag verifies: an HMAC-SHA256 (:class:`CheckpointSeal`) over a format tag, the
group, topic, partition and position the snapshot belongs to, and the pickle. The position is
stored beside the pickle (so the tag covers it) and must equal the unpickled state's. A
snapshot written by anyone without the key, altered, or moved to another group, topic or
partition is refused. A refused snapshot is never loaded and never makes the worker skip
records: the store falls back to the newest older snapshot of that partition that verifies
(replaying from there; outputs keep their ids) or, if none does, raises
:class:`CorruptCheckpoint`.

The key comes from :func:`resolve_checkpoint_key`: the configured secret, else on the embedded
log a key generated on first use and kept beside the log file with owner-only permissions.
Only when explicitly allowed does a Kafka worker run unsigned (a plain sha256: integrity
against accidents, no protection against a writer of the checkpoints topic).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import pickle
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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

#: Bound into every tag, so a snapshot of another format can never verify as this one.
SNAPSHOT_FORMAT = b"wearwatch-checkpoint/2"
#: Snapshots of a partition the embedded log keeps (the newest and the fallback).
SQLITE_GENERATIONS = 2
KEY_FILE_SUFFIX = ".key"
_SIGNED, _UNSIGNED = "hmac-sha256", "sha256"
_HEX64 = re.compile(rb"[0-9a-f]{64}")


class CorruptCheckpoint(ValueError):
    """A stored snapshot that is refused: unauthenticated, altered, or someone else's."""


class CheckpointKeyError(ValueError):
    """No usable checkpoint key: the message says how to provide one."""


# -- keys ------------------------------------------------------------------------------------


def embedded_key_path(log_url: str) -> Path:
    """Where the embedded log ``sqlite:///path`` keeps its generated checkpoint key."""
    db = Path(log_url.removeprefix("sqlite:///"))
    return db.with_name(db.name + KEY_FILE_SUFFIX)


def resolve_checkpoint_key(log_url: str, configured: str, allow_unsigned: bool) -> bytes | None:
    """The key that authenticates this log's checkpoints; ``None`` only for explicit unsigned.

    ``configured`` (``WEARWATCH_CHECKPOINT_KEY``) wins. Else the embedded log uses (creating it
    on first use) a random key in ``<log file>.key``; Kafka has no file every worker of a group
    shares, so it needs the configured secret unless ``allow_unsigned``.
    """
    if configured:
        return configured.encode("utf-8")
    if log_url.startswith("sqlite:"):
        return _key_file(embedded_key_path(log_url))
    if allow_unsigned:
        return None
    raise CheckpointKeyError(
        "the Kafka log needs WEARWATCH_CHECKPOINT_KEY (a secret shared by the group's workers); "
        "or pass --unsigned-checkpoints (WEARWATCH_CHECKPOINT_UNSIGNED=true) to run without "
        "authentication"
    )


def _key_file(path: Path) -> bytes:
    """Read the key file, creating it first (atomically, mode 0600) if there is none."""
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file O_EXCL with mode 0600; link() publishes it complete and
        # never replaces an existing file, so concurrent first starts agree on one key.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker created it first: use that one
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise CheckpointKeyError(
            f"cannot create the checkpoint key file {path}: {exc.strerror or exc}; make its "
            "directory writable or set WEARWATCH_CHECKPOINT_KEY"
        ) from None
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    """The key in ``path``, refused unless it is a regular file only its owner (us) can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointKeyError(
                f"checkpoint key file {path} is a symbolic link: replace it with the file itself"
            ) from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise CheckpointKeyError(
            f"cannot read the checkpoint key file {path}: {exc.strerror or exc}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointKeyError(f"checkpoint key file {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise CheckpointKeyError(
                f"checkpoint key file {path} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}): run the worker as its owner, or remove it only if no "
                "checkpoint was signed with it"
            )
        if info.st_mode & 0o077:
            raise CheckpointKeyError(
                f"checkpoint key file {path} is accessible to others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): run chmod 600 {path}"
            )
        data = os.read(fd, 256).strip()
    finally:
        os.close(fd)
    if not _HEX64.fullmatch(data):
        raise CheckpointKeyError(
            f"checkpoint key file {path} does not hold 64 hex digits: restore it from a backup "
            "(checkpoints signed with it cannot be verified without it)"
        )
    return bytes.fromhex(data.decode("ascii"))


# -- authentication --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotBinding:
    """What a snapshot is the state OF: its group, input partition and position."""

    group: str
    topic: str
    partition: int
    position: int

    def header(self) -> bytes:
        """Unambiguous encoding (length-prefixed fields) of the format tag and the binding."""
        fields = (
            SNAPSHOT_FORMAT,
            self.group.encode(),
            self.topic.encode(),
            str(self.partition).encode(),
            str(self.position).encode(),
        )
        return b"".join(len(f).to_bytes(4, "big") + f for f in fields)

    def where(self) -> str:
        return f"{self.group}/{self.topic}/{self.partition}@{self.position}"


class CheckpointSeal:
    """Tags and verifies snapshots: HMAC-SHA256 with a key, else (explicitly) a sha256."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key or None
        self.scheme = _SIGNED if self._key else _UNSIGNED

    def tag(self, binding: SnapshotBinding, blob: bytes) -> str:
        if self._key is None:
            digest = hashlib.sha256(binding.header())
        else:
            digest = hmac.new(self._key, binding.header(), hashlib.sha256)
        digest.update(blob)
        return f"{self.scheme}:{digest.hexdigest()}"

    def verify(self, binding: SnapshotBinding, blob: bytes, tag: str) -> None:
        """Raise :class:`CorruptCheckpoint` unless ``tag`` authenticates ``blob`` as ``binding``."""
        where = binding.where()
        scheme = tag.partition(":")[0]
        if scheme != self.scheme:
            if scheme == _SIGNED:
                raise CorruptCheckpoint(
                    f"checkpoint {where} is signed, but this worker has no checkpoint key "
                    "(set WEARWATCH_CHECKPOINT_KEY)"
                )
            raise CorruptCheckpoint(
                f"checkpoint {where} is not signed ({scheme or 'no tag'}), and a worker with a "
                "checkpoint key accepts only signed ones"
            )
        if not hmac.compare_digest(self.tag(binding, blob).encode(), tag.encode()):
            raise CorruptCheckpoint(
                f"checkpoint {where}: {self.scheme} does not verify (altered, forged, moved from "
                "another group/topic/partition/position, or signed with another key)"
            )


def dump_state(
    state: PartitionState, binding: SnapshotBinding, seal: CheckpointSeal
) -> tuple[bytes, str]:
    """The pickled state and its tag; ``binding.position`` must be the state's own position."""
    if binding.position != state.position:
        raise ValueError(f"binding position {binding.position} != state {state.position}")
    blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return blob, seal.tag(binding, blob)


def load_state(
    blob: bytes, tag: str, binding: SnapshotBinding, seal: CheckpointSeal
) -> PartitionState:
    """Unpickle a snapshot only after its tag verifies for ``binding``."""
    seal.verify(binding, blob, tag)
    state = pickle.loads(blob)  # authenticated bytes only
    if not isinstance(state, PartitionState):
        raise CorruptCheckpoint(f"checkpoint {binding.where()}: not a PartitionState")
    if state.position != binding.position:
        raise CorruptCheckpoint(
            f"checkpoint {binding.where()}: state is at position {state.position}"
        )
    return state


def _restore_newest(
    candidates: Sequence[tuple[SnapshotBinding | None, bytes, str, str]], seal: CheckpointSeal
) -> PartitionState | None:
    """The newest candidate (given newest first) that verifies; raise if some exist but none do.

    A candidate is (binding or None if unparseable, blob, tag, description for messages).
    """
    refused: list[str] = []
    for binding, blob, tag, where in candidates:
        try:
            if binding is None:
                raise CorruptCheckpoint(f"checkpoint {where}: unreadable envelope")
            state = load_state(blob, tag, binding, seal)
        except CorruptCheckpoint as exc:
            refused.append(str(exc))
            continue
        except Exception as exc:  # verified bytes that still do not unpickle (version skew)
            refused.append(f"checkpoint {where}: cannot be unpickled: {type(exc).__name__}")
            continue
        if refused:
            logger.warning(
                "%s; restored the older %s instead: records from position %d on are processed "
                "again (same output ids)",
                "; ".join(refused),
                binding.where(),
                state.position,
            )
        return state
    if refused:
        raise CorruptCheckpoint(
            f"{refused[0]}; no older snapshot verifies either: restore the log from a backup, "
            "or run under a new --group to process the input from the start"
        )
    return None


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
    """State lives in the log's own database, so one transaction covers everything.

    The last :data:`SQLITE_GENERATIONS` snapshots of each partition are kept, so a refused
    newest one falls back to its predecessor.
    """

    def __init__(self, log: Log, group: str, key: bytes | None) -> None:
        from wearwatch.bus.sqlite import SqliteLog

        if not isinstance(log, SqliteLog):
            raise TypeError("SqliteCheckpointStore needs the embedded (sqlite) log")
        self.log = log
        self.group = group
        self.seal = CheckpointSeal(key)
        with log.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS checkpoint_snapshots (grp TEXT NOT NULL,"
                " topic TEXT NOT NULL, partition INTEGER NOT NULL, generation INTEGER NOT NULL,"
                " position INTEGER NOT NULL, state BLOB NOT NULL, tag TEXT NOT NULL,"
                " updated_ms INTEGER NOT NULL, PRIMARY KEY (grp, topic, partition, generation))"
            )

    def load(self, topic: str, partitions: Sequence[int]) -> dict[int, PartitionState]:
        out: dict[int, PartitionState] = {}
        for partition in partitions:
            rows = self.log.conn.execute(
                "SELECT generation, position, state, tag FROM checkpoint_snapshots"
                " WHERE grp=? AND topic=? AND partition=? ORDER BY generation DESC",
                (self.group, topic, partition),
            ).fetchall()
            candidates = [self._candidate(topic, partition, *row) for row in rows]
            state = _restore_newest(candidates, self.seal)
            if state is None:
                self._refuse_legacy(topic, partition)
            else:
                out[partition] = state
        return out

    def _candidate(
        self,
        topic: str,
        partition: int,
        generation: object,
        position: object,
        blob: object,
        tag: object,
    ) -> tuple[SnapshotBinding | None, bytes, str, str]:
        """A row as stored; columns of the wrong type (SQLite does not enforce them) make it
        unreadable rather than an error."""
        where = f"{self.group}/{topic}/{partition} generation {generation}"
        if not (isinstance(position, int) and isinstance(blob, bytes) and isinstance(tag, str)):
            return None, b"", "", where
        return SnapshotBinding(self.group, topic, partition, position), blob, tag, where

    def _refuse_legacy(self, topic: str, partition: int) -> None:
        """A snapshot of wearwatch 0.1 (unauthenticated) is neither loaded nor ignored."""
        legacy = self.log.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='checkpoints'"
        ).fetchone()
        if (
            legacy
            and self.log.conn.execute(
                "SELECT 1 FROM checkpoints WHERE grp=? AND topic=? AND partition=?",
                (self.group, topic, partition),
            ).fetchone()
        ):
            raise CorruptCheckpoint(
                f"checkpoint {self.group}/{topic}/{partition} predates authenticated "
                "checkpoints and is not loaded: run under a new --group to process the input "
                "from the start"
            )

    def commit(
        self,
        outputs: Sequence[Emitted],
        states: dict[TopicPartition, PartitionState],
        consumer: Consumer,
    ) -> None:
        now_ms = int(time.time() * 1000)
        rows = []
        for (topic, partition), state in states.items():
            binding = SnapshotBinding(self.group, topic, partition, state.position)
            blob, tag = dump_state(state, binding, self.seal)
            rows.append((state.position, blob, tag, now_ms, self.group, topic, partition))
        with self.log.transaction() as conn:
            # Fencing: refuse (PartitionsLostError, nothing written) partitions whose lease
            # another member holds now, in the transaction that would commit them.
            fence = getattr(consumer, "fence", None)
            if fence is not None:
                fence(conn, list(states))
            self.log.produce(_out_records(outputs))
            conn.executemany(
                "INSERT INTO checkpoint_snapshots"
                "(grp, topic, partition, generation, position, state, tag, updated_ms)"
                " SELECT ?5, ?6, ?7, COALESCE(MAX(generation), 0) + 1, ?1, ?2, ?3, ?4"
                " FROM checkpoint_snapshots WHERE grp=?5 AND topic=?6 AND partition=?7",
                rows,
            )
            conn.executemany(
                "DELETE FROM checkpoint_snapshots WHERE grp=?1 AND topic=?2 AND partition=?3"
                " AND generation <= (SELECT MAX(generation) FROM checkpoint_snapshots"
                f" WHERE grp=?1 AND topic=?2 AND partition=?3) - {SQLITE_GENERATIONS}",
                [(g, t, p) for (*_, g, t, p) in rows],
            )
            self.log.commit_offsets(
                self.group, {tp: state.position for tp, state in states.items()}
            )


class KafkaCheckpointStore:
    """Snapshots go to ``<group>.checkpoints`` keyed by topic/partition.

    A snapshot's value is ``<scheme>:<hex tag> <position>\\n<pickle>``. The newest snapshot of
    a partition that verifies wins; older ones stay in the (compacted) topic until compaction.
    """

    def __init__(self, log: Log, group: str, key: bytes | None) -> None:
        self.log = log
        self.group = group
        self.topic = f"{group}.checkpoints"
        self.seal = CheckpointSeal(key)
        if key is None:
            logger.warning(
                "checkpoints of group %r are NOT authenticated (unsigned mode): whoever can "
                "write %s can run code in this worker",
                group,
                self.topic,
            )
        log.create_topic(self.topic, 1, compact=True)

    @staticmethod
    def envelope(tag: str, position: int, blob: bytes) -> bytes:
        return f"{tag} {position}\n".encode("ascii") + blob

    def _candidate(
        self, topic: str, partition: int, record: Record
    ) -> tuple[SnapshotBinding | None, bytes, str, str]:
        where = f"{self.topic}@{record.offset} ({topic}/{partition})"
        head, sep, blob = (record.value or b"").partition(b"\n")
        tag, _, position = head.partition(b" ")
        if not sep or not position.isdigit() or len(position) > 20:
            return None, b"", "", where
        binding = SnapshotBinding(self.group, topic, partition, int(position))
        return binding, blob, tag.decode("ascii", "replace"), where

    def load(self, topic: str, partitions: Sequence[int]) -> dict[int, PartitionState]:
        wanted = {f"{topic}/{p}".encode(): p for p in partitions}
        history: dict[int, list[Record]] = {}
        for record in read_all(self.log, self.topic):
            partition = wanted.get(record.key or b"")
            if partition is not None:
                history.setdefault(partition, []).append(record)
        restored: dict[int, PartitionState] = {}
        for partition, records in history.items():
            candidates = [self._candidate(topic, partition, r) for r in reversed(records)]
            state = _restore_newest(candidates, self.seal)
            if state is not None:
                restored[partition] = state
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
            binding = SnapshotBinding(self.group, topic, partition, state.position)
            blob, tag = dump_state(state, binding, self.seal)
            key = f"{topic}/{partition}".encode()
            value = self.envelope(tag, state.position, blob)
            snapshots.append(OutRecord(self.topic, key, value, "", 0))
        self.log.produce(snapshots)
        self.log.flush()
        try:
            consumer.commit({tp: state.position for tp, state in states.items()})
        except LogError as exc:
            # Restores seek to the snapshot's position, not the group's offset: the
            # snapshot just written is what counts, so a failed commit (e.g. mid-rebalance)
            # costs nothing.
            logger.warning("offset commit failed after a durable snapshot: %s", exc)


def checkpoint_store_for(log: Log, group: str, key: bytes | None) -> CheckpointStore:
    """The store of ``log``'s backend; ``key`` from :func:`resolve_checkpoint_key`."""
    if log.url.startswith("sqlite:"):
        return SqliteCheckpointStore(log, group, key)
    return KafkaCheckpointStore(log, group, key)
