"""Flows the window tests run in memory, on the embedded log and on Kafka, plus the
brute-force reference they are checked against. A plain module (not a test file) so a worker
subprocess can import it: ``wearwatch worker window_flows:window_flow`` with ``tests/`` on
``PYTHONPATH``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from wearwatch.bus.base import partition_for
from wearwatch.events import Reading, WindowResult, encode
from wearwatch.runtime.dataflow import Flow, Source
from wearwatch.runtime.windows import WindowDef, hopping, session, tumbling

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
SENTINEL_AFTER = timedelta(days=1)
IN_TOPIC = "w.readings"
OUT_TOPIC = "w.windows"


def build_def(spec: Sequence[Any]) -> WindowDef:
    """``[kind, size_s, step_s, grace_s or None]`` → a window definition."""
    kind, size, step, grace = spec
    if kind == "tumbling":
        return tumbling(size, grace=grace)
    if kind == "hopping":
        return hopping(size, step, grace=grace)
    return session(size, grace=grace)


def window_flow(
    windows: list[list[Any]],
    grace_s: float = 0.0,
    partitioned_by: str = "machine_id",
    name: str = "wflow",
    input_topic: str = IN_TOPIC,
    output_topic: str = OUT_TOPIC,
) -> Flow:
    """Readings keyed by machine, windowed per sensor. With ``partitioned_by="sensor"`` the
    ``key_by`` repartitions (two stages)."""
    flow = Flow(name, Source(input_topic, Reading, partitioned_by=partitioned_by))
    per_machine = flow.stream.key_by("machine_id")
    wins = per_machine.window(
        *[build_def(spec) for spec in windows], grace=grace_s, value="value", series="sensor"
    )
    wins.to_topic(output_topic)
    return flow


# -- inputs ------------------------------------------------------------------------------------


def reading(machine: str, sensor: str, ts_ms: int, value: float) -> Reading:
    return Reading(
        ts=T0 + timedelta(milliseconds=ts_ms), machine_id=machine, sensor=sensor, value=value
    )


def sentinels(partitioned_by: str, partitions: int) -> list[Reading]:
    """One far-future reading per source partition, keyed so it lands there: every
    partition's watermark then passes every real window, which therefore all close. Their
    own key starts with ``~`` (ignored when comparing)."""
    out: dict[int, Reading] = {}
    i = 0
    while len(out) < partitions:
        name = f"~s{i}"
        p = partition_for(name.encode(), partitions)
        if p not in out:
            machine = name if partitioned_by == "machine_id" else "~sentinel"
            sensor = name if partitioned_by == "sensor" else "s"
            out[p] = Reading(ts=T0 + SENTINEL_AFTER, machine_id=machine, sensor=sensor, value=0.0)
        i += 1
    return [out[p] for p in range(partitions)]


# -- the brute-force reference -------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    windows: dict[tuple[str, str, datetime, datetime], dict[str, dict[str, float]]]
    late: list[bytes]  # raw bytes of each late event (one per late event)


def us(ts: datetime) -> int:
    return T0_US + (ts - T0) // timedelta(microseconds=1)


def reference(
    events: Sequence[Reading],
    windows: list[list[Any]],
    grace_s: float,
    partitioned_by: str,
    partitions: int,
    delay_s: float,
) -> Expected:
    """From the whole input: each event's watermark is that of its source partition after
    it (max over the partition's events so far of ``ts - delay``); an event is late for a
    tumbling/hopping window when ``end + grace <= watermark``, for a session when
    ``ts + grace < watermark``; every window of a real key with an on-time sample is
    emitted (the sentinels close them all); aggregates in exact arithmetic."""
    delay = round(delay_s * 1e6)
    marks = [-math.inf] * partitions
    observed = []  # (event, watermark after it)
    for e in events:
        p = partition_for(str(getattr(e, partitioned_by)).encode(), partitions)
        marks[p] = max(marks[p], us(e.ts) - delay)
        observed.append((e, marks[p]))
    samples: dict[tuple[str, str, int, int], list[tuple[int, int, float]]] = defaultdict(list)
    late: list[bytes] = []
    defs = [build_def(spec) for spec in windows]
    default_grace = round(grace_s * 1e6)
    for order, (e, wm) in enumerate(observed):
        if e.machine_id.startswith("~"):
            continue
        t = us(e.ts)
        is_late = False
        for d in defs:
            grace = default_grace if d.grace_us is None else d.grace_us
            if d.kind == "session":
                if t + grace < wm:
                    is_late = True
                else:
                    samples[(e.machine_id, d.name, 0, 0)].append((t, order, e.value, e.sensor))
                continue
            start = (t // d.step_us) * d.step_us
            while start > t - d.size_us:
                if start + d.size_us + grace <= wm:
                    is_late = True
                else:
                    samples[(e.machine_id, d.name, start, start + d.size_us)].append(
                        (t, order, e.value, e.sensor)
                    )
                start -= d.step_us
        if is_late:
            late.append(encode(e))
    out = {}
    gaps = {d.name: d.size_us for d in defs if d.kind == "session"}
    for (machine, kind, start, end), rows in samples.items():
        if kind in gaps:
            rows.sort()
            group = [rows[0]]
            for row in rows[1:]:
                if row[0] - group[-1][0] >= gaps[kind]:
                    out[_window_key(machine, kind, group[0][0], group[-1][0] + gaps[kind])] = (
                        _series(group)
                    )
                    group = []
                group.append(row)
            out[_window_key(machine, kind, group[0][0], group[-1][0] + gaps[kind])] = _series(group)
        else:
            out[_window_key(machine, kind, start, end)] = _series(rows)
    return Expected(out, late)


def _window_key(machine: str, kind: str, start: int, end: int) -> tuple:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (
        machine,
        kind,
        epoch + timedelta(microseconds=start),
        epoch + timedelta(microseconds=end),
    )


def _series(rows: list[tuple[int, int, float, str]]) -> dict[str, dict[str, float]]:
    by_sensor: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for t, order, value, sensor in rows:
        by_sensor[sensor].append((t, order, value))
    return {sensor: _exact(points) for sensor, points in sorted(by_sensor.items())}


def _exact(points: list[tuple[int, int, float]]) -> dict[str, float]:
    n = len(points)
    t = [Fraction(p[0], 1_000_000) for p in points]
    v = [Fraction(p[2]) for p in points]
    t_mean, v_mean = sum(t) / n, sum(v) / n
    s_tt = sum((x - t_mean) ** 2 for x in t)
    s_tv = sum((x - t_mean) * (y - v_mean) for x, y in zip(t, v, strict=True))
    s_vv = sum((y - v_mean) ** 2 for y in v)
    latest = max(points, key=lambda p: (p[0], p[1]))[2]
    return {
        "count": float(n),
        "sum": float(sum(v)),
        "mean": float(v_mean),
        "std": math.sqrt(s_vv / n),
        "min": float(min(v)),
        "max": float(max(v)),
        "slope": float(s_tv / s_tt) if n > 1 and s_tt > 0 else 0.0,
        "latest": latest,
    }


def actual_windows(
    results: Sequence[WindowResult],
) -> dict[tuple[str, str, datetime, datetime], dict[str, dict[str, float]]]:
    """The flow's window results by (key, kind, start, end); a window emitted twice fails."""
    out = {}
    for r in results:
        if r.key.startswith("~"):
            continue
        key = (r.key, r.kind, r.start, r.end)
        assert key not in out, f"window emitted twice: {key}"
        out[key] = r.series
    return out


def assert_windows_equal(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected), (
        f"missing {sorted(set(expected) - set(actual))[:3]}, "
        f"unexpected {sorted(set(actual) - set(expected))[:3]}"
    )
    for key, series in expected.items():
        got = actual[key]
        assert sorted(got) == sorted(series), (key, got, series)
        for sensor, aggs in series.items():
            for name, want in aggs.items():
                have = got[sensor][name]
                assert abs(have - want) <= 1e-9 * max(1.0, abs(want)), (
                    key,
                    sensor,
                    name,
                    have,
                    want,
                )
