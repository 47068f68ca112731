"""Crash equivalence on the embedded log: SIGKILL the worker at random points, restart it,
and the final output equals an uninterrupted run's: same records, same per-key order."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from wearwatch.bus.base import pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import ReadingTotals, encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

N_EVENTS = 120_000
TTL_S = 0.4
GROUP = "totals"


def _write_input(path: Path) -> int:
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, 4)
    events = list(synthetic_readings(N_EVENTS, seed=11, jitter_s=0.05))
    records = pack_by_partition(
        READINGS_TOPIC, events, lambda e: f"{e.machine_id}/{e.sensor}", 4, encode, 200
    )
    log.produce(records)
    log.close()
    return len(records)


def _outputs(path: Path) -> tuple[dict[str, list[tuple]], list[str]]:
    log = SqliteLog(path)
    per_key: dict[str, list[tuple]] = defaultdict(list)
    rids = []
    for record in read_all(log, TOTALS_TOPIC):
        event = msgspec.json.decode(record.value, type=ReadingTotals)
        per_key[event.key].append((event.ts, event.first_ts, event.count, event.total))
        rids.append(record.rid)
    log.close()
    return dict(per_key), rids


@pytest.mark.slow
def test_sigkill_at_random_points_gives_the_uninterrupted_output(
    tmp_path: Path, kill_at_progress: Callable[..., int], sqlite_committed: Callable[..., int]
) -> None:
    reference = tmp_path / "reference.db"
    crashed = tmp_path / "crashed.db"
    n_records = _write_input(reference)
    shutil.copy(reference, crashed)

    log = SqliteLog(reference)
    options = WorkerOptions(
        watermark_delay_s=0.1, exit_when_idle=True, poll_timeout_s=0.0, poll_max_records=50
    )
    counters = Worker(log, ReadingTotalsOperator(ttl_s=TTL_S), GROUP, options).run(
        install_signals=False
    )
    log.close()
    assert counters["in"] == N_EVENTS

    env = dict(os.environ)
    env.update(
        WEARWATCH_WATERMARK_DELAY_S="0.1",
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.02",
        WEARWATCH_POLL_MAX_RECORDS="3",
        WEARWATCH_LEASE_S="1",  # a restart waits for the killed worker's lease to expire
    )
    cmd = [
        sys.executable,
        "-m",
        "wearwatch",
        "worker",
        "reading_totals",
        "--group",
        GROUP,
        "--bus",
        f"sqlite:///{crashed}",
        "--param",
        f"ttl_s={TTL_S}",
        "--exit-when-idle",
        "--quiet",
    ]
    rng = random.Random(2026)
    targets = [rng.uniform(0.05, 0.9) * n_records for _ in range(6)]
    kills = kill_at_progress(cmd, env, lambda: sqlite_committed(crashed, GROUP), targets)
    assert kills >= 5
    assert sqlite_committed(crashed, GROUP) < n_records  # the last restart has work left to do
    final = subprocess.run(cmd, env=env, timeout=300)
    assert final.returncode == 0
    assert sqlite_committed(crashed, GROUP) == n_records

    expected, expected_rids = _outputs(reference)
    actual, actual_rids = _outputs(crashed)
    assert sum(len(v) for v in expected.values()) > 1000  # timers really fired
    assert actual == expected  # same records, same per-key order
    assert len(actual_rids) == len(set(actual_rids))  # no duplicates
    assert sorted(actual_rids) == sorted(expected_rids)
    # Nothing was late or dead-lettered in either run, so nothing hides in the dead letters.
    for path in (reference, crashed):
        log = SqliteLog(path)
        log.create_topic(DEAD_LETTER_TOPIC)
        assert read_all(log, DEAD_LETTER_TOPIC) == []
        log.close()
