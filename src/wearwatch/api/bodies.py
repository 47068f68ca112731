"""Request bodies read with a size limit and decoded by msgspec against the contract's types.

The scoring endpoints take events (a ``FeatureVector``…) whose contract is a msgspec Struct;
decoding them with msgspec keeps one definition of what is valid and skips pydantic on the hot
path. A refusal becomes FastAPI's 422 shape with ``loc`` naming the field, parsed from
msgspec's error path:

>>> import msgspec
>>> class Body(msgspec.Struct):
...     features: dict[str, float]
>>> try:
...     decode_body(b'{"features": {"vib.mean": "x"}}', Body)
... except Exception as exc:
...     print(exc.errors()[0]["loc"], "|", exc.errors()[0]["msg"])
('body', 'features', 'vib.mean') | Expected `float`, got `str` - at `$.features[...]`
>>> try:
...     decode_body(b'{}', Body)
... except Exception as exc:
...     print(exc.errors()[0]["loc"])
('body', 'features')
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

import msgspec
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

T = TypeVar("T")

#: Bodies larger than this are refused with 413 (ingest batches: ~60 bytes a reading as JSON).
MAX_BODY_BYTES = 16 * 1024 * 1024

_AT = re.compile(r" - at `\$(.*)`$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\[\.\.\.\]")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def error_loc(message: str, key: str | None = None) -> tuple[str | int, ...]:
    """The path a msgspec error message points at, as a FastAPI ``loc`` after ``body``.

    ``key``: the dict key msgspec elides as ``[...]`` (the caller knows it when it matters).

    >>> error_loc("Expected `int`, got `str` - at `$.windows[2].ts`")
    ('body', 'windows', 2, 'ts')
    >>> error_loc("Object missing required field `by`")
    ('body', 'by')
    """
    loc: list[str | int] = ["body"]
    match = _AT.search(message)
    if match:
        for (
            name,
            index,
            quoted,
        ) in _STEP.findall(match.group(1)):
            if name:
                loc.append(name)
            elif index:
                loc.append(int(index))
            elif quoted:
                loc.append(quoted)
            elif key is not None:
                loc.append(key)
    missing = _MISSING.search(message)
    if missing:
        loc.append(missing.group(1))
    return tuple(loc)


def _dict_key(raw: bytes, message: str) -> str | None:
    """The key of the first value that is not a finite number in the mapping the error points
    at (msgspec prints ``[...]`` for dict keys); found by decoding loosely with the standard
    library, which reads out-of-range numbers (``1e999``) as infinities instead of failing."""
    match = _AT.search(message)
    if not match or not match.group(1).endswith("[...]"):
        return None
    try:
        loose: Any = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    path = match.group(1)[: -len("[...]")]
    for name, index, quoted in _STEP.findall(path):
        step: Any = name or (int(index) if index else quoted)
        try:
            loose = loose[step]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(loose, dict):
        for k, v in loose.items():
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                return str(k)
    return None


def decode_body(raw: bytes, type_: type[T]) -> T:
    """``raw`` JSON decoded as ``type_``; RequestValidationError (422) naming the field."""
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        loc = error_loc(message, _dict_key(raw, message))
        raise RequestValidationError(
            [{"loc": loc, "msg": message, "type": "value_error"}]
        ) from None
    except msgspec.DecodeError as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"not valid JSON: {exc}", "type": "json_invalid"}]
        ) from None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (a declared
    ``Content-Length`` over the limit is refused before reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, detail=f"body: {declared} bytes is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, detail=f"body: over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
