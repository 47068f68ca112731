"""``GET /live``: server-sent events of alarms, pass outcomes and machine health, as they land.

The read model calls its subscribers from its polling thread; each client here has a
:class:`Feed`: a bounded buffer filled under a lock by that thread, and an :class:`asyncio.Event`
set through ``loop.call_soon_threadsafe`` only when the buffer goes from empty to non-empty, so
the event loop holds at most one pending wake-up per client whatever the rate. A client that
falls :data:`MAX_PENDING` events behind is dropped (one final ``dropped`` event, then the stream
ends) rather than growing the server's memory; it reconnects and reads the current state from
the other endpoints.

>>> import asyncio
>>> async def demo():
...     feed = Feed(asyncio.get_running_loop(), max_pending=2)
...     for i in range(3):
...         feed.push("alarm", b'{"n":%d}' % i)
...     return feed.take(), feed.dropped
>>> asyncio.run(demo())
([], True)
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from wearwatch.api import openapi as doc
from wearwatch.api.errors import invalid
from wearwatch.api.platform import Platform

#: Events a client may fall behind before it is dropped.
MAX_PENDING = 1000
#: Seconds between keep-alive comments on a quiet stream.
KEEPALIVE_S = 15.0
KINDS = ("alarm", "outcome", "health")
EVENT_STREAM = "text/event-stream"


class Feed:
    """One client's bounded buffer between the view's polling thread and the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_pending: int = MAX_PENDING,
        kinds: frozenset[str] = frozenset(KINDS),
    ) -> None:
        self.loop = loop
        self.max_pending = max_pending
        self.kinds = kinds
        self.ready = asyncio.Event()
        self.dropped = False
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, bytes]] = deque()

    def push(self, kind: str, data: bytes) -> None:
        """From the polling thread: buffer one event (or mark the client dropped)."""
        if kind not in self.kinds:
            return
        with self._lock:
            if self.dropped:
                return
            if len(self._pending) >= self.max_pending:
                self.dropped = True
                self._pending.clear()
            else:
                self._pending.append((kind, data))
            wake = self.dropped or len(self._pending) == 1
        if wake:
            self.loop.call_soon_threadsafe(self.ready.set)

    def take(self) -> list[tuple[str, bytes]]:
        """From the event loop: everything buffered, oldest first."""
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
            self.ready.clear()
        return out


def sse(kind: str, data: bytes) -> bytes:
    """One server-sent event.

    >>> sse("alarm", b'{"a":1}')
    b'event: alarm\\ndata: {"a":1}\\n\\n'
    """
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


async def stream(platform: Platform, feed: Feed, limit: int | None) -> AsyncIterator[bytes]:
    unsubscribe = platform.view.subscribe(feed.push)
    sent = 0
    try:
        yield b"retry: 2000\n\n"
        while limit is None or sent < limit:
            try:
                await asyncio.wait_for(feed.ready.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            batch = feed.take()
            if feed.dropped:
                yield sse("dropped", b'{"detail":"too far behind: reconnect"}')
                return
            for kind, data in batch[: None if limit is None else limit - sent]:
                yield sse(kind, data)
                sent += 1
    finally:
        unsubscribe()


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["live"])

    @router.get(
        "/live",
        summary="Live alarms, pass outcomes and machine health (server-sent events)",
        description="A `text/event-stream`: `event: alarm` (an `Alarm` transition), `event: "
        "outcome` (a `PassOutcome`) and `event: health` (a `MachineHealth`), each with its "
        "JSON as `data`, as the API's read model applies them; a keep-alive comment every "
        f"{KEEPALIVE_S:g} s. `kinds` selects the event kinds; `limit` ends the stream after "
        f"that many events. A client more than {MAX_PENDING} events behind gets `event: "
        "dropped` and the stream ends.",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The event stream",
                "content": {
                    EVENT_STREAM: {
                        "schema": {"type": "string"},
                        "example": 'event: alarm\ndata: {"type":"alarm",...}\n\n',
                    }
                },
            },
            **doc.UNPROCESSABLE,
        },
    )
    async def live(
        kinds: Annotated[
            str, Query(description="comma-separated: alarm, outcome, health")
        ] = ",".join(KINDS),
        limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    ) -> StreamingResponse:
        wanted = frozenset(k.strip() for k in kinds.split(",") if k.strip())
        unknown = sorted(wanted - frozenset(KINDS))
        if unknown or not wanted:
            raise invalid("query", "kinds", f"expected some of {', '.join(KINDS)}", kinds)
        feed = Feed(asyncio.get_running_loop(), kinds=wanted)
        return StreamingResponse(
            stream(platform, feed, limit),
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
