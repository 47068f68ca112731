"""``wearwatch bench``: measured speed and accuracy; every README figure comes from here."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
        100.0, callback=finite(0.1, 1000.0), help="sample rate of every sensor (event time)"
    ),
    paced_rate: float = typer.Option(
        10_000.0, callback=finite(100.0, 1_000_000.0), help="readings/s of the latency run"
    ),
    paced_s: float = typer.Option(
        180.0, callback=finite(5.0, 3600.0), help="seconds of the paced latency run"
    ),
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


@app.command("scale")
def scale(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    bootstrap: str | None = typer.Option(
        None,
        "--bootstrap",
        help="kafka://host:port[,host:port] of a cluster (default: a tansu broker started for "
        "the bench); its clients get WEARWATCH_KAFKA_CONFIG",
    ),
    machines: int = typer.Option(50, min=1, max=10_000, help="machines in the fleet"),
    partitions: int = typer.Option(4, min=2, max=256, help="partitions of the input topic"),
    minutes: float = typer.Option(
        5.0, callback=finite(0.1, 1440.0), help="minutes of event time after the warm-up"
    ),
    repeats: int = typer.Option(3, min=1, max=9, help="runs of each measurement (medians)"),
    sensor_hz: float = typer.Option(
        100.0, callback=finite(0.1, 1000.0), help="sample rate of every sensor (event time)"
    ),
    trained: bool = typer.Option(
        True, help="fitted detectors and risk model (--no-trained: hard-limit rules only)"
    ),
    rows_per_record: int = typer.Option(
        10_000, min=100, max=50_000, help="readings per columnar (Arrow) record"
    ),
) -> None:
    """The fleet pipeline on Kafka with 1 and 2 worker processes (readings/s and their ratio,
    against one consumer's raw read of the same bytes), and failover: one of 2 workers
    SIGKILLed half-way (time until its partitions resume, drain time with and without the
    kill, exactly-once outputs by record id)."""
    from wearwatch.benchmarks.broker import BrokerUnavailable
    from wearwatch.benchmarks.scale import run_scale_benchmark
    from wearwatch.cli.errors import fail
    from wearwatch.config import get_settings

    if bootstrap is not None and not bootstrap.startswith("kafka://"):
        fail(f"--bootstrap {bootstrap!r}: expected kafka://host:port[,host:port...]")
    settings = get_settings()
    with Console(stderr=True).status("preparing…") as status:
        try:
            result = run_scale_benchmark(
                bootstrap,
                machines=machines,
                partitions=partitions,
                minutes=minutes,
                repeats=repeats,
                sensor_hz=sensor_hz,
                seed=settings.seed,
                trained=trained,
                rows_per_record=rows_per_record,
                client_config=settings.kafka_config,
                on_step=status.update,
            )
        except BrokerUnavailable as exc:
            fail(str(exc))
    _print(result, as_json, "wearwatch scale-out benchmark on Kafka (medians)")


@app.command("api")
def api(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    connections: int = typer.Option(32, min=1, max=1024, help="concurrent connections (wrk -c)"),
    duration: float = typer.Option(
        10.0, callback=finite(1.0, 3600.0), help="seconds of each measured wrk run"
    ),
    rate: float = typer.Option(
        2000.0, callback=finite(10.0, 1_000_000.0), help="offered requests/s of the latency run"
    ),
    machines: int = typer.Option(50, min=1, max=10_000, help="machines with a latest state"),
    repeats: int = typer.Option(1, min=1, max=9, help="runs per measurement (medians)"),
    seed: int = typer.Option(7, help="seed of the fleet the API serves"),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="serve this prepared data directory (log.db + models/) instead of preparing one "
        "in a temporary directory",
    ),
) -> None:
    """One API process (`wearwatch serve --headless`) under Debian's wrk: per endpoint
    (GET /predict/latest/{id}, GET /anomaly/latest/{id}, POST /anomaly), the capacity with
    `--connections` connections flat out, and p50/p99 at an offered `--rate` (random delays, no
    synchronised bursts) — beside a bare ASGI app on the same server stack, measured in the
    same run. Target: p99 ≤ 10 ms at ≥ 2,000 requests/s."""
    import os
    import subprocess
    import sys
    import tempfile

    from wearwatch.benchmarks.api import prepare_data_dir, run_api_benchmark

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="wearwatch-bench-api-") as tmp:
        root = data_dir if data_dir is not None else Path(tmp)
        if data_dir is None:
            with console.status(f"preparing {machines} machines' scores and models…"):
                ids, bodies = prepare_data_dir(root, machines, seed)
        else:
            ids, bodies = _prepared(root)
        env = {**os.environ, "WEARWATCH_DATA_DIR": str(root), "WEARWATCH_BUS": ""}

        def serve(port: int) -> subprocess.Popen:
            command = [sys.executable, "-m", "wearwatch", "serve", "--headless"]
            return subprocess.Popen(
                [*command, "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        with console.status("measuring…") as status:
            result = run_api_benchmark(
                serve,
                ids,
                bodies,
                connections=connections,
                duration_s=duration,
                rate=rate,
                repeats=repeats,
                on_step=lambda name: status.update(f"measuring {name}…"),
            )
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"API under wrk, {connections} connections (one API process)")
    for col in ("endpoint", "capacity req/s", "vs bare stack", "req/s at rate", "p50 ms",
                "p99 ms", "p99 vs bare", "in API p99 ≤ ms", "target met"):  # fmt: skip
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    ref = result["reference"]
    table.add_row(
        "bare ASGI app (reference)",
        f"{ref['capacity']['requests_per_s']:,.0f}",
        "1",
        f"{ref['at_rate']['requests_per_s']:,.0f}",
        f"{ref['at_rate']['p50_ms']:.2f}",
        f"{ref['at_rate']['p99_ms']:.2f}",
        "1",
        "",
        "",
    )
    for name, row in result["endpoints"].items():
        table.add_row(
            name,
            f"{row['capacity']['requests_per_s']:,.0f}",
            f"{row['capacity_vs_reference']:.2f}",
            f"{row['at_rate']['requests_per_s']:,.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['p99_vs_reference']}",
            f"{row['at_rate'].get('server_p99_ms_at_most')}",
            "yes" if row["meets_target"] else "no",
        )
    Console().print(table)


def _prepared(root: Path) -> tuple[list[str], list[str]]:
    """Machine ids and POST /anomaly bodies from a prepared data directory's log."""
    from wearwatch import topics
    from wearwatch.benchmarks.api import anomaly_bodies
    from wearwatch.cli.errors import fail

    path = root / "log.db"
    if not path.is_file():
        fail(f"--data-dir {root}: no log.db in it (run without --data-dir to prepare one)")
    ids, bodies = anomaly_bodies(path)
    if not ids:
        fail(f"--data-dir {root}: no feature vectors on {topics.FEATURES.name}")
    return ids, bodies


#: Where `make moa` puts MOA's interpreter (capymoa + a JRE): the checkout's root, found from
#: this package (an editable install), never the working directory — a `.venv-moa` that happens
#: to sit wherever the command is run is not executed.
MOA_VENV_PYTHON = Path(__file__).resolve().parents[3] / ".venv-moa" / "bin" / "python"


@app.command("learners")
def learners(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    seed: int = typer.Option(7, min=0, max=2**32 - 1, help="seed of the drifting mill stream"),
    passes: int = typer.Option(6000, min=200, max=1_000_000, help="passes in the stream"),
    ideal: bool = typer.Option(
        False, "--ideal", help="the twin without the plant effects the physics does not model"
    ),
    moa_python: Path | None = typer.Option(
        None,
        "--moa-python",
        help="interpreter with capymoa and a JRE for MOA's AMRulesRegressor (default: "
        f"{MOA_VENV_PYTHON} if it exists; `make moa` creates it)",
    ),
    moa: bool = typer.Option(True, help="include MOA's AMRulesRegressor when available"),
) -> None:
    """Every mill learner on the same drifting stream (realistic twin): MAE/APE per phase and
    after drift, updates/s, drift detections, rules; MOA's AMRulesRegressor (defaults, and the
    fair configuration River's `amrules` uses) run in its own interpreter; the winner."""
    from wearwatch.benchmarks.learners import run_learner_benchmark
    from wearwatch.cli.errors import fail

    if moa_python is not None and not (moa_python.is_file() and os.access(moa_python, os.X_OK)):
        fail(f"--moa-python {moa_python}: not an executable file (`make moa` creates "
             f"{MOA_VENV_PYTHON})")  # fmt: skip
    if moa_python is None and moa and MOA_VENV_PYTHON.is_file():
        moa_python = MOA_VENV_PYTHON
    with Console(stderr=True).status("streaming the drifting mill data through every learner…"):
        report = run_learner_benchmark(
            seed=seed, passes=passes, moa_python=moa_python if moa else None, ideal=ideal
        )
    if not moa:
        report["moa"] = {"available": False, "reason": "--no-moa"}
    if as_json:
        typer.echo(json.dumps(report))
        return
    stream = report["stream"]
    table = Table(
        title=f"learners on the drifting mill stream ({stream['twin']} twin, seed "
        f"{stream['seed']}, {stream['samples']:,} passes)"
    )
    for col in ("learner", "updates/s", "APE after drift %", "MAE after drift kN",
                "APE overall %", "drifts", "rules"):  # fmt: skip
        table.add_column(col, justify="right" if col != "learner" else "left")
    for name, row in report["learners"].items():
        after = row.get("after_drift") or {}
        overall = row.get("overall") or {}
        label = name
        if name == report["default"]:
            label += " (default)"
        if name == report["winner"]:
            label += " *"
        table.add_row(
            label,
            f"{row['updates_per_s']:,.0f}",
            _num(after.get("ape")),
            _num(after.get("mae_kn")),
            _num(overall.get("ape")),
            str(row.get("drifts", "")),
            str(row.get("rules", "")),
        )
    console = Console()
    console.print(table)
    console.print(f"* winner (lowest APE after drift): {report['winner']}")
    if not report["moa"].get("available"):
        console.print(
            f"MOA AMRulesRegressor not run: {report['moa'].get('reason')} — `make moa` "
            "builds .venv-moa (capymoa + a JRE)"
        )


def _num(value: object) -> str:
    return f"{value:,.3f}" if isinstance(value, int | float) else "-"
