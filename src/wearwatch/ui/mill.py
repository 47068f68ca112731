"""Mill view per product line: actual vs physics vs served force, the APE of physics, of each
learner and of the served value, the router's state with its reasons, and the twin's true roll
wear (labelled twin-only: the pipeline never sees it).
"""

from __future__ import annotations

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


class LineCard:
    """One product line: router state, trust, and two charts."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.learners: list[str] = []
        with ui.card().classes(f"w-full ww-line ww-line-{line}"):
            with ui.row().classes("items-center gap-3"):
                ui.label(line).classes("text-h6")
                self.state = ui.badge("…").classes("text-body2 ww-router-state")
                self.source = ui.label().classes("ww-router-source")
                self.stats = ui.label().classes("text-caption text-grey-8 ww-router-stats")
            with ui.grid(columns=2).classes("w-full"):
                force = charts.time_chart("Force (kN)")
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
                ape = charts.time_chart("APE (%)")
                ape["series"] = [
                    charts.line("physics", "#1565c0"),
                    charts.line("served", "#2e7d32"),
                ]
                self.ape = ui.echart(ape).classes("h-64")

    def refresh(self, summary: Any, outcomes: list[Any]) -> None:
        if summary is not None:
            self.state.set_text(summary.router_state or "—")
            self.state.props(f"color={STATE_COLOURS.get(summary.router_state, 'grey')}")
            self.source.set_text(
                f"serving {summary.source or '—'} · reason: {summary.reason or '—'}"
            )
            ewma, recent = summary.ewma_ape, summary.mean_ape_recent
            self.stats.set_text(
                f"{summary.passes:,} passes · model served {summary.model_share:.0%} of the last "
                f"100 · EWMA APE physics {_pct(ewma.get('physics'))}, model "
                f"{_pct(ewma.get('model'))}, served {_pct(ewma.get('served'))} · mean APE (last "
                f"100) physics {_pct(recent.get('physics'))}, model {_pct(recent.get('model'))}, "
                f"served {_pct(recent.get('served'))}"
            )
        t = [charts.ms(o.ts) for o in outcomes]
        force = self.force.options["series"]
        force[0]["data"] = [[x, o.actual_force_kn] for x, o in zip(t, outcomes, strict=True)]
        force[1]["data"] = [[x, o.baseline_force_kn] for x, o in zip(t, outcomes, strict=True)]
        force[2]["data"] = [[x, o.served_force_kn] for x, o in zip(t, outcomes, strict=True)]
        force[3]["data"] = [
            [x, o.served_force_kn]
            for x, o in zip(t, outcomes, strict=True)
            if o.source != "model" and o.router_state != "warmup"
        ]
        self.force.update()
        learners = sorted({name for o in outcomes for name in o.model_ape})
        ape = self.ape.options["series"]
        if learners != self.learners:
            self.learners = learners
            del ape[2:]
            ape.extend(
                charts.line(f"model:{name}", MODEL_COLOURS[i % len(MODEL_COLOURS)])
                for i, name in enumerate(learners)
            )
        ape[0]["data"] = [[x, o.physics_ape] for x, o in zip(t, outcomes, strict=True)]
        ape[1]["data"] = [[x, o.served_ape] for x, o in zip(t, outcomes, strict=True)]
        for i, name in enumerate(learners):
            ape[2 + i]["data"] = [
                [x, o.model_ape[name]]
                for x, o in zip(t, outcomes, strict=True)
                if name in o.model_ape
            ]
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
        self.wear.options["series"][0]["data"] = [
            [charts.ms(ts), w] for ts, w in view.mill_wear()[-2000:]
        ]
        self.wear.update()


def mill_page(board: Board, token: str | None) -> None:
    board.frame("Mill", token)
    MillPanel(board)
