"""Fleet benchmark: the whole fleet pipeline end to end on the embedded log, one worker.

**Throughput.** The fleet twin's readings (``machines`` machines, every sensor sampled at
``sensor_hz`` in event time, as columnar records partitioned by machine) are appended to a
SQLite log; one worker runs the ``fleet`` flow — decode, 5 s and 30 s windows, feature
vectors of both, anomaly scoring (hard limits, z-scores, persistence, sensor-fault evidence,
PCA T²+Q, Half-Space Trees), risk, health and time to maintenance, and the alarm policy on the
30 s window — and commits its outputs with its checkpoints; then the stores are filled from the
log: the Parquet feature store (:func:`~wearwatch.store.features.sink_features`) and the
analytics store (scores, health, alarms). ``readings_per_s`` is readings over the time of all
of it, after an untimed warm-up on the first 35 s of event time (every machine's detectors
are built on its first windows; the timed worker restores them from the checkpoint).
``log_limit_readings_per_s`` is measured in the same run on the very same record bytes: append
them all and read them all back, which is all the log can do.

**Latency.** A producer appends the twin's readings paced at ``paced_rate`` readings/s (one
record per partition per 0.1 s of event time, in real time), while one worker runs the flow and
commits every poll that emits (the state alone once a second). The first 35 s of event time
(every machine's first windows, which build its detectors) are appended at once and processed
before the paced run: warm-up, not measured. Faults are injected on a share of the machines
every 5 s — a stuck bearing-temperature sensor (a sensor alarm) or a bearing that fails within
a minute (machine alarms up to critical) — so alarms are raised throughout. A reading's
**arrival** is the log append time of the record whose readings closed the window (moved the
watermark past its end + grace): the rid of every output names that input record. An alarm's
time is the append time of the record carrying it (the worker's commit). Latency = alarm append
− input append, both from the log's clock (ms); ``p99_latency_ms`` is their 99th percentile
over every alarm transition, ``p99_score_latency_ms`` the same over every anomaly score.

**Sample rate.** Each sensor is sampled at 100 Hz by default: a 5 s window then holds 500
readings of a sensor. The cost of the flow is per closed window (~0.15 ms to close a window
and build its feature vector, ~0.5–1 ms to score one), so at 10 Hz (``--sensor-hz 10``) it is
ten times larger per reading.

The models are fitted on separate twin runs (other seeds) before anything is timed.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from wearwatch import topics
from wearwatch.benchmarks.runtime import log_limit
from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import Columns, pack_columns
from wearwatch.events import TwinCommand, utc
from wearwatch.learn.anomaly.model import AnomalyModel
from wearwatch.learn.risk.model import RiskModel, train_risk
from wearwatch.pipelines.fleet.evaluate import EvaluationConfig, fleet_config, twin_features
from wearwatch.pipelines.fleet.features import features_from_readings
from wearwatch.pipelines.fleet.flow import fleet_pipeline
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.store.analytics import sink_topics
from wearwatch.store.analytics_duckdb import DuckDBStore
from wearwatch.store.features import features_to_table, sink_features
from wearwatch.twin.fleet.config import load_fleet_config
from wearwatch.twin.fleet.simulation import FleetTwin

PARTITIONS = 4
WINDOWS_S = (5.0, 30.0)
GRACE_S = 2.0
DELAY_S = 1.0
OUTPUTS = (topics.SCORES.name, topics.HEALTH.name, topics.ALARMS.name)
#: Event time processed before anything is timed: every machine's first windows (30 s and the
#: grace), on which its detectors are built.
WARMUP_S = 35.0


def _twin(machines: int, sensor_hz: float, seed: int) -> FleetTwin:
    return FleetTwin(fleet_config(1.0 / sensor_hz), machines, seed)


def _readings(twin: FleetTwin, readings: int) -> Columns:
    """About ``readings`` readings of the twin (whole ticks; a few are lost in transit)."""
    cols, _ = twin.step(-(-readings // sensors_per_tick(twin)))
    return cols


def fit_models(machines: int, sensor_hz: float, seed: int) -> tuple[AnomalyModel, RiskModel]:
    """Detectors fitted on 10 minutes of the fleet at the benchmark's rate (another seed), and
    a risk model for its 30 s windows trained on four days of 12 machines sampled every 5 s,
    of a twin whose faults run 20x faster than the default's (what applying it costs is what
    is measured here, not how well it predicts: ``wearwatch fleet evaluate`` measures that)."""
    twin = _twin(machines, sensor_hz, seed + 1000)
    cols, _ = twin.step(round(600 * sensor_hz))
    vectors = features_from_readings(cols, WINDOWS_S, GRACE_S, DELAY_S)
    anomaly = AnomalyModel.fit(features_to_table(vectors).to_pandas(), limits=twin.hard_limits())
    base = load_fleet_config()
    fast = msgspec.structs.replace(
        base, fleet=msgspec.structs.replace(base.fleet, compression=base.fleet.compression * 20)
    )
    cfg = EvaluationConfig(
        seed=seed + 2000, machines=12, days=4.0, tick_s=5.0, windows_s=(max(WINDOWS_S),),
        grace_s=GRACE_S, watermark_delay_s=10.0, fleet=fast,
    )  # fmt: skip
    risk_twin = FleetTwin(fleet_config(cfg.tick_s, fast), cfg.machines, cfg.seed)
    frame, events = twin_features(risk_twin, cfg, None, "risk training")
    risk, _ = train_risk(frame, events, cfg.horizon_s, cfg.seed)
    return anomaly, risk


def _flow(anomaly: AnomalyModel, risk: RiskModel, limits: dict) -> Any:
    return fleet_pipeline(anomaly, risk, None, WINDOWS_S, GRACE_S, limits=limits)


def _throughput(
    workdir: Path,
    warmup: list[OutRecord],
    records: list[OutRecord],
    readings: int,
    run: int,
    flow: Any,
) -> dict[str, Any]:
    """One timed end-to-end run: the worker over ``records``, then the feature store and
    analytics sinks. Before it, untimed, the same worker and sinks take ``warmup`` (the first
    windows of every machine, which build its detectors): what is timed is steady state, with
    the worker's state restored from its checkpoint as after any restart."""
    path = workdir / f"fleet{run}.db"
    log = SqliteLog(path, default_partitions=PARTITIONS)
    log.create_topic(topics.READINGS.name, PARTITIONS)
    [stage] = flow.compile(log.partitions)
    options = WorkerOptions(
        watermark_delay_s=DELAY_S,
        checkpoint_interval_s=1.0,
        poll_max_records=4,
        poll_timeout_s=0.0,
        exit_when_idle=True,
    )
    store = DuckDBStore(workdir / f"analytics{run}.duckdb")
    features = workdir / f"features{run}"

    def stores() -> tuple[int, int]:
        rows = sink_features(log, features, topics.FEATURES.name, "fs", 20_000)
        return rows, sink_topics(log, store, OUTPUTS, "analytics", 20_000)

    log.produce(warmup)
    warm = Worker(log, stage, "fleet", options).run(install_signals=False)
    before = {t: len(read_all(log, t)) for t in (topics.FEATURES.name, *OUTPUTS)}
    stores()
    log.produce(records)
    start = time.perf_counter()
    counters = Worker(log, stage, "fleet", options).run(install_signals=False)
    worker_s = time.perf_counter() - start
    rows, written = stores()
    elapsed = time.perf_counter() - start
    after = {t: len(read_all(log, t)) for t in (topics.FEATURES.name, *OUTPUTS)}
    outputs = {t: after[t] - before[t] for t in after}
    store.close()
    log.close()
    # Counters live in the checkpointed state: the timed run's are the growth.
    counters.subtract(warm)
    assert counters["in"] == counters["processed"] == readings, counters
    assert rows == outputs[topics.FEATURES.name], (rows, outputs)
    assert written == sum(outputs[t] for t in OUTPUTS), (written, outputs)
    return {
        "readings_per_s": readings / elapsed,
        "worker_readings_per_s": readings / worker_s,
        "outputs": outputs,
    }


def _latency(
    workdir: Path,
    flow: Any,
    twin: FleetTwin,
    paced_rate: float,
    duration_s: float,
    record_s: float,
    warmup_s: float = WARMUP_S,
) -> dict[str, Any]:
    """The paced run: a producer appends a record per partition every ``record_s`` of event
    time, paced so readings arrive at ``paced_rate`` per second of wall time, while one worker
    (a thread, its own connection) runs the flow and commits every poll that emits."""
    path = workdir / "latency.db"
    log = SqliteLog(path, default_partitions=PARTITIONS)
    log.create_topic(topics.READINGS.name, PARTITIONS)
    rng = np.random.default_rng(11)
    faulty = [str(m) for m in rng.permutation(twin.machine_ids)]
    per_record = max(1, round(record_s / twin.tick_s))
    every = max(1, round(2.5 / record_s))  # a fault every 2.5 s of event time
    batches: list[tuple[int, list[OutRecord]]] = []
    for k in range(max(1, round((warmup_s + duration_s) / record_s))):
        if k % every == 0:
            n = k // every
            machine = faulty[n % len(faulty)]
            if n % 2 == 0:  # a stuck sensor: a sensor alarm
                command = "inject_sensor_fault"
                args: dict[str, Any] = {"machine": machine, "sensor": "bearing_temp"}
                args |= {"kind": "stuck", "duration_h": 1.0}
            else:  # a bearing failing within a minute: machine alarms up to critical
                command = "inject_fault"
                args = {"machine": machine, "mode": "bearing_wear", "pf_h": 1 / 60}
            twin.apply(TwinCommand(ts=utc(twin.now_s), command=command, args=args))
        cols, _ = twin.step(per_record)
        records = pack_columns(topics.READINGS.name, cols, "machine_id", PARTITIONS)
        batches.append((len(cols), records))
    [stage] = flow.compile(log.partitions)
    # Outputs are committed by the poll that made them (max_buffered_outputs=1); the state
    # of polls without output is checkpointed once a second. Committing after every poll
    # instead (interval 0) re-pickles every partition ten times a second, and a record that
    # arrives during one of those checkpoints waits for it.
    options = WorkerOptions(
        watermark_delay_s=DELAY_S,
        checkpoint_interval_s=1.0,
        max_buffered_outputs=1,
        poll_max_records=PARTITIONS,
        poll_timeout_s=0.002,
    )
    worker_log = SqliteLog(path)
    worker = Worker(worker_log, stage, "fleet", options)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    # Warm-up, not measured: the first windows of every machine (its detectors are built on
    # its first window: Half-Space Trees, trend state), appended at once and processed.
    warm = max(1, round(warmup_s / record_s))
    for _, records in batches[:warm]:
        log.produce(records)
    _wait_caught_up(log, worker)
    # What a long-running worker does at start-up (``wearwatch worker``): the models and
    # libraries built so far leave the cyclic collector's reach, whose full passes over them
    # took ~0.1 s and stalled the poll they fell in.
    gc.collect()
    gc.freeze()
    measured_from = {p: end for p, end in log.end_offsets(topics.READINGS.name).items()}
    begin = time.perf_counter()
    sent = 0
    for rows, records in batches[warm:]:
        pause = begin + sent / paced_rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        log.produce(records)
        sent += rows
    paced_s = time.perf_counter() - begin
    _wait_caught_up(log, worker)
    time.sleep(0.2)  # the last poll's checkpoint
    worker.stop()
    thread.join(30.0)
    worker_log.close()
    gc.unfreeze()
    arrivals = {
        (r.partition, r.offset): r.timestamp_ms
        for r in read_all(log, topics.READINGS.name)
        if r.offset >= measured_from.get(r.partition, 0)
    }
    alarm_ms = _latencies(log, topics.ALARMS.name, arrivals)
    score_ms = _latencies(log, topics.SCORES.name, arrivals)
    log.close()
    return {
        "p99_latency_ms": _p99(alarm_ms),
        "median_latency_ms": float(statistics.median(alarm_ms)) if alarm_ms else None,
        "p99_score_latency_ms": _p99(score_ms),
        "alarm_transitions": len(alarm_ms),
        "scores": len(score_ms),
        "paced_readings_per_s": paced_rate,
        "achieved_readings_per_s": round(sent / paced_s),
        "readings": sent,
        "machines": len(twin.machine_ids),
        "record_event_s": record_s,
        "warmup_event_s": warmup_s,
    }


def _wait_caught_up(log: SqliteLog, worker: Worker, timeout_s: float = 120.0) -> None:
    """Until the worker has processed everything appended so far (or ``timeout_s``)."""
    ends = log.end_offsets(topics.READINGS.name)
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline and not all(
        p in worker.states and worker.states[p].position >= end for p, end in ends.items()
    ):
        time.sleep(0.02)


def sensors_per_tick(twin: FleetTwin) -> int:
    """Readings per tick of the whole fleet (every sensor of every machine)."""
    types = twin.config.machine_types
    return sum(len(types[twin.state(m).machine_type].sensors) for m in twin.machine_ids)


def _latencies(log: SqliteLog, topic: str, arrivals: dict[tuple[int, int], int]) -> list[float]:
    """Per output record: its append time − the append time of the input record whose
    processing emitted it (named by the rid ``<group>/<topic>/<partition>/<offset>/<n>``)."""
    out = []
    for record in read_all(log, topic):
        parts = record.rid.split("/")
        source = (int(parts[-3]), int(parts[-2]))
        if source in arrivals:
            out.append(float(record.timestamp_ms - arrivals[source]))
    return out


def _p99(values: list[float]) -> float | None:
    return float(np.percentile(values, 99)) if values else None


def run_fleet_benchmark(
    readings: int = 3_000_000,
    repeats: int = 3,
    machines: int = 50,
    sensor_hz: float = 100.0,
    rows_per_record: int = 50_000,
    paced_rate: float = 10_000.0,
    paced_s: float = 180.0,
    seed: int = 7,
) -> dict[str, Any]:
    """Medians over ``repeats`` runs (each run measures the log limit and the pipeline in
    turn), then one paced latency run."""
    anomaly, risk = fit_models(machines, sensor_hz, seed)
    twin = _twin(machines, sensor_hz, seed)
    warm, _ = twin.step(round(WARMUP_S * sensor_hz))
    warmup = pack_columns(topics.READINGS.name, warm, "machine_id", PARTITIONS, rows_per_record)
    cols = _readings(twin, readings)
    n = len(cols)
    records = pack_columns(topics.READINGS.name, cols, "machine_id", PARTITIONS, rows_per_record)
    flow = _flow(anomaly, risk, twin.hard_limits())
    limits, rates, worker_rates = [], [], []
    outputs: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="wearwatch-bench-fleet-") as tmp:
        workdir = Path(tmp)
        for run in range(repeats):
            limits.append(log_limit(workdir, records, n, PARTITIONS))
            flow = _flow(anomaly, risk, twin.hard_limits())
            result = _throughput(workdir, warmup, records, n, run, flow)
            rates.append(result["readings_per_s"])
            worker_rates.append(result["worker_readings_per_s"])
            outputs = result["outputs"]
        # The latency fleet: enough machines that ``paced_rate`` is real time at sensor_hz.
        per_machine = sensors_per_tick(twin) / machines * sensor_hz
        paced_twin = _twin(max(1, round(paced_rate / per_machine)), sensor_hz, seed + 1)
        flow = _flow(anomaly, risk, paced_twin.hard_limits())
        latency = _latency(workdir, flow, paced_twin, paced_rate, paced_s, 0.1)
    limit = statistics.median(limits)
    rate = statistics.median(rates)
    return {
        "readings_per_s": round(rate),
        "log_limit_readings_per_s": round(limit),
        "readings_vs_log_limit": round(rate / limit, 3),
        "p99_latency_ms": latency["p99_latency_ms"],
        "worker_readings_per_s": round(statistics.median(worker_rates)),
        "runs": {
            "readings_per_s": [round(x) for x in rates],
            "worker_readings_per_s": [round(x) for x in worker_rates],
            "log_limit_readings_per_s": [round(x) for x in limits],
        },
        "latency": latency,
        "readings": n,
        "machines": machines,
        "sensor_rate_hz": sensor_hz,
        "readings_per_record": rows_per_record,
        "bytes_per_reading": round(sum(len(r.value) for r in records) / n, 2),
        "outputs": outputs,
        "repeats": repeats,
        "pipeline": "fleet flow: tumbling 5 s and 30 s windows, grace 2 s, feature vectors of "
        "both; anomaly score/update (rules, sensor faults, PCA, Half-Space Trees), risk, health, "
        "time to maintenance and the alarm policy on the 30 s window; embedded SQLite log, "
        "4 partitions, 1 worker; then the Parquet feature store and the DuckDB analytics store "
        "filled from the log",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
