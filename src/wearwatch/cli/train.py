"""``wearwatch train``."""

from __future__ import annotations

import typer

app = typer.Typer(help="train", no_args_is_help=True)
