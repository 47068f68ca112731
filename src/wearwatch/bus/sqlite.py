"""The embedded log: one SQLite file in WAL mode, shared by several processes on one machine.

Records live in one table whose integer primary key packs (topic-partition id, offset), so an
append is a single B-tree insert and a poll is a range scan, with no secondary index. Writers
take SQLite's write lock (``BEGIN IMMEDIATE``); readers never block writers (WAL).

Exactly-once on this backend comes from :meth:`SqliteLog.transaction`: a worker appends its
outputs, saves its state and commits its input positions in one SQLite transaction.

Consumer groups have no broker to rebalance them, so their members coordinate in the database
itself (the embedded equivalent of Kafka's cooperative rebalance):

* A member registers in ``group_members`` on its first poll and holds a **lease** per partition
  in ``group_leases``; both expire ``lease_s`` after the last renewal. Polls renew them every
  ``lease_s / 4`` and every fenced commit renews them too.
* The live members share the partitions by :func:`lease_plan` (per topic, round-robin over the
  sorted member ids). A member takes a partition the plan gives it only when no other member
  holds a live lease on it; it releases a partition the plan gives to another member after
  ``on_revoke`` (so the worker checkpoints first). Joins, leaves and releases bump the group's
  epoch, which the others read on every poll: a hand-over takes one poll, not a lease period.
  A member that dies without closing keeps its partitions until its lease expires.
* **Fencing**: the lease row names the owner. :meth:`SqliteConsumer.fence` runs inside the
  committing transaction and refuses partitions whose row names another member, so two members
  never both commit one partition, even when one stalled past its lease and came back.
* Leases use the wall clock (one clock: every process shares the machine); no output depends on
  them, only who computes it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from wearwatch.bus.base import (
    DEFAULT_PARTITIONS,
    DEFAULT_RETENTION_S,
    AssignCallback,
    LogError,
    OutRecord,
    PartitionsLostError,
    Record,
    TopicPartition,
    check_retention_s,
    partition_for,
)

logger = logging.getLogger(__name__)

OFFSET_BITS = 40
OFFSET_SPAN = 1 << OFFSET_BITS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, retention_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, tp_id INTEGER NOT NULL UNIQUE,
    next_offset INTEGER NOT NULL, low_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    pos INTEGER PRIMARY KEY, key BLOB, value BLOB NOT NULL, ts_ms INTEGER NOT NULL,
    rid TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL, member_id TEXT NOT NULL, topics TEXT NOT NULL,
    expires_ms INTEGER NOT NULL, PRIMARY KEY (grp, member_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_leases (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    member_id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_epochs (
    grp TEXT PRIMARY KEY, epoch INTEGER NOT NULL) WITHOUT ROWID;
"""

#: Longest lease a consumer accepts (``WEARWATCH_LEASE_S`` has the same bound).
MAX_LEASE_S = 3600.0


_WHERE = "use a log elsewhere (WEARWATCH_DATA_DIR, WEARWATCH_BUS or --bus)"


class SqliteLogError(LogError):
    """The embedded log's file failed for a reason outside wearwatch (a corrupt file, not a
    database, a directory, read-only, disk full, …): one line naming the file and what to do.
    The SQLite error is the ``__cause__``; ``sqlite_errorcode`` is its extended code."""

    def __init__(self, message: str, sqlite_errorcode: int | None = None) -> None:
        super().__init__(message)
        self.sqlite_errorcode = sqlite_errorcode


_HINTS: dict[int, str] = {
    sqlite3.SQLITE_FULL: "free space on its filesystem (or move the log), then restart",
    sqlite3.SQLITE_IOERR: "a read or write failed (disk full, file size limit, failing disk):"
    " free space or check the disk, then restart",
    sqlite3.SQLITE_NOTADB: "it is not a wearwatch log (or is corrupt): move it aside or point"
    " the log at the right file",
    sqlite3.SQLITE_CORRUPT: "the file is corrupt: move it aside, then restore a backup or start"
    " a new log",
    sqlite3.SQLITE_BUSY: "another process holds it locked: stop that process or retry later",
    sqlite3.SQLITE_LOCKED: "another process holds it locked: stop that process or retry later",
    sqlite3.SQLITE_PROTOCOL: "another process holds it locked: stop that process or retry later",
    sqlite3.SQLITE_NOMEM: "out of memory: free memory, then restart",
    sqlite3.SQLITE_NOLFS: "its filesystem cannot hold a file this large: move the log",
}


def _hint(path: Path, primary: int) -> str | None:
    """What to do about an SQLite error that comes from the file or its environment; None for
    the rest (bugs such as a constraint violation keep their traceback)."""
    if primary == sqlite3.SQLITE_CANTOPEN:
        if path.is_dir():
            return f"it is a directory: point the log at a file, e.g. sqlite:///{path / 'log.db'}"
        if not path.parent.is_dir():
            return f"its directory {path.parent} does not exist: create it or {_WHERE}"
        if not os.access(path.parent, os.W_OK):
            return (
                f"its directory {path.parent} is read-only for this user: make it writable "
                f"or {_WHERE}"
            )
        return f"check the permissions of the file and its directory, or {_WHERE}"
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return (
            f"it or its directory {path.parent} is read-only for this user: make them writable "
            f"or {_WHERE}"
        )
    return _HINTS.get(primary)


def _reraise(path: Path, exc: sqlite3.Error) -> NoReturn:
    """Raise ``exc`` as a :class:`SqliteLogError` if it comes from the environment, else as is."""
    code = getattr(exc, "sqlite_errorcode", None)
    hint = None if code is None else _hint(path, code & 0xFF)
    if hint is None:
        raise exc
    raise SqliteLogError(f"embedded log {path}: {exc}: {hint}", code) from exc


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: sqlite3.Cursor, *args: Any) -> Any:
        try:
            return method(self, *args)
        except sqlite3.Error as exc:
            _reraise(self.connection.log_path, exc)  # type: ignore[attr-defined]

    return call


class _LogCursor(sqlite3.Cursor):
    """Every statement and fetch of the log goes through here (see :class:`_LogConnection`)."""

    execute = _translated(sqlite3.Cursor.execute)
    executemany = _translated(sqlite3.Cursor.executemany)
    fetchone = _translated(sqlite3.Cursor.fetchone)
    fetchmany = _translated(sqlite3.Cursor.fetchmany)
    fetchall = _translated(sqlite3.Cursor.fetchall)
    __next__ = _translated(sqlite3.Cursor.__next__)


class _LogConnection(sqlite3.Connection):
    """The log's connection. A disk that fills up, a file that turns out corrupt or read-only:
    such errors can surface from any statement, so they are translated here, once, into a
    :class:`SqliteLogError` naming the file, for every user of the connection (the log, the
    checkpoint store, …)."""

    log_path: Path

    def cursor(self, factory: Any = _LogCursor) -> _LogCursor:  # type: ignore[override]
        return super().cursor(factory)  # type: ignore[return-value]

    def execute(self, sql: str, parameters: Any = (), /) -> _LogCursor:  # type: ignore[override]
        return sqlite3.Connection.cursor(self, _LogCursor).execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _LogCursor:  # type: ignore[override]
        return sqlite3.Connection.cursor(self, _LogCursor).executemany(sql, seq_of_parameters)


def _connect(path: Path, timeout_s: float) -> _LogConnection:
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=timeout_s,
            check_same_thread=False,
            factory=_LogConnection,
        )
    except sqlite3.Error as exc:
        _reraise(path, exc)
    conn.log_path = path
    return conn


class SqliteLog:
    """A durable embedded log. ``SqliteLog("var/log.db")`` or ``open_log("sqlite:///...")``."""

    def __init__(
        self,
        path: str | Path,
        *,
        default_partitions: int = DEFAULT_PARTITIONS,
        retention_s: float = DEFAULT_RETENTION_S,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            check_retention_s(retention_s)
        except ValueError as exc:
            raise ValueError(f"{self.url}: {exc}") from None
        if default_partitions < 1:
            raise ValueError(
                f"{self.url}: default_partitions={default_partitions}: must be at least 1"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SqliteLogError(
                f"embedded log {self.path}: cannot create its directory {self.path.parent}: "
                f"{exc.strerror or exc}: {_WHERE}"
            ) from exc
        self.default_partitions = default_partitions
        self.retention_s = retention_s
        self.conn = _connect(self.path, timeout_s=60.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.execute("PRAGMA busy_timeout=60000")
        self._tx_depth = 0
        self._lock = threading.RLock()
        self._partitions: dict[str, int] = {}
        self._tp_ids: dict[TopicPartition, int] = {}
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested uses join the outermost one."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self.conn
            finally:
                self._tx_depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        try:
            yield self.conn
            self._tx_depth = 0
            self.conn.execute("COMMIT")
        except BaseException:
            self._tx_depth = 0
            # SQLite may have rolled back already (disk full, I/O error): a second ROLLBACK
            # would fail and hide the error that matters.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    # -- topics ------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int | None = None, *, compact: bool = False
    ) -> None:
        """Create ``name`` if missing; ``compact`` is accepted for interface parity (the
        embedded log keeps checkpoints in a table, not a compacted topic)."""
        if not name or len(name) > 200:
            raise ValueError(f"topic name {name!r}: must be 1-200 characters")
        count = partitions or self.default_partitions
        if count < 1:
            raise ValueError(f"partitions={count}: must be at least 1")
        with self.transaction() as conn:
            row = conn.execute("SELECT partitions FROM topics WHERE name=?", (name,)).fetchone()
            if row is not None:
                return
            conn.execute(
                "INSERT INTO topics(name, partitions, retention_s) VALUES (?,?,?)",
                (name, count, self.retention_s),
            )
            (base,) = conn.execute("SELECT COALESCE(MAX(tp_id), -1) + 1 FROM heads").fetchone()
            conn.executemany(
                "INSERT INTO heads(topic, partition, tp_id, next_offset, low_offset)"
                " VALUES (?,?,?,0,0)",
                [(name, p, base + p) for p in range(count)],
            )

    def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            row = self.conn.execute(
                "SELECT partitions FROM topics WHERE name=?", (topic,)
            ).fetchone()
            if row is None:
                raise KeyError(f"topic {topic!r} does not exist")
            count = self._partitions[topic] = int(row[0])
        return count

    def topics(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, partitions FROM topics").fetchall())

    def _tp_id(self, tp: TopicPartition) -> int:
        tp_id = self._tp_ids.get(tp)
        if tp_id is None:
            row = self.conn.execute(
                "SELECT tp_id FROM heads WHERE topic=? AND partition=?", tp
            ).fetchone()
            if row is None:
                raise KeyError(f"topic {tp[0]!r} has no partition {tp[1]}")
            tp_id = self._tp_ids[tp] = int(row[0])
        return tp_id

    # -- produce -----------------------------------------------------------------------------

    def produce(self, records: Iterable[OutRecord]) -> None:
        grouped: dict[TopicPartition, list[OutRecord]] = defaultdict(list)
        for rec in records:
            partition = rec.partition
            if partition is None:
                partition = partition_for(rec.key, self.partitions(rec.topic))
            grouped[(rec.topic, partition)].append(rec)
        if not grouped:
            return
        now_ms = int(time.time() * 1000)
        with self._lock, self.transaction() as conn:
            for tp, recs in grouped.items():
                tp_id = self._tp_id(tp)
                (start,) = conn.execute(
                    "SELECT next_offset FROM heads WHERE topic=? AND partition=?", tp
                ).fetchone()
                base = tp_id * OFFSET_SPAN + start
                conn.executemany(
                    "INSERT INTO records(pos, key, value, ts_ms, rid) VALUES (?,?,?,?,?)",
                    [(base + i, r.key, r.value, now_ms, r.rid) for i, r in enumerate(recs)],
                )
                conn.execute(
                    "UPDATE heads SET next_offset=? WHERE topic=? AND partition=?",
                    (start + len(recs), *tp),
                )

    def flush(self) -> None:
        """Appends are durable when :meth:`produce` returns (per ``synchronous``)."""

    # -- read --------------------------------------------------------------------------------

    def read(self, topic: str, partition: int, start: int, max_records: int) -> list[Record]:
        tp_id = self._tp_id((topic, partition))
        if start >= OFFSET_SPAN or max_records <= 0:
            return []
        base = tp_id * OFFSET_SPAN
        rows = self.conn.execute(
            "SELECT pos, key, value, ts_ms, rid FROM records WHERE pos >= ? AND pos < ?"
            " ORDER BY pos LIMIT ?",
            # A partition holds fewer than OFFSET_SPAN records: larger ints would not fit SQLite.
            (base + max(start, 0), base + OFFSET_SPAN, min(max_records, OFFSET_SPAN)),
        ).fetchall()
        return [
            Record(topic, partition, pos - base, key, value, ts_ms, rid)
            for pos, key, value, ts_ms, rid in rows
        ]

    def end_offsets(self, topic: str) -> dict[int, int]:
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM heads WHERE topic=?", (topic,)
        ).fetchall()
        if not rows:
            raise KeyError(f"topic {topic!r} does not exist")
        return dict(rows)

    def low_offsets(self, topic: str) -> dict[int, int]:
        return dict(
            self.conn.execute(
                "SELECT partition, low_offset FROM heads WHERE topic=?", (topic,)
            ).fetchall()
        )

    # -- groups ------------------------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        on_assign: AssignCallback | None = None,
        on_revoke: AssignCallback | None = None,
        lease_s: float = 10.0,
    ) -> SqliteConsumer:
        """A group member; ``lease_s``: how long its partitions stay its own without a
        renewal, i.e. how long a member that died holds up its partitions."""
        return SqliteConsumer(self, group, topics, on_assign, on_revoke, lease_s)

    def committed(self, group: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for topic, partition in tps:
            row = self.conn.execute(
                "SELECT next_offset FROM group_offsets WHERE grp=? AND topic=? AND partition=?",
                (group, topic, partition),
            ).fetchone()
            out[(topic, partition)] = int(row[0]) if row else 0
        return out

    def commit_offsets(self, group: str, positions: dict[TopicPartition, int]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO group_offsets(grp, topic, partition, next_offset) VALUES (?,?,?,?)"
                " ON CONFLICT(grp, topic, partition)"
                " DO UPDATE SET next_offset=excluded.next_offset",
                [(group, t, p, off) for (t, p), off in positions.items()],
            )

    # -- retention ---------------------------------------------------------------------------

    def apply_retention(self, now_s: float | None = None) -> int:
        """Delete records older than their topic's retention; ``0`` keeps them forever."""
        now_s = time.time() if now_s is None else now_s
        now_ms = int(now_s * 1000)
        deleted = 0
        with self.transaction() as conn:
            heads = conn.execute(
                "SELECT h.topic, h.partition, h.tp_id, h.next_offset, t.retention_s"
                " FROM heads h JOIN topics t ON t.name = h.topic"
            ).fetchall()
            for topic, partition, tp_id, next_offset, retention_s in heads:
                # 0 keeps forever; so does a retention reaching back before 1970 (nothing is
                # older), and one stored by an older version as inf, nan or 1e300: the cutoff
                # below is only computed when it fits.
                if not 0 < retention_s < now_s:
                    continue
                base = tp_id * OFFSET_SPAN
                cutoff_ms = now_ms - int(retention_s * 1000)
                row = conn.execute(
                    "SELECT MAX(pos) FROM records WHERE pos >= ? AND pos < ? AND ts_ms < ?",
                    (base, base + next_offset, cutoff_ms),
                ).fetchone()
                if row[0] is None:
                    continue
                # Records are appended in time order per partition: delete a prefix.
                cur = conn.execute(
                    "DELETE FROM records WHERE pos >= ? AND pos <= ?", (base, row[0])
                )
                deleted += cur.rowcount
                conn.execute(
                    "UPDATE heads SET low_offset=? WHERE topic=? AND partition=?",
                    (row[0] - base + 1, topic, partition),
                )
        return deleted

    def close(self) -> None:
        self.conn.close()


def lease_plan(
    members: Mapping[str, Collection[str]], partitions: Mapping[str, int]
) -> dict[TopicPartition, str]:
    """Which member each partition belongs to, given the live members (id → subscribed topics)
    and the partition count of each topic.

    Per topic, round-robin over the sorted ids of the members subscribed to it, starting at a
    member picked by the topic's name, so several topics spread evenly and every member
    computes the same plan from the same rows.

    >>> plan = lease_plan({"a": ["t"], "b": ["t", "u"]}, {"t": 4, "u": 1})
    >>> sorted(owner for (topic, _), owner in plan.items() if topic == "t")
    ['a', 'a', 'b', 'b']
    >>> plan[("u", 0)]
    'b'
    """
    plan: dict[TopicPartition, str] = {}
    for topic, count in sorted(partitions.items()):
        subscribed = sorted(m for m, topics in members.items() if topic in topics)
        if not subscribed:
            continue
        start = zlib.crc32(topic.encode())
        for partition in range(count):
            plan[(topic, partition)] = subscribed[(start + partition) % len(subscribed)]
    return plan


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteConsumer:
    """A group member holding leases on its partitions (see the module docstring).

    ``on_assign``/``on_revoke`` are called from inside :meth:`poll` with the partitions newly
    taken / about to be released (incremental, like Kafka's cooperative-sticky); seeks made in
    ``on_assign`` set the start positions. Partitions found to be another member's already are
    passed to ``on_revoke`` with :attr:`lost` set to True: their uncommitted work must be
    dropped, not committed.
    """

    def __init__(
        self,
        log: SqliteLog,
        group: str,
        topics: Sequence[str],
        on_assign: AssignCallback | None,
        on_revoke: AssignCallback | None,
        lease_s: float,
    ) -> None:
        if not (math.isfinite(lease_s) and 0 < lease_s <= MAX_LEASE_S):
            raise ValueError(
                f"lease_s={lease_s!r}: must be a number of seconds in (0, {MAX_LEASE_S:g}]"
            )
        self.log = log
        self.group = group
        self._partitions = {topic: log.partitions(topic) for topic in dict.fromkeys(topics)}
        self._topics = json.dumps(sorted(self._partitions))
        self._lease_ms = max(1, round(lease_s * 1000))
        self._heartbeat_s = lease_s / 4
        #: Random per instance (pid first, for people reading the tables); never in outputs.
        self.member_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        #: What the plan gave this member at its last look at the group.
        self._wanted: set[TopicPartition] | None = None
        #: Partitions taken away from under this member, to pass to ``on_revoke`` (lost).
        self._lost: list[TopicPartition] = []
        self._epoch = -1
        self._next_sync = 0.0
        self._next = 0
        self._closed = False
        self._joined = False
        #: True while ``on_revoke`` is called for partitions already owned by someone else.
        self.lost = False

    # -- Consumer protocol ---------------------------------------------------------------------

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._assigned)

    def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise KeyError(f"{tp} is not assigned to this consumer")
        self._positions[tp] = offset

    def poll(self, max_records: int = 500, timeout_s: float = 0.2) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._follow_group()
            out = self._poll_once(max_records)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _poll_once(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        count = len(self._assigned)
        for step in range(count):
            tp = self._assigned[(self._next + step) % count]
            chunk = self.log.read(tp[0], tp[1], self._positions[tp], max_records - len(out))
            if chunk:
                out.extend(chunk)
                self._positions[tp] = chunk[-1].offset + 1
            else:
                # Like Kafka's auto.offset.reset=earliest: a position that retention deleted
                # moves up to the oldest retained record (the worker counts the gap).
                low = self.log.low_offsets(tp[0])[tp[1]]
                if self._positions[tp] < low:
                    self._positions[tp] = low
            if len(out) >= max_records:
                self._next = (self._next + step + 1) % count
                break
        return out

    def commit(self, positions: dict[TopicPartition, int] | None = None) -> None:
        """Commit positions of partitions this member holds (:class:`PartitionsLostError`,
        and nothing written, if one is someone else's now)."""
        positions = dict(self._positions) if positions is None else positions
        with self.log.transaction() as conn:
            self.fence(conn, list(positions))
            self.log.commit_offsets(self.group, positions)

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return self.log.committed(self.group, tps)

    def close(self) -> None:
        """Revoke (lost ones as lost), then release the leases and leave the group."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._assigned:
                mine = self._leased(self.log.conn)
                self._mark_lost([tp for tp in self._assigned if tp not in mine])
            self._revoke_lost()
            if self._assigned:
                self._call(self._on_revoke, list(self._assigned))
        finally:
            self._assigned = []
            self._positions.clear()
            self._lost = []
            self._leave()

    # -- group membership ----------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """True once this member holds every partition the plan gives it (as of its last look
        at the group): until then, being caught up on what it holds does not mean done (the
        same attribute as the Kafka consumer's, which the worker's idle test reads)."""
        return self._wanted is not None and self._wanted <= set(self._assigned)

    def fence(self, conn: sqlite3.Connection, tps: Iterable[TopicPartition]) -> None:
        """Inside the caller's write transaction on this log: check that this member holds
        the lease of every partition in ``tps`` and renew its leases.

        A partition whose lease row names another member (or none) is lost: it leaves the
        assignment at once, goes to ``on_revoke`` (lost) on the next poll, and
        :class:`PartitionsLostError` is raised so the caller's transaction writes nothing.
        """
        mine = self._leased(conn)
        lost = sorted(set(tps) - mine)
        if lost:
            self._mark_lost(lost)
            raise PartitionsLostError(
                f"group {self.group}: member {self.member_id} no longer owns {lost}"
                " (another member took them over); nothing was committed",
                lost,
            )
        now_ms = _now_ms()
        self._register(conn, now_ms)
        conn.execute(
            "UPDATE group_leases SET expires_ms=? WHERE grp=? AND member_id=?",
            (now_ms + self._lease_ms, self.group, self.member_id),
        )

    def _leased(self, conn: sqlite3.Connection) -> set[TopicPartition]:
        rows = conn.execute(
            "SELECT topic, partition FROM group_leases WHERE grp=? AND member_id=?",
            (self.group, self.member_id),
        ).fetchall()
        return {(topic, partition) for topic, partition in rows}

    def _follow_group(self) -> None:
        """Rebalance when the heartbeat is due or another member joined, left or released."""
        if self._closed:
            raise RuntimeError(f"consumer of group {self.group} is closed")
        self._revoke_lost()
        if time.monotonic() >= self._next_sync or self._read_epoch(self.log.conn) != self._epoch:
            self._rebalance()

    def _read_epoch(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT epoch FROM group_epochs WHERE grp=?", (self.group,)).fetchone()
        return int(row[0]) if row else 0

    def _bump_epoch(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO group_epochs(grp, epoch) VALUES (?, 1)"
            " ON CONFLICT(grp) DO UPDATE SET epoch = epoch + 1",
            (self.group,),
        )

    def _register(self, conn: sqlite3.Connection, now_ms: int) -> None:
        """Renew this member's row (re-insert it, and tell the group, if it was gone)."""
        expires_ms = now_ms + self._lease_ms
        cur = conn.execute(
            "UPDATE group_members SET expires_ms=? WHERE grp=? AND member_id=?",
            (expires_ms, self.group, self.member_id),
        )
        self._joined = True
        if cur.rowcount == 0:
            conn.execute(
                "INSERT INTO group_members(grp, member_id, topics, expires_ms) VALUES (?,?,?,?)",
                (self.group, self.member_id, self._topics, expires_ms),
            )
            self._bump_epoch(conn)

    def _rebalance(self) -> None:
        me, group = self.member_id, self.group
        now_ms = _now_ms()
        expires_ms = now_ms + self._lease_ms
        with self.log.transaction() as conn:
            self._register(conn, now_ms)
            dead = conn.execute(
                "DELETE FROM group_members WHERE grp=? AND expires_ms<=?", (group, now_ms)
            ).rowcount
            if dead:
                self._bump_epoch(conn)
            members = {
                member: json.loads(topics)
                for member, topics in conn.execute(
                    "SELECT member_id, topics FROM group_members WHERE grp=?", (group,)
                )
            }
            leases = {
                (topic, partition): (owner, expires)
                for topic, partition, owner, expires in conn.execute(
                    "SELECT topic, partition, member_id, expires_ms FROM group_leases WHERE grp=?",
                    (group,),
                )
            }
            wanted = {
                tp for tp, owner in lease_plan(members, self._partitions).items() if owner == me
            }
            lost = [tp for tp in self._assigned if leases.get(tp, ("",))[0] != me]
            kept = set(self._assigned) - set(lost)
            release = sorted(kept - wanted)
            take = sorted(
                tp
                for tp in wanted - kept
                if tp not in leases or leases[tp][0] == me or leases[tp][1] <= now_ms
            )
            conn.executemany(
                "INSERT OR REPLACE INTO group_leases(grp, topic, partition, member_id,"
                " expires_ms) VALUES (?,?,?,?,?)",
                [(group, topic, partition, me, expires_ms) for topic, partition in take],
            )
            conn.execute(
                "UPDATE group_leases SET expires_ms=? WHERE grp=? AND member_id=?",
                (expires_ms, group, me),
            )
            self._epoch = self._read_epoch(conn)
        self._next_sync = time.monotonic() + self._heartbeat_s
        self._wanted = wanted
        if len(wanted - kept) > len(take):
            logger.info(
                "group %s: member %s waits for %s, leased by other members",
                group,
                me,
                sorted(wanted - kept - set(take)),
            )
        # Callbacks run outside the write transaction: they checkpoint, i.e. write, themselves.
        self._mark_lost(lost)
        self._revoke_lost()
        if release:
            self._release(release)
        if take:
            self._assigned.extend(take)
            self._positions.update(self.log.committed(group, take))
            self._call(self._on_assign, take)

    def _mark_lost(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            if tp in self._positions:
                self._assigned.remove(tp)
                del self._positions[tp]
                self._lost.append(tp)

    def _revoke_lost(self) -> None:
        if not self._lost:
            return
        lost, self._lost = self._lost, []
        logger.warning(
            "group %s: member %s lost %s to another member (its lease expired)",
            self.group,
            self.member_id,
            lost,
        )
        self.lost = True
        try:
            self._call(self._on_revoke, lost)
        finally:
            self.lost = False

    def _release(self, tps: list[TopicPartition]) -> None:
        """Hand partitions the plan gives to another member over: revoke, then unlease."""
        try:
            self._call(self._on_revoke, tps)
        finally:
            for tp in tps:
                self._assigned.remove(tp)
                del self._positions[tp]
            with self.log.transaction() as conn:
                conn.executemany(
                    "DELETE FROM group_leases"
                    " WHERE grp=? AND topic=? AND partition=? AND member_id=?",
                    [(self.group, topic, partition, self.member_id) for topic, partition in tps],
                )
                self._bump_epoch(conn)
                self._epoch = self._read_epoch(conn)

    def _leave(self) -> None:
        if not self._joined:
            return
        try:
            with self.log.transaction() as conn:
                conn.execute(
                    "DELETE FROM group_leases WHERE grp=? AND member_id=?",
                    (self.group, self.member_id),
                )
                conn.execute(
                    "DELETE FROM group_members WHERE grp=? AND member_id=?",
                    (self.group, self.member_id),
                )
                self._bump_epoch(conn)
        except sqlite3.Error as exc:
            # The leases then expire on their own; a failed close must not hide why it closed.
            logger.warning("group %s: could not release leases: %s", self.group, exc)

    @staticmethod
    def _call(callback: AssignCallback | None, tps: list[TopicPartition]) -> None:
        if callback is not None and tps:
            callback(list(tps))
