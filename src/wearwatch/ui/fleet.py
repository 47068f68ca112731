"""Fleet overview: every machine as a tile coloured by severity, and the open alarms.

One timer refreshes the page: the grid is one HTML element whose content is swapped only when
it changed, the alarm table one element whose rows are replaced. The refresh's own duration
is shown (and kept in :attr:`FleetPanel.last_ms`) so "responsive with 200 machines" is a
measured fact, not a hope.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

from nicegui import ui

from wearwatch.events import SEVERITIES
from wearwatch.ui.access import LOCKED
from wearwatch.ui.charts import SEVERITY_COLOURS
from wearwatch.ui.frame import Board, refresh_every
from wearwatch.ui.tiles import CSS, tile_severity, tiles_html

ALARM_COLUMNS = [
    {"name": "machine_id", "label": "Machine", "field": "machine_id", "align": "left"},
    {"name": "alarm_type", "label": "Type", "field": "alarm_type", "align": "left"},
    {"name": "severity", "label": "Severity", "field": "severity", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "reason", "label": "Reason", "field": "reason", "align": "left"},
    {"name": "raised_at", "label": "Raised (event time)", "field": "raised_at", "align": "left"},
    {"name": "ack", "label": "Acknowledged", "field": "ack", "align": "left"},
]

ACK_SLOT = r"""
<q-td key="ack" :props="props">
  <span v-if="props.row.acknowledged" class="ww-acked">✓ {{ props.row.ack }}</span>
  <q-btn v-else size="sm" color="primary" label="Acknowledge" :disable="!props.row.can_ack"
         @click="() => $parent.$emit('ack', props.row)">
    <q-tooltip v-if="!props.row.can_ack">{{ props.row.locked }}</q-tooltip>
  </q-btn>
</q-td>
"""


def _when(ts: datetime | None) -> str:
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def alarm_rows(alarms: list[Any], can_ack: bool) -> list[dict[str, Any]]:
    """Open alarms (not cleared), worst first, as table rows."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    open_ = [a for a in alarms if a.status != "cleared"]
    open_.sort(key=lambda a: (-rank.get(a.severity, 0), a.raised_at, a.alarm_id))
    return [
        {
            "alarm_id": a.alarm_id,
            "machine_id": a.machine_id,
            "alarm_type": a.alarm_type,
            "severity": a.severity,
            "status": a.status,
            "reason": a.reason,
            "raised_at": _when(a.raised_at),
            "acknowledged": a.acknowledged,
            "ack": f"{a.ack_by} {_when(a.ack_at)}".strip() if a.acknowledged else "",
            "can_ack": can_ack,
            "locked": LOCKED,
        }
        for a in open_
    ]


def machine_order(machine_id: str) -> tuple[int, str]:
    """The twin's numbering order (``pump-001``, ``motor-002``…), then the id.

    >>> sorted(["pump-005", "motor-002", "x"], key=machine_order)
    ['motor-002', 'pump-005', 'x']
    """
    _, _, number = machine_id.rpartition("-")
    return (int(number) if number.isdigit() else 1 << 30, machine_id)


class FleetPanel:
    """The overview of one browser tab."""

    def __init__(self, board: Board, allowed: bool) -> None:
        self.board = board
        self.allowed = allowed
        self.last_ms = 0.0
        self._html = ""
        ui.add_css(CSS)
        with ui.row().classes("items-center gap-4"):
            self.summary = ui.label().classes("ww-summary")
            self.clock = ui.label().classes("ww-refresh text-caption text-grey-7")
        ui.label("Open alarms").classes("text-h6 q-mt-md")
        if not allowed:
            ui.label(f"Acknowledge is disabled — {LOCKED}").classes("text-caption text-grey-7")
        self.table = ui.table(columns=ALARM_COLUMNS, rows=[], row_key="alarm_id").classes(
            "w-full ww-alarms"
        )
        self.table.props("dense flat bordered :rows-per-page-options='[0]' hide-bottom")
        self.table.add_slot("body-cell-ack", ACK_SLOT)
        self.table.on("ack", self._ack)
        with ui.row().classes("items-center q-mt-md gap-2"):
            ui.label("Machines").classes("text-h6")
            for severity, colour in SEVERITY_COLOURS.items():
                ui.badge(severity).style(f"background:{colour} !important")
            ui.label("(the worse of the latest score and the worst open alarm)").classes(
                "text-caption text-grey-7"
            )
        self.grid = ui.html("", sanitize=False).classes("w-full ww-fleet")
        self.refresh()
        refresh_every(1.0, self.refresh)

    def refresh(self) -> None:
        started = time.perf_counter()
        view = self.board.view
        machines = sorted(view.machines(), key=lambda m: machine_order(m.machine_id))
        html = tiles_html(machines)
        if html != self._html:
            self._html = html
            self.grid.set_content(html)
        rows = alarm_rows(view.alarms(status="open"), self.allowed)
        if rows != self.table.rows:
            self.table.rows = rows
            self.table.update()
        counts = Counter(tile_severity(m) for m in machines)
        by_severity = " · ".join(f"{s} {counts[s]}" for s in SEVERITIES if counts[s])
        self.summary.set_text(
            f"{len(machines)} machines · {len(rows)} open alarms"
            + (f" · {by_severity}" if by_severity else "")
        )
        self.last_ms = (time.perf_counter() - started) * 1000.0
        self.clock.set_text(f"refreshed in {self.last_ms:.1f} ms")

    async def _ack(self, event: Any) -> None:
        row = event.args
        alarm_id = row.get("alarm_id", "") if isinstance(row, dict) else ""
        platform = self.board.platform
        await self.board.command(
            f"acknowledge {alarm_id}",
            lambda: platform.alarm_command(alarm_id, "acknowledge", by="dashboard"),
        )
        self.refresh()


def fleet_page(board: Board, token: str | None) -> FleetPanel:
    allowed = board.frame("Fleet", token)
    return FleetPanel(board, allowed)
