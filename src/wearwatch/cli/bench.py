"""``wearwatch bench``: measured speed and accuracy; every README figure comes from here."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from wearwatch.cli.errors import finite

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
    readings: int = typer.Option(
        3_000_000, min=10_000, help="readings through the windowed fleet flow per run"
    ),
    readings_per_record: int = typer.Option(
        50_000, min=1, help="readings per columnar (Arrow) record of the windowed run"
    ),
    sensor_hz: float = typer.Option(
        100.0,
        callback=finite(0.01, 100_000.0),
        help="sample rate of each of the fleet's 300 sensors (event time)",
    ),
) -> None:
    """Embedded log append/read rates, the keyed pipeline's end-to-end rate, and the windowed
    fleet flow over Arrow records against the log's limit on the same bytes."""
    from wearwatch.benchmarks.runtime import run_runtime_benchmark

    with Console(stderr=True).status("measuring the embedded log and the pipelines…"):
        result = run_runtime_benchmark(
            events=events,
            rows=events,
            repeats=repeats,
            batch=batch,
            readings=readings,
            rows_per_record=readings_per_record,
            sensor_hz=sensor_hz,
        )
    _print(result, as_json, "wearwatch runtime benchmark (medians)")


@app.command("fleet")
def fleet(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    readings: int = typer.Option(
        3_000_000, min=100_000, help="readings through the fleet pipeline per run"
    ),
    repeats: int = typer.Option(3, min=1, help="runs of the throughput measurement (medians)"),
    machines: int = typer.Option(50, min=1, max=10_000, help="machines in the fleet"),
    sensor_hz: float = typer.Option(
        10.0, callback=finite(0.1, 1000.0), help="sample rate of every sensor (event time)"
    ),
    paced_rate: float = typer.Option(
        10_000.0, callback=finite(100.0, 1_000_000.0), help="readings/s of the latency run"
    ),
    paced_s: float = typer.Option(30.0, callback=finite(5.0, 3600.0), help="latency run length"),
) -> None:
    """The fleet pipeline end to end (decode, windows, scoring, alarms, stores; embedded log,
    one worker) against the log's limit on the same bytes, and the p99 latency from a reading's
    arrival to its alarm at a paced rate."""
    from wearwatch.benchmarks.fleet import run_fleet_benchmark

    with Console(stderr=True).status("fitting the detectors, then measuring the fleet pipeline…"):
        result = run_fleet_benchmark(
            readings=readings,
            repeats=repeats,
            machines=machines,
            sensor_hz=sensor_hz,
            paced_rate=paced_rate,
            paced_s=paced_s,
        )
    _print(result, as_json, "wearwatch fleet benchmark (medians)")


@app.command("learners")
def learners(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    seed: int = typer.Option(7, help="seed of the drifting mill stream"),
    passes: int = typer.Option(6000, min=200, help="passes in the stream"),
    capymoa: bool = typer.Option(True, help="include MOA's AMRulesRegressor when available"),
) -> None:
    """Every mill learner on the same drifting stream: MAE/APE per phase, updates/s.

    MOA's AMRulesRegressor runs through capymoa when a Java runtime and capymoa are
    installed (`pip install -e '.[bench]'`); otherwise the output says why it did not run.
    """
    from wearwatch.benchmarks.learners import run_learner_benchmark

    with Console(stderr=True).status("streaming the drifting mill data through every learner…"):
        report = run_learner_benchmark(seed=seed, passes=passes, include_capymoa=capymoa)
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(
        title=f"learners on the drifting mill stream ({report['stream']['samples']:,} passes)"
    )
    for col in ("learner", "updates/s", "APE after drift %", "MAE after drift kN", "APE overall %"):
        table.add_column(col, justify="right" if col != "learner" else "left")
    rows = dict(report["learners"])
    if report["capymoa"].get("available"):
        rows["MOA AMRulesRegressor (capymoa)"] = report["capymoa"]
    for name, row in rows.items():
        after = row.get("after_drift") or {}
        overall = row.get("overall") or {}
        label = f"{name} (default)" if name == report["default"] else name
        table.add_row(
            label,
            f"{row['updates_per_s']:,.0f}",
            _num(after.get("ape")),
            _num(after.get("mae_kn")),
            _num(overall.get("ape")),
        )
    console = Console()
    console.print(table)
    if not report["capymoa"].get("available"):
        console.print(f"MOA AMRulesRegressor not run: {report['capymoa'].get('reason')}")


def _num(value: object) -> str:
    return f"{value:,.3f}" if isinstance(value, int | float) else "-"
