"""The fleet grid as one HTML fragment: one tile per machine, coloured by severity.

With 200 machines the overview must refresh every second without 200 timers or 200×5
elements: the page holds ONE element and swaps its HTML, which costs one message to the
browser. A tile's colour is the worse of the latest anomaly severity and the worst open
alarm, so an alarm does not flicker with each window's score. Ids and texts are escaped.

>>> from types import SimpleNamespace as S
>>> m = S(machine_id="pump-001", health=87.4, risk=0.123, risk_level="low",
...       time_to_maintenance_h=None, severity="watch", open_alarms=1, worst_alarm="high",
...       reason="vibration.mean", event_time=None)
>>> tile_severity(m)
'high'
>>> html = tiles_html([m])
>>> 'data-machine="pump-001"' in html, 'ww-sev-high' in html, '87' in html
(True, True, True)
>>> tiles_html([]) == EMPTY
True
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from wearwatch.events import SEVERITIES
from wearwatch.ui.charts import SEVERITY_COLOURS

EMPTY = '<div class="ww-empty">No machine has reported yet.</div>'

#: The tiles' style sheet (added to the page once).
CSS = (
    ".ww-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(132px,1fr));gap:6px}"
    ".ww-tile{display:block;border-radius:6px;padding:5px 7px;color:#fff;text-decoration:none;"
    "font-size:12px;line-height:1.35}"
    ".ww-tile:hover{outline:2px solid #222}"
    ".ww-tile .ww-id{font-weight:600;font-size:13px}"
    ".ww-tile .ww-alarm{float:right;background:rgba(0,0,0,.35);border-radius:8px;padding:0 5px}"
    ".ww-empty{color:#777;padding:12px}"
    ".ww-tile .ww-time{opacity:.75;font-size:11px}"
    + "".join(f".ww-sev-{s}{{background:{c}}}" for s, c in SEVERITY_COLOURS.items())
)


def tile_severity(machine: Any) -> str:
    """The worse of the machine's latest anomaly severity and its worst open alarm."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    current = machine.severity if machine.severity in rank else "normal"
    alarm = machine.worst_alarm if machine.worst_alarm in rank else "normal"
    return max(current, alarm, key=rank.__getitem__)


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} h"


def _clock(ts: datetime | None) -> str:
    return "—" if ts is None else ts.strftime("%H:%M:%S")


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def tile_html(machine: Any) -> str:
    mid = escape(machine.machine_id)
    sev = tile_severity(machine)
    alarms = (
        f'<span class="ww-alarm" title="open alarms">⚠ {machine.open_alarms}</span>'
        if machine.open_alarms
        else ""
    )
    return (
        f'<a class="ww-tile ww-sev-{sev}" href="/machine/{quote(machine.machine_id)}" '
        f'data-machine="{mid}" data-severity="{sev}" title="{escape(machine.reason or sev)}">'
        f'{alarms}<div class="ww-id">{mid}</div>'
        f'<div>health <b class="ww-health">{_number(machine.health, ".0f")}</b> · {sev}</div>'
        f"<div>risk {_number(machine.risk, '.2f')} ({escape(machine.risk_level or '—')})</div>"
        f"<div>maint. in {_hours(machine.time_to_maintenance_h)}</div>"
        f'<div class="ww-time">data to {_clock(machine.event_time)}</div></a>'
    )


def tiles_html(machines: Iterable[Any]) -> str:
    """The whole grid (machines in the order given)."""
    tiles = "".join(tile_html(m) for m in machines)
    return f'<div class="ww-grid">{tiles}</div>' if tiles else EMPTY
