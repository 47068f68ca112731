"""``wearwatch fleet``: the machine fleet's pipeline, measured against the twin's ground truth."""

from __future__ import annotations

import json

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wearwatch.cli.errors import fail, finite
from wearwatch.cli.twin import parse_duration

app = typer.Typer(help="The machine fleet: evaluate the pipeline.", no_args_is_help=True)


def _windows(text: str) -> tuple[float, ...]:
    """``5m,30m`` → (300.0, 1800.0); each a duration as ``--tick`` takes it."""
    try:
        sizes = tuple(parse_duration(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"--windows: {exc}") from None
    if not sizes:
        raise ValueError(f"--windows {text!r}: expected durations separated by commas (5m,30m)")
    return sizes


@app.command("evaluate")
def evaluate(
    seed: int = typer.Option(1, help="seed of the evaluation run"),
    machines: int = typer.Option(50, min=1, max=10_000, help="machines in the fleet"),
    days: float = typer.Option(30.0, callback=finite(0.1, 3650.0), help="days of machine time"),
    tick: str = typer.Option("30s", help="one reading per sensor every TICK (e.g. 30s, 1m)"),
    windows: str = typer.Option("5m,30m", help="tumbling window sizes, comma separated"),
    train_seed: int | None = typer.Option(
        None, help="seed of the separate training run (default: seed + 1000)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Train on one twin run, stream another through the fleet pipeline in virtual time, and
    score its alarms and risk against the twin's ground truth (progress on stderr)."""
    from wearwatch.pipelines.fleet.evaluate import EvaluationConfig, evaluate_fleet

    try:
        tick_s = parse_duration(tick)
    except ValueError as exc:
        fail(f"--tick: {exc}")
    sizes = _windows(windows)
    cfg = EvaluationConfig(
        seed=seed,
        machines=machines,
        days=days,
        tick_s=tick_s,
        windows_s=sizes,
        train_seed=train_seed,
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, console=_stderr()) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: float) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=1.0)
            bar.update(tasks[stage], completed=min(done, 1.0))

        result = evaluate_fleet(cfg, progress)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for name, value in result.items():
        if not isinstance(value, dict):
            typer.echo(f"{name:36s} {value}")


def _stderr():
    from rich.console import Console

    return Console(stderr=True)
