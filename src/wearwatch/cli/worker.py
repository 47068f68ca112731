"""``wearwatch worker``: run a pipeline against the configured log."""

from __future__ import annotations

import gc
import json
import math
import multiprocessing
import os
import time
from typing import Any

import typer

from wearwatch.cli.errors import describe, exit_on_user_error, fail


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"{text}: expected a finite number")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text}: expected a finite number")  # NaN, Infinity, -Infinity


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON if it parses as JSON (numbers finite), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            fail(f"--param {pair!r}: expected key=value")
        try:
            params[name] = json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant)
        except json.JSONDecodeError:
            params[name] = raw
        except ValueError as exc:
            fail(f"--param {pair!r}: {exc}")
    return params


def _run_one(
    pipeline: str,
    params: dict[str, Any],
    group: str,
    bus: str | None,
    exit_when_idle: bool,
    quiet: bool,
    unsigned_checkpoints: bool = False,
    status_dir: str | None = None,
    status_name: str = "",
) -> None:
    from rich.console import Console

    from wearwatch.cli.stderr import configure_logging
    from wearwatch.config import get_settings
    from wearwatch.pipelines import build_pipeline
    from wearwatch.runtime.dataflow import Flow
    from wearwatch.runtime.flow_worker import FlowWorker
    from wearwatch.runtime.worker import Worker
    from wearwatch.wiring import open_configured_log, worker_options

    configure_logging()  # also in processes spawned by --workers
    operator = build_pipeline(pipeline, params)
    settings = get_settings()
    options = worker_options(
        settings,
        exit_when_idle=exit_when_idle,
        unsigned_checkpoints=unsigned_checkpoints or settings.checkpoint_unsigned,
    )
    console = Console(stderr=True, soft_wrap=True)  # one line per progress report

    last: dict[str, object] = {}  # per consumer group (a flow runs one per stage)

    reporter = None
    if status_dir is not None:
        from pathlib import Path

        from wearwatch.runtime.worker_status import WorkerStatusReporter

        reporter = WorkerStatusReporter(
            Path(status_dir), status_name, group=group, info={"pipeline": pipeline}
        )

    def progress(worker: Worker) -> None:
        if reporter is not None:
            reporter.on_progress(worker)
        c = worker.counters()
        outage = f" outage={worker.outage.kind}" if worker.outage is not None else ""
        line = (dict(c), sorted(worker.states), outage)
        if not quiet and line != last.get(worker.group):
            last[worker.group] = line
            console.print(
                f"[dim]{time.strftime('%H:%M:%S')} {worker.group}[{os.getpid()}][/] "
                f"in={c['in']:,} out={c['out']:,} "
                f"dead={c['dead_lettered']:,} late={c['late']:,} dup={c['duplicates']:,} "
                f"partitions={sorted(worker.states)}{outage}",
                highlight=False,
            )

    # Everything built so far (libraries, models) lives as long as the process: move it out
    # of the cyclic collector's reach, whose full passes over it (~0.1 s with a fleet's
    # models loaded) would otherwise stall a record now and then.
    gc.collect()
    gc.freeze()
    try:
        if isinstance(operator, Flow):
            # One log connection per stage (each stage runs in its own thread).
            runner = FlowWorker(
                lambda: open_configured_log(settings, bus), operator, group, options, progress
            )
            counters = runner.run()
        else:
            log = open_configured_log(settings, bus)
            counters = Worker(log, operator, group, options, on_progress=progress).run()
            log.close()
    except Exception as exc:
        if reporter is not None:
            reporter.failed(describe(exc))
        raise
    if reporter is not None:
        reporter.stopped()
    gc.unfreeze()  # let interpreter shutdown release it all
    if not quiet:
        console.print(f"{pipeline}: stopped; counters {dict(counters)}")


def _check_checkpoint_key(bus: str | None, unsigned: bool) -> None:
    """Refuse (one line) before any worker starts when checkpoints could not be authenticated;
    on the embedded log this also creates the key file once, before workers race for it."""
    from wearwatch.config import get_settings
    from wearwatch.runtime.checkpoint import CheckpointKeyError, resolve_checkpoint_key

    settings = get_settings()
    url = bus or settings.bus_url
    if not url.startswith(("sqlite:///", "kafka://")):
        return  # open_log says what is wrong with it
    try:
        resolve_checkpoint_key(
            url,
            settings.checkpoint_key,
            unsigned or settings.checkpoint_unsigned,
        )
    except CheckpointKeyError as exc:
        fail(str(exc))


def _status_names(name: str, workers: int) -> list[str]:
    """One status file name per worker process (``<name>-<i>`` for ``--workers N``).

    >>> _status_names("fleet", 1), _status_names("fleet", 2)
    (['fleet'], ['fleet-0', 'fleet-1'])
    """
    from wearwatch.runtime.status import NAME

    names = [name] if workers == 1 else [f"{name}-{i}" for i in range(workers)]
    if not all(NAME.match(n) for n in names):
        fail(
            f"--status-name {name!r}: expected lower-case letters, digits, '_', '.', '-' "
            "(at most 64; default: the pipeline's name)"
        )
    return names


def _run_child(*args: Any) -> None:
    """A ``--workers N`` process: fails like the CLI itself, with one line, not a traceback."""
    try:
        _run_one(*args)
    except Exception as exc:
        exit_on_user_error(exc)


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        pipeline: str = typer.Argument(..., help="pipeline name, e.g. reading_totals or mill"),
        group: str = typer.Option("", help="consumer group (default: the pipeline name)"),
        workers: int = typer.Option(1, min=1, help="worker processes in this group"),
        bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
        param: list[str] = typer.Option([], help="pipeline parameter key=value (repeatable)"),
        exit_when_idle: bool = typer.Option(False, help="stop once the input is drained"),
        quiet: bool = typer.Option(False, help="no progress lines"),
        unsigned_checkpoints: bool = typer.Option(
            False, help="Kafka without WEARWATCH_CHECKPOINT_KEY: unauthenticated checkpoints"
        ),
        status_dir: str = typer.Option(
            None, help="write a status file (<name>.json) here about once a second"
        ),
        status_name: str = typer.Option(
            "", help="the status file's name (default: the pipeline's; --workers N: <name>-<i>)"
        ),
    ) -> None:
        """Run PIPELINE with exactly-once checkpoints until SIGINT/SIGTERM.

        Workers of one group (--workers N, or several commands) split the
        partitions: through Kafka's consumer group on Kafka, through leases in
        the log's database on the embedded log. A worker that dies without
        closing hands its partitions over once its lease expires
        (WEARWATCH_LEASE_S).
        """
        from wearwatch.config import get_settings
        from wearwatch.pipelines import build_pipeline

        get_settings()  # bad settings: one line here, not one per worker process
        params = _parse_params(param)
        try:
            build_pipeline(pipeline, params)
        except ValueError as exc:
            fail(describe(exc))
        group = group or pipeline
        names = _status_names(status_name or pipeline, workers) if status_dir else [""] * workers
        _check_checkpoint_key(bus, unsigned_checkpoints)
        args = (pipeline, params, group, bus, exit_when_idle, quiet, unsigned_checkpoints)
        if workers == 1:
            _run_one(*args, status_dir, names[0])
            return
        procs = []
        for i in range(workers):
            proc = multiprocessing.get_context("spawn").Process(
                target=_run_child, args=(*args, status_dir, names[i])
            )
            proc.start()
            procs.append(proc)
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            fail(f"{len(failed)} worker(s) failed with exit codes {failed}", 1)
