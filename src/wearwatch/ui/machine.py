"""Machine detail: sensor trends with the ISO 10816 zones, window features, the anomaly score
and its triggers, risk and health over time, time to maintenance, alarm history, and the
twin's ground truth (labelled: the pipelines never see it).

Everything is read from the live view of the API process; one timer refreshes the page.
"""

from __future__ import annotations

from typing import Any

from nicegui import ui

from wearwatch.twin.fleet.config import SENSORS
from wearwatch.ui import charts
from wearwatch.ui.frame import Board, refresh_every

AGGREGATES = ("count", "mean", "std", "min", "max", "slope", "latest")


def sensors_of(features: dict[str, float]) -> list[str]:
    """The sensors a feature vector covers (``<sensor>.<aggregate>`` keys): the fleet's sensor
    order (vibration first), then any other in name order.

    >>> sensors_of({"x.mean": 0.0, "bearing_temp.mean": 60.0, "vibration.max": 2.0})
    ['vibration', 'bearing_temp', 'x']
    """
    names = {k.rsplit(".", 1)[0] for k in features if "." in k}
    rank = {s: i for i, s in enumerate(SENSORS)}
    return sorted(names, key=lambda s: (rank.get(s, len(rank)), s))


def _duration(seconds: float) -> str:
    """
    >>> _duration(5.0), _duration(300.0), _duration(1800.0), _duration(7200.0), _duration(90.0)
    ('5 s', '5 min', '30 min', '2 h', '90 s')
    """
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def feature_rows(features: dict[str, float]) -> list[dict[str, Any]]:
    """One table row per sensor, one column per aggregate.

    >>> feature_rows({"vibration.mean": 1.23456, "vibration.count": 5.0})
    [{'sensor': 'vibration', 'count': '5', 'mean': '1.235', 'std': '', 'min': '', 'max': '', \
'slope': '', 'latest': ''}]
    """
    rows = []
    for sensor in sensors_of(features):
        row: dict[str, Any] = {"sensor": sensor}
        for agg in AGGREGATES:
            value = features.get(f"{sensor}.{agg}")
            row[agg] = "" if value is None else f"{value:.4g}"
        rows.append(row)
    return rows


def _cols(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "label": n.replace("_", " "), "field": n, "align": "left"} for n in names]


class MachinePanel:
    """The detail page of one machine in one browser tab."""

    def __init__(self, board: Board, machine_id: str) -> None:
        self.board = board
        self.machine_id = machine_id
        #: The window size shown (the longest the pipeline emits, until the user picks one).
        self.window_s: float | None = None
        machine_type = machine_id.rsplit("-", 1)[0]
        spec = board.fleet.machine_types.get(machine_type) if board.fleet else None
        self.iso_class: str | None = spec.iso_class if spec is not None else None
        self.units = {k: v.unit for k, v in board.fleet.sensors.items()} if board.fleet else {}
        self._sensors: list[str] = []
        self._trends: dict[str, ui.echart] = {}

        with ui.row().classes("items-center gap-3 ww-headline"):
            self.severity = ui.badge("…").classes("text-body1 ww-severity")
            self.headline = ui.label().classes("ww-health-line")
            ui.space()
            self.windows = ui.toggle({}, on_change=self._window).props("dense")
        self.versions = ui.label().classes("text-caption text-grey-7")
        iso = f"ISO 10816 class {self.iso_class}" if self.iso_class else "ISO class unknown"
        ui.label(
            f"Sensor trends: window means with min–max band; vibration over the {iso} zones "
            "A (new) · B (long-term) · C (plan maintenance) · D (damaging)"
        ).classes("text-caption text-grey-7")
        self.trend_box = ui.grid(columns=2).classes("w-full")
        with ui.grid(columns=2).classes("w-full"):
            score = charts.time_chart("Anomaly score (1.0 = a detector's threshold)")
            score["series"] = [
                charts.line(
                    "score",
                    "#6a1b9a",
                    markLine={
                        "silent": True,
                        "symbol": "none",
                        "data": [{"yAxis": 1.0, "name": "threshold"}],
                    },
                )
            ]
            self.score_chart = ui.echart(score).classes("h-64 ww-score-chart")
            risk = charts.time_chart("Risk and health")
            risk["yAxis"] = [  # unnamed: the legend names them, in the axes' colours
                {"type": "value", "min": 0, "max": 1, "axisLabel": {"color": "#c62828"}},
                {"type": "value", "min": 0, "max": 100, "axisLabel": {"color": "#2e7d32"}},
            ]
            risk["series"] = [
                charts.line("risk", "#c62828"),
                charts.line("health", "#2e7d32", yAxisIndex=1),
            ]
            self.risk_chart = ui.echart(risk).classes("h-64 ww-risk-chart")
        with ui.grid(columns=2).classes("w-full"):
            with ui.column():
                ui.label("Anomaly triggers").classes("text-subtitle1")
                self.trigger_note = ui.label().classes("text-caption text-grey-8 ww-trigger-note")
                self.triggers = (
                    ui.table(
                        columns=_cols(
                            "detector",
                            "feature",
                            "value",
                            "threshold",
                            "score",
                            "severity",
                            "category",
                        ),
                        rows=[],
                    )
                    .props("dense flat bordered hide-bottom")
                    .classes("w-full ww-triggers")
                )
            with ui.column():
                ui.label("Window features (latest)").classes("text-subtitle1")
                self.features = (
                    ui.table(columns=_cols("sensor", *AGGREGATES), rows=[], row_key="sensor")
                    .props("dense flat bordered hide-bottom")
                    .classes("w-full ww-features")
                )
        ui.label("Alarm history").classes("text-subtitle1")
        self.alarms = (
            ui.table(
                columns=_cols(
                    "ts", "alarm_id", "transition", "severity", "status", "ack", "reason"
                ),
                rows=[],
            )
            .props("dense flat bordered :rows-per-page-options='[10,50,0]'")
            .classes("w-full ww-alarm-history")
        )
        with ui.row().classes("items-center q-mt-md"):
            ui.label("Ground truth").classes("text-subtitle1")
            ui.badge("twin only", color="deep-purple").tooltip(
                "What the simulator knows (fault onsets, failures, repairs): for evaluation; "
                "the pipelines never see it"
            )
        self.truth = (
            ui.table(columns=_cols("ts", "kind", "mode", "sensor", "detail"), rows=[])
            .props("dense flat bordered hide-bottom")
            .classes("w-full ww-truth")
        )
        self.refresh()
        refresh_every(1.0, self.refresh)

    def _window(self, event: Any) -> None:
        if event.value is not None and float(event.value) != self.window_s:
            self.window_s = float(event.value)
            self.refresh()

    def _window_sizes(self) -> None:
        sizes = self.board.view.window_sizes(self.machine_id)
        options = {s: f"{_duration(s)} windows" for s in sizes}
        if options != self.windows.options:
            self.windows.set_options(options)
        if self.window_s not in sizes and sizes:
            self.window_s = sizes[-1]
            self.windows.set_value(self.window_s)

    def refresh(self) -> None:
        view = self.board.view
        mid = self.machine_id
        summary = view.machine(mid)
        if summary is not None:
            self.severity.set_text(summary.severity or "no score yet")
            self.severity.props(f"color={_quasar_colour(summary.severity)}")
            ttm = summary.time_to_maintenance_h
            health = "—" if summary.health is None else f"{summary.health:.0f}"
            risk = "—" if summary.risk is None else f"{summary.risk:.2f}"
            self.headline.set_text(
                f"health {health} · risk {risk} ({summary.risk_level or '—'}) · "
                f"time to maintenance {'—' if ttm is None else f'{ttm:,.1f} h'} · "
                f"open alarms {summary.open_alarms} · {summary.reason or 'no trigger'}"
            )
            versions = ", ".join(f"{k} {v}" for k, v in sorted(summary.model_versions.items()))
            self.versions.set_text(f"models: {versions or 'untrained defaults'}")
        self._window_sizes()
        vectors = view.features(mid, self.window_s) if self.window_s is not None else []
        self._trend(vectors)
        if vectors:
            rows = feature_rows(vectors[-1].features)
            if rows != self.features.rows:
                self.features.rows = rows
                self.features.update()
        scores = view.scores(mid)
        if _set(self.score_chart, 0, [[charts.ms(s.ts), s.score] for s in scores]):
            self.score_chart.update()
        fired = next((s for s in reversed(scores) if s.triggers), None)
        if not scores:
            self.trigger_note.set_text("no score yet")
        elif fired is None:
            self.trigger_note.set_text("no detector has fired in the scores kept")
        else:
            when = fired.ts.strftime("%Y-%m-%d %H:%M:%S")
            latest = "the latest score" if fired is scores[-1] else "the latest score that fired"
            self.trigger_note.set_text(
                f"{latest} ({when}, {fired.severity}): {fired.reason or '—'}"
            )
        if fired is not None:
            rows = [
                {
                    "detector": t.detector,
                    "feature": t.feature,
                    "value": f"{t.value:.4g}",
                    "threshold": f"{t.threshold:.4g}",
                    "score": f"{t.score:.2f}",
                    "severity": t.severity,
                    "category": t.category,
                }
                for t in fired.triggers
            ]
            if rows != self.triggers.rows:
                self.triggers.rows = rows
                self.triggers.update()
        points = self.board.health.points(mid)
        changed = _set(self.risk_chart, 0, [[p.ts_ms, p.risk] for p in points])
        if _set(self.risk_chart, 1, [[p.ts_ms, p.health] for p in points]) or changed:
            self.risk_chart.update()
        history = [
            {
                "ts": a.ts.strftime("%Y-%m-%d %H:%M:%S"),
                "alarm_id": a.alarm_id,
                "transition": a.transition,
                "severity": a.severity,
                "status": a.status,
                "ack": a.ack_by if a.acknowledged else "",
                "reason": a.reason,
            }
            for a in reversed(view.alarm_history(mid))
        ]
        if history != self.alarms.rows:
            self.alarms.rows = history
            self.alarms.update()
        truth = [
            {
                "ts": e.ts.strftime("%Y-%m-%d %H:%M:%S"),
                "kind": e.kind,
                "mode": e.mode,
                "sensor": e.sensor,
                "detail": e.detail,
            }
            for e in reversed(view.truth(mid))
        ]
        if truth != self.truth.rows:
            self.truth.rows = truth
            self.truth.update()

    def _trend(self, vectors: list[Any]) -> None:
        sensors = sensors_of(vectors[-1].features) if vectors else []
        if sensors != self._sensors:
            self._sensors = sensors
            self.trend_box.clear()
            self._trends = {}
            with self.trend_box:
                for sensor in sensors:
                    iso = self.iso_class if sensor == "vibration" else None
                    options = charts.sensor_trend(sensor, self.units.get(sensor, ""), iso)
                    self._trends[sensor] = ui.echart(options).classes(f"h-56 ww-trend-{sensor}")
        times = [charts.ms(v.ts) for v in vectors]
        for sensor, chart in self._trends.items():
            f = [v.features for v in vectors]
            triples = [
                (
                    x.get(f"{sensor}.mean", float("nan")),
                    x.get(f"{sensor}.min", float("nan")),
                    x.get(f"{sensor}.max", float("nan")),
                )
                for x in f
            ]
            keep = [i for i, t in enumerate(triples) if all(v == v for v in t)]
            triples = [triples[i] for i in keep]
            ts = [times[i] for i in keep]
            lower, height = charts.band_points(triples, ts)
            changed = _set(chart, 0, lower) | _set(chart, 1, height)
            means = [[t, m] for t, (m, _, _) in zip(ts, triples, strict=True)]
            if _set(chart, 2, means) or changed:
                chart.update()


def _set(chart: Any, index: int, data: list[list[float]]) -> bool:
    """Replace a series' data; True if it changed (the caller then sends the chart once)."""
    series = chart.options["series"][index]
    if series["data"] == data:
        return False
    series["data"] = data
    return True


def _quasar_colour(severity: str) -> str:
    return {
        "normal": "green-8",
        "watch": "lime-9",
        "medium": "orange-8",
        "high": "deep-orange-8",
        "critical": "red-10",
    }.get(severity, "grey")


def machine_page(board: Board, machine_id: str, token: str | None) -> None:
    board.frame(f"Machine {machine_id}", token)
    if machine_id not in board.view.machine_ids():
        ui.label(f"unknown machine {machine_id!r}: no data from it yet").classes(
            "text-negative ww-unknown"
        )
        ui.link("back to the fleet", "/")
        return
    MachinePanel(board, machine_id)
