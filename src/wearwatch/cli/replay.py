"""``wearwatch replay``: historian exports (or C-MAPSS engines) through the fleet pipeline.

``wearwatch replay FILE… [--train FILE…] [--train-fraction 0.3] [--time-col C] [--machine-col C]
[--label-col C] [--exclude-col C…] [--tz ZONE] [--windows 5s,30s] [--json]`` fits the anomaly
detectors on the leading share of each file (or on the ``--train`` files), streams the rest
through the fleet flow, writes ``<stem>.scored.csv`` (``.parquet`` for Parquet input),
``<stem>.alarms.csv`` and ``<stem>.rejected.csv`` next to each input and, with a label column,
prints point-wise precision, recall, F1, false- and missed-alarm rates and detection delays.

``wearwatch replay cmapss [--subset FD001] [--data DIR] [--seed 0] [--windows 10] [--json]``
replays NASA C-MAPSS run-to-failure engines as a fleet (one cycle = 1 s, so ``--windows`` are
in cycles) and prints the share of failures alarmed ≥ 20 cycles early, the median lead time
and false alarms per engine. (A file named ``cmapss`` is replayed as ``./cmapss``.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wearwatch.cli.errors import fail, finite


def parse_windows(text: str) -> tuple[float, ...]:
    """Window lengths from ``5s,30s`` (units s, m, h; bare numbers are seconds).

    >>> parse_windows("5s,30s"), parse_windows("1m, 10")
    ((5.0, 30.0), (60.0, 10.0))
    """
    from wearwatch.cli.twin import parse_duration

    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"--windows {text!r}: expected lengths such as 5s,30s")
    return tuple(parse_duration(p) for p in parts)


def _progress(as_json: bool) -> Progress:
    """A progress bar on stderr, only where someone watches it (a terminal, no --json)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json or not console.is_terminal,
    )


def _rate(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _metrics_table(summary: dict[str, Any]) -> Table:
    table = Table(title="replay against the labels (points: windows; predicted: alarm active)")
    names = ("file", "points", "TP", "FP", "TN", "FN", "precision", "recall", "F1")
    for name in (
        *names,
        "false-alarm rate",
        "missed-alarm rate",
        "events",
        "detected",
        "median delay s",
    ):
        table.add_column(name, justify="left" if name == "file" else "right")
    rows = [(Path(f["file"]).name, f) for f in summary["files"] if "metrics" in f]
    if "metrics" in summary:
        rows.append(("[bold]pooled[/bold]", summary))
    for name, item in rows:
        m, e = item["metrics"], item["events"]
        table.add_row(
            name,
            str(m["tp"] + m["fp"] + m["tn"] + m["fn"]),
            *(str(m[k]) for k in ("tp", "fp", "tn", "fn")),
            *(_rate(m[k]) for k in ("precision", "recall", "f1")),
            _rate(m["false_alarm_rate"]),
            _rate(m["missed_alarm_rate"]),
            str(e["events"]),
            str(e["detected"]),
            "–" if e["median_delay_s"] is None else f"{e['median_delay_s']:g}",
        )
    return table


def _files_table(summary: dict[str, Any]) -> Table:
    table = Table(title="files")
    for name in ("file", "layout", "delimiter", "time", "machine", "label", "sensors"):
        table.add_column(name)
    for name in ("readings", "rejected", "windows", "alarms raised"):
        table.add_column(name, justify="right")
    for f in summary["files"]:
        table.add_row(
            Path(f["file"]).name,
            f["layout"],
            repr(f["delimiter"]) if f["delimiter"] else "parquet",
            f["time_col"],
            f["machine_col"] or "(file)",
            f["label_col"] or "–",
            str(len(f["sensors"])),
            str(f["readings"]),
            str(f["rejected"]),
            str(f["scored_windows"]),
            str(f["alarms_raised"]),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_cmd(
        files: Annotated[
            list[Path], typer.Argument(help="historian exports (CSV or Parquet), or: cmapss")
        ],
        train: Annotated[
            list[Path] | None,
            typer.Option("--train", help="fit on these files instead (repeatable)"),
        ] = None,
        train_fraction: Annotated[
            float,
            typer.Option(
                "--train-fraction",
                callback=finite(0.0, 0.99),
                help="leading share of each file's time span fitted on",
            ),
        ] = 0.3,
        time_col: Annotated[str | None, typer.Option("--time-col")] = None,
        machine_col: Annotated[str | None, typer.Option("--machine-col")] = None,
        label_col: Annotated[str | None, typer.Option("--label-col")] = None,
        exclude_col: Annotated[
            list[str] | None, typer.Option("--exclude-col", help="ignore this column (repeatable)")
        ] = None,
        tz: Annotated[
            str | None, typer.Option("--tz", help="zone of naive times (default UTC)")
        ] = None,
        layout: Annotated[str, typer.Option("--layout", help="auto, wide or long")] = "auto",
        windows: Annotated[
            str | None,
            typer.Option("--windows", help="window lengths (default 5s,30s; cmapss: 5,15 cycles)"),
        ] = None,
        subset: Annotated[str, typer.Option("--subset", help="cmapss: FD001…FD004")] = "FD001",
        data: Annotated[Path | None, typer.Option("--data", help="cmapss: data directory")] = None,
        seed: Annotated[int, typer.Option("--seed", help="cmapss: seed of the engine split")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="one JSON object, no tables")] = False,
    ) -> None:
        """Replay historian exports through the fleet pipeline and score them against labels."""
        if [str(f) for f in files] == ["cmapss"]:
            _cmapss(subset, data, seed, windows, as_json)
            return
        from wearwatch.ingest.replay import ReplayOptions, replay

        if layout not in ("auto", "wide", "long"):
            fail(f"--layout {layout!r}: expected auto, wide or long")
        try:
            options = ReplayOptions(
                windows_s=parse_windows(windows or "5s,30s"), train_fraction=train_fraction
            )
        except ValueError as exc:
            fail(str(exc))
        with _progress(as_json) as progress:
            task = progress.add_task("reading", total=1)

            def note(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=max(total, 1))

            result = replay(
                files,
                train or (),
                options,
                progress=note,
                time_col=time_col,
                machine_col=machine_col,
                label_col=label_col,
                exclude_cols=exclude_col or (),
                tz=tz,
                layout=layout,
            )
        summary = result.summary()
        if as_json:
            typer.echo(json.dumps(summary, allow_nan=False))
            return
        out = Console()
        out.print(_files_table(summary))
        if any("metrics" in f for f in summary["files"]):
            out.print(_metrics_table(summary))
        for f in summary["files"]:
            written = ", ".join(f["outputs"].values())
            out.print(f"{Path(f['file']).name}: wrote {written}")
        if "metrics" not in summary:
            out.print("no label column: give --label-col to score the alarms against labels")


def _cmapss(subset: str, data: Path | None, seed: int, windows: str | None, as_json: bool) -> None:
    from wearwatch.config import get_settings
    from wearwatch.ingest.cmapss_fleet import default_options, replay_cmapss, with_windows
    from wearwatch.learn.rul.data import SUBSETS, default_data_dir, missing_files, missing_hint

    name = subset.strip().upper()
    if name not in SUBSETS:
        fail(f"--subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    directory = data if data is not None else default_data_dir(get_settings().cmapss_dir)
    if missing_files(directory, [name]):
        fail(missing_hint(directory, [name]))
    options = default_options()
    if windows is not None:
        try:
            options = with_windows(options, parse_windows(windows))
        except ValueError as exc:
            fail(str(exc))
    with _progress(as_json) as progress:
        task = progress.add_task(f"C-MAPSS {name}", total=2)

        def note(stage: str, done: int, total: int) -> None:
            progress.update(task, description=f"C-MAPSS {name}: {stage}", completed=done)

        result = replay_cmapss(directory, name, options, seed=seed, progress=note)
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, allow_nan=False))
        return
    table = Table(title=f"C-MAPSS {name} replayed as a fleet (1 cycle = 1 s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    table.add_row("failures", str(summary["failures"]), "engines replayed (each fails at its end)")
    table.add_row(
        "alarmed ≥ 20 cycles early",
        f"{summary['failures_alarmed_early']} ({_rate(summary['failures_alarmed_early_share'])})",
        summary["early_means"],
    )
    table.add_row("median lead time", f"{summary['median_lead_cycles']} cycles", "alarmed engines")
    table.add_row(
        "false alarms per engine",
        _rate(summary["false_alarms_per_engine"]),
        summary["false_means"],
    )
    table.add_row("windows", ", ".join(f"{w:g}" for w in summary["windows_cycles"]), "cycles")
    Console().print(table)
