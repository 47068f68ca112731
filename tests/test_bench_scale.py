"""``wearwatch bench scale --json`` on the tansu fixture broker: a tiny run whose figures must
hold together — exactly-once outputs equal across the 1-worker, 2-worker and kill runs and
equal to the windows the input closes (counted here with numpy), the survivor ending with every
partition, the ratio the quotient of the two rates it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest

from wearwatch.benchmarks.scale import WORKER_ENV, scale_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MACHINES, MINUTES, SENSOR_HZ, PARTITIONS, ROWS, SEED = 12, 8.0, 100.0, 4, 2000, 7
WINDOWS_S, GRACE_S = (5.0, 30.0), 2.0


def _closed_windows() -> tuple[dict[float, int], int]:
    """Per window size, the (machine, window) pairs the input closes, and its readings: a
    window [k·s, (k+1)·s) holding a reading is emitted once its partition's watermark (the
    partition's latest reading − the watermark delay) reaches its end + grace."""
    warm, main = scale_records("t", MACHINES, MINUTES, SENSOR_HZ, PARTITIONS, SEED, ROWS)
    per_partition: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for record in warm + main:
        with pa.ipc.open_stream(record.value) as reader:
            table = reader.read_all()
        ts = table.column("ts").cast(pa.int64()).to_numpy()
        machines = np.asarray(table.column("machine_id").to_pylist())
        per_partition[record.partition].append((ts, machines))
    delay_us = round(float(WORKER_ENV["WEARWATCH_WATERMARK_DELAY_S"]) * 1e6)
    closed = dict.fromkeys(WINDOWS_S, 0)
    for chunks in per_partition.values():
        ts = np.concatenate([c[0] for c in chunks])
        machines = np.concatenate([c[1] for c in chunks])
        watermark = int(ts.max()) - delay_us
        for size in WINDOWS_S:
            size_us, grace_us = round(size * 1e6), round(GRACE_S * 1e6)
            for machine in np.unique(machines):
                starts = np.unique(ts[machines == machine] // size_us)
                ends = (starts + 1) * size_us
                closed[size] += int(np.count_nonzero(ends + grace_us <= watermark))
    readings = sum(len(ts) for chunks in per_partition.values() for ts, _ in chunks)
    return closed, readings


def test_bench_scale_json_holds_together(kafka_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    env["WEARWATCH_SEED"] = str(SEED)
    command = [sys.executable, "-m", "wearwatch", "bench", "scale", "--json", "--no-trained"]
    command += ["--bootstrap", kafka_url, "--repeats", "1", "--machines", str(MACHINES)]
    command += ["--minutes", str(MINUTES), "--sensor-hz", str(SENSOR_HZ)]
    command += ["--partitions", str(PARTITIONS), "--rows-per-record", str(ROWS)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    closed, readings = _closed_windows()
    assert result["readings"] == readings
    once = result["exactly_once"]
    assert once["distinct_ids"]["features"] == closed[5.0] + closed[30.0]
    assert once["distinct_ids"]["scores"] == closed[30.0]  # the 30 s window is scored
    assert once["distinct_ids"]["health"] == closed[30.0]
    assert once["equal_across_runs"] and once["identical_outputs"]
    runs = result["runs"]
    for run in runs["1_worker"] + runs["2_workers"] + runs["2_workers_one_killed"]:
        assert {k: v["distinct_ids"] for k, v in run["outputs"].items()} == once["distinct_ids"]
    [killed] = runs["2_workers_one_killed"]
    assert killed["killed_partitions"]  # the killed worker held partitions with work left
    assert killed["survivor_partitions"] == list(range(PARTITIONS))
    assert result["failover"]["survivor_owned_every_partition"] is True
    one, two = result["readings_per_s_1_worker"], result["readings_per_s_2_workers"]
    assert result["ratio"] == round(two / one, 3)
    assert one == runs["1_worker"][0]["readings_per_s"]
    assert two == runs["2_workers"][0]["readings_per_s"]
