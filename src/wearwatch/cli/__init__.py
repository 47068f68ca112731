"""The ``wearwatch`` command: one Typer app, one sub-app per area (see each module)."""

from __future__ import annotations

import os
import sys

import typer

from wearwatch.cli import bench, config_cmd, demo, log, mill, models, train, twin, worker
from wearwatch.cli.errors import describe, is_user_error
from wearwatch.cli.stderr import configure_logging

app = typer.Typer(
    name="wearwatch",
    help="Industrial predictive maintenance on event streams: twins, pipelines, models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(log.app, name="log")
app.add_typer(bench.app, name="bench")
app.add_typer(twin.app, name="twin")
app.add_typer(mill.app, name="mill")
app.add_typer(train.app, name="train")
app.add_typer(models.app, name="models")
worker.register(app)
demo.register(app)


def main() -> None:
    """Run the CLI; expected failures end as one line on stderr and exit code 2.

    ``WEARWATCH_DEBUG=1`` shows the full traceback instead.
    """
    configure_logging()
    try:
        app()
    except Exception as exc:
        if os.environ.get("WEARWATCH_DEBUG") or not is_user_error(exc):
            raise
        typer.echo(f"error: {describe(exc)}", err=True)
        sys.exit(2)
