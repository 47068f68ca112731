"""The fleet flow's windows on fleet data: event time (not arrival order), late readings
dead-lettered and counted, slopes on irregular timestamps equal to numpy's least squares, and
batch features equal to the stream's."""

from __future__ import annotations

import numpy as np
import pytest

from wearwatch import topics
from wearwatch.bus.base import OutRecord
from wearwatch.bus.memory import MemoryLog
from wearwatch.columnar import Columns
from wearwatch.events import FeatureVector, Reading, decode_event, utc
from wearwatch.pipelines.fleet.features import features_from_readings, reading_records
from wearwatch.pipelines.fleet_features import fleet_features
from wearwatch.runtime.harness import StreamRunner
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import EPOCH_S, synthetic_fleet

WINDOWS = (5.0, 30.0)


def _fleet(readings: int = 36_000, seed: int = 3) -> Columns:
    # 4 machines x 3 sensors at 10 Hz (+-20 % jitter): 36,000 readings are 300 s.
    return synthetic_fleet(readings, machines=4, sensors=3, rate_hz=10.0, seed=seed)


def _brute_force(cols: Columns, machine: str, sensor: str, start_us: int, size_us: int) -> dict:
    m = (
        (cols.fields["machine_id"] == machine)
        & (cols.fields["sensor"] == sensor)
        & (cols.ts_us >= start_us)
        & (cols.ts_us < start_us + size_us)
    )
    t = (cols.ts_us[m] - start_us) / 1e6
    v = cols.fields["value"][m]
    return {
        "count": float(len(v)),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "slope": float(np.polyfit(t, v, 1)[0]),
        "latest": float(v[np.argmax(t)]),
    }


def test_every_window_matches_a_brute_force_recount_with_polyfit_slopes() -> None:
    cols = _fleet()
    vectors = features_from_readings(cols, WINDOWS, grace_s=2.0, watermark_delay_s=1.0)
    # Every window closed by the last watermark (last reading - 1 s delay >= end + 2 s grace):
    # 4 machines x (59 five-second + 9 thirty-second windows); the last ones stay open, as in
    # the stream.
    assert (cols.ts_us[-1] - cols.ts_us[0]) / 1e6 == pytest.approx(301.28, abs=0.01)
    assert len(vectors) == 4 * (59 + 9)
    for fv in vectors:
        end_us = round(fv.ts.timestamp() * 1e6)
        size_us = round(fv.window_s * 1e6)
        for sensor in ("s0", "s1", "s2"):
            want = _brute_force(cols, fv.machine_id, sensor, end_us - size_us, size_us)
            for agg, value in want.items():
                got = fv.features[f"{sensor}.{agg}"]
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (fv.ts, sensor, agg)


def test_windows_follow_event_time_not_arrival_order() -> None:
    """Readings shuffled within the watermark delay give the same windows as in order."""
    cols = _fleet(12_000)
    events = cols.events()
    rng = np.random.default_rng(5)
    # Disorder of up to ~0.8 s: each reading moved by a random offset under the delay.
    keys = np.array([e.ts.timestamp() for e in events]) + rng.uniform(0, 0.8, len(events))
    shuffled = [events[i] for i in np.argsort(keys, kind="stable")]
    assert shuffled != events
    ordered = features_from_readings(events, WINDOWS, grace_s=0.0, watermark_delay_s=1.0)
    disordered = features_from_readings(shuffled, WINDOWS, grace_s=0.0, watermark_delay_s=1.0)
    assert len(ordered) == len(disordered) == 4 * (19 + 3)  # 100 s of readings
    for a, b in zip(ordered, disordered, strict=True):
        assert (a.ts, a.machine_id, a.window_s) == (b.ts, b.machine_id, b.window_s)
        assert a.features == pytest.approx(b.features, rel=1e-9, abs=1e-12)


def test_late_readings_are_dead_lettered_with_their_bytes_and_counted() -> None:
    """A reading behind a closed window's end + grace is counted ``late`` and dead-lettered
    with its own bytes; it never changes the closed window."""
    base = [
        Reading(ts=utc(EPOCH_S + t / 10), machine_id="pump-001", sensor="vibration", value=1.0)
        for t in range(0, 200)
    ]  # 20 s of 10 Hz readings
    late = Reading(ts=utc(EPOCH_S + 1.0), machine_id="pump-001", sensor="vibration", value=99.0)
    runner = StreamRunner(fleet_features((5.0,), 0.5), watermark_delay_s=1.0)
    out = runner.feed(list(reading_records([*base, late])))
    features = out[topics.FEATURES.name]
    assert [fv.ts.timestamp() - EPOCH_S for fv in features] == [5.0, 10.0, 15.0]
    assert all(fv.features["vibration.max"] == 1.0 for fv in features)
    assert runner.counters["late"] == 1
    assert runner.counters["processed"] == 200
    [letter] = out[topics.DEAD_LETTERS.name]
    assert letter.reason.startswith("late: window tumbling(5s)")
    assert Reading.__struct_config__.tag in letter.raw.decode()
    assert '"value":99.0' in letter.raw.decode()


def test_batch_features_equal_the_streams() -> None:
    """``features_from_readings`` on chunks gives exactly what the flow's worker publishes on
    ``fleet.features`` from the same columnar records, and (to rounding) what it publishes
    from the readings sent one by one as JSON."""
    cols = _fleet(24_000)
    chunks = [cols.take(np.arange(i, min(i + 5000, len(cols)))) for i in range(0, len(cols), 5000)]
    batch = features_from_readings(chunks, WINDOWS, grace_s=2.0, watermark_delay_s=1.0)

    flow = fleet_features(WINDOWS, 2.0)
    log = MemoryLog()
    log.create_topic(topics.READINGS.name, 1)
    log.produce(
        OutRecord(topics.READINGS.name, None, raw, "", 0)
        for chunk in chunks
        for raw in reading_records(chunk)
    )
    options = WorkerOptions(
        watermark_delay_s=1.0, poll_timeout_s=0.0, exit_when_idle=True, checkpoint_key="test"
    )
    [stage] = flow.compile(1)
    Worker(log, stage, "fleet", options).run(install_signals=False)
    published = [decode_event(r.value, FeatureVector) for r in log.appended(topics.FEATURES.name)]
    assert batch == published

    as_json = fleet_features(WINDOWS, 2.0).test(cols.events(), watermark_delay_s=1.0)
    assert len(as_json[topics.FEATURES.name]) == len(batch) == 4 * (39 + 6)
    # Timers fire per event there, per batch here: the same windows, closed in another order.
    order = lambda fv: (fv.ts, fv.machine_id, fv.window_s)  # noqa: E731
    want = sorted(as_json[topics.FEATURES.name], key=order)
    pairs = zip(sorted(batch, key=order), want, strict=True)
    for a, b in pairs:
        assert (a.ts, a.machine_id, a.window_s) == (b.ts, b.machine_id, b.window_s)
        assert a.features == pytest.approx(b.features, rel=1e-9, abs=1e-12)


def test_untrained_flow_raises_and_clears_a_hard_limit_alarm() -> None:
    """No model: the rules run on the plant's hard limits. Vibration above the ISO C/D
    boundary for 30 s scores critical on every 5 s window it fills, raises one alarm (repeats
    refresh it), which recovers on the first quiet window and clears after the quiet period."""
    from wearwatch.pipelines.fleet.alarms import AlarmConfig
    from wearwatch.pipelines.fleet.flow import fleet_pipeline

    def level(t: float) -> float:
        return 9.0 if 60 <= t < 90 else 2.0

    readings = [
        Reading(ts=utc(EPOCH_S + k / 10), machine_id="pump-001", sensor="vibration",
                value=level(k / 10))
        for k in range(1800)
    ]  # fmt: skip
    flow = fleet_pipeline(
        None,
        None,
        AlarmConfig(quiet_s=10.0),
        (5.0,),
        0.5,
        limits={"pump-001": {"vibration": (None, 7.1)}},
    )
    out = flow.test(readings, watermark_delay_s=1.0)
    scores = out[topics.SCORES.name]
    assert len(scores) == len(out[topics.FEATURES.name]) == len(out[topics.HEALTH.name]) == 35
    critical = [s.ts.timestamp() - EPOCH_S for s in scores if s.severity != "normal"]
    assert critical == [65.0, 70.0, 75.0, 80.0, 85.0, 90.0]
    assert all(s.severity == "critical" for s in scores if s.severity != "normal")
    alarms = [
        (a.ts.timestamp() - EPOCH_S, a.alarm_id, a.transition, a.severity, a.status)
        for a in out[topics.ALARMS.name]
    ]
    assert alarms == [
        (65.0, "pump-001/machine/1", "raised", "critical", "active"),
        (95.0, "pump-001/machine/1", "recovering", "critical", "recovering"),
        (105.0, "pump-001/machine/1", "cleared", "critical", "cleared"),
    ]
    health = {h.ts.timestamp() - EPOCH_S: h for h in out[topics.HEALTH.name]}
    assert health[75.0].risk == 0.0 and health[75.0].risk_level == "low"
    assert health[75.0].health < health[50.0].health == 100.0
    assert out.totals["alarm_raised"] == 1
