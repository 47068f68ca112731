"""How well a replay's alarms match a plant's labels: point-wise rates and per-event delays.

A *point* is one scored window of a machine. It is **actual** positive when any reading in the
window, ``[end − window, end)``, is labelled positive, and **predicted** positive when an alarm
of that machine (any type) is *active* at the window's end, after the transitions of that
instant. Alarms, not raw severities, are what an operator is told: they carry the persistence
and hysteresis that keep a system from crying wolf, so they are what is scored. A
*recovering* alarm does not count: its evidence has gone quiet and it only waits out the quiet
period before it clears.

A labelled *event* is a run of consecutive positive readings of a machine (in time order); it
is detected at the end of the first predicted-positive window that overlaps it, and its
detection delay is that time minus the event's first positive reading.

>>> m = point_metrics(np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 0, 1, 1], bool))
>>> (m.tp, m.fp, m.tn, m.fn), round(m.precision, 3), m.false_alarm_rate, m.missed_alarm_rate
((2, 1, 1, 1), 0.667, 0.5, 0.3333333333333333)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Alarm statuses that predict an anomaly (``recovering``: the evidence has gone quiet).
OPEN_STATUSES = frozenset({"active"})


@dataclass(frozen=True)
class PointMetrics:
    """Confusion counts over points and the rates derived from them (None: undefined, 0/0)."""

    tp: int
    fp: int
    tn: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    #: FP / (FP + TN): the share of normal points that raised an alarm.
    false_alarm_rate: float | None
    #: FN / (FN + TP): the share of anomalous points without an alarm.
    missed_alarm_rate: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def point_metrics(predicted: np.ndarray, actual: np.ndarray) -> PointMetrics:
    """Confusion counts and rates of boolean ``predicted`` against ``actual``."""
    predicted = np.asarray(predicted, dtype=bool)
    actual = np.asarray(actual, dtype=bool)
    if predicted.shape != actual.shape:
        raise ValueError(f"predicted has {predicted.shape} points, actual {actual.shape}")
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    tn = int((~predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return PointMetrics(
        tp, fp, tn, fn, precision, recall, f1, _ratio(fp, fp + tn), _ratio(fn, fn + tp)
    )


def window_actual(
    end_us: np.ndarray,
    window_us: np.ndarray,
    machines: np.ndarray,
    positive_us: np.ndarray,
    positive_machines: np.ndarray,
) -> np.ndarray:
    """Per window (``end_us``, ``window_us``, machine): whether a positive reading of its
    machine (times ``positive_us``) falls in ``[end − window, end)``.

    >>> window_actual(np.array([5, 10, 10]), np.array([5, 5, 5]), np.array(["a", "a", "b"]),
    ...               np.array([7]), np.array(["a"])).tolist()
    [False, True, False]
    """
    end_us = np.asarray(end_us, dtype=np.int64)
    start_us = end_us - np.asarray(window_us, dtype=np.int64)
    out = np.zeros(len(end_us), dtype=bool)
    machines = np.asarray(machines)
    positive_machines = np.asarray(positive_machines)
    positive_us = np.asarray(positive_us, dtype=np.int64)
    for machine in np.unique(machines):
        rows = np.flatnonzero(machines == machine)
        times = np.sort(positive_us[positive_machines == machine])
        first = np.searchsorted(times, start_us[rows], side="left")
        past = np.searchsorted(times, end_us[rows], side="left")
        out[rows] = past > first
    return out


def alarm_active(
    end_us: np.ndarray,
    machines: np.ndarray,
    transitions: Iterable[tuple[int, str, str, str]],
) -> np.ndarray:
    """Per window end and machine: whether any alarm of the machine is active after every
    transition at or before that time. ``transitions``: ``(ts_us, machine, alarm_type,
    status)`` in emission order.

    >>> alarm_active(np.array([1, 2, 3, 4]), np.array(["a"] * 4),
    ...            [(2, "a", "machine", "active"), (3, "a", "sensor:x", "active"),
    ...             (3, "a", "machine", "cleared"), (4, "a", "sensor:x", "recovering")]).tolist()
    [False, True, True, False]
    """
    end_us = np.asarray(end_us, dtype=np.int64)
    machines = np.asarray(machines)
    per_machine: dict[str, list[tuple[int, str, str]]] = {}
    for ts_us, machine, alarm_type, status in transitions:
        per_machine.setdefault(machine, []).append((int(ts_us), alarm_type, status))
    out = np.zeros(len(end_us), dtype=bool)
    for machine, events in per_machine.items():
        events.sort(key=lambda e: e[0])  # stable: emission order within an instant
        times = np.array([e[0] for e in events], dtype=np.int64)
        open_types: set[str] = set()
        any_open = np.zeros(len(events), dtype=bool)
        for k, (_, alarm_type, status) in enumerate(events):
            if status in OPEN_STATUSES:
                open_types.add(alarm_type)
            else:
                open_types.discard(alarm_type)
            any_open[k] = bool(open_types)
        rows = np.flatnonzero(machines == machine)
        after = np.searchsorted(times, end_us[rows], side="right")
        out[rows] = np.where(after > 0, any_open[np.maximum(after - 1, 0)], False)
    return out


@dataclass(frozen=True)
class LabelledEvent:
    """A run of positive labels of one machine, and when (if) it was detected."""

    machine_id: str
    start_us: int
    end_us: int
    detected_us: int | None = None

    @property
    def delay_s(self) -> float | None:
        return None if self.detected_us is None else (self.detected_us - self.start_us) / 1e6


def labelled_events(
    ts_us: np.ndarray, machines: np.ndarray, labels: np.ndarray
) -> list[LabelledEvent]:
    """Runs of consecutive positive labels per machine, readings taken in time order
    (stable: several readings at one instant keep their order).

    >>> [(e.machine_id, e.start_us, e.end_us) for e in labelled_events(
    ...     np.array([1, 2, 3, 4, 5]), np.array(["a", "b", "a", "a", "a"]),
    ...     np.array([1, 1, 1, 0, 1]))]
    [('a', 1, 3), ('a', 5, 5), ('b', 2, 2)]
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    machines = np.asarray(machines)
    positive = np.asarray(labels) > 0
    events: list[LabelledEvent] = []
    for machine in np.unique(machines):
        rows = np.flatnonzero(machines == machine)
        rows = rows[np.argsort(ts_us[rows], kind="stable")]
        flags = positive[rows].astype(np.int8)
        edges = np.diff(np.concatenate(([0], flags, [0])))
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            events.append(LabelledEvent(str(machine), int(ts_us[rows[s]]), int(ts_us[rows[e - 1]])))
    return events


def detect_events(
    events: Sequence[LabelledEvent],
    end_us: np.ndarray,
    window_us: np.ndarray,
    machines: np.ndarray,
    predicted: np.ndarray,
) -> list[LabelledEvent]:
    """Each event with ``detected_us``: the end of the first predicted-positive window of its
    machine that overlaps it (``end > start`` and ``end − window ≤ event end``), else None.

    >>> s = 1_000_000
    >>> ev = [LabelledEvent("a", 12 * s, 14 * s), LabelledEvent("a", 30 * s, 31 * s)]
    >>> [e.delay_s for e in detect_events(ev, np.array([10, 15, 20, 35]) * s,
    ...     np.array([5, 5, 5, 5]) * s, np.array(["a"] * 4), np.array([1, 1, 1, 0], bool))]
    [3.0, None]
    """
    end_us = np.asarray(end_us, dtype=np.int64)
    start_us = end_us - np.asarray(window_us, dtype=np.int64)
    machines = np.asarray(machines)
    predicted = np.asarray(predicted, dtype=bool)
    out = []
    for event in events:
        hit = (
            (machines == event.machine_id)
            & predicted
            & (end_us > event.start_us)
            & (start_us <= event.end_us)
        )
        rows = np.flatnonzero(hit)
        detected = int(end_us[rows].min()) if len(rows) else None
        out.append(
            LabelledEvent(event.machine_id, event.start_us, event.end_us, detected_us=detected)
        )
    return out


def delay_summary(events: Sequence[LabelledEvent]) -> dict[str, float | int | None]:
    """Events, how many were detected, and the median and maximum delay (s) of those.

    >>> delay_summary([LabelledEvent("a", 0, 1, 2_000_000), LabelledEvent("a", 5, 6)])
    {'events': 2, 'detected': 1, 'median_delay_s': 2.0, 'max_delay_s': 2.0}
    """
    delays = [e.delay_s for e in events if e.delay_s is not None]
    return {
        "events": len(events),
        "detected": len(delays),
        "median_delay_s": float(np.median(delays)) if delays else None,
        "max_delay_s": float(max(delays)) if delays else None,
    }
