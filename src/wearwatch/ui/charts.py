"""ECharts options for the dashboard: built here as plain dicts, so the pages only swap data.

A page builds a chart once and, on every refresh, replaces the ``data`` of its series; the
browser redraws without a page reload. Times go to ECharts as epoch milliseconds.

>>> zones = iso_zone_areas("II")
>>> [(z[0]["name"], z[0]["yAxis"], z[1]["yAxis"]) for z in zones]
[('A', 0.0, 1.12), ('B', 1.12, 2.8), ('C', 2.8, 7.1), ('D', 7.1, 14.2)]
>>> band_points([(1.0, 2.0, 5.0)], [0.0])
([[0.0, 2.0]], [[0.0, 3.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from wearwatch.twin.fleet.config import ISO_10816_ZONES

#: Severity → colour, shared by the grid, the badges and the score chart.
SEVERITY_COLOURS: dict[str, str] = {
    "normal": "#2e7d32",
    "watch": "#9e9d24",
    "medium": "#ef6c00",
    "high": "#d84315",
    "critical": "#b71c1c",
}
#: ISO 10816 zone → fill colour (A new … D damaging), translucent under the data.
ZONE_COLOURS: dict[str, str] = {
    "A": "rgba(46,125,50,0.13)",
    "B": "rgba(158,157,36,0.13)",
    "C": "rgba(239,108,0,0.15)",
    "D": "rgba(183,28,28,0.15)",
}


def ms(ts: datetime) -> float:
    """An event time as ECharts' epoch milliseconds."""
    return ts.timestamp() * 1000.0


def iso_zone_areas(iso_class: str) -> list[list[dict[str, Any]]]:
    """``markArea`` data for the ISO 10816 zones A–D of a machine class (mm/s RMS).

    Zone D has no upper bound; it is drawn to twice the C/D boundary.
    """
    ab, bc, cd = ISO_10816_ZONES[iso_class]
    edges = [0.0, ab, bc, cd, round(2 * cd, 6)]
    return [
        [
            {"name": zone, "yAxis": lo, "itemStyle": {"color": ZONE_COLOURS[zone]}},
            {"yAxis": hi},
        ]
        for zone, lo, hi in zip("ABCD", edges, edges[1:], strict=False)
    ]


def band_points(
    triples: Sequence[tuple[float, float, float]], times: Sequence[float]
) -> tuple[list[list[float]], list[list[float]]]:
    """(mean, min, max) per time → the two stacked series that draw the min–max band:
    the lower edge (``min``) and the band's height (``max − min``) stacked on it."""
    lower = [[t, lo] for t, (_, lo, _) in zip(times, triples, strict=True)]
    height = [[t, hi - lo] for t, (_, lo, hi) in zip(times, triples, strict=True)]
    return lower, height


def time_chart(title: str, y_name: str = "", *, legend: bool = True) -> dict[str, Any]:
    """An empty chart with a time x axis; series are added by the caller."""
    return {
        "title": {"text": title, "left": 0, "textStyle": {"fontSize": 13}},
        "tooltip": {"trigger": "axis"},
        "legend": {"show": legend, "top": 0, "right": 0},
        "grid": {"left": 56, "right": 16, "top": 36, "bottom": 28},
        "xAxis": {"type": "time"},
        "yAxis": {"type": "value", "name": y_name, "scale": True},
        "animation": False,
        "series": [],
    }


def pass_chart(title: str) -> dict[str, Any]:
    """An empty chart over a sequence (a category x axis whose labels the caller sets)."""
    chart = time_chart(title)
    chart["xAxis"] = {"type": "category", "data": [], "boundaryGap": False}
    chart["legend"] = {"type": "scroll", "bottom": 0, "left": "center"}
    chart["grid"]["bottom"] = 52
    return chart


def line(name: str, colour: str | None = None, **extra: Any) -> dict[str, Any]:
    """A line series without symbols (hundreds of points)."""
    out: dict[str, Any] = {"name": name, "type": "line", "showSymbol": False, "data": []}
    if colour:
        out["itemStyle"] = {"color": colour}
        out["lineStyle"] = {"color": colour}
    return out | extra


def sensor_trend(sensor: str, unit: str, iso_class: str | None) -> dict[str, Any]:
    """A sensor's window means with their min–max band; vibration gets the ISO zones."""
    chart = time_chart(f"{sensor} ({unit})" if unit else sensor, legend=False)
    lower = line("min", stack="band", lineStyle={"opacity": 0}, silent=True)
    height = line("min–max", stack="band", lineStyle={"opacity": 0}, areaStyle={"color": "#90caf9"})
    height["areaStyle"]["opacity"] = 0.5
    mean = line("mean", "#1565c0")
    if iso_class is not None:
        # from 0, and tall enough to show where zone D starts whatever the data
        cd = ISO_10816_ZONES[iso_class][2]
        top = f"v => Math.ceil(Math.max(v.max * 1.1, {cd * 1.05:.3f}))"
        chart["yAxis"] |= {"min": 0, ":max": top}
        mean["markArea"] = {
            "silent": True,
            "label": {"position": "insideRight", "color": "#555"},
            "data": iso_zone_areas(iso_class),
        }
    chart["series"] = [lower, height, mean]
    return chart
