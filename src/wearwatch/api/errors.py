"""How the API says no: 404 naming the unknown thing, 422 naming the field, 503 naming the
command that trains a missing model — always in FastAPI's shapes (``{"detail": "..."}``, and
``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` for 422), so a client handles one
format whether pydantic or our own decoding refused the input.

>>> exc = invalid("body", "features.vibration.mean", "must be finite, got nan")
>>> exc.errors()[0]["loc"], exc.errors()[0]["msg"]
(('body', 'features', 'vibration.mean'), 'must be finite, got nan')
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from wearwatch.api.platform import ModelUnavailable
from wearwatch.events import EventDecodeError
from wearwatch.store.registry import UnknownFamily, UnknownVersion


def invalid(where: str, field: str, msg: str, value: Any = None) -> RequestValidationError:
    """A 422 naming ``field`` (dotted for nesting: ``features.vib.mean`` names the key
    ``vib.mean`` of ``features``; only the first dot splits) in part ``where`` (``body``,
    ``query``, ``path``)."""
    head, _, rest = field.partition(".")
    loc: tuple[str | int, ...] = (where, head, rest) if rest else (where, head)
    error: dict[str, Any] = {"loc": loc, "msg": msg, "type": "value_error"}
    if value is not None:
        error["input"] = value
    return RequestValidationError([error])


def decode_error(exc: EventDecodeError, where: str = "body") -> RequestValidationError:
    """An event that did not decode, as a 422 naming its field."""
    field = exc.field or "$"
    return RequestValidationError(
        [{"loc": (where, *field.split(".", 1)), "msg": str(exc), "type": "value_error"}]
    )


def not_found(message: str) -> HTTPException:
    return HTTPException(404, detail=message)


def install(app: FastAPI) -> None:
    """Map the platform's exceptions to statuses wherever an endpoint lets them through."""

    async def lookup(request: Request, exc: Exception) -> JSONResponse:
        message = str(exc.args[0]) if exc.args else str(exc)
        return JSONResponse({"detail": message}, status_code=404)

    async def model_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.add_exception_handler(ModelUnavailable, model_unavailable)
    app.add_exception_handler(UnknownFamily, lookup)
    app.add_exception_handler(UnknownVersion, lookup)
