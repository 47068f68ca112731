"""Which windows are believed healthy: not inside a ground-truth fault, downtime or sensor fault.

Baselines fitted on windows of a failing bearing would call the failure normal. With a
maintenance log (the twin's ground truth, or a plant's work orders) every window that overlaps
a machine fault (``fault_onset`` → ``failure`` / ``repair`` / ``maintenance``), a downtime
(``failure`` → ``repair``) or a sensor fault (``sensor_fault`` → ``sensor_fault_end``) of its
machine is left out. A window ``(ts − window_s, ts]`` overlaps ``[start, end)`` when
``ts > start`` and ``ts − window_s < end``; an interval still open runs to the end of time.

>>> import pandas as pd
>>> from wearwatch.events import MaintenanceEvent, utc
>>> frame = pd.DataFrame({"ts": pd.to_datetime([10, 20, 30, 40], unit="s", utc=True),
...     "machine_id": "p1", "window_s": 5.0, "vibration.mean": [1.0, 1.0, 9.0, 1.0]})
>>> log = [MaintenanceEvent(ts=utc(22.0), asset_id="p1", kind="fault_onset"),
...        MaintenanceEvent(ts=utc(31.0), asset_id="p1", kind="failure"),
...        MaintenanceEvent(ts=utc(34.0), asset_id="p1", kind="repair")]
>>> healthy_windows(frame, log)["ts"].dt.second.tolist()
[10, 20, 40]
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from wearwatch.events import MaintenanceEvent

_ENDS_FAULT = ("failure", "repair", "maintenance")


def unhealthy_intervals(events: Iterable[MaintenanceEvent]) -> dict[str, list[tuple[float, float]]]:
    """Machine → [start, end) intervals (epoch seconds) of faults, downtime, sensor faults."""
    out: dict[str, list[tuple[float, float]]] = {}
    fault: dict[str, float] = {}
    down: dict[str, float] = {}
    sensor: dict[tuple[str, str], float] = {}
    for e in sorted(events, key=lambda e: e.ts):
        t, m = e.ts.timestamp(), e.asset_id
        if e.kind == "fault_onset":
            fault.setdefault(m, t)
        elif e.kind in _ENDS_FAULT:
            if m in fault:
                out.setdefault(m, []).append((fault.pop(m), t))
            if e.kind == "failure":
                down.setdefault(m, t)
            elif m in down:
                out.setdefault(m, []).append((down.pop(m), t))
        elif e.kind == "sensor_fault":
            sensor.setdefault((m, e.sensor), t)
        elif e.kind == "sensor_fault_end" and (m, e.sensor) in sensor:
            out.setdefault(m, []).append((sensor.pop((m, e.sensor)), t))
    for m, start in [*fault.items(), *down.items(), *((m, t) for (m, _), t in sensor.items())]:
        out.setdefault(m, []).append((start, math.inf))
    return out


def healthy_windows(frame: pd.DataFrame, events: Iterable[MaintenanceEvent]) -> pd.DataFrame:
    """The rows of a feature-store frame that overlap no unhealthy interval of their machine."""
    intervals = unhealthy_intervals(events)
    if not intervals or len(frame) == 0:
        return frame
    since_epoch = pd.to_datetime(frame["ts"], utc=True) - pd.Timestamp(0, tz="UTC")
    end = (since_epoch / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
    start = end - frame["window_s"].to_numpy(dtype=np.float64)
    machines = frame["machine_id"].astype(str).to_numpy()
    keep = np.ones(len(frame), dtype=bool)
    for machine, spans in intervals.items():
        mine = machines == machine
        for lo, hi in spans:
            keep &= ~(mine & (end > lo) & (start < hi))
    return frame[keep]
