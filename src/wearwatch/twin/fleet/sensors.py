"""Sensor faults: a fault of ONE measurement, not of the machine.

The machine is fine; what reaches the log is wrong: a stuck transmitter repeats one value, a
fouled probe drifts, a loose connector spikes, a failing link drops most readings (missing
rows). A detector that tells these from machine faults raises a sensor alarm instead of a
bearing alarm; the twin's ``sensor_fault`` / ``sensor_fault_end`` events are the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wearwatch.twin.fleet.config import SensorFaultSpec


@dataclass(frozen=True)
class SensorFault:
    """One active sensor fault: ``kind`` on sensor column ``sensor`` since ``start_s``."""

    kind: str
    sensor: int
    start_tick: int
    end_tick: int
    start_s: float
    #: stuck: the repeated value; drift: offset per second (signed); spikes: the jump.
    size: float
    #: spikes: share of readings that spike; dropout: share that still arrive.
    share: float


def draw_fault(
    rng: np.random.Generator,
    kind: str,
    spec: SensorFaultSpec,
    sensor: int,
    nominal: float,
    level: float,
    start_tick: int,
    tick_s: float,
    duration_s: float | None = None,
) -> SensorFault:
    """A fault of ``kind`` starting now on a sensor reading ``level`` (noise-free) whose
    nominal is ``nominal``; its duration is drawn unless given."""
    if duration_s is None:
        duration_s = rng.uniform(spec.duration_h[0], spec.duration_h[1]) * 3600.0
    ticks = max(1, int(np.ceil(duration_s / tick_s)))
    size = float(rng.uniform(*spec.size)) if spec.size[1] > 0 else 0.0
    if kind == "stuck":
        size = level
    elif kind == "drift":
        size = (1.0 if rng.random() < 0.5 else -1.0) * size * nominal / 3600.0
    elif kind == "spikes":
        size *= nominal
    start_s = start_tick * tick_s
    return SensorFault(kind, sensor, start_tick, start_tick + ticks, start_s, size, spec.share)


def apply_fault(
    fault: SensorFault, values: np.ndarray, keep: np.ndarray, t: np.ndarray, u: np.ndarray
) -> None:
    """Apply ``fault`` in place to one sensor's ``values`` and ``keep`` mask at times ``t``
    (s), with ``u`` this sensor's uniform draws (the same draws that decide transit loss,
    from the other end of [0, 1)).

    >>> v, k = np.ones(4), np.ones(4, dtype=bool)
    >>> u = np.array([0.1, 0.5, 0.95, 0.99])
    >>> apply_fault(SensorFault("spikes", 0, 0, 9, 0.0, 3.0, 0.1), v, k, np.zeros(4), u)
    >>> v.tolist(), k.tolist()
    ([1.0, 1.0, 4.0, 4.0], [True, True, True, True])
    >>> apply_fault(SensorFault("dropout", 0, 0, 9, 0.0, 0.0, 0.1), v, k, np.zeros(4), u)
    >>> k.tolist()
    [False, False, True, True]
    >>> v = np.ones(2)
    >>> drift = SensorFault("drift", 0, 0, 9, 10.0, 0.5, 0.0)
    >>> apply_fault(drift, v, k[:2], np.array([10, 14.0]), u)
    >>> v.tolist()
    [1.0, 3.0]
    """
    if fault.kind == "stuck":
        values[:] = fault.size
    elif fault.kind == "drift":
        values += fault.size * (t - fault.start_s)
    elif fault.kind == "spikes":
        values += np.where(u >= 1.0 - fault.share, fault.size, 0.0)
    elif fault.kind == "dropout":
        keep &= u >= 1.0 - fault.share
    else:
        raise ValueError(f"kind={fault.kind!r}: expected stuck, drift, spikes or dropout")
