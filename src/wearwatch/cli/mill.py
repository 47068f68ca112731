"""``wearwatch mill``."""

from __future__ import annotations

import typer

app = typer.Typer(help="mill", no_args_is_help=True)
