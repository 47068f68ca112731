"""A seeded stream of sensor readings with bursts and idle gaps, for the runtime's tests and
benchmark: keys go quiet for longer than a TTL often enough that timers really fire."""

from __future__ import annotations

import random
from collections.abc import Iterator

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
