"""The ``wearwatch`` command: one Typer app, one sub-app per area (see each module)."""

from __future__ import annotations

import typer

from wearwatch.cli import bench, config_cmd, demo, log, mill, models, train, twin, worker

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
    app()
