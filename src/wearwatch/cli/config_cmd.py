"""``wearwatch config``: the effective configuration and where each value came from."""

from __future__ import annotations

import json

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from wearwatch.cli.errors import describe, fail
from wearwatch.config import Settings, value_sources

SECRETS = {"api_token", "checkpoint_key"}


def _redacted(name: str, value: object) -> object:
    """A secret's value as ``***``; in ``kafka_config``, every password-like property
    (``sasl.password``, ``ssl.key.password``…), and the password in an analytics URL."""
    if name in SECRETS and value:
        return "***"
    if name == "kafka_config" and isinstance(value, dict):
        return {k: "***" if ("password" in k or "secret" in k) else v for k, v in value.items()}
    if name == "analytics" and isinstance(value, str):
        from wearwatch.store.analytics import redacted  # lazily: it imports DuckDB

        return redacted(value)
    return value


app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Print every setting, its value and its origin (env, file or default)."""
    try:
        settings = Settings()
    except (ValidationError, FileNotFoundError) as exc:
        fail(describe(exc))
    rows = {
        name: (_redacted(name, value), origin)
        for name, (value, origin) in value_sources(settings).items()
    }
    if as_json:
        typer.echo(
            json.dumps({k: {"value": v, "source": o} for k, (v, o) in rows.items()}, default=str)
        )
        return
    table = Table(title="wearwatch configuration")
    for col in ("setting", "value", "source"):
        table.add_column(col)
    for name, (value, origin) in rows.items():
        table.add_row(f"WEARWATCH_{name.upper()}", str(value), origin)
    Console().print(table)
