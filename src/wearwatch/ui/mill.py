"""Mill view per product line: actual vs physics vs served force, the APE of physics, of each
learner and of the served value, the router's state with its reasons, and the twin's true roll
wear (labelled twin-only: the pipeline never sees it).
"""

from __future__ import annotations

import math
from typing import Any

from nicegui import ui

from wearwatch.ui import charts
from wearwatch.ui.frame import Board, refresh_every

#: Passes per line on the charts.
POINTS = 300
MODEL_COLOURS = ("#ef6c00", "#8e24aa", "#00838f", "#6d4c41")
STATE_COLOURS = {"serving": "green-8", "benched": "deep-orange-8", "warmup": "blue-grey-6"}


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.2f} %"


def served_learner(outcomes: list[Any]) -> str | None:
    """The learner the router serves, read off the outcomes: on every pass the model served,
    its APE is the served APE (``None`` until the model has served).

    >>> from types import SimpleNamespace as O
    >>> served_learner([O(source="model", served_ape=1.0, model_ape={"a": 2.0, "b": 1.0}),
    ...                 O(source="physics", served_ape=3.0, model_ape={"a": 0.5, "b": 9.0})])
    'b'
    >>> served_learner([O(source="physics", served_ape=3.0, model_ape={"a": 3.0})]) is None
    True
    """
    served = [o for o in outcomes[-50:] if o.source == "model"]
    if not served:
        return None
    names = sorted(served[-1].model_ape)
    for name in names:
        if all(
            math.isclose(o.model_ape.get(name, -1.0), o.served_ape, rel_tol=1e-9, abs_tol=1e-9)
            for o in served
        ):
            return name
    return None


class LineCard:
    """One product line: router state and reasons, trust, and two charts over its last passes
    (x: pass by pass, labelled with its event time — passes come in bursts, a time axis would
    be mostly gaps)."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.learners: list[str] = []
        self.served: str | None = None
        self._sig: tuple[Any, ...] | None = None
        with ui.card().classes(f"w-full ww-line ww-line-{line}").props(f"data-line={line}"):
            with ui.row().classes("items-center gap-3"):
                ui.label(line).classes("text-h6")
                self.state = ui.badge("…").classes("text-body2 ww-router-state")
                self.source = ui.label().classes("ww-router-source text-weight-medium")
            self.stats = ui.label().classes("text-caption text-grey-8 ww-router-stats")
            with ui.grid(columns=2).classes("w-full"):
                force = charts.pass_chart("Force (kN) — actual vs physics vs served")
                force["series"] = [
                    charts.line("actual", "#212121"),
                    charts.line("physics", "#1565c0", lineStyle={"type": "dashed"}),
                    charts.line("served", "#2e7d32"),
                    {
                        "name": "fallback (served ≠ model)",
                        "type": "scatter",
                        "symbolSize": 7,
                        "itemStyle": {"color": "#d84315"},
                        "data": [],
                    },
                ]
                self.force = ui.echart(force).classes("h-64 ww-force")
                ape = charts.pass_chart("APE (%)")
                ape["series"] = [
                    charts.line("physics", "#1565c0"),
                    charts.line("served", "#2e7d32", lineStyle={"width": 3}),
                ]
                self.ape = ui.echart(ape).classes("h-64 ww-ape")

    def refresh(self, summary: Any, outcomes: list[Any]) -> None:
        if summary is not None:
            self.state.set_text(summary.router_state or "—")
            self.state.props(f"color={STATE_COLOURS.get(summary.router_state, 'grey')}")
            self.source.set_text(
                f"serving {summary.source or '—'} · reason: {summary.reason or '—'}"
            )
            if summary.source in ("model", ""):
                self.source.classes(remove="text-deep-orange-9")
            else:  # a fallback: the router's reason in the warning colour
                self.source.classes(add="text-deep-orange-9")
            ewma, recent = summary.ewma_ape, summary.mean_ape_recent
            self.stats.set_text(
                f"{summary.passes:,} passes · model served {summary.model_share:.0%} of the last "
                f"100 · EWMA APE (the router's trust) physics {_pct(ewma.get('physics'))}, model "
                f"{_pct(ewma.get('model'))}, served {_pct(ewma.get('served'))} · mean APE (last "
                f"100) physics {_pct(recent.get('physics'))}, model {_pct(recent.get('model'))}, "
                f"served {_pct(recent.get('served'))}"
            )
        last = outcomes[-1] if outcomes else None
        sig = (len(outcomes), last and (last.ts, last.slab_id, last.pass_no))
        if sig == self._sig:
            return  # no new pass: nothing to send to the browser
        self._sig = sig
        labels = [o.ts.strftime("%H:%M:%S") for o in outcomes]
        for chart in (self.force, self.ape):
            chart.options["xAxis"]["data"] = labels
        force = self.force.options["series"]
        force[0]["data"] = [o.actual_force_kn for o in outcomes]
        force[1]["data"] = [o.baseline_force_kn for o in outcomes]
        force[2]["data"] = [o.served_force_kn for o in outcomes]
        force[3]["data"] = [
            [i, o.served_force_kn]
            for i, o in enumerate(outcomes)
            if o.source != "model" and o.router_state != "warmup"
        ]
        self.force.update()
        learners = sorted({name for o in outcomes for name in o.model_ape})
        served = served_learner(outcomes) or self.served
        ape = self.ape.options["series"]
        if learners != self.learners or served != self.served:
            self.learners, self.served = learners, served
            del ape[2:]
            ape.extend(
                charts.line(
                    f"model ({name})" if name == served else f"{name}",
                    MODEL_COLOURS[i % len(MODEL_COLOURS)],
                )
                for i, name in enumerate(learners)
            )
            # the served learner shows; the others are a click on the legend away
            self.ape.options["legend"]["selected"] = {
                s["name"]: s["name"].startswith("model") for s in ape[2:]
            }
        ape[0]["data"] = [o.physics_ape for o in outcomes]
        ape[1]["data"] = [o.served_ape for o in outcomes]
        for i, name in enumerate(learners):
            ape[2 + i]["data"] = [o.model_ape.get(name) for o in outcomes]
        self.ape.update()


class MillPanel:
    def __init__(self, board: Board) -> None:
        self.board = board
        self.cards: dict[str, LineCard] = {}
        with ui.row().classes("items-center q-mt-sm"):
            ui.label("True roll wear").classes("text-subtitle1")
            ui.badge("twin only", color="deep-purple").tooltip(
                "The simulator's true wear: for evaluation; the pipeline never sees it"
            )
        wear = charts.time_chart("True roll wear (twin only)", legend=False)
        wear["series"] = [charts.line("wear", "#6a1b9a")]
        self.wear = ui.echart(wear).classes("w-full h-48 ww-wear")
        self.box = ui.column().classes("w-full")
        self.empty = ui.label("No mill pass has been scored yet.").classes("text-grey-7")
        self.refresh()
        refresh_every(1.0, self.refresh)

    def refresh(self) -> None:
        view = self.board.view
        lines = {s.line: s for s in view.mill_lines()}
        self.empty.set_visibility(not lines)
        for line in sorted(lines):
            if line not in self.cards:
                with self.box:
                    self.cards[line] = LineCard(line)
        for line, card in self.cards.items():
            outcomes = view.mill_outcomes(line=line, limit=POINTS)
            card.refresh(lines.get(line), outcomes)
        wear = [[charts.ms(ts), w] for ts, w in view.mill_wear()[-2000:]]
        if wear != self.wear.options["series"][0]["data"]:
            self.wear.options["series"][0]["data"] = wear
            self.wear.update()


def mill_page(board: Board, token: str | None) -> None:
    board.frame("Mill", token)
    MillPanel(board)
