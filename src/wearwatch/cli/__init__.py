"""The ``wearwatch`` command: one Typer app, one sub-app per area (see each module)."""

from __future__ import annotations

import sys

import typer

from wearwatch.cli import (
    alarms,
    bench,
    config_cmd,
    demo,
    fleet,
    ingest,
    log,
    mill,
    models,
    replay,
    serve,
    sink,
    train,
    twin,
    up,
    worker,
)
from wearwatch.cli.errors import exit_on_user_error
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
app.add_typer(fleet.app, name="fleet")
app.add_typer(train.app, name="train")
app.add_typer(models.app, name="models")
app.add_typer(alarms.app, name="alarms")
app.add_typer(ingest.app, name="ingest")
app.add_typer(sink.app, name="sink")
worker.register(app)
replay.register(app)
demo.register(app)
serve.register(app)
up.register(app)


def main() -> None:
    """Run the CLI; expected failures end as one line on stderr and exit code 2.

    That covers usage errors too (a bad option value: Click's usage block and error panel
    would take six lines). ``WEARWATCH_DEBUG=1`` shows the full traceback instead.
    """
    configure_logging()
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors (bad option, missing argument)
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        lines = exc.format_message().strip().splitlines() or [type(exc).__name__]
        typer.echo(f"error: {lines[0]}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        exit_on_user_error(exc)
    # Without standalone mode, typer.Exit(code) comes back as the return value.
    sys.exit(code if isinstance(code, int) else 0)
