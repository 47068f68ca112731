"""Windows are right by construction: keyed streams with out-of-order, late and duplicate
events give the window results of a brute-force reference computed from the whole input
(same windows, values within 1e-9, every late event counted and dead-lettered with its
bytes) — in memory (many examples), on the embedded log with the worker SIGKILLed at random
points, and on Kafka. Flows with and without a repartition."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

import window_flows as wf  # tests/ is on sys.path (conftest.py)
from wearwatch.bus.base import Log, OutRecord, partition_for, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import DeadLetter, Reading, WindowResult, encode
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC

TESTS = Path(__file__).parent


WINDOW_CHOICES = [
    ["tumbling", 5.0, None, None],
    ["tumbling", 2.5, None, 1.0],
    ["hopping", 6.0, 2.0, None],
    ["hopping", 3.0, 1.5, 0.5],
    ["session", 1.5, None, None],
    ["session", 4.0, None, 2.0],
]


@st.composite
def scenarios(draw: st.DrawFn, max_events: int = 60, min_events: int = 1) -> dict[str, Any]:
    """A keyed stream: unique (machine, sensor, ms) → value, shuffled (out of order), some
    events repeated (duplicates), a watermark delay small enough to make some late."""
    machines = draw(
        st.lists(st.sampled_from(["m0", "m1", "m2", "m3"]), min_size=1, max_size=3, unique=True)
    )
    sensors = ["a", "b", "rpm"]
    # Times on a millisecond grid, mostly on quarter-seconds so window edges are hit exactly.
    times = st.one_of(st.integers(0, 120).map(lambda q: q * 250), st.integers(0, 30_000))
    cells = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(machines), st.sampled_from(sensors), times),
            st.integers(-4000, 4000).map(lambda x: x / 4),
            min_size=min_events,
            max_size=max_events,
        )
    )
    events = [wf.reading(m, s, ts, v) for (m, s, ts), v in cells.items()]
    events = draw(st.permutations(events))
    dupes = draw(
        st.lists(
            st.tuples(st.integers(0, len(events) - 1), st.integers(0, len(events))), max_size=8
        )
    )
    events = list(events)
    for src, at in dupes:
        events.insert(at, events[src])
    return {
        "events": events,
        "windows": draw(
            st.lists(
                st.sampled_from(WINDOW_CHOICES),
                min_size=1,
                max_size=3,
                unique_by=lambda w: (w[0], w[1], w[2]),
            )
        ),
        "grace_s": draw(st.sampled_from([0.0, 0.5, 2.0])),
        "delay_s": draw(st.sampled_from([0.0, 0.25, 1.0, 3.0])),
        "partitioned_by": draw(st.sampled_from(["machine_id", "sensor"])),
        "partitions": draw(st.integers(1, 3)),
    }


def _expected(s: dict[str, Any]) -> Any:
    return wf.reference(
        s["events"], s["windows"], s["grace_s"], s["partitioned_by"], s["partitions"], s["delay_s"]
    )


def _check(results: list[WindowResult], dead: list[DeadLetter], late: int, s: dict) -> None:
    expected = _expected(s)
    wf.assert_windows_equal(wf.actual_windows(results), expected.windows)
    assert late == len(expected.late)
    assert all(d.reason.startswith("late: window ") for d in dead)
    assert Counter(d.raw for d in dead) == Counter(expected.late)


def _at(second: int, us: int, machine: str, sensor: str, value: float) -> Reading:
    ts = wf.T0 + timedelta(seconds=second, microseconds=us)
    return Reading(ts=ts, machine_id=machine, sensor=sensor, value=value)


#: Found by Hypothesis in CI: a sample that bridges an earlier session and a later, longer one
#: must give the merged session the later one's end (it was cut short at the sample's own).
BRIDGED_SESSIONS = {
    "events": [
        _at(0, 0, "m0", "a", 0.0),
        _at(29, 500_000, "m2", "rpm", 0.5),
        _at(0, 250_000, "m2", "b", 0.25),
        _at(28, 0, "m2", "a", 0.0),
        _at(28, 250_000, "m2", "rpm", 1.0),
    ],
    "windows": [["tumbling", 5.0, None, None], ["session", 1.5, None, None]],
    "grace_s": 2.0,
    "delay_s": 0.0,
    "partitioned_by": "machine_id",
    "partitions": 1,
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example(BRIDGED_SESSIONS)
def test_harness_windows_equal_the_brute_force_reference(s: dict[str, Any]) -> None:
    flow = wf.window_flow(s["windows"], s["grace_s"], s["partitioned_by"])
    inputs = s["events"] + wf.sentinels(s["partitioned_by"], s["partitions"])
    out = flow.test(inputs, partitions=s["partitions"], watermark_delay_s=s["delay_s"])
    stages = 1 if s["partitioned_by"] == "machine_id" else 2
    assert len(out.counters) == stages
    _check(out[wf.OUT_TOPIC], out[DEAD_LETTER_TOPIC], out.totals["late"], s)
    event(f"stages={stages} late={'some' if out.totals['late'] else 'none'}")
    event(f"windows emitted: {'none' if not out[wf.OUT_TOPIC] else 'some'}")
    # Every input was read once, and nothing else was dead-lettered.
    assert next(iter(out.counters.values()))["in"] == len(inputs)
    assert out.totals["dead_lettered"] == out.totals["late"]


# -- the same property on real logs, through `wearwatch worker` ----------------------------------


def _write(log: Log, topic: str, s: dict[str, Any], inputs: list[Reading]) -> int:
    """One record per event, on the partition its producer's key picks."""
    log.create_topic(topic, s["partitions"])
    key = s["partitioned_by"]
    log.produce(
        OutRecord(
            topic,
            str(getattr(e, key)).encode(),
            encode(e),
            "",
            partition_for(str(getattr(e, key)).encode(), s["partitions"]),
        )
        for e in inputs
    )
    log.flush()
    return len(inputs)


def _worker_cmd(bus: str, s: dict[str, Any], name: str, topics: tuple[str, str]) -> list[str]:
    params = {
        "windows": json.dumps(s["windows"]),
        "grace_s": json.dumps(s["grace_s"]),
        "partitioned_by": s["partitioned_by"],
        "name": name,
        "input_topic": topics[0],
        "output_topic": topics[1],
    }
    cmd = [
        sys.executable,
        "-m",
        "wearwatch",
        "worker",
        "window_flows:window_flow",
        "--bus",
        bus,
        "--group",
        name,
        "--exit-when-idle",
        "--quiet",
    ]
    for k, v in params.items():
        cmd += ["--param", f"{k}={v}"]
    return cmd


def _env(s: dict[str, Any], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.update(
        WEARWATCH_WATERMARK_DELAY_S=str(s["delay_s"]),
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.01",
        WEARWATCH_POLL_MAX_RECORDS="2",
        WEARWATCH_LEASE_S="1",  # a restart waits for the killed worker's lease to expire
    )
    env.update(extra)
    return env


def _first_per_rid(log: Log, topic: str, kind: type) -> list[Any]:
    """Outputs in log order, the first copy of each idempotency id (Kafka's sink rule)."""
    seen: set[str] = set()
    out = []
    for record in read_all(log, topic):
        if record.rid in seen:
            continue
        seen.add(record.rid)
        out.append(msgspec.json.decode(record.value, type=kind))
    return out


# At least 40 events, drawn as such (a filter would reject most draws: Unsatisfiable).
crash_scenarios = scenarios(max_events=150, min_events=40)


@pytest.mark.slow
@pytest.mark.parametrize("partitioned_by", ["machine_id", "sensor"])
@settings(
    max_examples=2,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # each example runs worker processes: no shrinking
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
    ],
)
@given(s=crash_scenarios, seed=st.integers(0, 2**32))
def test_embedded_log_sigkilled_worker_gives_the_reference(
    tmp_path: Path,
    kill_at_progress: Any,
    sqlite_committed: Any,
    partitioned_by: str,
    s: dict[str, Any],
    seed: int,
) -> None:
    s = {**s, "partitioned_by": partitioned_by, "partitions": max(s["partitions"], 2)}
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    log = SqliteLog(path)
    inputs = s["events"] + wf.sentinels(s["partitioned_by"], s["partitions"])
    n = _write(log, wf.IN_TOPIC, s, inputs)
    log.close()
    cmd = _worker_cmd(f"sqlite:///{path}", s, "wflow", (wf.IN_TOPIC, wf.OUT_TOPIC))
    env = _env(s)

    def progress() -> int:
        return sqlite_committed(path, "wflow") + sqlite_committed(path, "wflow.1")

    rng = random.Random(seed)
    targets = [rng.uniform(0.05, 0.95) * n for _ in range(2)]
    assert kill_at_progress(cmd, env, progress, targets) >= 1
    assert subprocess.run(cmd, env=env, timeout=120).returncode == 0
    log = SqliteLog(path)
    assert sqlite_committed(path, "wflow") == n
    results = [msgspec.json.decode(r.value, type=WindowResult) for r in read_all(log, wf.OUT_TOPIC)]
    dead = [msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)]
    rids = [r.rid for r in read_all(log, wf.OUT_TOPIC)]
    assert len(rids) == len(set(rids))  # exactly once
    _check(results, dead, len(dead), s)
    log.close()


@pytest.mark.slow
@pytest.mark.kafka
@settings(
    max_examples=1,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
    ],
)
@given(s=crash_scenarios, seed=st.integers(0, 2**32))
def test_kafka_sigkilled_worker_gives_the_reference(
    kafka_url: str, kill_at_progress: Any, s: dict[str, Any], seed: int
) -> None:
    from wearwatch.bus.kafka import KafkaLog

    s = {**s, "partitioned_by": "sensor", "partitions": 2}  # with a repartition
    run = uuid.uuid4().hex[:8]
    name, topics = f"wflow-{run}", (f"w.readings-{run}", f"w.windows-{run}")
    log = KafkaLog(kafka_url)
    inputs = s["events"] + wf.sentinels(s["partitioned_by"], s["partitions"])
    n = _write(log, topics[0], s, inputs)
    env = _env(
        s,
        WEARWATCH_CHECKPOINT_KEY="kafka-test-secret-0123456789abcdef",
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.05",
    )
    cmd = _worker_cmd(kafka_url, s, name, topics)
    repartition = f"{name}.1.repartition"

    def progress() -> int:  # envelopes stage 0 has written (one per event, plus ticks)
        return sum(log.end_offsets(repartition).values()) if repartition in log.topics() else 0

    rng = random.Random(seed)
    assert kill_at_progress(cmd, env, progress, [rng.uniform(0.1, 0.9) * n]) == 1
    assert subprocess.run(cmd, env=env, timeout=180).returncode == 0
    results = _first_per_rid(log, topics[1], WindowResult)
    letters = _first_per_rid(log, DEAD_LETTER_TOPIC, DeadLetter)
    dead = [d for d in letters if d.source_topic in (topics[0], f"{name}.1.repartition")]
    _check(results, dead, len(dead), s)
    log.close()
