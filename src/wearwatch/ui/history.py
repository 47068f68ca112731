"""Risk and health over time per machine, for the machine page's chart.

The live view keeps only each machine's *latest* health; the dashboard wants a trend. This
recorder subscribes to the view's ``health`` events and keeps the last ``size`` points per
machine (bounded: memory does not grow with the run). It is fed from the view's polling thread
and read by page timers; appends to a bounded deque and list copies keep the two apart.

>>> from wearwatch.events import MachineHealth, encode, utc
>>> h = HealthHistory(size=2)
>>> for t, risk in ((0, 0.1), (5, 0.2), (10, 0.4)):
...     h.on_event("health", encode(MachineHealth(ts=utc(t), machine_id="m", risk=risk,
...                risk_level="low", health=90.0 - t)))
>>> [(p.ts_ms, p.risk, p.health) for p in h.points("m")]
[(5000.0, 0.2, 85.0), (10000.0, 0.4, 80.0)]
>>> h.points("nobody")
[]
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import msgspec

from wearwatch.events import MachineHealth


class HealthPoint(NamedTuple):
    ts_ms: float
    risk: float
    health: float
    time_to_maintenance_h: float | None


class HealthHistory:
    """The last ``size`` health reports of every machine seen."""

    def __init__(self, size: int = 720) -> None:
        self.size = size
        self._series: dict[str, deque[HealthPoint]] = {}
        self._decode = msgspec.json.Decoder(MachineHealth).decode

    def attach(self, view: Any) -> None:
        """Subscribe to ``view`` (a :class:`~wearwatch.store.live.LiveView`)."""
        view.subscribe(self.on_event)

    def on_event(self, kind: str, payload: bytes) -> None:
        if kind != "health":
            return
        try:
            h = self._decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # the view only forwards what it decoded; nothing else to show
        series = self._series.get(h.machine_id)
        if series is None:
            series = self._series.setdefault(h.machine_id, deque(maxlen=self.size))
        series.append(
            HealthPoint(h.ts.timestamp() * 1000.0, h.risk, h.health, h.time_to_maintenance_h)
        )

    def points(self, machine_id: str) -> list[HealthPoint]:
        series = self._series.get(machine_id)
        return list(series) if series is not None else []
