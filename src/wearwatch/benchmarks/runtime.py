"""Runtime benchmark: the embedded log's raw append and read rates, and the end-to-end rate
of a keyed pipeline (reading_totals, one worker) over the same machine, in one run, so their
ratio says how much of the log's capacity the pipeline keeps.

The windowed measurement does the same for a fleet: the ``fleet_features`` flow (50 machines
× 6 sensors, 5 s and 30 s windows with count/mean/std/min/max/slope/latest) over columnar
(Arrow) records on the embedded log, one worker, checkpoints and outputs included, against
the log's limit on the very same record bytes (append them all, read them all back)."""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from wearwatch.bus.base import OutRecord, pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import pack_columns
from wearwatch.events import encode
from wearwatch.pipelines.fleet_features import fleet_features
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_fleet, synthetic_readings

FLEET_TOPIC = "bench.fleet.readings"
FEATURES_TOPIC = "bench.fleet.features"
PARTITIONS = 4


def _append_and_read(workdir: Path, rows: int, batch: int) -> tuple[float, float]:
    log = SqliteLog(workdir / "append.db", default_partitions=4)
    log.create_topic("bench.append")
    value = (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:00Z","machine_id":"m001",'
        b'"sensor":"s0","value":10.5,"unit":"mm/s"}'
    )
    records = [OutRecord("bench.append", None, value, "", i % 4) for i in range(rows)]
    start = time.perf_counter()
    for i in range(0, rows, batch):
        log.produce(records[i : i + batch])
    append_s = time.perf_counter() - start
    start = time.perf_counter()
    read = 0
    for partition in range(4):
        position = 0
        while chunk := log.read("bench.append", partition, position, batch):
            read += len(chunk)
            position = chunk[-1].offset + 1
    read_s = time.perf_counter() - start
    log.close()
    assert read == rows
    return rows / append_s, rows / read_s


def _end_to_end(workdir: Path, events: int, batch: int, run: int) -> float:
    log = SqliteLog(workdir / f"e2e{run}.db", default_partitions=4)
    log.create_topic(READINGS_TOPIC)
    readings = synthetic_readings(events, seed=run)
    log.produce(
        pack_by_partition(
            READINGS_TOPIC, readings, lambda e: f"{e.machine_id}/{e.sensor}", 4, encode, batch
        )
    )
    options = WorkerOptions(
        watermark_delay_s=1.0,
        checkpoint_interval_s=1.0,
        poll_max_records=64,
        poll_timeout_s=0.0,
        exit_when_idle=True,
    )
    worker = Worker(log, ReadingTotalsOperator(ttl_s=0.5), "bench", options)
    start = time.perf_counter()
    counters = worker.run(install_signals=False)
    elapsed = time.perf_counter() - start
    log.close()
    assert counters["in"] == events, counters
    return events / elapsed


def fleet_records(
    readings: int, rows_per_record: int, rate_hz: float, seed: int = 7
) -> list[OutRecord]:
    """The fleet's readings as columnar records, per partition (by machine), in time order."""
    cols = synthetic_fleet(readings, machines=50, sensors=6, rate_hz=rate_hz, seed=seed)
    return pack_columns(FLEET_TOPIC, cols, "machine_id", PARTITIONS, rows_per_record)


def log_limit(
    workdir: Path, records: list[OutRecord], readings: int, partitions: int = PARTITIONS
) -> float:
    """Readings/s of appending the records (all of one topic) and reading them all back: all
    the log can do with these bytes, the reference every pipeline figure is set against."""
    path = workdir / "limit.db"
    log = SqliteLog(path, default_partitions=partitions)
    topic = records[0].topic
    log.create_topic(topic, partitions)
    start = time.perf_counter()
    log.produce(records)
    read = 0
    for partition in range(partitions):
        position = 0
        while chunk := log.read(topic, partition, position, 16):
            read += len(chunk)
            position = chunk[-1].offset + 1
    elapsed = time.perf_counter() - start
    log.close()
    path.unlink()
    if read != len(records):
        raise RuntimeError(f"log limit: read {read} records back of {len(records)} appended")
    return readings / elapsed


def _windowed(
    workdir: Path, records: list[OutRecord], readings: int, run: int, rate_hz: float
) -> tuple[float, int]:
    """Readings/s of the fleet_features flow, one worker, from the first poll to idle."""
    path = workdir / f"windowed{run}.db"
    log = SqliteLog(path, default_partitions=PARTITIONS)
    log.create_topic(FLEET_TOPIC, PARTITIONS)
    log.produce(records)
    [stage] = fleet_features(input_topic=FLEET_TOPIC, output_topic=FEATURES_TOPIC).compile(
        log.partitions
    )
    options = WorkerOptions(
        watermark_delay_s=1.0,
        checkpoint_interval_s=1.0,
        poll_max_records=4,
        poll_timeout_s=0.0,
        exit_when_idle=True,
    )
    worker = Worker(log, stage, "bench", options)
    start = time.perf_counter()
    counters = worker.run(install_signals=False)
    elapsed = time.perf_counter() - start
    outputs = len(read_all(log, FEATURES_TOPIC))
    log.close()
    path.unlink()
    assert counters["in"] == counters["processed"] == readings, counters
    assert counters["out"] == outputs, (counters, outputs)
    if not outputs:
        span_s = readings / (50 * 6 * rate_hz)
        raise ValueError(
            f"--readings {readings}: at --sensor-hz {rate_hz:g} that is {span_s:.1f} s of event "
            "time, too short for any window to close; give more readings"
        )
    return readings / elapsed, outputs


def run_windowed_benchmark(
    readings: int = 3_000_000,
    repeats: int = 3,
    rows_per_record: int = 50_000,
    rate_hz: float = 100.0,
) -> dict[str, Any]:
    """Medians over ``repeats`` runs; each run measures the log limit and the flow in turn."""
    records = fleet_records(readings, rows_per_record, rate_hz)
    limits, windowed = [], []
    outputs = 0
    with tempfile.TemporaryDirectory(prefix="wearwatch-bench-") as tmp:
        workdir = Path(tmp)
        for run in range(repeats):
            limits.append(log_limit(workdir, records, readings))
            rate, outputs = _windowed(workdir, records, readings, run, rate_hz)
            windowed.append(rate)
    limit = statistics.median(limits)
    rate = statistics.median(windowed)
    return {
        "windowed_readings_per_s": round(rate),
        "log_limit_readings_per_s": round(limit),
        "windowed_vs_log_limit": round(rate / limit, 3),
        "windowed": {
            "runs": [round(x) for x in windowed],
            "log_limit_runs": [round(x) for x in limits],
            "readings": readings,
            "readings_per_record": rows_per_record,
            "bytes_per_reading": round(sum(len(r.value) for r in records) / readings, 2),
            "sensor_rate_hz": rate_hz,
            "feature_vectors": outputs,
            "pipeline": "fleet_features flow: 50 machines x 6 sensors, tumbling 5 s and 30 s, "
            "grace 2 s, count/mean/std/min/max/slope/latest, Arrow records, 1 worker",
        },
    }


def run_runtime_benchmark(
    events: int = 500_000,
    rows: int = 500_000,
    repeats: int = 3,
    batch: int = 400,
    readings: int = 3_000_000,
    rows_per_record: int = 50_000,
    sensor_hz: float = 100.0,
) -> dict[str, Any]:
    """Medians over ``repeats`` runs of each measurement."""
    appends, reads, e2e = [], [], []
    with tempfile.TemporaryDirectory(prefix="wearwatch-bench-") as tmp:
        workdir = Path(tmp)
        for run in range(repeats):
            append_rate, read_rate = _append_and_read(workdir, rows, 5000)
            appends.append(append_rate)
            reads.append(read_rate)
            (workdir / "append.db").unlink()
            e2e.append(_end_to_end(workdir, events, batch, run))
    append_median = statistics.median(appends)
    e2e_median = statistics.median(e2e)
    windowed = run_windowed_benchmark(readings, repeats, rows_per_record, sensor_hz)
    return {
        "sqlite_append_rows_per_s": round(append_median),
        "log_read_rows_per_s": round(statistics.median(reads)),
        "end_to_end_events_per_s": round(e2e_median),
        "end_to_end_vs_append": round(e2e_median / append_median, 3),
        **{k: v for k, v in windowed.items() if k != "windowed"},
        "runs": {
            "append": [round(x) for x in appends],
            "read": [round(x) for x in reads],
            "end_to_end": [round(x) for x in e2e],
        },
        "windowed": windowed["windowed"],
        "events": events,
        "rows": rows,
        "events_per_record": batch,
        "repeats": repeats,
        "pipeline": "reading_totals (keyed count/sum, event-time TTL timers), 1 worker",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
    }
