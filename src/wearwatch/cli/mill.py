"""``wearwatch mill``: evaluate the mill pipeline (twin → join → learners → router).

``wearwatch mill evaluate --scenario S [--seed N | --seeds 1-5] [--ideal] [--json]``: one seed
prints the per-phase table (or the full report); several seeds print one row per seed and
phase of interest, the medians and the issue's acceptance checks as computed verdicts, with a
progress bar on stderr (the JSON alone goes to stdout).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from wearwatch.cli.errors import fail
from wearwatch.cli.seeds import seed_option

app = typer.Typer(help="mill", no_args_is_help=True)

SCENARIOS = ("none", "gradual", "abrupt", "cycle")
DEFAULT_SEED = 7
MAX_PASSES = 1_000_000


@app.command("evaluate")
def evaluate_cmd(
    scenario: str = typer.Option("abrupt", help="none, gradual, abrupt or cycle"),
    seed: int | None = typer.Option(None, help=f"twin seed (default {DEFAULT_SEED})"),
    seeds: str | None = typer.Option(
        None, "--seeds", help="run once per seed (e.g. 1-5): per-seed rows, medians, checks"
    ),
    passes: int = typer.Option(3000, help="passes to roll"),
    ideal: bool = typer.Option(
        False, "--ideal", help="the twin without the plant effects the physics does not model"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Run a wear scenario through the pipeline in virtual time and score it."""
    if scenario not in SCENARIOS:
        fail(f"--scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    if not 50 <= passes <= MAX_PASSES:
        fail(f"--passes {passes}: expected 50 to {MAX_PASSES:,} (one run holds every pass)")
    if seeds is not None and seed is not None:
        fail("give --seed or --seeds, not both")
    seed_list = seed_option(seeds) if seeds is not None else None
    if seed_list is not None:
        _multi(scenario, seed_list, passes, ideal, as_json)
        return
    from wearwatch.pipelines.mill.evaluate import evaluate

    seed = DEFAULT_SEED if seed is None else seed
    report = evaluate(scenario, seed, passes, ideal=ideal)
    if as_json:
        typer.echo(json.dumps(report))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    learners = list(report["overall"]["model_ape"])
    twin = "ideal" if ideal else "realistic"
    table = Table(
        title=f"mill evaluate: {scenario}, seed {seed}, {twin} twin, "
        f"{report['passes']} joined passes",
        caption="APE % of physics, served, served on unclamped passes (unclmp), each learner's "
        "model; clmp: passes a safety limit clamped; fallback: share not served by the model",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
    )
    columns = ["phase", "passes", "phys", "served", "unclmp", "clmp"]
    for col in [*columns, *learners, "fallback"]:
        table.add_column(col, justify="left" if col == "phase" else "right", no_wrap=True)
    rows = [*report["phases"].items(), ("overall", report["overall"])]
    for name, ph in rows:
        table.add_row(
            name,
            str(ph["passes"]),
            _fmt(ph["physics_ape"]),
            _fmt(ph["served_ape"]),
            _fmt(ph["served_ape_unclamped"]),
            str(ph["clamped"]),
            *[_fmt(ph["model_ape"][n]) for n in learners],
            _fmt(ph["fallback_share"], pct=True),
        )
    console = Console()
    console.print(table)
    console.print(
        f"recovery_passes={report['recovery_passes']}  "
        f"model_recovery_passes={report['model_recovery_passes']}  "
        f"decisions={report['decisions_by_reason']}  orphans={report['orphans']}  "
        f"too_late={report['too_late']}  duplicates={report['duplicates']}  "
        f"limit_violations={report['limit_violations']}",
        soft_wrap=True,
    )
    console.print(_checks_line(report["checks"]), soft_wrap=True)


def _multi(scenario: str, seeds: list[int], passes: int, ideal: bool, as_json: bool) -> None:
    """Every seed in turn (progress on stderr); the table or the JSON on stdout."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wearwatch.pipelines.mill.evaluate import evaluate_seeds

    progress = Progress(
        TextColumn(f"[bold]mill evaluate {scenario}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    started = time.perf_counter()
    with progress:
        task = progress.add_task("seeds", total=len(seeds), status=f"seed {seeds[0]}")

        def on_seed(seed: int, report: dict[str, Any]) -> None:
            done = seeds.index(seed) + 1
            status = f"seed {seeds[done]}" if done < len(seeds) else "done"
            progress.update(task, completed=done, status=status)

        result = evaluate_seeds(scenario, seeds, passes, ideal=ideal, on_seed=on_seed)
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print_seeds(result)


def _print_seeds(result: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    twin = "ideal" if result["ideal"] else "realistic"
    table = Table(
        title=f"mill evaluate: {result['scenario']}, seeds {result['seeds']}, {twin} twin, "
        f"{result['passes']} passes each",
        caption=_LEGEND,
        box=box.SIMPLE_HEAD,
        padding=(0, 0),  # the box's column separator is a space: 11 columns fit 80
    )
    for col in _SEED_COLUMNS:
        left = col == "phase"
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    rows = [(str(r["seed"]), r) for r in result["runs"]] + [("median", result["median"])]
    for label, row in rows:
        if label == "median":
            table.add_section()
        for k, name in enumerate(result["focus"]):
            ph = row["phases"][name]
            first = k == 0
            table.add_row(
                label if first else "",
                name,
                _fmt(ph["physics_ape"]),
                _fmt(ph["served_ape"]),
                _fmt(ph["served_ape_unclamped"]),
                _num(ph["clamped"]),
                _fmt(ph["model_ape"]),
                _fmt(ph["served_over_physics"], digits=3),
                _num(row["recovery_passes"]) if first else "",
                _num(row["model_recovery_passes"]) if first else "",
                _num(row["limit_violations"]) if first else "",
            )
    console = Console()
    console.print(table)
    console.print(_checks_line(result["checks"]), soft_wrap=True)
    console.print(f"wall time {result['wall_time_s']} s")


_SEED_COLUMNS = ("seed", "phase", "phys", "served", "unclmp", "clmp", "model", "s/p", "rec")
_SEED_COLUMNS += ("m.rec", "viol")
_LEGEND = (
    "APE % of physics, served, served on unclamped passes (unclmp), the default learner's "
    "model; clmp: passes a safety limit clamped; s/p: served/physics; rec, m.rec: passes "
    "after the shock until the served / model EWMA APE stays < 2 %; viol: limit violations"
)


def _checks_line(checks: dict[str, bool]) -> str:
    return "checks: " + "  ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in checks.items())


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _fmt(value: float | None, pct: bool = False, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f} %" if pct else f"{value:.{digits}f}"
