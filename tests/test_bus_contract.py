"""One contract for both log backends: the embedded SQLite log and Kafka (tansu in tests)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wearwatch.bus.base import Consumer, Log, OutRecord, Record, partition_for, read_all

# A consumer group join takes ~3 s on tansu (the broker's initial rebalance delay).
JOIN_TIMEOUT_S = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    if request.param == "sqlite":
        from wearwatch.bus.sqlite import SqliteLog

        backend: Log = SqliteLog(tmp_path / "log.db")
    else:
        from wearwatch.bus.kafka import KafkaLog

        backend = KafkaLog(request.getfixturevalue("kafka_url"))
    try:
        yield backend
    finally:
        backend.close()


def produce_keyed(log: Log, topic: str, count: int, keys: int = 10) -> list[OutRecord]:
    records = [
        OutRecord(topic, f"machine-{i % keys}".encode(), f"value-{i}".encode(), rid=f"rid-{i}")
        for i in range(count)
    ]
    log.produce(records)
    log.flush()
    return records


def poll_until(
    consumer: Consumer, count: int, *, max_records: int = 500, timeout_s: float = JOIN_TIMEOUT_S
) -> list[Record]:
    """Poll until ``count`` records arrived (or fail after ``timeout_s``)."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count:
        assert time.monotonic() < deadline, f"only {len(out)} of {count} records arrived"
        batch = consumer.poll(max_records, 0.1)
        assert len(batch) <= max_records
        out.extend(batch)
    return out


def drain(consumer: Consumer, quiet_s: float = 0.5) -> list[Record]:
    """Whatever else arrives until nothing has come for ``quiet_s``."""
    out: list[Record] = []
    last = time.monotonic()
    while time.monotonic() - last < quiet_s:
        batch = consumer.poll(500, 0.1)
        if batch:
            out.extend(batch)
            last = time.monotonic()
    return out


def ids(records: list[Record]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def assert_offset_order(records: list[Record]) -> None:
    last: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        assert r.offset > last.get(tp, -1), f"{tp}: offset {r.offset} after {last.get(tp)}"
        last[tp] = r.offset


# -- topics, produce, read -----------------------------------------------------------------------


def test_create_topic_is_idempotent_and_keeps_partitions(log: Log) -> None:
    topic = unique("create")
    log.create_topic(topic, 3)
    log.create_topic(topic, 5)
    log.create_topic(topic)
    assert log.partitions(topic) == 3
    assert log.end_offsets(topic) == {0: 0, 1: 0, 2: 0}


def test_produce_read_round_trip(log: Log) -> None:
    topic = unique("roundtrip")
    log.create_topic(topic, 3)
    sent = produce_keyed(log, topic, 60)
    log.produce(
        [
            OutRecord(topic, None, b"no-key"),
            OutRecord(topic, b"pinned", b"explicit", rid="pin", partition=2),
        ]
    )
    log.flush()

    got = read_all(log, topic)
    assert len(got) == 62
    by_rid = {r.rid: r for r in got if r.rid}
    for rec in sent:
        r = by_rid[rec.rid]
        assert (r.topic, r.key, r.value) == (topic, rec.key, rec.value)
        assert r.partition == partition_for(rec.key, 3)
        assert r.timestamp_ms > 1_600_000_000_000
    assert by_rid["pin"].partition == 2 and by_rid["pin"].value == b"explicit"
    no_key = [r for r in got if r.key is None]
    assert len(no_key) == 1 and no_key[0].partition == 0 and no_key[0].rid == ""

    # Offsets are 0..n-1 per partition, in produce order.
    ends = log.end_offsets(topic)
    for partition in range(3):
        part = [r for r in got if r.partition == partition]
        assert [r.offset for r in part] == list(range(len(part)))
        assert ends[partition] == len(part)
        values = [r.value for r in part]
        expected = [
            o.value
            for o in [*sent, OutRecord(topic, None, b"no-key")]
            if partition_for(o.key, 3) == partition
        ] + ([b"explicit"] if partition == 2 else [])
        assert values == expected

    # Bounded reads.
    biggest = max(range(3), key=lambda p: ends[p])
    chunk = log.read(topic, biggest, 2, 3)
    assert [r.offset for r in chunk] == [2, 3, 4]
    assert log.read(topic, biggest, ends[biggest], 10) == []
    assert log.read(topic, biggest, ends[biggest] + 5, 10) == []
    assert [r.offset for r in log.read(topic, biggest, ends[biggest] - 1, 10)] == [
        ends[biggest] - 1
    ]


@pytest.mark.kafka
def test_same_key_same_partition_on_both_backends(tmp_path: Path, kafka_url: str) -> None:
    from wearwatch.bus.kafka import KafkaLog
    from wearwatch.bus.sqlite import SqliteLog

    topic = unique("samekey")
    placements = []
    for backend in (SqliteLog(tmp_path / "log.db"), KafkaLog(kafka_url)):
        try:
            backend.create_topic(topic, 5)
            produce_keyed(backend, topic, 40, keys=40)
            placements.append({r.key: r.partition for r in read_all(backend, topic)})
        finally:
            backend.close()
    assert placements[0] == placements[1]
    assert len(set(placements[0].values())) > 1


# -- consumer groups -----------------------------------------------------------------------------


def test_group_resumes_from_committed_positions(log: Log) -> None:
    topic, group = unique("resume"), unique("g")
    log.create_topic(topic, 3)
    produce_keyed(log, topic, 40)

    first = log.consumer(group, [topic])
    try:
        got = poll_until(first, 40, max_records=7)
        assert_offset_order(got)
        done = got[:20]  # per-partition prefixes: poll keeps offset order within a partition
        positions: dict[tuple[str, int], int] = {}
        for r in done:
            positions[(r.topic, r.partition)] = r.offset + 1
        first.commit(positions)
        assert first.committed(list(positions)) == positions
    finally:
        first.close()

    second = log.consumer(group, [topic])
    try:
        assert second.committed(list(positions)) == positions
        rest = poll_until(second, 20)
        rest += drain(second)
    finally:
        second.close()
    assert_offset_order(rest)
    assert sorted(ids(done) + ids(rest)) == sorted(ids(got))  # nothing lost, nothing twice
    assert len(rest) == 20


def test_two_groups_read_independently(log: Log) -> None:
    topic = unique("groups")
    g1, g2 = unique("g1"), unique("g2")
    log.create_topic(topic, 2)
    produce_keyed(log, topic, 30)
    a, b = log.consumer(g1, [topic]), log.consumer(g2, [topic])
    try:
        got_a: list[Record] = []
        got_b: list[Record] = []
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while len(got_a) < 30 or len(got_b) < 30:
            assert time.monotonic() < deadline, (len(got_a), len(got_b))
            got_a += a.poll(500, 0.05)
            got_b += b.poll(500, 0.05)
        a.commit({(topic, p): 999 for p in range(2)} | {(topic, 0): 3})
        assert b.committed([(topic, 0), (topic, 1)]) == {(topic, 0): 0, (topic, 1): 0}
        assert a.committed([(topic, 0)]) == {(topic, 0): 3}
    finally:
        a.close()
        b.close()
    assert sorted(ids(got_a)) == sorted(ids(got_b))
    assert len(set(ids(got_a))) == 30


def test_poll_returns_at_most_max_records(log: Log) -> None:
    topic, group = unique("batch"), unique("g")
    log.create_topic(topic, 2)
    produce_keyed(log, topic, 50)
    consumer = log.consumer(group, [topic])
    try:
        got = poll_until(consumer, 50, max_records=7)  # asserts ≤ 7 per poll
        got += drain(consumer, 0.3)
        one = consumer.poll(1, 0.05)
        assert one == []
    finally:
        consumer.close()
    assert sorted(ids(got)) == sorted(set(ids(got)))
    assert len(got) == 50


def test_seek_after_records_rewinds(log: Log) -> None:
    topic, group = unique("seek"), unique("g")
    log.create_topic(topic, 2)
    log.produce([OutRecord(topic, None, b"%d" % i, partition=0) for i in range(20)])
    log.flush()
    consumer = log.consumer(group, [topic])
    try:
        got = poll_until(consumer, 20)
        assert [r.offset for r in got] == list(range(20))
        consumer.seek((topic, 0), 5)
        again = poll_until(consumer, 15)
        again += drain(consumer, 0.3)
    finally:
        consumer.close()
    assert [r.offset for r in again] == list(range(5, 20))
    assert [r.value for r in again] == [b"%d" % i for i in range(5, 20)]


def test_seek_inside_on_assign_sets_start_positions(log: Log) -> None:
    topic, group = unique("assignseek"), unique("g")
    log.create_topic(topic, 3)
    log.produce([OutRecord(topic, None, b"x", partition=p) for p in range(3) for _ in range(10)])
    log.flush()
    assigned: list[tuple[str, int]] = []
    revoked: list[tuple[str, int]] = []
    consumer: Consumer | None = None

    def on_assign(tps: list[tuple[str, int]]) -> None:
        assert consumer is not None
        assigned.extend(tps)
        for tp in tps:
            consumer.seek(tp, 4 + tp[1])  # partition p starts at 4 + p

    consumer = log.consumer(group, [topic], on_assign=on_assign, on_revoke=revoked.extend)
    try:
        got = poll_until(consumer, 6 + 5 + 4)
        got += drain(consumer, 0.3)
        assert sorted(consumer.assignment()) == [(topic, p) for p in range(3)]
    finally:
        consumer.close()
    assert sorted(assigned) == [(topic, p) for p in range(3)]
    assert sorted(revoked) == [(topic, p) for p in range(3)]  # on close
    for p in range(3):
        assert [r.offset for r in got if r.partition == p] == list(range(4 + p, 10))


# -- Kafka only ----------------------------------------------------------------------------------


@pytest.mark.kafka
def test_kafka_flush_raises_on_delivery_error(kafka_url: str) -> None:
    from wearwatch.bus.kafka import KafkaLog, KafkaLogError

    log = KafkaLog(kafka_url)
    topic = unique("bad")
    log.create_topic(topic, 2)
    try:
        with pytest.raises(KafkaLogError):
            log.produce([OutRecord(topic, b"k", b"v", partition=7)])
            log.flush()
        log.produce([OutRecord(topic, b"k", b"v")])
        log.flush()  # the producer is still usable
        assert sum(log.end_offsets(topic).values()) == 1
        assert log.apply_retention() == 0
        with pytest.raises(KeyError):
            log.partitions(unique("missing"))
    finally:
        log.close()


_MEMBER = r"""
import json, sys
from wearwatch.bus import open_log

url, group, topic = sys.argv[1:4]
log = open_log(url)
# The embedded log's members hold leases: a short one, so a killed member's partitions move soon.
consumer = log.consumer(group, [topic], **({"lease_s": 2.0} if url.startswith("sqlite") else {}))
last = None
while True:
    records = consumer.poll(500, 0.1)
    now = consumer.assignment()
    if now != last:
        print(json.dumps({"assignment": [p for _, p in now]}), flush=True)
        last = now
    if records:  # commit first: a record reported is a record committed
        consumer.commit({(r.topic, r.partition): r.offset + 1 for r in records})
        print(json.dumps({"records": [[r.partition, r.offset] for r in records]}), flush=True)
"""


class Member:
    """A consumer-group member in its own process, reporting on stdout."""

    def __init__(self, url: str, group: str, topic: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _MEMBER, url, group, topic],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.assignment: list[int] = []
        self.records: list[tuple[int, int]] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def update(self) -> None:
        while True:
            try:
                msg = json.loads(self._lines.get_nowait())
            except queue.Empty:
                return
            if "assignment" in msg:
                self.assignment = msg["assignment"]
            else:
                self.records += [tuple(x) for x in msg["records"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def wait_for(condition, timeout_s: float, members: list[Member], what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for m in members:
            m.update()
        if condition():
            return
        if time.monotonic() > deadline:
            states = [(m.assignment, m.proc.poll()) for m in members]
            errs = [
                m.proc.stderr.read()[-2000:] if m.proc.poll() is not None and m.proc.stderr else ""
                for m in members
            ]
            raise AssertionError(f"timed out waiting for {what}: {states} {errs}")
        time.sleep(0.05)


def test_group_splits_partitions_and_fails_over(log: Log) -> None:
    topic, group = unique("failover"), unique("g")
    log.create_topic(topic, 4)
    a, b = Member(log.url, group, topic), Member(log.url, group, topic)
    try:
        wait_for(
            lambda: sorted(a.assignment + b.assignment) == [0, 1, 2, 3] and len(a.assignment) == 2,
            30.0,
            [a, b],
            "a 2/2 split",
        )
        produce_keyed(log, topic, 40, keys=40)
        wait_for(lambda: len(a.records) + len(b.records) == 40, 15.0, [a, b], "40 records")
        assert {p for p, _ in a.records} == set(a.assignment)
        assert {p for p, _ in b.records} == set(b.assignment)

        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(timeout=5)
        produce_keyed(log, topic, 40, keys=40)
        # The group notices after session.timeout.ms (6 s; the lease, 2 s, on the embedded
        # log) and gives everything to a.
        wait_for(lambda: a.assignment == [0, 1, 2, 3], 30.0, [a], "failover to a")
        wait_for(
            lambda: len(a.records) + len(b.records) >= 80, 15.0, [a], "a reading b's partitions"
        )
        time.sleep(0.5)
        a.update()
        # b committed what it had read: a resumes there (nothing lost, nothing twice).
        assert sorted(a.records + b.records) == sorted(set(a.records + b.records))
        assert len(a.records) + len(b.records) == 80
    finally:
        a.stop()
        b.stop()
