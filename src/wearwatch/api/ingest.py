"""``POST /ingest/readings``: readings pushed over HTTP, onto ``fleet.readings``.

For plants that push rather than publish to the log. The body is JSON (an array of
``Reading``) or an Arrow IPC stream (``application/vnd.apache.arrow.stream``, the columnar
record format of :mod:`wearwatch.columnar`). Both go through the same validation the fleet
worker applies to columnar records (:func:`~wearwatch.columnar.decode_columns`), so what the
API accepts the pipeline accepts. All or nothing: any invalid row is a 422 naming its index and
field, and nothing is written. Valid readings are written as columnar records, each row in the
partition its machine hashes to, as the twin writes them.
"""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from wearwatch.api import openapi as doc
from wearwatch.api.auth import require_token
from wearwatch.api.bodies import MAX_BODY_BYTES, error_loc, read_body
from wearwatch.api.platform import Platform
from wearwatch.columnar import decode_columns, encode_events, pack_columns
from wearwatch.events import Reading
from wearwatch.topics import READINGS

ARROW = "application/vnd.apache.arrow.stream"
#: Most readings one request may carry.
MAX_READINGS = 200_000

_EXAMPLE = [
    {
        "type": "reading",
        "ts": "2026-01-01T00:00:00.500Z",
        "machine_id": "pump-001",
        "sensor": "vibration",
        "value": 2.13,
        "unit": "mm/s",
    }
]


def ingest(platform: Platform, raw: bytes, content_type: str) -> doc.IngestResult:
    """Validate every row, then write them all; RequestValidationError names the first bad
    row's index and field (nothing written)."""
    if content_type.startswith(ARROW):
        record = raw
    elif not content_type.startswith(doc.JSON):
        raise HTTPException(
            415, detail=f"content-type {content_type!r}: send {doc.JSON} or {ARROW}"
        )
    else:
        try:
            rows = msgspec.json.decode(raw, type=list[Reading])
        except msgspec.ValidationError as exc:
            message = str(exc)
            raise RequestValidationError(
                [{"loc": error_loc(message), "msg": message, "type": "value_error"}]
            ) from None
        except msgspec.DecodeError as exc:
            raise RequestValidationError(
                [{"loc": ("body",), "msg": f"not valid JSON: {exc}", "type": "json_invalid"}]
            ) from None
        if not rows:
            raise RequestValidationError(
                [{"loc": ("body",), "msg": "no readings: send at least one", "type": "value_error"}]
            )
        if len(rows) > MAX_READINGS:
            raise HTTPException(413, detail=f"body: {len(rows)} readings, over {MAX_READINGS}")
        record = encode_events(rows)
    columns, bad = decode_columns(record, Reading, MAX_READINGS)
    if bad:
        row, _, error = min(bad, key=lambda b: b[0])
        loc: tuple[str | int, ...] = ("body",) if row < 0 else ("body", row, error.field)
        raise RequestValidationError([{"loc": loc, "msg": str(error), "type": "value_error"}])
    if len(columns) == 0:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "no readings: send at least one", "type": "value_error"}]
        )
    log = platform.log
    READINGS.create(log)
    records = pack_columns(READINGS.name, columns, "machine_id", log.partitions(READINGS.name))
    log.produce(records)
    log.flush()
    return doc.IngestResult(topic=READINGS.name, readings=len(columns), records=len(records))


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/ingest", tags=["ingest"])

    @router.post(
        "/readings",
        summary="Push sensor readings",
        description="JSON (`application/json`: an array of readings) or Arrow "
        f"(`{ARROW}`: one record batch with the columns `ts` timestamp[us, UTC], "
        "`machine_id`, `sensor`, `value` float64, optional `unit`). Every row is validated "
        "as the fleet worker validates columnar records; any invalid row → 422 naming its "
        f"index and field, and nothing is written. At most {MAX_READINGS} readings and "
        f"{MAX_BODY_BYTES} bytes a request (413).",
        status_code=202,
        response_class=Response,
        dependencies=[Depends(require_token)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    doc.JSON: {
                        "schema": {"type": "array", "items": doc.ref("Reading"), "minItems": 1},
                        "example": _EXAMPLE,
                    },
                    ARROW: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        responses={
            202: doc.json_response(
                "IngestResult",
                "Written to fleet.readings",
                {"topic": "fleet.readings", "readings": 1, "records": 1},
            ),
            **doc.UNAUTHORIZED,
            **doc.UNPROCESSABLE,
            413: doc.problem("Body too large", f"body: over the {MAX_BODY_BYTES} byte limit"),
            415: doc.problem("Neither JSON nor Arrow", "content-type 'text/csv': send …"),
        },
    )
    async def readings(request: Request) -> Response:
        raw = await read_body(request)
        content_type = request.headers.get("content-type", doc.JSON)
        result = await run_in_threadpool(ingest, platform, raw, content_type)
        return doc.json_bytes(result, 202)

    return router
