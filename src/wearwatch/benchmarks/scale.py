"""Scale-out benchmark: the fleet pipeline on Kafka with 1 and 2 worker processes, and failover.

**Input.** The fleet twin's readings (``machines`` machines, every sensor at ``sensor_hz`` in
event time, ``minutes`` of event time after a 35 s warm-up) as columnar records keyed by
machine, appended untimed to a fresh input topic of ``partitions`` partitions before any
worker starts. Every run reads these same bytes.

**Runs.** Each run is a fresh consumer group with fresh output topics, and real processes:
``wearwatch worker fleet --group G --bus URL`` started 1 or 2 times (one group: Kafka's
cooperative-sticky assignment splits the partitions), stopped with SIGTERM once the group has
committed the end of every partition. A third run starts 2 workers and SIGKILLs the first once
the group has committed half of the readings.

**Rate.** The bench samples the group's committed offsets every ``SAMPLE_S`` (a worker commits
them with its checkpoint, after its outputs are durable). ``t0`` is the first sample at which
every partition's committed offset has passed its warm-up records (every worker has joined,
loaded its models and built its detectors on the first windows); ``t1`` the first sample at
which every partition is committed to its end. ``readings_per_s`` = the readings in the
records committed between the two samples / (``t1`` − ``t0``). ``ratio`` is the 2-worker rate
over the 1-worker rate (medians over ``repeats``, ratio of the reported figures).

**Reference.** ``raw_read_readings_per_s``: one consumer of a fresh group reading every
partition of the same topic, with the same client and settings as a worker but no decoding and
no processing, from its first record to its last: the ceiling the broker and client put on it.

**Failover.** ``resumed_s``: from the kill until every partition the killed worker held has
committed progress again (the survivor owns it, restored its state from the snapshot and
checkpointed once). ``drain_s``: ``t1`` − ``t0`` of the run, without and with the kill;
``extra_drain_s`` their difference. The consumer's session timeout is 6 s: the group notices a
dead member no earlier than that.

**Exactly once.** Per output topic, the records of each run and their distinct ids (``rid``:
``<group>/<input topic>/<partition>/<offset>/<n>``). A kill replays from the last snapshot, so
the killed run may hold a few duplicate records; their ids are the same, so the distinct ids
(what an idempotent sink keeps) must equal the uninterrupted runs' — and so must the outputs
themselves: ``outputs_sha256`` hashes every first copy's id (without the group) and bytes.

**CPU.** Each worker's and the broker's CPU seconds between ``t0`` and ``t1`` (``/proc``,
Linux; the broker's only when the bench started it), to show what limits the ratio on a small
machine: the cores are shared by the workers, the broker and the bench's own sampling.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wearwatch import topics
from wearwatch.benchmarks.fleet import WARMUP_S, fit_models
from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.kafka import KafkaLog
from wearwatch.columnar import pack_columns
from wearwatch.pipelines.fleet.evaluate import fleet_config
from wearwatch.twin.fleet.simulation import FleetTwin

#: How often the group's committed offsets are sampled.
SAMPLE_S = 0.1
#: Rows per columnar record: ~190 KB, well under a broker's default 1 MB message limit.
ROWS_PER_RECORD = 10_000
#: Output topics of the fleet flow, by ``fleet_pipeline`` parameter.
OUTPUTS = {
    "features_topic": "features",
    "scores_topic": "scores",
    "health_topic": "health",
    "alarms_topic": "alarms",
}
#: The workers' settings: the watermark delay of ``wearwatch bench fleet``; checkpoints twice a
#: second, so the committed offsets the rates are read from move in small steps; 16 records
#: (160,000 readings) a poll.
WORKER_ENV = {
    "WEARWATCH_WATERMARK_DELAY_S": "1.0",
    "WEARWATCH_CHECKPOINT_INTERVAL_S": "0.5",
    "WEARWATCH_POLL_MAX_RECORDS": "16",
}
_PARTITIONS_LINE = re.compile(r"partitions=\[([\d, ]*)\]")


@dataclass
class ScaleInput:
    """The pre-filled input topic: per partition, the readings in its records (offset order)
    and how many records are warm-up."""

    topic: str
    readings_per_record: dict[int, np.ndarray]
    warmup_records: dict[int, int]

    @property
    def ends(self) -> dict[int, int]:
        return {p: len(r) for p, r in self.readings_per_record.items()}

    @property
    def readings(self) -> int:
        return int(sum(int(r.sum()) for r in self.readings_per_record.values()))

    def committed_readings(self, committed: dict[int, int]) -> int:
        """Readings in the records below the committed offsets."""
        return int(
            sum(int(r[: committed.get(p, 0)].sum()) for p, r in self.readings_per_record.items())
        )


def scale_records(
    topic: str,
    machines: int,
    minutes: float,
    sensor_hz: float,
    partitions: int,
    seed: int,
    rows_per_record: int = ROWS_PER_RECORD,
) -> tuple[list[OutRecord], list[OutRecord]]:
    """The warm-up records (the first ``WARMUP_S`` of event time) and the measured ones
    (``minutes`` more), each partition's in event-time order, ``rows_per_record`` a record."""
    twin = FleetTwin(fleet_config(1.0 / sensor_hz), machines, seed)
    warm, _ = twin.step(round(WARMUP_S * sensor_hz))
    cols, _ = twin.step(round(minutes * 60 * sensor_hz))
    return (
        pack_columns(topic, warm, "machine_id", partitions, rows_per_record),
        pack_columns(topic, cols, "machine_id", partitions, rows_per_record),
    )


def _rows(value: bytes) -> int:
    import pyarrow as pa

    with pa.ipc.open_stream(value) as reader:
        return sum(batch.num_rows for batch in reader)


def prefill(
    log: KafkaLog, topic: str, partitions: int, warm: list[OutRecord], main: list[OutRecord]
) -> ScaleInput:
    """Create ``topic`` and append the records (warm-up first); returns what each offset holds."""
    log.create_topic(topic, partitions)
    if log.partitions(topic) != partitions:
        raise RuntimeError(f"topic {topic!r} exists with {log.partitions(topic)} partitions")
    per: dict[int, list[int]] = {p: [] for p in range(partitions)}
    warm_count = dict.fromkeys(range(partitions), 0)
    for records, is_warm in ((warm, True), (main, False)):
        log.produce(records)
        for rec in records:
            assert rec.partition is not None
            per[rec.partition].append(_rows(rec.value))
            warm_count[rec.partition] += is_warm
    log.flush()
    ends = log.end_offsets(topic)
    counts = {p: len(r) for p, r in per.items()}
    if ends != counts:
        raise RuntimeError(f"{topic}: end offsets {ends} after appending {counts} records")
    return ScaleInput(topic, {p: np.array(r, np.int64) for p, r in per.items()}, warm_count)


# --- observing a group -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads), from /proc (Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (all cores), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    t: float
    committed: dict[int, int]
    cpu: dict[str, float | None]


class GroupProbe:
    """Reads a group's committed offsets without joining it."""

    def __init__(self, url: str, group: str, topic: str, partitions: int, config: dict) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from wearwatch.bus.kafka import bootstrap_servers

        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers(url),
                "group.id": group,
                "enable.auto.commit": False,
                "log_level": 3,
                **config,
            }
        )

    def committed(self) -> dict[int, int]:
        return {
            tp.partition: max(tp.offset, 0)
            for tp in self._consumer.committed(self._tps, timeout=10)
        }

    def close(self) -> None:
        self._consumer.close()


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    stderr: Path
    killed: bool = False

    def partitions(self) -> list[int] | None:
        """The partitions of the worker's latest progress line (None before any)."""
        found = _PARTITIONS_LINE.findall(self.stderr.read_text(errors="replace"))
        if not found:
            return None
        return [int(p) for p in found[-1].split(",") if p.strip()]

    def tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]


@dataclass
class RunResult:
    workers: int
    killed: bool
    readings_per_s: float
    drain_s: float
    cpu_s: dict[str, float | None]
    measured_readings: int
    outputs: dict[str, dict[str, int]]
    outputs_sha256: str
    survivor_partitions: list[int] | None = None
    resumed_s: float | None = None
    killed_partitions: list[int] = field(default_factory=list)


class ScaleBench:
    """One benchmark: the input topic and the runs over it."""

    def __init__(
        self,
        url: str,
        workdir: Path,
        client_config: dict[str, str],
        *,
        broker_pid: int | None,
        registry: Path | None,
        timeout_s: float,
        prefix: str,
    ) -> None:
        self.url = url
        self.workdir = workdir
        self.client_config = client_config
        self.broker_pid = broker_pid
        self.registry = registry
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.runs = 0
        #: Shared by the workers of every run (each run is its own group and checkpoints topic).
        self.checkpoint_key = secrets.token_hex(16)
        self.log = KafkaLog(url, client_config=client_config)

    def close(self) -> None:
        self.log.close()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
        env.update(WORKER_ENV)
        env["WEARWATCH_DATA_DIR"] = str(self.workdir / "data")
        env["WEARWATCH_CHECKPOINT_KEY"] = self.checkpoint_key
        if self.client_config:
            env["WEARWATCH_KAFKA_CONFIG"] = json.dumps(self.client_config)
        return env

    def _command(self, group: str, topic: str) -> list[str]:
        cmd = [sys.executable, "-m", "wearwatch", "worker", "fleet", "--group", group]
        cmd += ["--bus", self.url, "--param", f"input_topic={topic}"]
        for param, suffix in OUTPUTS.items():
            cmd += ["--param", f"{param}={group}.{suffix}"]
        if self.registry is not None:
            cmd += ["--param", f"registry={self.registry}"]
        return cmd

    def raw_read(self, data: ScaleInput) -> float:
        """Readings/s of one group member reading every partition, no processing: the
        readings of every poll after the first over the time from the first poll's return to
        the last's (the group join and the first fetch are not timed)."""
        self.runs += 1
        consumer = self.log.consumer(f"{self.prefix}.raw{self.runs}", [data.topic])
        ends = data.ends
        seen = dict.fromkeys(ends, 0)
        first = last = 0.0
        timed = 0
        deadline = time.monotonic() + self.timeout_s
        try:
            while any(seen[p] < ends[p] for p in ends):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"raw read of {data.topic}: timed out at {seen}")
                records = consumer.poll(500, 0.2)
                if not records:
                    continue
                last = time.perf_counter()
                if first:
                    timed += sum(
                        int(data.readings_per_record[r.partition][r.offset]) for r in records
                    )
                else:
                    first = last
                for rec in records:
                    seen[rec.partition] = max(seen[rec.partition], rec.offset + 1)
        finally:
            consumer.close()
        return timed / max(last - first, 1e-9)

    @contextlib.contextmanager
    def _workers(self, group: str, topic: str, count: int) -> Iterator[list[WorkerProcess]]:
        env = self._env()
        procs: list[WorkerProcess] = []
        try:
            for i in range(count):
                path = self.workdir / f"{group}-{i}.stderr"
                with path.open("wb") as err:
                    proc = subprocess.Popen(
                        self._command(group, topic),
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                procs.append(WorkerProcess(f"worker{i}", proc, path))
            yield procs
        finally:
            for w in procs:
                if w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
            for w in procs:
                try:
                    w.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait()

    def run(self, data: ScaleInput, workers: int, kill: bool = False) -> RunResult:
        """One run of ``workers`` processes over the input (see the module docstring)."""
        self.runs += 1
        group = f"{self.prefix}.w{workers}{'k' if kill else ''}.{self.runs}"
        ends = data.ends
        total = data.readings
        probe = GroupProbe(self.url, group, data.topic, len(ends), self.client_config)
        samples: list[Sample] = []
        kill_sample: Sample | None = None
        killed_partitions: list[int] = []
        try:
            with self._workers(group, data.topic, workers) as procs:
                deadline = time.monotonic() + self.timeout_s
                pids = {w.name: w.proc.pid for w in procs} | {"bench": os.getpid()}
                if self.broker_pid is not None:
                    pids["broker"] = self.broker_pid
                while True:
                    committed = probe.committed()
                    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    cpu["machine"] = machine_busy_seconds()
                    sample = Sample(time.perf_counter(), committed, cpu)
                    samples.append(sample)
                    if all(committed[p] >= ends[p] for p in ends):
                        break
                    for w in procs:
                        if w.proc.poll() is not None and not w.killed:
                            raise RuntimeError(
                                f"{group} {w.name} exited with {w.proc.returncode}:\n{w.tail()}"
                            )
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{group}: not caught up after {self.timeout_s:.0f} s "
                            f"(committed {committed} of {ends})\n{procs[-1].tail()}"
                        )
                    if (
                        kill
                        and kill_sample is None
                        and data.committed_readings(committed) >= total // 2
                    ):
                        victim, killed_partitions = _victim(procs, committed, ends)
                        victim.killed = True
                        victim.proc.send_signal(signal.SIGKILL)
                        victim.proc.wait()
                        pids.pop(victim.name)
                        # Its last commits, read after its death: progress past them is the
                        # survivor's.
                        kill_sample = Sample(time.perf_counter(), probe.committed(), {})
                    time.sleep(SAMPLE_S)
                survivor = next(w for w in reversed(procs) if not w.killed)
                # The progress line after the last checkpoint: ask for it by stopping.
                survivor.proc.send_signal(signal.SIGTERM)
                survivor.proc.wait(timeout=60)
                survivor_partitions = survivor.partitions()
        finally:
            probe.close()
        start = next(
            s for s in samples if all(s.committed[p] >= data.warmup_records[p] for p in ends)
        )
        end = samples[-1]
        if end is start:
            raise RuntimeError(
                f"{group}: the warm-up and the whole input were committed at once: too little "
                "input to time (more --minutes, or smaller records)"
            )
        measured = total - data.committed_readings(start.committed)
        elapsed = max(end.t - start.t, 1e-9)
        cpu_s = {
            name: (None if end.cpu.get(name) is None or start.cpu.get(name) is None
                   else round(end.cpu[name] - start.cpu[name], 2))  # type: ignore[operator]
            for name in start.cpu
        }  # fmt: skip
        resumed_s = None
        if kill_sample is not None:
            at_kill = kill_sample.committed
            resumed = next(
                s
                for s in samples
                if s.t >= kill_sample.t
                and all(
                    s.committed[p] > at_kill[p] or at_kill[p] >= ends[p] for p in killed_partitions
                )
            )
            resumed_s = round(resumed.t - kill_sample.t, 2)
        outputs, digest = self.output_counts(group)
        return RunResult(
            workers=workers,
            killed=kill,
            readings_per_s=measured / elapsed,
            drain_s=elapsed,
            cpu_s=cpu_s,
            measured_readings=measured,
            outputs=outputs,
            outputs_sha256=digest,
            survivor_partitions=survivor_partitions,
            resumed_s=resumed_s,
            killed_partitions=killed_partitions,
        )

    def output_counts(self, group: str) -> tuple[dict[str, dict[str, int]], str]:
        """Per output topic: records and distinct ids; and a digest of the first copies."""
        counts: dict[str, dict[str, int]] = {}
        digest = hashlib.sha256()
        for suffix in OUTPUTS.values():
            topic = f"{group}.{suffix}"
            records = read_all(self.log, topic)
            firsts: dict[str, bytes] = {}
            for rec in records:
                firsts.setdefault(rec.rid.removeprefix(f"{group}/"), rec.value)
            counts[suffix] = {"records": len(records), "distinct_ids": len(firsts)}
            for rid in sorted(firsts):
                digest.update(f"{suffix} {rid} {len(firsts[rid])}\n".encode())
                digest.update(firsts[rid])
        return counts, digest.hexdigest()


def _victim(
    procs: list[WorkerProcess], committed: dict[int, int], ends: dict[int, int]
) -> tuple[WorkerProcess, list[int]]:
    """The worker to kill: the one with the most records still to commit on the partitions of
    its latest progress line (so the survivor has work to take over), and those partitions."""

    def remaining(w: WorkerProcess) -> int:
        return sum(ends[p] - committed[p] for p in w.partitions() or [])

    victim = max(procs, key=remaining)
    return victim, victim.partitions() or []


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def run_scale_benchmark(
    bootstrap: str | None = None,
    *,
    machines: int = 50,
    partitions: int = 4,
    minutes: float = 5.0,
    repeats: int = 3,
    sensor_hz: float = 100.0,
    seed: int = 7,
    trained: bool = True,
    rows_per_record: int = ROWS_PER_RECORD,
    client_config: dict[str, str] | None = None,
    timeout_s: float = 900.0,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The scale-out benchmark (see the module docstring); ``bootstrap`` None: a tansu broker
    started for it. ``trained``: the workers serve fitted anomaly and risk models from a
    registry (as ``wearwatch up`` leaves them); False: hard-limit rules only."""
    from wearwatch.benchmarks.broker import tansu

    config = dict(client_config or {})
    with contextlib.ExitStack() as stack:
        broker_pid = None
        if bootstrap is None:
            on_step("starting a tansu broker…")
            broker = stack.enter_context(tansu())
            url, broker_pid = broker.url, broker.pid
        else:
            url = bootstrap
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wearwatch-scale-")))
        registry = None
        if trained:
            on_step("fitting the detectors and the risk model…")
            from wearwatch.store.registry import ModelRegistry

            anomaly, risk = fit_models(machines, sensor_hz, seed)
            registry = workdir / "models"
            models = ModelRegistry(registry)
            models.register("anomaly", anomaly, promote=True)
            models.register("risk", risk, promote=True)
        prefix = f"scale-{secrets.token_hex(4)}"
        bench = ScaleBench(
            url, workdir, config, broker_pid=broker_pid, registry=registry,
            timeout_s=timeout_s, prefix=prefix,
        )  # fmt: skip
        stack.callback(bench.close)
        on_step(f"appending {minutes:g} min of {machines} machines' readings to {url}…")
        topic = f"{prefix}.{topics.READINGS.name}"
        warm, main = scale_records(
            topic, machines, minutes, sensor_hz, partitions, seed, rows_per_record
        )
        started = time.perf_counter()
        data = prefill(bench.log, topic, partitions, warm, main)
        prefill_s = time.perf_counter() - started
        raw: list[float] = []
        runs: dict[str, list[RunResult]] = {"1": [], "2": [], "kill": []}
        for rep in range(repeats):
            tag = f"[{rep + 1}/{repeats}]"
            on_step(f"{tag} raw read of the input (no processing)…")
            raw.append(bench.raw_read(data))
            on_step(f"{tag} 1 worker…")
            runs["1"].append(bench.run(data, 1))
            on_step(f"{tag} 2 workers…")
            runs["2"].append(bench.run(data, 2))
            on_step(f"{tag} 2 workers, one SIGKILLed half-way…")
            runs["kill"].append(bench.run(data, 2, kill=True))
    return _report(data, raw, runs, prefill_s, setup=dict(
        url=url if bootstrap else "tansu (started by the bench)", machines=machines,
        partitions=partitions, minutes=minutes, sensor_hz=sensor_hz, repeats=repeats,
        trained=trained, broker_measured=broker_pid is not None,
    ))  # fmt: skip


def _report(
    data: ScaleInput,
    raw: list[float],
    runs: dict[str, list[RunResult]],
    prefill_s: float,
    setup: dict[str, Any],
) -> dict[str, Any]:
    one = round(_median([r.readings_per_s for r in runs["1"]]))
    two = round(_median([r.readings_per_s for r in runs["2"]]))
    ceiling = round(_median(raw))
    all_runs = [r for rs in runs.values() for r in rs]
    reference = runs["1"][0]

    def run_dict(r: RunResult) -> dict[str, Any]:
        out: dict[str, Any] = {
            "readings_per_s": round(r.readings_per_s),
            "drain_s": round(r.drain_s, 2),
            "cpu_s": r.cpu_s,
            "outputs": r.outputs,
            "outputs_sha256": r.outputs_sha256,
        }
        if r.killed:
            out |= {
                "killed_partitions": r.killed_partitions,
                "resumed_s": r.resumed_s,
                "survivor_partitions": r.survivor_partitions,
            }
        return out

    kill_drain = _median([r.drain_s for r in runs["kill"]])
    two_drain = _median([r.drain_s for r in runs["2"]])
    distinct = {k: v["distinct_ids"] for k, v in reference.outputs.items()}
    return {
        "readings_per_s_1_worker": one,
        "readings_per_s_2_workers": two,
        "ratio": round(two / one, 3),
        "raw_read_readings_per_s": ceiling,
        "failover": {
            "resumed_s": _median([r.resumed_s or 0.0 for r in runs["kill"]]),
            "drain_s_without_kill": round(two_drain, 2),
            "drain_s_with_kill": round(kill_drain, 2),
            "extra_drain_s": round(kill_drain - two_drain, 2),
            "survivor_owned_every_partition": all(
                r.survivor_partitions == sorted(data.ends) for r in runs["kill"]
            ),
            "session_timeout_s": 6.0,
        },
        "exactly_once": {
            "distinct_ids": distinct,
            "equal_across_runs": all(
                {k: v["distinct_ids"] for k, v in r.outputs.items()} == distinct for r in all_runs
            ),
            "identical_outputs": len({r.outputs_sha256 for r in all_runs}) == 1,
            "duplicate_records_after_kill": [
                sum(v["records"] - v["distinct_ids"] for v in r.outputs.values())
                for r in runs["kill"]
            ],
        },
        "cpu_share": _cpu_share(runs),
        "runs": {
            "1_worker": [run_dict(r) for r in runs["1"]],
            "2_workers": [run_dict(r) for r in runs["2"]],
            "2_workers_one_killed": [run_dict(r) for r in runs["kill"]],
            "raw_read_readings_per_s": [round(x) for x in raw],
        },
        "readings": data.readings,
        "records": sum(data.ends.values()),
        "readings_per_partition": {
            str(p): int(r.sum()) for p, r in data.readings_per_record.items()
        },
        "prefill_s": round(prefill_s, 2),
        **setup,
        "pipeline": "wearwatch worker fleet (decode, 5 s and 30 s windows, feature vectors, "
        "anomaly scoring, risk, health, alarms), one process per worker, one consumer group",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_share(runs: dict[str, list[RunResult]]) -> dict[str, Any]:
    """Per process of the 1- and 2-worker runs, CPU seconds per measured second (medians):
    the cores each kept busy. ``machine``: every process of the machine (at most its core
    count); ``others``: the machine minus the workers, the broker and the bench (other
    programs). ``readings_per_worker_cpu_s``: readings over the workers' CPU seconds, what a
    worker does with a core of its own."""
    out: dict[str, Any] = {}
    for key in ("1", "2"):
        per: dict[str, list[float]] = {}
        per_cpu: list[float] = []
        for r in runs[key]:
            for name, cpu in r.cpu_s.items():
                if cpu is not None:
                    per.setdefault(name, []).append(cpu / r.drain_s)
            workers = [c for n, c in r.cpu_s.items() if n.startswith("worker") and c]
            if len(workers) == r.workers:
                per_cpu.append(r.measured_readings / sum(workers))
        shares = {name: round(_median(v), 2) for name, v in per.items()}
        if "machine" in shares:
            ours = sum(v for n, v in shares.items() if n != "machine")
            shares["others"] = round(max(0.0, shares["machine"] - ours), 2)
        if per_cpu:
            shares["readings_per_worker_cpu_s"] = round(_median(per_cpu))
        out[f"{key}_worker{'s' if key == '2' else ''}"] = shares
    return out
