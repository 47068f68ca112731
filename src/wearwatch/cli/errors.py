"""How the CLI fails: one line on stderr that says what to fix, and a non-zero exit."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def is_user_error(exc: BaseException) -> bool:
    """Errors that come from input or environment (bad value, missing file, unreachable
    broker, unknown model, a log file that is corrupt, read-only or on a full disk): worth one
    line, not a traceback."""
    from pydantic import ValidationError

    from wearwatch.bus.base import LogError
    from wearwatch.store.analytics import AnalyticsError
    from wearwatch.store.registry import RegistryError

    return isinstance(
        exc,
        ValueError
        | OSError
        | LookupError
        | LogError
        | RegistryError
        | AnalyticsError
        | ValidationError,
    )


def describe(exc: BaseException) -> str:
    """One line: pydantic's errors reduced to the first field, value and message."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if exc.title == "Settings":
            return f"config {field}={err.get('input')!r} (WEARWATCH_{field.upper()}): {message}"
        return f"{exc.title} {field}={err.get('input')!r}: {message}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def exit_on_user_error(exc: Exception) -> NoReturn:
    """End the process with one line (exit code 2) if ``exc`` is a user error, else re-raise it
    for its traceback; ``WEARWATCH_DEBUG=1`` shows every traceback."""
    if os.environ.get("WEARWATCH_DEBUG") or not is_user_error(exc):
        raise exc
    typer.echo(f"error: {describe(exc)}", err=True)
    sys.exit(2)


def finite(
    low: float | None = None, high: float | None = None
) -> Callable[[float | None], float | None]:
    """A Typer callback refusing nan, ±inf and values outside [low, high]: Typer's ``min=``
    compares, and every comparison with nan is false, so it lets nan through."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise typer.BadParameter(f"{value}: expected a finite number")
        if low is not None and value < low:
            raise typer.BadParameter(f"{value}: expected a number >= {low:g}")
        if high is not None and value > high:
            raise typer.BadParameter(f"{value}: expected a number <= {high:g}")
        return value

    return check
