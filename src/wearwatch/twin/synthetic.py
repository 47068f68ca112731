"""A seeded stream of sensor readings with bursts and idle gaps, for the runtime's tests and
benchmark: keys go quiet for longer than a TTL often enough that timers really fire."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

from wearwatch.columnar import Columns, FieldArrays
from wearwatch.events import Reading, utc

EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def synthetic_readings(
    n: int,
    seed: int = 7,
    machines: int = 40,
    sensors: int = 5,
    mean_gap_s: float = 0.002,
    jitter_s: float = 0.0,
) -> Iterator[Reading]:
    """``n`` readings in event-time order (plus up to ``jitter_s`` of disorder).

    Machines are picked with skewed popularity, so some keys are busy and others idle.
    """
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(machines)]
    names = [f"m{i:03d}" for i in range(machines)]
    t = EPOCH_S
    for _ in range(n):
        t += rng.expovariate(1.0 / mean_gap_s)
        machine = rng.choices(names, weights)[0]
        ts = t - rng.random() * jitter_s if jitter_s else t
        yield Reading(
            ts=utc(ts),
            machine_id=machine,
            sensor=f"s{rng.randrange(sensors)}",
            value=round(rng.gauss(10.0, 2.0), 4),
            unit="mm/s",
        )


def synthetic_fleet(
    readings: int,
    machines: int = 50,
    sensors: int = 6,
    rate_hz: float = 10.0,
    seed: int = 7,
) -> Columns:
    """``readings`` readings of a fleet as columns, in event-time order: every sensor of every
    machine sampled at ``rate_hz`` with ±20 % jitter (irregular timestamps), values a per-sensor
    level with a slow drift and noise.

    >>> cols = synthetic_fleet(1200, machines=2, sensors=3)
    >>> len(cols), sorted(set(cols.fields["machine_id"].tolist()))
    (1200, ['m000', 'm001'])
    >>> bool((cols.ts_us[1:] >= cols.ts_us[:-1]).all())
    True
    """
    rng = np.random.default_rng(seed)
    series = machines * sensors
    per_series = -(-readings // series)
    period_us = 1e6 / rate_hz
    steps = period_us * (1.0 + rng.uniform(-0.2, 0.2, size=(series, per_series)))
    ts = (EPOCH_S * 1e6 + np.cumsum(steps, axis=1)).astype(np.int64).ravel()
    which = np.repeat(np.arange(series), per_series)
    order = np.argsort(ts, kind="stable")[:readings]
    ts, which = ts[order], which[order]
    level = rng.uniform(1.0, 100.0, size=series)
    drift = rng.normal(0.0, 1e-3, size=series)
    seconds = (ts - ts[0]) / 1e6
    value = level[which] + drift[which] * seconds + rng.normal(0.0, 0.5, size=len(ts))
    machine_names = np.array([f"m{i:03d}" for i in range(machines)], dtype=object)
    sensor_names = np.array([f"s{i}" for i in range(sensors)], dtype=object)
    codes = {
        "machine_id": ((which // sensors).astype(np.int32), machine_names),
        "sensor": ((which % sensors).astype(np.int32), sensor_names),
        "unit": (np.zeros(len(ts), dtype=np.int32), np.array(["mm/s"], dtype=object)),
    }
    fields = FieldArrays(["machine_id", "sensor", "value", "unit"], {"value": value}, codes)
    return Columns(Reading, ts, fields, np.arange(len(ts)))
