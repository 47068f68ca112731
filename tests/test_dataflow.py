"""The dataflow API: stages and repartition topics, stateless and stateful steps on the
in-memory harness, the registry, declaration errors, repartition dedupe, and a registered
two-stage flow under `wearwatch worker` on the embedded log (SIGKILLed, exactly once)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from wearwatch.bus.base import pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import FeatureVector, Reading, ReadingTotals, encode, utc
from wearwatch.pipelines import PIPELINES, build_pipeline
from wearwatch.pipelines.reading_totals import READINGS_TOPIC
from wearwatch.pipelines.reading_windows import FEATURES_TOPIC
from wearwatch.runtime.dataflow import Flow, Source, register
from wearwatch.runtime.flow_worker import FlowWorker
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context, PartitionState
from wearwatch.runtime.stages import Repartitioned
from wearwatch.runtime.windows import hopping, session, tumbling
from wearwatch.runtime.worker import WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def r(machine: str, sensor: str, at: float, value: float) -> Reading:
    return Reading(ts=utc(T0 + at), machine_id=machine, sensor=sensor, value=value)


def _source(partitioned_by: str | None = "machine_id") -> Flow:
    return Flow("f", Source("in", Reading, partitioned_by=partitioned_by))


# -- stages ----------------------------------------------------------------------------------


def test_key_by_the_partitioning_key_is_free_and_any_other_repartitions() -> None:
    flow = _source("machine_id")
    same = flow.stream.key_by("machine_id")
    same.map(lambda x: x).to_topic("a")
    by_sensor = same.key_by("sensor")
    by_sensor.to_topic("b")
    by_sensor.key_by(lambda e: e.unit, name="unit").to_topic("c")
    stages = flow.compile(3)
    assert [(s.name, s.input_topic, s.outputs) for s in stages] == [
        ("f", "in", ("a", "f.1.repartition")),
        ("f.1", "f.1.repartition", ("b", "f.2.repartition")),
        ("f.2", "f.2.repartition", ("c",)),
    ]
    assert flow.repartition_topics() == ["f.1.repartition", "f.2.repartition"]
    # A source without a key contract: every key_by repartitions, even on an attribute.
    loose = _source(None)
    loose.stream.key_by("machine_id").to_topic("a")
    assert len(loose.compile()) == 2


def test_stateless_steps_and_sink_keys_on_the_harness() -> None:
    flow = _source()
    high = flow.stream.filter(lambda e: e.value > 1.0)
    high.map(
        lambda e: FeatureVector(
            ts=e.ts, machine_id=e.machine_id, window_s=0.0, features={e.sensor: e.value}
        )
    ).to_topic("high")
    flow.stream.flat_map(lambda e: [e, e] if e.sensor == "b" else []).to_topic(
        "twice", key=lambda e: e.sensor
    )
    events = [r("m1", "a", 0.0, 0.5), r("m1", "b", 1.0, 2.0), r("m2", "a", 2.0, 3.0)]
    out = flow.test(events)
    assert out["high"] == [
        FeatureVector(ts=utc(T0 + 1), machine_id="m1", window_s=0.0, features={"b": 2.0}),
        FeatureVector(ts=utc(T0 + 2), machine_id="m2", window_s=0.0, features={"a": 3.0}),
    ]
    assert out["twice"] == [events[1], events[1]]
    assert out[DEAD_LETTER_TOPIC] == []
    assert out.totals["in"] == 3 and out.totals["out"] == 4


@dataclass
class Totals:
    """Typed per-key state of the step below."""

    count: int = 0
    total: float = 0.0
    first: float = 0.0
    seen: list[float] = field(default_factory=list)


class IdleTotals:
    """Per key: count and sum, emitted (and forgotten) once the key is idle for 10 s."""

    def init(self) -> Totals:
        return Totals()

    def on_event(self, e: Reading, state: Totals, ctx: Any) -> None:
        if state.count == 0:
            state.first = e.ts.timestamp()
        state.count += 1
        state.total += e.value
        state.seen.append(e.value)
        ctx.count("seen")
        ctx.set_timer(e.ts.timestamp() + 10.0)

    def on_timer(self, when: float, state: Totals, ctx: Any) -> None:
        ctx.emit(
            ReadingTotals(
                ts=utc(when),
                key=ctx.key,
                first_ts=utc(state.first),
                count=state.count,
                total=state.total,
            )
        )
        ctx.clear_state()


def test_process_step_keeps_typed_state_per_key_and_fires_event_time_timers() -> None:
    flow = _source()
    flow.stream.key_by("machine_id").process(IdleTotals()).to_topic("totals")
    events = [
        r("m1", "a", 0.0, 1.0),
        r("m2", "a", 1.0, 5.0),
        r("m1", "a", 4.0, 2.0),  # m1's timer moves to 14
        r("m1", "a", 30.0, 4.0),  # watermark 30: m1 (14) and m2 (11) fire; m1 starts anew
        r("m9", "a", 100.0, 0.0),  # watermark 100: m1 (40) fires
    ]
    out = flow.test(events, watermark_delay_s=0.0)
    assert out["totals"] == [
        ReadingTotals(ts=utc(T0 + 11), key="m2", first_ts=utc(T0 + 1), count=1, total=5.0),
        ReadingTotals(ts=utc(T0 + 14), key="m1", first_ts=utc(T0), count=2, total=3.0),
        ReadingTotals(ts=utc(T0 + 40), key="m1", first_ts=utc(T0 + 30), count=1, total=4.0),
    ]
    assert out.totals["seen"] == 5


def test_a_returned_state_replaces_the_old_one() -> None:
    class Running:
        def init(self) -> float:
            return 0.0

        def on_event(self, e: Reading, state: float, ctx: Any) -> float:
            ctx.emit(
                FeatureVector(
                    ts=e.ts, machine_id=ctx.key, window_s=0.0, features={"sum": state + e.value}
                )
            )
            return state + e.value

    flow = _source()
    flow.stream.process(Running()).to_topic("sums")
    out = flow.test([r("m1", "a", 0, 1.0), r("m1", "a", 1, 2.0), r("m2", "a", 2, 7.0)])
    assert [(f.machine_id, f.features["sum"]) for f in out["sums"]] == [
        ("m1", 1.0),
        ("m1", 3.0),
        ("m2", 7.0),
    ]


def test_the_harness_is_deterministic_and_dead_letters_bad_input_with_its_bytes() -> None:
    flow = _source("sensor")
    flow.stream.key_by("machine_id").window(
        tumbling(5.0), hopping(10.0, 5.0), session(3.0), grace=1.0, series="sensor"
    ).to_topic("w")
    events = list(
        synthetic_readings(3000, seed=3, machines=5, sensors=3, mean_gap_s=0.01, jitter_s=2.0)
    )
    bad = b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:00Z","machine_id":"m","value":1}'
    first = flow.test([*events[:100], bad, *events[100:]], partitions=3, watermark_delay_s=0.5)
    again = flow.test([*events[:100], bad, *events[100:]], partitions=3, watermark_delay_s=0.5)
    assert first == again and first.counters == again.counters
    assert first.totals["late"] > 0  # the jitter makes some late: counted and visible
    letters = first[DEAD_LETTER_TOPIC]
    assert letters[0].raw == bad and letters[0].field == "sensor"
    assert letters[0].reason == "field `sensor`: missing"
    assert len(letters) == 1 + first.totals["late"]


# -- declaration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda s: s.window(), "window(): give at least one window definition"),
        (
            lambda s: s.window(tumbling(1.0), aggregations=["median"]),
            "aggregations=['median']: choose from count, sum, mean, std, min, max, slope, latest",
        ),
        (
            lambda s: s.window(tumbling(1.0), grace=-1.0),
            "grace=-1.0: expected a non-negative, finite number of seconds",
        ),
        (
            lambda s: s.window(tumbling(1.0), tumbling(1.0)),
            "window(): the same window definition twice",
        ),
        (lambda s: s.window(hopping(5.0, 10.0)), "step_s=10.0: must not exceed size_s=5.0"),
        (
            lambda s: s.window(tumbling(float("nan"))),
            "size_s=nan: expected a positive, finite number of seconds",
        ),
        (lambda s: s.process(object()), "has no init() method"),
    ],
)
def test_declaration_errors_name_the_argument_and_value(declare: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        declare(_source().stream)
    assert message in str(info.value)


# -- repartition ---------------------------------------------------------------------------------


def test_a_redelivered_envelope_is_applied_once() -> None:
    flow = _source("sensor")
    flow.stream.key_by("machine_id").window(tumbling(5.0), series="sensor").to_topic("w")
    _, downstream = flow.compile(1)
    state, outputs = PartitionState(), []
    ctx = Context(0, state, outputs)
    ctx.begin_record("r", 0)

    def envelope(seq: int, at: float, value: float, wm: float) -> Repartitioned:
        e = r("m1", "a", at, value)
        return Repartitioned(
            ts=e.ts,
            src_partition=0,
            src_partitions=1,
            seq=seq,
            watermark_us=round((T0 + wm) * 1e6),
            item_wm_us=0,
            key="m1",
            payload=msgspec.Raw(encode(e)),
        )

    for env in [
        envelope(0, 1, 1.0, 0),
        envelope(1, 2, 2.0, 0),
        envelope(0, 1, 1.0, 0),
        envelope(2, 3, 4.0, 0),
        envelope(3, 20, 0.0, 20),
    ]:
        wm = downstream.watermark_candidate(env, env.ts.timestamp(), 0, state)
        if wm > state.watermark:
            state.watermark = wm
            for when, key in state.timers.pop_due(wm):
                downstream.on_timer(key, when, ctx)
        downstream.process(env, "", env.ts.timestamp(), ctx)
    (result,) = [msgspec.json.decode(o.value) for o in outputs]
    assert result["series"]["a"]["count"] == 3
    assert result["series"]["a"]["sum"] == pytest.approx(7.0, rel=1e-12)
    assert state.counters["redelivered"] == 1


# -- registry -----------------------------------------------------------------------------------


def test_registered_flows_and_module_factories_build_by_name() -> None:
    @register("test-dataflow-registered")
    def factory(topic: str = "in") -> Flow:
        flow = Flow("registered", Source(topic, Reading))
        flow.stream.to_topic("out")
        return flow

    try:
        assert PIPELINES["test-dataflow-registered"] is factory
        assert build_pipeline("test-dataflow-registered", {"topic": "x"}).source.topic == "x"
        built = build_pipeline("wearwatch.pipelines.reading_windows:reading_windows", {})
        assert isinstance(built, Flow) and len(built.compile()) == 2
        assert isinstance(build_pipeline("reading_windows", {}), Flow)
        with pytest.raises(ValueError, match="pipeline 'nope': unknown; choose one of"):
            build_pipeline("nope", {})
        with pytest.raises(ValueError, match=r"pipeline 'no.such:thing': cannot load"):
            build_pipeline("no.such:thing", {})
        with pytest.raises(ValueError, match=r"bad --param"):
            build_pipeline("test-dataflow-registered", {"bogus": 1})
    finally:
        del PIPELINES["test-dataflow-registered"]


# -- `wearwatch worker` runs a registered two-stage flow ------------------------------------------


def _fill(path: Path) -> int:
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, 4)
    events = synthetic_readings(40_000, seed=9, machines=12, jitter_s=0.5)
    records = pack_by_partition(
        READINGS_TOPIC, events, lambda e: f"{e.machine_id}/{e.sensor}", 4, encode, 100
    )
    log.produce(records)
    log.close()
    return len(records)


def _features(path: Path) -> tuple[Counter, list[str]]:
    log = SqliteLog(path)
    records = read_all(log, FEATURES_TOPIC)
    log.close()
    content = Counter()
    for record in records:
        f = msgspec.json.decode(record.value, type=FeatureVector)
        rounded = tuple(sorted((k, round(v, 9)) for k, v in f.features.items()))
        content[(f.machine_id, f.window_s, f.ts, rounded)] += 1
    return content, [record.rid for record in records]


@pytest.mark.slow
def test_worker_runs_a_registered_two_stage_flow_exactly_once_across_sigkills(
    tmp_path: Path, kill_at_progress: Any, sqlite_committed: Any
) -> None:
    reference, crashed = tmp_path / "reference.db", tmp_path / "crashed.db"
    n = _fill(reference)
    _fill(crashed)
    options = WorkerOptions(watermark_delay_s=1.0, exit_when_idle=True, poll_timeout_s=0.0)
    flow = build_pipeline("reading_windows", {})
    totals = FlowWorker(lambda: SqliteLog(reference), flow, "rw", options).run(
        install_signals=False
    )
    assert totals["in"] == 40_000 + totals["out"] - _features(reference)[0].total()
    env = dict(
        os.environ,
        WEARWATCH_WATERMARK_DELAY_S="1.0",
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.02",
        WEARWATCH_POLL_MAX_RECORDS="3",
        WEARWATCH_LEASE_S="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "wearwatch",
        "worker",
        "reading_windows",
        "--group",
        "rw",
        "--bus",
        f"sqlite:///{crashed}",
        "--exit-when-idle",
        "--quiet",
    ]
    kills = kill_at_progress(
        cmd, env, lambda: sqlite_committed(crashed, "rw"), [0.2 * n, 0.5 * n, 0.8 * n]
    )
    assert kills >= 2
    assert subprocess.run(cmd, env=env, timeout=300).returncode == 0
    assert sqlite_committed(crashed, "rw") == n
    expected, _ = _features(reference)
    actual, rids = _features(crashed)
    assert expected.total() > 100 and max(expected.values()) == 1
    assert actual == expected  # the same windows, each once
    assert len(rids) == len(set(rids))


def test_the_readme_harness_example() -> None:
    from wearwatch.pipelines.reading_windows import reading_windows

    readings = list(synthetic_readings(30_000, jitter_s=4.0))
    out = reading_windows().test(
        readings, partitions=4, watermark_delay_s=1.0, key=lambda r: f"{r.machine_id}/{r.sensor}"
    )
    features = out["fleet.reading_windows"]
    assert {f.window_s for f in features} == {5.0, 30.0}
    assert out.totals["late"] == len(out["dead_letters"]) > 0
    # Every reading is in the 5 s windows once, or late for them: nothing vanished.
    counted = sum(
        v
        for f in features
        if f.window_s == 5.0
        for k, v in f.features.items()
        if k.endswith(".count")
    )
    late_5s = sum("tumbling(5s)" in d.reason for d in out["dead_letters"])
    # The rest are in the 5 s windows still open at the end: those after the last closed one.
    last_end = max(f.ts for f in features if f.window_s == 5.0)
    assert len(readings) - counted - late_5s == sum(x.ts >= last_end for x in readings)


def test_the_harness_refuses_partitions_it_could_not_fill() -> None:
    flow = _source(None)
    flow.stream.key_by("machine_id").to_topic("out")
    with pytest.raises(ValueError, match="partitions=2 but source 'in' has no partitioned_by"):
        flow.test([r("m1", "a", 0, 1.0)], partitions=2)
    assert len(flow.test([r("m1", "a", 0, 1.0)], partitions=2, key=lambda e: "k")["out"]) == 1
