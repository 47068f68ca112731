"""One owner per partition on the embedded log: group members hold leases in the log's database,
share the partitions by a plan, take a dead member's partitions over once its lease expires, and
a commit by a member that lost a partition is refused (fencing)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wearwatch.bus.base import (
    OutRecord,
    PartitionsLostError,
    TopicPartition,
    pack_by_partition,
    read_all,
)
from wearwatch.bus.sqlite import SqliteConsumer, SqliteLog, lease_plan
from wearwatch.events import ReadingTotals, encode
from wearwatch.pipelines.reading_totals import (
    READINGS_TOPIC,
    TOTALS_TOPIC,
    ReadingTotalsOperator,
)
from wearwatch.runtime.checkpoint import SqliteCheckpointStore
from wearwatch.runtime.operator import Emitted, PartitionState
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

TOPIC = "t"


class Recorder:
    """A consumer's callbacks, recording what they were given (and whether it was lost)."""

    def __init__(self) -> None:
        self.consumer: SqliteConsumer | None = None
        self.assigned: list[list[TopicPartition]] = []
        self.revoked: list[tuple[list[TopicPartition], bool]] = []

    def on_assign(self, tps: list[TopicPartition]) -> None:
        self.assigned.append(sorted(tps))

    def on_revoke(self, tps: list[TopicPartition]) -> None:
        assert self.consumer is not None
        self.revoked.append((sorted(tps), self.consumer.lost))


def member(
    log: SqliteLog, group: str = "g", lease_s: float = 10.0
) -> tuple[SqliteConsumer, Recorder]:
    rec = Recorder()
    rec.consumer = log.consumer(
        group, [TOPIC], on_assign=rec.on_assign, on_revoke=rec.on_revoke, lease_s=lease_s
    )
    return rec.consumer, rec


def tps(*partitions: int) -> list[TopicPartition]:
    return [(TOPIC, p) for p in partitions]


def expire(path: Path, member_id: str) -> None:
    """What time does to a member that stopped renewing: its row and leases expire."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE group_members SET expires_ms=0 WHERE member_id=?", (member_id,))
        conn.execute("UPDATE group_leases SET expires_ms=0 WHERE member_id=?", (member_id,))


# -- the plan -------------------------------------------------------------------------------------


@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=4),
        st.sets(st.sampled_from(["t", "u", "v"]), min_size=1),
        min_size=1,
        max_size=6,
    ),
    st.dictionaries(st.sampled_from(["t", "u", "v"]), st.integers(1, 12), min_size=1),
)
def test_plan_gives_each_partition_to_one_subscriber_evenly(
    members: dict[str, set[str]], partitions: dict[str, int]
) -> None:
    plan = lease_plan(members, partitions)
    # Order of the rows does not matter: every member computes the same plan.
    assert plan == lease_plan(dict(reversed(list(members.items()))), partitions)
    for topic, count in partitions.items():
        subscribed = {m for m, topics in members.items() if topic in topics}
        owners = [plan.get((topic, p)) for p in range(count)]
        if not subscribed:
            assert owners == [None] * count
            continue
        assert set(owners) <= subscribed  # every partition has exactly one subscribed owner
        shares = Counter(owners)
        per_member = [shares.get(m, 0) for m in subscribed]
        assert sum(per_member) == count
        assert max(per_member) - min(per_member) <= 1  # as even as it gets, per topic
    wanted = {t for topics in members.values() for t in topics}
    assert set(plan) == {(t, p) for t, n in partitions.items() if t in wanted for p in range(n)}


# -- two members in one process -------------------------------------------------------------------


def test_members_split_disjointly_and_a_closed_members_partitions_move_on_the_next_poll(
    tmp_path: Path,
) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(TOPIC, 5)
    a, ra = member(log)
    b, rb = member(log)

    started = time.monotonic()
    assert a.poll(10, 0) == []
    assert time.monotonic() - started < 1.0  # alone: everything at once, no lease wait
    assert a.assignment() == tps(0, 1, 2, 3, 4) and ra.assigned == [tps(0, 1, 2, 3, 4)]
    assert a.settled

    b.poll(10, 0)  # joins; a still holds every lease
    assert b.assignment() == [] and not b.settled
    plan = lease_plan({a.member_id: [TOPIC], b.member_id: [TOPIC]}, {TOPIC: 5})
    for_a = sorted(tp for tp, owner in plan.items() if owner == a.member_id)
    for_b = sorted(tp for tp, owner in plan.items() if owner == b.member_id)
    a.poll(10, 0)  # sees the join on this poll (the group's epoch moved), hands b its share
    assert ra.revoked == [(for_b, False)]
    assert sorted(a.assignment()) == for_a
    b.poll(10, 0)  # takes it on the next poll: no lease period to wait for
    assert sorted(b.assignment()) == for_b and rb.assigned == [for_b]
    assert {len(for_a), len(for_b)} == {2, 3}
    assert a.settled and b.settled

    # Each reads only its own partitions; together they read everything once.
    log.produce(OutRecord(TOPIC, None, b"%d" % i, partition=i % 5) for i in range(50))
    got_a = [(r.partition, r.offset) for r in a.poll(100, 0)]
    got_b = [(r.partition, r.offset) for r in b.poll(100, 0)]
    assert {(TOPIC, p) for p, _ in got_a} == set(for_a)
    assert {(TOPIC, p) for p, _ in got_b} == set(for_b)
    assert sorted(got_a + got_b) == sorted((i % 5, i // 5) for i in range(50))
    a.commit()
    b.commit()

    a.close()
    assert ra.revoked == [(for_b, False), (for_a, False)]
    b.poll(10, 0)  # one poll later, b holds everything and resumes at a's commits
    assert b.assignment() == tps(0, 1, 2, 3, 4) and rb.assigned == [for_b, for_a]
    assert all(b.position(tp) == 10 for tp in tps(0, 1, 2, 3, 4))
    assert b.poll(100, 0) == []
    b.close()
    with sqlite3.connect(tmp_path / "log.db") as conn:  # nothing left behind
        assert conn.execute("SELECT COUNT(*) FROM group_leases").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM group_members").fetchone() == (0,)
    log.close()


def test_a_dead_members_partitions_are_taken_over_once_its_lease_expires(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(TOPIC, 4)
    lease_s = 1.0
    a, _ = member(log, lease_s=lease_s)
    b, rb = member(log, lease_s=lease_s)
    a.poll(10, 0)
    b.poll(10, 0)
    a.poll(10, 0)
    b.poll(10, 0)
    assert len(a.assignment()) == len(b.assignment()) == 2
    # a "dies": it never polls or closes again. b keeps polling.
    died = time.monotonic()
    while len(b.assignment()) < 4:
        assert time.monotonic() - died < lease_s + 5.0, "b never took a's partitions over"
        b.poll(10, 0.05)
    takeover_s = time.monotonic() - died
    # Not before a's lease expired (it renewed on its last poll), soon after it did.
    assert lease_s * 0.9 <= takeover_s <= lease_s + 1.5
    assert rb.assigned[1] == sorted(set(tps(0, 1, 2, 3)) - set(rb.assigned[0]))
    log.close()


# -- fencing --------------------------------------------------------------------------------------


def test_a_member_whose_partitions_were_taken_cannot_commit_them(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    log = SqliteLog(path)
    log.create_topic(TOPIC, 2)
    log.create_topic("out", 1)
    store = SqliteCheckpointStore(log, "g", b"k" * 32)
    a, ra = member(log)
    a.poll(10, 0)
    assert a.assignment() == tps(0, 1)
    a.commit({(TOPIC, 0): 3})

    # a stalls past its lease (SIGSTOP, swap, …): b, on its own connection, takes over.
    expire(path, a.member_id)
    other = SqliteLog(path)
    b, rb = member(other)
    b.poll(10, 0)
    assert b.assignment() == tps(0, 1)

    # a comes back with work done in the meantime: its checkpoint is refused, whole.
    outputs = [Emitted("out", b"k", b"late", "a/0/3", 0), Emitted("out", b"k", b"x", "a/1/0", 1)]
    states = {(TOPIC, 0): PartitionState(position=7), (TOPIC, 1): PartitionState(position=1)}
    with pytest.raises(PartitionsLostError) as raised:
        store.commit(outputs, states, a)
    assert raised.value.partitions == tps(0, 1)
    assert read_all(log, "out") == []
    assert log.conn.execute("SELECT COUNT(*) FROM checkpoint_snapshots").fetchone() == (0,)
    assert log.committed("g", tps(0, 1)) == {(TOPIC, 0): 3, (TOPIC, 1): 0}
    assert a.assignment() == []  # no more records from them
    with pytest.raises(PartitionsLostError):
        a.commit({(TOPIC, 0): 9})  # plain offset commits are fenced the same way
    assert log.committed("g", tps(0)) == {(TOPIC, 0): 3}

    # Its next poll tells its owner they were lost (drop, do not checkpoint), then it rejoins.
    a.poll(10, 0)
    assert ra.revoked == [(tps(0, 1), True)]
    b.poll(10, 0)  # sees a rejoin, hands it its share
    a.poll(10, 0)
    assert sorted(a.assignment() + b.assignment()) == tps(0, 1)
    assert len(a.assignment()) == 1 and rb.revoked == [(a.assignment(), False)]

    # The owner commits normally.
    owner = a if (TOPIC, 0) in a.assignment() else b
    store.commit(outputs[:1], {(TOPIC, 0): states[(TOPIC, 0)]}, owner)
    assert log.committed("g", tps(0)) == {(TOPIC, 0): 7}
    assert [r.value for r in read_all(log, "out")] == [b"late"]
    b.close()
    a.close()
    other.close()
    log.close()


def test_a_member_may_renew_an_expired_lease_nobody_took(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    log = SqliteLog(path)
    log.create_topic(TOPIC, 2)
    a, ra = member(log)
    a.poll(10, 0)
    expire(path, a.member_id)  # it stalled, but no other member came
    a.commit({(TOPIC, 0): 5})
    a.poll(10, 0)
    assert a.assignment() == tps(0, 1) and ra.revoked == []
    assert log.committed("g", tps(0)) == {(TOPIC, 0): 5}
    now_ms = time.time() * 1000
    rows = log.conn.execute("SELECT expires_ms FROM group_leases").fetchall()
    assert len(rows) == 2 and all(now_ms + 9_000 < e <= now_ms + 10_000 for (e,) in rows)
    log.close()


# -- exit when idle -------------------------------------------------------------------------------


def test_an_idle_worker_waits_for_partitions_still_leased_by_a_dead_member(tmp_path: Path) -> None:
    """A restart right after a crash: the dead instance still holds live leases. The worker
    must not call itself idle before it took them over and drained them."""
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, 4)
    log.produce(
        pack_by_partition(
            READINGS_TOPIC,
            synthetic_readings(4000, seed=3),
            lambda e: f"{e.machine_id}/{e.sensor}",
            4,
            encode,
            100,
        )
    )
    ghost_lease_s = 1.5
    expires_ms = int(time.time() * 1000 + ghost_lease_s * 1000)
    with log.transaction() as conn:
        conn.execute(
            "INSERT INTO group_members VALUES ('totals', 'ghost', ?, ?)",
            (f'["{READINGS_TOPIC}"]', expires_ms),
        )
        conn.executemany(
            "INSERT INTO group_leases VALUES ('totals', ?, ?, 'ghost', ?)",
            [(READINGS_TOPIC, p, expires_ms) for p in range(4)],
        )
    started = time.monotonic()
    options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.05, lease_s=2.0)
    counters = Worker(log, ReadingTotalsOperator(ttl_s=0.5), "totals", options).run(
        install_signals=False
    )
    assert time.monotonic() - started >= ghost_lease_s - 0.2
    assert counters["in"] == 4000
    ends = log.end_offsets(READINGS_TOPIC)
    partitions = [(READINGS_TOPIC, p) for p in range(4)]
    assert log.committed("totals", partitions) == {(READINGS_TOPIC, p): ends[p] for p in range(4)}
    log.close()


def test_lease_time_must_be_finite_and_positive(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(TOPIC, 1)
    for bad in (0.0, -1.0, float("inf"), float("nan"), 1e300):
        with pytest.raises(ValueError, match=r"lease_s=.*must be a number of seconds"):
            log.consumer("g", [TOPIC], lease_s=bad)
    log.close()


# -- worker processes -----------------------------------------------------------------------------

LEASE_S = 2.0
TTL_S = 0.4
GROUP = "totals"
N_EVENTS = 60_000


def _records(n: int = N_EVENTS) -> list[OutRecord]:
    events = synthetic_readings(n, seed=21, jitter_s=0.05)
    key_of = lambda e: f"{e.machine_id}/{e.sensor}"  # noqa: E731
    return pack_by_partition(READINGS_TOPIC, events, key_of, 4, encode, 20)


def _reference(path: Path, records: list[OutRecord]) -> None:
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, 4)
    log.produce(records)
    options = WorkerOptions(watermark_delay_s=0.1, exit_when_idle=True, poll_timeout_s=0.0)
    counters = Worker(log, ReadingTotalsOperator(ttl_s=TTL_S), GROUP, options).run(
        install_signals=False
    )
    assert counters["in"] == N_EVENTS
    log.close()


def _outputs(path: Path) -> tuple[dict[str, list[tuple]], list[str]]:
    log = SqliteLog(path)
    per_key: dict[str, list[tuple]] = {}
    rids = []
    for record in read_all(log, TOTALS_TOPIC):
        event = msgspec.json.decode(record.value, type=ReadingTotals)
        per_key.setdefault(event.key, []).append(
            (event.ts, event.first_ts, event.count, event.total)
        )
        rids.append(record.rid)
    log.close()
    return per_key, rids


def _start(path: Path, stderr: Path) -> subprocess.Popen:
    env = dict(
        os.environ,
        WEARWATCH_LEASE_S=str(LEASE_S),
        WEARWATCH_WATERMARK_DELAY_S="0.1",
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.05",
        WEARWATCH_POLL_MAX_RECORDS="1",
    )
    cmd = [sys.executable, "-m", "wearwatch", "worker", "reading_totals", "--group", GROUP]
    cmd += ["--bus", f"sqlite:///{path}", "--param", f"ttl_s={TTL_S}", "--quiet"]
    return subprocess.Popen(cmd, env=env, stderr=stderr.open("w"))


def _owners(path: Path) -> dict[int, list[int]]:
    """pid → partitions it holds a lease on (member ids start with the pid)."""
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute(
            "SELECT member_id, partition FROM group_leases WHERE grp=? ORDER BY partition",
            (GROUP,),
        ).fetchall()
    owners: dict[int, list[int]] = {}
    for member_id, partition in rows:
        owners.setdefault(int(member_id.split("-")[0]), []).append(partition)
    return owners


def _committed(path: Path, partitions: list[int]) -> int:
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute(
            "SELECT partition, next_offset FROM group_offsets WHERE grp=? AND topic=?",
            (GROUP, READINGS_TOPIC),
        ).fetchall()
    return sum(offset for partition, offset in rows if partition in partitions)


def _ends(path: Path, partitions: list[int]) -> int:
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute(
            "SELECT partition, next_offset FROM heads WHERE topic=?", (READINGS_TOPIC,)
        ).fetchall()
    return sum(offset for partition, offset in rows if partition in partitions)


def _wait(condition, what: str, procs: list[subprocess.Popen], timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    while not condition():
        assert all(p.poll() is None for p in procs), f"a worker exited while waiting for {what}"
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - started


def _produce(path: Path, records: list[OutRecord]) -> None:
    log = SqliteLog(path)
    log.produce(records)
    log.close()


def _two_workers(path: Path, tmp_path: Path) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Two workers of one group on an empty input topic, once they split it 2/2."""
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, 4)
    log.close()
    a = _start(path, tmp_path / "a.err")
    b = _start(path, tmp_path / "b.err")
    _wait(
        lambda: (
            sorted(map(len, _owners(path).values())) == [2, 2]
            and set(_owners(path)) == {a.pid, b.pid}
        ),
        "a 2/2 split",
        [a, b],
    )
    return a, b


def _all_committed(path: Path) -> bool:
    return _committed(path, [0, 1, 2, 3]) == _ends(path, [0, 1, 2, 3])


def _assert_like_reference(path: Path, reference: Path) -> None:
    expected, expected_rids = _outputs(reference)
    actual, actual_rids = _outputs(path)
    assert sum(len(v) for v in expected.values()) > 500  # timers really fired
    assert len(actual_rids) == len(set(actual_rids))  # no output written twice
    assert actual == expected  # same records, same per-key order
    assert sorted(actual_rids) == sorted(expected_rids)


@pytest.mark.slow
def test_two_worker_processes_share_and_the_survivor_takes_a_killed_ones_partitions(
    tmp_path: Path,
) -> None:
    records = _records()
    first, second = len(records) * 2 // 5, len(records) * 4 // 5
    _reference(tmp_path / "reference.db", records)
    path = tmp_path / "log.db"
    a, b = _two_workers(path, tmp_path)
    try:
        _produce(path, records[:first])
        _wait(lambda: _all_committed(path), "the first part", [a, b])
        owners = _owners(path)
        assert sorted(owners[a.pid] + owners[b.pid]) == [0, 1, 2, 3]  # disjoint, complete
        rids = _outputs(path)[1]
        assert rids and len(rids) == len(set(rids))  # each partition processed by one

        # SIGKILL b while it is working through its share of the second part.
        b_parts = owners[b.pid]
        done_before = _committed(path, b_parts)
        _produce(path, records[first:second])
        _wait(lambda: _committed(path, b_parts) > done_before, "b at work", [a, b])
        b.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert _committed(path, b_parts) < _ends(path, b_parts)  # b left work behind
        b.wait(timeout=10)
        _produce(path, records[second:])

        _wait(lambda: _owners(path) == {a.pid: [0, 1, 2, 3]}, "the takeover", [a])
        takeover_s = time.monotonic() - killed
        # Never before b's lease ran out (it renewed at each checkpoint), soon after.
        assert LEASE_S - 0.3 <= takeover_s <= LEASE_S + 3.0, takeover_s
        _wait(lambda: _all_committed(path), "the rest", [a])
        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=30) == 0
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    _assert_like_reference(path, tmp_path / "reference.db")


@pytest.mark.slow
def test_a_worker_stopped_past_its_lease_is_fenced_off(tmp_path: Path) -> None:
    records = _records()
    first, second = len(records) * 2 // 5, len(records) * 4 // 5
    _reference(tmp_path / "reference.db", records)
    path = tmp_path / "log.db"
    a, b = _two_workers(path, tmp_path)
    try:
        _produce(path, records[:first])
        _wait(lambda: _all_committed(path), "the first part", [a, b])
        b_parts = _owners(path)[b.pid]
        done_before = _committed(path, b_parts)
        _produce(path, records[first:second])
        _wait(lambda: _committed(path, b_parts) > done_before, "b at work", [a, b])
        # Stop b outside a write transaction (a stopped writer would stall every writer).
        while True:
            b.send_signal(signal.SIGSTOP)
            probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                break
            except sqlite3.OperationalError:
                b.send_signal(signal.SIGCONT)
                time.sleep(0.01)
            finally:
                probe.close()
        stopped = time.monotonic()
        assert _committed(path, b_parts) < _ends(path, b_parts)  # b holds work in memory

        takeover_s = _wait(lambda: _owners(path) == {a.pid: [0, 1, 2, 3]}, "the takeover", [a])
        assert takeover_s <= LEASE_S + 3.0
        _wait(lambda: _all_committed(path), "a finishing b's share", [a])
        before = _outputs(path)[1]

        b.send_signal(signal.SIGCONT)  # b wakes up with stale partitions and work in memory
        _wait(
            lambda: (
                "lost" in (tmp_path / "b.err").read_text()
                or "checkpoint refused" in (tmp_path / "b.err").read_text()
            ),
            "b to notice",
            [a, b],
        )
        # b rejoins: the group splits again, b restores a's checkpoints of its new share.
        _wait(lambda: sorted(map(len, _owners(path).values())) == [2, 2], "a new split", [a, b])
        assert _outputs(path)[1] == before  # b's stale work never reached the output
        assert time.monotonic() - stopped > LEASE_S
        _produce(path, records[second:])
        _wait(lambda: _all_committed(path), "the rest", [a, b])
        for proc in (a, b):
            proc.send_signal(signal.SIGTERM)
        assert a.wait(timeout=30) == 0 and b.wait(timeout=30) == 0
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
    _assert_like_reference(path, tmp_path / "reference.db")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "lease_s='inf' (WEARWATCH_LEASE_S): Input should be a finite number"),
        ("nan", "lease_s='nan' (WEARWATCH_LEASE_S): Input should be a finite number"),
        ("0", "lease_s='0' (WEARWATCH_LEASE_S): Input should be greater than 0"),
        (
            "1e300",
            "lease_s='1e300' (WEARWATCH_LEASE_S): Input should be less than or equal to 3600",
        ),
    ],
)
def test_a_bad_lease_setting_stops_the_worker_command_with_one_line(
    tmp_path: Path, value: str, message: str
) -> None:
    bus = f"sqlite:///{tmp_path / 'log.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "wearwatch", "worker", "reading_totals", "--bus", bus],
        env=dict(os.environ, WEARWATCH_LEASE_S=value),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: config {message}"]
    assert result.stdout == ""
    assert not (tmp_path / "log.db").exists()
