"""The hot endpoints' fast path: answered before FastAPI's routing and dependency resolution.

``GET /predict/latest/{id}``, ``GET /anomaly/latest/{id}`` and ``POST /anomaly`` are what
clients poll. Their own work is a dict lookup (the read model's pre-encoded bytes) or one
scoring (~0.1 ms); FastAPI's per-request machinery — matching the path against every route,
solving dependencies, building ``Request``/``Response`` objects — costs several times that
here (measured with ``wearwatch bench api``). So a pure ASGI layer answers them directly.

It answers only what it can answer exactly as the routes in :mod:`wearwatch.api.fleet` would:
a machine with a latest value; a body that decodes to a ``FeatureVector`` while an anomaly
model is served. Everything else — an unknown machine, a malformed body, no model, any other
path — goes on to the app (with the body it read replayed), so errors keep their one shape and
message. The routes stay declared there: they are the OpenAPI document and the fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import msgspec

from wearwatch.api.bodies import MAX_BODY_BYTES
from wearwatch.api.platform import ModelUnavailable, Platform
from wearwatch.events import FeatureVector, encode

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class RouteLabel:
    """What the request-metrics middleware reads from ``scope["route"]``: the template."""

    path: str


PREDICT_LATEST = RouteLabel("/predict/latest/{machine_id}")
ANOMALY_LATEST = RouteLabel("/anomaly/latest/{machine_id}")
ANOMALY = RouteLabel("/anomaly")


class HotPaths:
    """Pure ASGI middleware in front of the app (inside the request metrics)."""

    def __init__(self, app: Any, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        view = platform.view
        self._latest: tuple[tuple[str, RouteLabel, Callable[[str], bytes | None]], ...] = (
            ("/predict/latest/", PREDICT_LATEST, view.latest_health_json),
            ("/anomaly/latest/", ANOMALY_LATEST, view.latest_score_json),
        )
        self._decode = msgspec.json.Decoder(FeatureVector).decode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET":
                for prefix, label, lookup in self._latest:
                    if path.startswith(prefix):
                        machine = unquote(path[len(prefix) :])
                        body = lookup(machine) if machine and "/" not in machine else None
                        if body is not None:
                            scope["route"] = label
                            await _answer(send, body)
                            return
                        break
            elif method == "POST" and path == "/anomaly":
                await self._anomaly(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _anomaly(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw, complete = await _read(receive, MAX_BODY_BYTES)
        if complete:
            try:
                fv = self._decode(raw)
                model = self.platform.models.get("anomaly")
            except (msgspec.DecodeError, ModelUnavailable):
                pass  # the route answers with its 422 / 503
            else:
                scope["route"] = ANOMALY
                await _answer(send, encode(model.score(fv, model.new_state(fv.machine_id))))
                return
        await self.app(scope, _replay(raw, complete, receive), send)


async def _answer(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body, and whether it is all there (False: over ``limit``, or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(raw: bytes, complete: bool, receive: Receive) -> Receive:
    """A ``receive`` that hands the app what was already read, then the rest of the stream."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": not complete}
        return await receive()

    return replayed
