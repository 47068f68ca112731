"""Windows over Arrow records, end to end, equal windows over the same readings as JSON.

Through the whole path (records on a log, the worker's columnar decoding and per-row
watermarks, the window step's columnar hook) against the same readings one by one: the same
windows, lateness decisions and dead letters, ``latest`` exactly and every moment within 1e-9
— for any cut into records, with disorder, ties, duplicates and late readings. The per-event
window step's own correctness against a brute force is the flow's window tests' business.
"""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearwatch.bus.base import OutRecord, partition_for, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import encode_events, pack_columns
from wearwatch.events import DeadLetter, Event, FeatureVector, Reading, encode, utc
from wearwatch.pipelines.fleet_features import FEATURES_TOPIC, READINGS_TOPIC, fleet_features
from wearwatch.runtime.aggregate import SeriesStats, group_partials
from wearwatch.runtime.dataflow import Flow, Source
from wearwatch.runtime.harness import run_in_memory
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC
from wearwatch.runtime.windows import hopping, tumbling
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_fleet


def _flow() -> Flow:
    flow = Flow("w", Source("readings", Reading, partitioned_by="machine_id"))
    windows = flow.stream.key_by("machine_id").window(
        tumbling(2.0), hopping(6.0, 2.0, grace=1.0), tumbling(3.0, grace=0.5),
        grace=0.25, value="value", series="sensor",
    )  # fmt: skip
    windows.to_topic("features")
    return flow


def _options(delay_s: float) -> WorkerOptions:
    return WorkerOptions(
        watermark_delay_s=delay_s,
        checkpoint_interval_s=float("inf"),
        poll_timeout_s=0.0,
        poll_max_records=3,
        exit_when_idle=True,
        checkpoint_key="columnar windows test",
    )


#: The test flow's window definitions: name → (grace µs).
GRACE_US = {"tumbling(2s)": 250_000, "hopping(6s,2s)": 1_000_000, "tumbling(3s)": 500_000}


def _spans(rows: list[tuple[int, str, str, float]], delay_us: int) -> dict[tuple, float]:
    """Per (key, kind, start µs, series): the time span (s) of the samples the window took —
    a reading is in unless the watermark it was read under had closed the window."""
    times: dict[tuple, list[int]] = {}
    watermark = -(2**63)
    for us, machine, sensor, _ in rows:
        watermark = max(watermark, us - delay_us)
        for kind, (size, step) in {
            "tumbling(2s)": (2_000_000, 2_000_000),
            "hopping(6s,2s)": (6_000_000, 2_000_000),
            "tumbling(3s)": (3_000_000, 3_000_000),
        }.items():
            start = us - us % step
            while start > us - size:
                if start + size + GRACE_US[kind] > watermark:
                    times.setdefault((machine, kind, start, sensor), []).append(us)
                start -= step
    return {k: (max(v) - min(v)) / 1e6 for k, v in times.items()}


def _same_windows(a: list[Any], b: list[Any], spans: dict[tuple, float]) -> None:
    """Same windows; ``count``/``min``/``max``/``latest`` exactly; moments within 1e-9 of the
    values' scale (a sum: times the count; a slope: over the samples' time span, and relatively
    within the rounding of times over that span, as a least squares slope of samples a
    microsecond apart is that ill-conditioned)."""

    def key(r: Any) -> tuple:
        return (r.key, r.kind, r.start, r.end)

    a, b = sorted(a, key=key), sorted(b, key=key)
    assert [key(r) for r in a] == [key(r) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.series.keys() == y.series.keys()
        start_us = round(x.start.timestamp() * 1e6)
        for name, want in x.series.items():
            got = y.series[name]
            assert got.keys() == want.keys()
            for agg in ("count", "min", "max", "latest"):
                assert got[agg] == want[agg], (key(x), name, agg)
            scale = max(1.0, abs(want["min"]), abs(want["max"]))
            span = max(spans[(x.key, x.kind, start_us, name)], 1e-6)
            size_s = (x.end - x.start).total_seconds()
            for agg in ("sum", "mean", "std", "slope"):
                factor = {"sum": max(1.0, want["count"]), "slope": 1.0 / span}.get(agg, 1.0)
                tol = 1e-9 * scale * factor
                # Times are seconds within the window: a slope's relative precision is no
                # better than their rounding (eps × window size) over the samples' span.
                rel = 1e-9 + (16 * sys.float_info.epsilon * size_s / span if agg == "slope" else 0)
                assert math.isclose(got[agg], want[agg], rel_tol=rel, abs_tol=tol), (
                    key(x), name, agg, got[agg], want[agg],
                )  # fmt: skip


readings = st.lists(
    st.tuples(
        # µs, within the harness's clock horizon; a few fixed times make ties (a time seen
        # twice with different values: the later reading is the window's latest)
        st.one_of(st.sampled_from([1_000_000, 4_000_000, 4_000_001]), st.integers(0, 40_000_000)),
        st.sampled_from(["m1", "m2"]),
        st.sampled_from(["vib", "temp"]),
        st.floats(-1e6, 1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    readings,
    st.lists(st.integers(1, 40), min_size=1, max_size=10),
    st.sampled_from([0.0, 0.5, 3.0]),
    st.booleans(),
)
def test_columnar_windows_equal_per_event_windows(
    rows: list[tuple[int, str, str, float]], cuts: list[int], delay_s: float, sort: bool
) -> None:
    """Random disorder (unless sorted), duplicates (repeated draws), late readings (a small
    watermark delay), records cut at random places."""
    if sort:
        rows = sorted(rows)
    events = [Reading(ts=utc(us / 1e6), machine_id=m, sensor=s, value=v) for us, m, s, v in rows]
    per_event = run_in_memory(_flow(), events, options=_options(delay_s))
    records, start, i = [], 0, 0
    while start < len(events):
        size = cuts[i % len(cuts)]
        records.append(encode_events(events[start : start + size]))
        start, i = start + size, i + 1
    columnar = run_in_memory(_flow(), records, options=_options(delay_s))

    spans = _spans(rows, round(delay_s * 1e6))
    _same_windows(per_event["features"], columnar["features"], spans)
    assert per_event.totals == columnar.totals
    late_json = [d for d in per_event["dead_letters"] if d.reason.startswith("late")]
    late_arrow = [d for d in columnar["dead_letters"] if d.reason.startswith("late")]
    assert [(d.reason, d.raw) for d in late_json] == [(d.reason, d.raw) for d in late_arrow]
    assert len(late_arrow) == columnar.totals["late"]
    n_windows = len(columnar["features"])
    assert columnar.totals["out"] == n_windows


def test_the_vectorised_path_really_runs_and_sessions_fall_back() -> None:
    [stage] = _flow().compile(1)
    assert getattr(stage, "process_columns", None) is not None
    flow = Flow("s", Source("readings", Reading, partitioned_by="machine_id"))
    from wearwatch.runtime.windows import session

    flow.stream.key_by("machine_id").window(session(1.0), value="value").to_topic("out")
    [stage] = flow.compile(1)
    assert getattr(stage, "process_columns", None) is None  # sessions: one by one
    flow = Flow("c", Source("readings", Reading, partitioned_by="machine_id"))
    flow.stream.key_by("machine_id").window(tumbling(1.0), value=lambda r: r.value * 2)
    [stage] = flow.compile(1)
    assert getattr(stage, "process_columns", None) is None  # a computed value is no column


# --- the fleet flow on the embedded log ------------------------------------------------------


def test_fleet_features_over_arrow_records_equal_json_records_on_the_embedded_log(
    tmp_path: Path,
) -> None:
    cols = synthetic_fleet(24_000, machines=8, sensors=3, rate_hz=20.0, seed=2)
    events = cols.events()
    results = []
    for name in ("json", "arrow"):
        log = SqliteLog(tmp_path / f"{name}.db")
        log.create_topic(READINGS_TOPIC, 3)
        if name == "arrow":
            log.produce(pack_columns(READINGS_TOPIC, cols, "machine_id", 3, max_rows=2_000))
        else:
            per: dict[int, list[Event]] = {}
            for event in events:
                per.setdefault(partition_for(event.machine_id.encode(), 3), []).append(event)
            log.produce(
                OutRecord(READINGS_TOPIC, None, encode(chunk[i : i + 500]), "", p)
                for p, chunk in per.items()
                for i in range(0, len(chunk), 500)
            )
        [stage] = fleet_features(windows_s=(5.0, 30.0), grace_s=1.0).compile(log.partitions)
        options = WorkerOptions(
            watermark_delay_s=0.5, exit_when_idle=True, poll_timeout_s=0.0, poll_max_records=5
        )
        counters = Worker(log, stage, "features", options).run(install_signals=False)
        out = [
            msgspec.json.decode(r.value, type=FeatureVector) for r in read_all(log, FEATURES_TOPIC)
        ]
        letters = read_all(log, DEAD_LETTER_TOPIC)
        results.append((counters, out, letters))
        log.close()
    (c_json, f_json, d_json), (c_arrow, f_arrow, d_arrow) = results
    assert c_json == c_arrow
    assert c_arrow["in"] == c_arrow["processed"] == len(events)
    assert d_json == d_arrow == []
    assert len(f_arrow) == c_arrow["out"] >= 8 * 10

    def by_window(vectors: list[FeatureVector]) -> dict[tuple, dict[str, float]]:
        return {(f.machine_id, f.window_s, f.ts): f.features for f in vectors}

    want, got = by_window(f_json), by_window(f_arrow)
    assert want.keys() == got.keys()
    for window, features in want.items():
        assert features.keys() == got[window].keys()
        for name, value in features.items():
            assert math.isclose(got[window][name], value, rel_tol=1e-9, abs_tol=1e-9), name


def test_a_failing_process_columns_fails_its_rows_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, 1)
    good = [Reading(ts=utc(10.0 + i), machine_id="m1", sensor="s", value=1.0) for i in range(3)]
    log.produce([OutRecord(READINGS_TOPIC, None, encode_events(good), "", 0)])
    [stage] = fleet_features().compile(1)

    def explode(*_: Any) -> None:
        raise RuntimeError("boom")

    stage.process_columns = explode  # type: ignore[method-assign]
    options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0)
    counters = Worker(log, stage, "g", options).run(install_signals=False)
    letters = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
    ]
    assert counters["in"] == counters["failed"] == counters["dead_lettered"] == 3
    assert counters["processed"] == 0
    assert [d.reason for d in letters] == ["processing failed: RuntimeError: boom"] * 3
    assert [msgspec.json.decode(d.raw, type=Reading) for d in letters] == good
    log.close()


def test_statistics_held_as_numbers_behave_as_rivers() -> None:
    """Statistics restored from numbers (a checkpoint, a columnar table slot) answer from the
    numbers, and turn into River's estimators only when a sample or a merge needs them."""
    rng = np.random.default_rng(5)
    t, v = rng.random(50), rng.normal(size=50)
    river = SeriesStats()
    for a, b in zip(t, v, strict=True):
        river.update(float(a), float(b))
    held = pickle.loads(pickle.dumps(river))
    assert held._state is not None and river._state is None
    assert held.result() == river.result() and held.n == river.n == 50
    partial = SeriesStats.from_partial(group_partials(np.zeros(50, np.int64), t, v, 1), 0)
    for name, value in river.result().items():
        assert math.isclose(partial.result()[name], value, rel_tol=1e-12, abs_tol=1e-12), name
    assert all(type(x) is float for x in partial.__getstate__())  # msgspec encodes these
    held.update(2.0, 7.0)
    river.update(2.0, 7.0)
    assert held._state is None
    assert held.result() == river.result() and held.result()["latest"] == 7.0
    other = pickle.loads(pickle.dumps(river))
    merged = pickle.loads(pickle.dumps(river)).merge(other)
    assert merged.n == 102 and merged.result()["mean"] == pytest.approx(river.result()["mean"])
