"""How the CLI fails: one line on stderr that says what to fix, and a non-zero exit."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def is_user_error(exc: BaseException) -> bool:
    """Errors that come from input or environment (bad value, missing file, unreachable
    broker, unknown model): worth one line, not a traceback."""
    from pydantic import ValidationError

    from wearwatch.bus.base import LogError
    from wearwatch.store.registry import RegistryError

    return isinstance(
        exc, ValueError | OSError | LookupError | LogError | RegistryError | ValidationError
    )


def describe(exc: BaseException) -> str:
    """One line: pydantic's errors reduced to the first field, value and message."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        return f"config {field}={err.get('input')!r}: {err['msg']}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
