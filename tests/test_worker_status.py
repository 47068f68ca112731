"""Worker status files (``wearwatch worker --status-dir``): the counters equal the worker's
own, the lag is the records left per input topic and reaches 0 when caught up, the
checkpoint timing and count are the worker's, an idle worker keeps refreshing its file, and a
SIGTERM leaves a final ``stopped`` report; a flow's stages are aggregated into one file."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from wearwatch import topics
from wearwatch.bus.base import OutRecord
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import AnomalyScore, Reading, encode, utc
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.status import ComponentStatus, read_statuses
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.runtime.worker_status import StageSnapshot, WorkerStatusReporter

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def readings_log(path: Path, records: int, partitions: int = 1) -> SqliteLog:
    """``records`` records of one reading each, a second apart, round-robin over partitions."""
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, partitions)
    log.produce(
        OutRecord(
            READINGS_TOPIC,
            None,
            encode(Reading(ts=utc(T0 + i), machine_id=f"m{i % 3}", sensor="s", value=1.0)),
            partition=i % partitions,
        )
        for i in range(records)
    )
    log.flush()
    return log


def test_lag_checkpoints_and_event_time_follow_the_worker(tmp_path: Path) -> None:
    """Ten records a poll, a checkpoint and a report after each: the lag falls by ten each
    time to 0; the last report (after the final checkpoint) carries the final counters."""
    log = readings_log(tmp_path / "log.db", 100)
    snaps: list[StageSnapshot] = []
    reporter = WorkerStatusReporter(tmp_path / "status", "totals", group="g", every_s=0.0)

    def progress(worker: Worker) -> None:
        snaps.append(StageSnapshot.of(worker))
        reporter.on_progress(worker)

    options = WorkerOptions(
        exit_when_idle=True,
        poll_timeout_s=0.0,
        poll_max_records=10,
        checkpoint_interval_s=0.0,
        watermark_delay_s=5.0,
    )
    worker = Worker(log, ReadingTotalsOperator(ttl_s=0.5), "g", options, on_progress=progress)
    counters = worker.run(install_signals=False)
    reporter.stopped()
    log.close()
    assert [s.lag for s in snaps] == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0, 0, 0]
    assert [s.checkpoints for s in snaps] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]
    assert [s.event_time for s in snaps][:3] == [T0 + 9, T0 + 19, T0 + 29]
    assert snaps[-1].counters == counters and counters["in"] == 100
    [status] = read_statuses(tmp_path / "status")
    named = (status.name, status.kind, status.state, status.group)
    assert named == ("totals", "worker", "stopped", "g")
    assert status.counters == dict(counters)
    assert status.lag == {READINGS_TOPIC: 0}
    assert status.checkpoints == worker.checkpoints == 10
    assert status.checkpoint_ms == worker.last_checkpoint_ms
    assert status.checkpoint_ms is not None and 0.0 < status.checkpoint_ms < 60_000
    assert status.event_time == T0 + 99
    assert status.pid == os.getpid()


def test_reports_are_throttled_and_a_flow_is_one_file(tmp_path: Path) -> None:
    """Snapshots of two stages: written at most every ``every_s`` (the clock is the test's),
    summed per counter and per input topic; an outage anywhere makes the process's state
    ``outage`` with the detail."""
    now = [1000.0]
    reporter = WorkerStatusReporter(tmp_path, "fleet", clock=lambda: now[0], every_s=1.0)
    assert read_statuses(tmp_path)[0].state == "starting"

    def snap(group: str, topic: str, n: int, lag: int, outage: str = "") -> StageSnapshot:
        return StageSnapshot(group, topic, Counter({"in": n}), lag, 2.0, n, T0 + n, outage)

    reporter.record(snap("fleet", "fleet.readings", 5, 7))
    first = read_statuses(tmp_path)[0]
    assert (first.state, first.counters, first.updated_at) == ("running", {"in": 5}, 1000.0)
    now[0] = 1000.5
    reporter.record(snap("fleet.1", "fleet.1.repartition", 3, 1))
    assert read_statuses(tmp_path)[0] == first  # throttled: no write within every_s
    now[0] = 1001.0
    reporter.record(snap("fleet", "fleet.readings", 6, 0, "broker unreachable (refused)"))
    status = read_statuses(tmp_path)[0]
    assert status.counters == {"in": 9}
    assert status.lag == {"fleet.readings": 0, "fleet.1.repartition": 1}
    assert (status.checkpoints, status.event_time) == (9, T0 + 6)
    assert (status.state, status.detail) == ("outage", "broker unreachable (refused)")
    assert status.started_at == 1000.0


def test_a_bad_status_name_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="name='Fleet Alarms'"):
        WorkerStatusReporter(Path("/nonexistent"), "Fleet Alarms")


def _scores(path: Path, n: int) -> None:
    log = SqliteLog(path)
    log.create_topic(topics.ALARM_INPUT.name, 2)
    log.produce(
        OutRecord(
            topics.ALARM_INPUT.name,
            f"m{i % 4}".encode(),
            encode(
                AnomalyScore(
                    ts=utc(T0 + 30 * (i // 4)),
                    machine_id=f"m{i % 4}",
                    window_s=30.0,
                    severity="normal",
                    score=0.0,
                )
            ),
        )
        for i in range(n)
    )
    log.close()


def _wait_for(path: Path, ok, timeout_s: float = 120.0) -> ComponentStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = read_statuses(path)
        if statuses and ok(statuses[0]):
            return statuses[0]
        assert time.monotonic() < deadline, statuses
        time.sleep(0.1)


def test_the_cli_worker_reports_running_idle_and_stopped_after_sigterm(tmp_path: Path) -> None:
    """``wearwatch worker fleet-alarms --status-dir``: the file shows the worker catching up
    (lag 0, every score in), keeps being refreshed while idle, and after SIGTERM reads
    ``stopped`` with the counters the worker prints on its way out."""
    _scores(tmp_path / "log.db", 400)
    status_dir = tmp_path / "status"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    env.update(WEARWATCH_DATA_DIR=str(tmp_path / "data"), COLUMNS="500")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "fleet-alarms",
            "--bus",
            f"sqlite:///{tmp_path / 'log.db'}",
            "--status-dir",
            str(status_dir),
            "--status-name",
            "alarms-1",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        caught_up = _wait_for(
            status_dir, lambda s: s.state == "running" and s.counters.get("in") == 400
        )
        assert caught_up.lag == {topics.ALARM_INPUT.name: 0}
        assert (caught_up.name, caught_up.group, caught_up.pid) == (
            "alarms-1",
            "fleet-alarms",
            proc.pid,
        )
        assert caught_up.info == {"pipeline": "fleet-alarms"}
        assert caught_up.event_time == T0 + 30 * 99
        # idle: nothing new to read, yet the report keeps being refreshed
        _wait_for(status_dir, lambda s: s.updated_at >= caught_up.updated_at + 1.0, 30.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    final = read_statuses(status_dir)[0]
    assert final.state == "stopped"
    printed = err.strip().splitlines()[-1]
    assert printed.startswith("fleet-alarms: stopped; counters ")
    assert final.counters == ast.literal_eval(printed.split("counters ", 1)[1])
    assert final.counters["in"] == final.counters["processed"] == 400
    assert final.lag == {topics.ALARM_INPUT.name: 0}


def test_a_bad_status_name_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    env.update(WEARWATCH_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "fleet-alarms",
            "--status-dir",
            str(tmp_path / "status"),
            "--status-name",
            "Alarms!",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --status-name 'Alarms!': expected lower-case")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "status").exists()


def test_each_of_n_workers_writes_its_own_file(tmp_path: Path) -> None:
    """``--workers 2``: ``<name>-0`` and ``<name>-1``, stopped, each with the counters its
    process printed on exit. (A worker's counters live in its partitions' checkpointed state:
    they are those of the partitions it held last, whoever processed them before.)"""
    _scores(tmp_path / "log.db", 200)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    env.update(WEARWATCH_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "fleet-alarms",
            "--bus",
            f"sqlite:///{tmp_path / 'log.db'}",
            "--workers",
            "2",
            "--exit-when-idle",
            "--status-dir",
            str(tmp_path / "status"),
        ],
        env=dict(env, COLUMNS="500"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    statuses = read_statuses(tmp_path / "status")
    assert [(s.name, s.state) for s in statuses] == [
        ("fleet-alarms-0", "stopped"),
        ("fleet-alarms-1", "stopped"),
    ]
    printed = [
        ast.literal_eval(line.split("counters ", 1)[1])
        for line in result.stderr.splitlines()
        if line.startswith("fleet-alarms: stopped; counters ")
    ]
    key = lambda c: sorted(c.items())  # noqa: E731
    assert sorted((s.counters for s in statuses), key=key) == sorted(printed, key=key)
    assert all(s.counters.get("in", 0) <= 200 for s in statuses)
    assert sum(s.counters.get("in", 0) for s in statuses) >= 200  # every partition reported
    assert all(s.lag.get(topics.ALARM_INPUT.name, 0) == 0 for s in statuses)
