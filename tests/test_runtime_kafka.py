"""The runtime on Kafka (tansu broker): two worker processes share the partitions; one is
SIGKILLed; the survivor takes its partitions over from their last snapshots; after the
idempotent sink the results equal the embedded log's uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from wearwatch.bus.base import Log, pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import ReadingTotals, encode
from wearwatch.pipelines.reading_totals import ReadingTotalsOperator
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.store.analytics_duckdb import DuckDBStore
from wearwatch.twin.synthetic import synthetic_readings

pytestmark = pytest.mark.kafka

N_EVENTS = 100_000
PARTITIONS = 4
TTL_S = 0.4


def _records(topic: str) -> list:
    events = synthetic_readings(N_EVENTS, seed=5, jitter_s=0.05)
    return pack_by_partition(
        topic, events, lambda e: f"{e.machine_id}/{e.sensor}", PARTITIONS, encode, 50
    )


def _fill(log: Log, records: list) -> None:
    log.produce(records)
    log.flush()


def _first_per_rid(log: Log, topic: str) -> dict[str, list[tuple[str, bytes]]]:
    """Per key, outputs in log order, keeping the first copy of each rid."""
    seen: set[str] = set()
    per_key: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for record in read_all(log, topic):
        if record.rid in seen:
            continue
        seen.add(record.rid)
        event = msgspec.json.decode(record.value, type=ReadingTotals)
        per_key[event.key].append((record.rid, record.value))
    return dict(per_key)


def _group_progress(log: Log, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    from wearwatch.bus.kafka import bootstrap_servers

    probe = Consumer(
        {
            "bootstrap.servers": bootstrap_servers(log.url),
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        committed = probe.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
        )
    finally:
        probe.close()
    return sum(max(tp.offset, 0) for tp in committed)


@pytest.mark.slow
def test_two_workers_one_killed_survivor_takes_over_exactly_once(
    kafka_url: str, tmp_path: Path
) -> None:
    from wearwatch.bus.kafka import KafkaLog

    run = uuid.uuid4().hex[:8]
    topic, out_topic, group = f"readings-{run}", f"totals-{run}", f"totals-{run}"

    records = _records(topic)
    # The reference: the same records through the embedded log, never interrupted.
    reference = SqliteLog(tmp_path / "reference.db")
    reference.create_topic(topic, PARTITIONS)
    _fill(reference, records)
    operator = ReadingTotalsOperator(ttl_s=TTL_S, input_topic=topic, output_topic=out_topic)
    Worker(
        reference,
        operator,
        group,
        WorkerOptions(
            watermark_delay_s=0.1,
            exit_when_idle=True,
            poll_timeout_s=0.0,
        ),
    ).run(install_signals=False)
    expected = _first_per_rid(reference, out_topic)
    assert sum(len(v) for v in expected.values()) > 1000

    # Kafka: the first 40 % of the input is there when two workers start; once they have
    # committed it, the rest arrives and worker 0 is SIGKILLed a random moment later.
    log = KafkaLog(kafka_url)
    log.create_topic(topic, PARTITIONS)
    rng = random.Random(run)
    split = int(len(records) * 0.4)
    first, second = records[:split], records[split:]
    _fill(log, first)
    env = dict(os.environ)
    env.update(
        WEARWATCH_WATERMARK_DELAY_S="0.1",
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.1",
        WEARWATCH_POLL_MAX_RECORDS="1",
        WEARWATCH_CHECKPOINT_KEY="kafka-test-secret-0123456789abcdef",
    )
    cmd = [
        sys.executable,
        "-m",
        "wearwatch",
        "worker",
        "reading_totals",
        "--group",
        group,
        "--bus",
        kafka_url,
        "--param",
        f"ttl_s={TTL_S}",
        "--param",
        f"input_topic={topic}",
        "--param",
        f"output_topic={out_topic}",
    ]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [subprocess.Popen(cmd, env=env, stderr=path.open("w")) for path in logs]
    try:
        _wait_for(lambda: _group_progress(log, group, topic) >= len(first), workers, 120)
        _fill(log, second)
        time.sleep(rng.uniform(0.0, 0.3))
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        total = len(records)
        _wait_for(lambda: _group_progress(log, group, topic) >= total, workers[1:], 180)
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=60) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()

    survivor = logs[1].read_text()
    assert "partitions=[0, 1, 2, 3]" in survivor, survivor[-2000:]  # it took over
    actual = _first_per_rid(log, out_topic)
    assert actual == expected  # same outputs, same ids, same per-key order
    store = DuckDBStore(tmp_path / "sink.duckdb")
    store.write_records(read_all(log, out_topic))
    expected_rows = sum(len(v) for v in expected.values())
    assert store.count("events") == expected_rows  # no loss, no duplicates after the sink
    log.close()


def _wait_for(condition, workers: list[subprocess.Popen], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "workers made no progress"
        assert all(w.poll() is None for w in workers), "a worker died"
        time.sleep(0.1)
