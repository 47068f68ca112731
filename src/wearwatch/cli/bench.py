"""``wearwatch bench``: measured speed and accuracy; every README figure comes from here."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Benchmarks that back the README's figures.", no_args_is_help=True)


def _print(result: dict, as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in result.items():
        if not isinstance(value, dict):
            table.add_row(name, f"{value:,}" if isinstance(value, int | float) else str(value))
    Console().print(table)


@app.command("runtime")
def runtime(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    events: int = typer.Option(500_000, min=1000, help="events through the pipeline per run"),
    repeats: int = typer.Option(3, min=1, help="runs per measurement (medians reported)"),
    batch: int = typer.Option(400, min=1, help="events per log record"),
) -> None:
    """Embedded log append/read rates and the keyed pipeline's end-to-end rate."""
    from wearwatch.benchmarks.runtime import run_runtime_benchmark

    with Console(stderr=True).status("measuring the embedded log and the keyed pipeline…"):
        result = run_runtime_benchmark(events=events, rows=events, repeats=repeats, batch=batch)
    _print(result, as_json, "wearwatch runtime benchmark (medians)")
