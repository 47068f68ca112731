"""``wearwatch worker``: run a pipeline against the configured log."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
