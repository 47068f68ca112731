"""Runtime benchmark: the embedded log's raw append and read rates, and the end-to-end rate
of a keyed pipeline (reading_totals, one worker) over the same machine, in one run, so their
ratio says how much of the log's capacity the pipeline keeps."""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from wearwatch.bus.base import OutRecord, pack_by_partition
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings


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


def run_runtime_benchmark(
    events: int = 500_000, rows: int = 500_000, repeats: int = 3, batch: int = 400
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
    return {
        "sqlite_append_rows_per_s": round(append_median),
        "log_read_rows_per_s": round(statistics.median(reads)),
        "end_to_end_events_per_s": round(e2e_median),
        "end_to_end_vs_append": round(e2e_median / append_median, 3),
        "runs": {
            "append": [round(x) for x in appends],
            "read": [round(x) for x in reads],
            "end_to_end": [round(x) for x in e2e],
        },
        "events": events,
        "rows": rows,
        "events_per_record": batch,
        "repeats": repeats,
        "pipeline": "reading_totals (keyed count/sum, event-time TTL timers), 1 worker",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
    }
