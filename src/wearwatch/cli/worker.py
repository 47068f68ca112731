"""``wearwatch worker``: run a pipeline against the configured log."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from typing import Any

import typer

from wearwatch.cli.errors import fail


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            fail(f"--param {pair!r}: expected key=value")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


def _run_one(
    pipeline: str,
    params: dict[str, Any],
    group: str,
    bus: str | None,
    member: int,
    members: int,
    exit_when_idle: bool,
    quiet: bool,
) -> None:
    from rich.console import Console

    from wearwatch.bus import open_log
    from wearwatch.cli.stderr import configure_logging
    from wearwatch.pipelines import build_pipeline
    from wearwatch.runtime.worker import Worker, WorkerOptions

    configure_logging()  # also in processes spawned by --workers
    operator = build_pipeline(pipeline, params)
    log = open_log(bus)
    options = WorkerOptions.from_settings(
        exit_when_idle=exit_when_idle, member=member, members=members
    )
    console = Console(stderr=True, soft_wrap=True)  # one line per progress report

    last: list[object] = [None]

    def progress(worker: Worker) -> None:
        c = worker.counters()
        outage = f" outage={worker.outage.kind}" if worker.outage is not None else ""
        line = (dict(c), sorted(worker.states), outage)
        if not quiet and line != last[0]:
            last[0] = line
            console.print(
                f"[dim]{time.strftime('%H:%M:%S')} {pipeline}[{os.getpid()}][/] "
                f"in={c['in']:,} out={c['out']:,} "
                f"dead={c['dead_lettered']:,} late={c['late']:,} dup={c['duplicate']:,} "
                f"partitions={sorted(worker.states)}{outage}",
                highlight=False,
            )

    worker = Worker(log, operator, group, options, on_progress=progress)
    counters = worker.run()
    log.close()
    if not quiet:
        console.print(f"{pipeline}: stopped; counters {dict(counters)}")


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        pipeline: str = typer.Argument(..., help="pipeline name, e.g. reading_totals or mill"),
        group: str = typer.Option("", help="consumer group (default: the pipeline name)"),
        workers: int = typer.Option(1, min=1, help="worker processes in this group"),
        bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
        param: list[str] = typer.Option([], help="pipeline parameter key=value (repeatable)"),
        member: int = typer.Option(0, help="embedded log only: this worker's index"),
        members: int = typer.Option(1, help="embedded log only: workers sharing the group"),
        exit_when_idle: bool = typer.Option(False, help="stop once the input is drained"),
        quiet: bool = typer.Option(False, help="no progress lines"),
    ) -> None:
        """Run PIPELINE with exactly-once checkpoints until SIGINT/SIGTERM.

        On Kafka, N workers in one group split the partitions through Kafka's consumer group;
        on the embedded log, --workers N splits them statically (worker i reads p % N == i).
        """
        from wearwatch.pipelines import build_pipeline

        params = _parse_params(param)
        try:
            build_pipeline(pipeline, params)
        except ValueError as exc:
            fail(str(exc))
        group = group or pipeline
        if workers == 1:
            _run_one(pipeline, params, group, bus, member, members, exit_when_idle, quiet)
            return
        is_kafka = (bus or "").startswith("kafka://") or os.environ.get(
            "WEARWATCH_BUS", ""
        ).startswith("kafka://")
        procs = []
        for i in range(workers):
            args = (
                pipeline,
                params,
                group,
                bus,
                0 if is_kafka else i,
                1 if is_kafka else workers,
                exit_when_idle,
                quiet,
            )
            proc = multiprocessing.get_context("spawn").Process(target=_run_one, args=args)
            proc.start()
            procs.append(proc)
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            fail(f"{len(failed)} worker(s) failed with exit codes {failed}", 1)
