"""``wearwatch mill``: evaluate the mill pipeline (twin → join → learners → router)."""

from __future__ import annotations

import json

import typer

from wearwatch.cli.errors import fail

app = typer.Typer(help="mill", no_args_is_help=True)

SCENARIOS = ("none", "gradual", "abrupt", "cycle")


@app.command("evaluate")
def evaluate_cmd(
    scenario: str = typer.Option("abrupt", help="none, gradual, abrupt or cycle"),
    seed: int = typer.Option(7, help="twin seed"),
    passes: int = typer.Option(3000, help="passes to roll"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Run a wear scenario through the pipeline in virtual time and score it."""
    if scenario not in SCENARIOS:
        fail(f"--scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    if passes < 50:
        fail(f"--passes {passes}: expected at least 50")
    from wearwatch.pipelines.mill.evaluate import evaluate

    report = evaluate(scenario, seed, passes)
    if as_json:
        typer.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.table import Table

    learners = list(report["overall"]["model_ape"])
    table = Table(title=f"mill evaluate: {scenario}, seed {seed}, {report['passes']} joined passes")
    for col in ["phase", "passes", "physics APE %", "served APE %", *learners, "fallback"]:
        table.add_column(col, justify="left" if col == "phase" else "right")
    rows = [*report["phases"].items(), ("overall", report["overall"])]
    for name, ph in rows:
        table.add_row(
            name,
            str(ph["passes"]),
            _fmt(ph["physics_ape"]),
            _fmt(ph["served_ape"]),
            *[_fmt(ph["model_ape"][n]) for n in learners],
            _fmt(ph["fallback_share"], pct=True),
        )
    console = Console()
    console.print(table)
    console.print(
        f"recovery_passes={report['recovery_passes']}  "
        f"decisions={report['decisions_by_reason']}  orphans={report['orphans']}  "
        f"late={report['late']}  duplicates={report['duplicates']}  "
        f"limit_violations={report['limit_violations']}"
    )


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f} %" if pct else f"{value:.3f}"
