"""How early and how often the fleet's alarms are right, from the alarms and the ground truth.

Pure functions of two event lists — the ``fleet.alarms`` transitions and the twin's
``fleet.maintenance`` ground truth — so the figures can be recounted by anyone from the log.

Definitions (machine time throughout):

- a machine **fault** lasts from its ``fault_onset`` to the ``failure`` (or to a preventive
  ``maintenance`` that cleared it, or to a ``repair``); the machine is **down** from a failure
  to its repair;
- a failure is **alarmed early** when a ``machine`` alarm of severity ≥ ``medium`` was active
  at some moment in ``[onset, failure − lead)`` of that fault (``lead`` = 1 h by default); its
  **lead time** is failure − the first such moment in ``[onset, failure)``;
- a **false alarm** is a ``raised`` or ``reraised`` transition at a moment the alarm had no
  cause: for a ``machine`` alarm, no machine fault active and the machine not down; for a
  ``sensor:<s>`` alarm, additionally no sensor fault active on that machine. So a sensor fault
  that raises a sensor alarm is a true alarm, and one that raises a machine alarm is a false
  machine alarm;
- a sensor fault is **labelled as sensor** when a ``sensor:`` alarm of that machine was
  active at some moment between the sensor fault's start and its end.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wearwatch.events import SEVERITIES, Alarm, MaintenanceEvent

HOUR_S = 3600.0
_RANK = {name: i for i, name in enumerate(SEVERITIES)}
_RAISES = ("raised", "reraised")


@dataclass(frozen=True)
class Interval:
    machine: str
    start: float
    end: float
    kind: str  # "fault" | "down" | "sensor"
    mode: str = ""
    sensor: str = ""
    #: For a fault: the failure time it ended in (None: cleared before failing, or still on).
    failure: float | None = None


def ground_truth(events: Iterable[MaintenanceEvent], end_s: float) -> list[Interval]:
    """Fault, downtime and sensor-fault intervals of every machine (open ones end at
    ``end_s``, the end of the run)."""
    out: list[Interval] = []
    fault: dict[str, tuple[float, str]] = {}
    down: dict[str, float] = {}
    sensor: dict[tuple[str, str], tuple[float, str]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        t, m = e.ts.timestamp(), e.asset_id
        if e.kind == "fault_onset":
            fault.setdefault(m, (t, e.mode))
        elif e.kind == "failure":
            start, mode = fault.pop(m, (t, e.mode))
            out.append(Interval(m, start, t, "fault", mode, failure=t))
            down[m] = t
        elif e.kind in ("repair", "maintenance"):
            if m in fault:
                start, mode = fault.pop(m)
                out.append(Interval(m, start, t, "fault", mode))
            if m in down:
                out.append(Interval(m, down.pop(m), t, "down"))
        elif e.kind == "sensor_fault":
            sensor.setdefault((m, e.sensor), (t, e.mode))
        elif e.kind == "sensor_fault_end" and (m, e.sensor) in sensor:
            start, mode = sensor.pop((m, e.sensor))
            out.append(Interval(m, start, t, "sensor", mode, e.sensor))
    for m, (start, mode) in fault.items():
        out.append(Interval(m, start, end_s, "fault", mode))
    for m, start in down.items():
        out.append(Interval(m, start, end_s, "down"))
    for (m, s), (start, mode) in sensor.items():
        out.append(Interval(m, start, end_s, "sensor", mode, s))
    return sorted(out, key=lambda i: (i.machine, i.start, i.kind))


def _active_spans(
    alarms: Sequence[Alarm], min_severity: str, machine_alarms: bool
) -> dict[str, list[tuple[float, float]]]:
    """Per machine, the spans during which one of its alarms (machine alarms, or sensor
    alarms) was active with severity ≥ ``min_severity`` (the last span open to +inf)."""
    floor = _RANK[min_severity]
    by_alarm: dict[str, list[Alarm]] = defaultdict(list)
    for a in alarms:
        if (a.alarm_type == "machine") == machine_alarms:
            by_alarm[a.alarm_id].append(a)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for transitions in by_alarm.values():
        since: float | None = None
        for a in sorted(transitions, key=lambda a: a.ts):
            t = a.ts.timestamp()
            on = a.status != "cleared" and _RANK[a.severity] >= floor
            if on and since is None:
                since = t
            elif not on and since is not None:
                spans[a.machine_id].append((since, t))
                since = None
        if since is not None:
            spans[transitions[0].machine_id].append((since, float("inf")))
    return spans


def _first_in(spans: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    """The first moment in ``[lo, hi)`` covered by a span, if any."""
    best = None
    for start, end in spans:
        t = max(start, lo)
        if t < min(end, hi):
            best = t if best is None else min(best, t)
    return best


def alarm_metrics(
    alarms: Sequence[Alarm],
    truth: Sequence[Interval],
    machines: int,
    days: float,
    lead_s: float = HOUR_S,
    min_severity: str = "medium",
) -> dict[str, float | int | None]:
    """The alarm figures of a run (definitions in the module docstring)."""
    machine_spans = _active_spans(alarms, min_severity, machine_alarms=True)
    sensor_spans = _active_spans(alarms, "watch", machine_alarms=False)
    failures = [i for i in truth if i.kind == "fault" and i.failure is not None]
    early = 0
    leads: list[float] = []
    for f in failures:
        assert f.failure is not None
        spans = machine_spans.get(f.machine, [])
        if _first_in(spans, f.start, f.failure - lead_s) is not None:
            early += 1
        first = _first_in(spans, f.start, f.failure)
        if first is not None:
            leads.append((f.failure - first) / HOUR_S)
    by_machine: dict[str, list[Interval]] = defaultdict(list)
    for i in truth:
        by_machine[i.machine].append(i)
    false = 0
    for a in alarms:
        if a.transition not in _RAISES:
            continue
        t = a.ts.timestamp()
        causes = ("fault", "down") if a.alarm_type == "machine" else ("fault", "down", "sensor")
        if not any(i.kind in causes and i.start <= t <= i.end for i in by_machine[a.machine_id]):
            false += 1
    sensor_faults = [i for i in truth if i.kind == "sensor"]
    labelled = sum(
        1
        for i in sensor_faults
        if _first_in(sensor_spans.get(i.machine, []), i.start, i.end) is not None
    )
    return {
        "failures": len(failures),
        "failures_alarmed_early": early,
        "failures_alarmed_early_share": round(early / len(failures), 4) if failures else None,
        "median_lead_time_h": round(statistics.median(leads), 2) if leads else None,
        "false_alarms": false,
        "false_alarms_per_machine_day": round(false / (machines * days), 4),
        "sensor_faults": len(sensor_faults),
        "sensor_faults_labelled_as_sensor": (
            round(labelled / len(sensor_faults), 4) if sensor_faults else None
        ),
        "alarm_transitions": len(alarms),
    }
