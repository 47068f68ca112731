"""The mill's join: a pass's request (A) and its measured force (B) on (slab_id, pass_no).

A ``process`` step keyed by ``slab_id`` (the key both halves carry, and the one
``mill.passes`` is partitioned by). Its typed state, :class:`SlabJoin`, holds one slab's
halves waiting for a partner and the passes it has seen; an event-time timer per slab fires
when the oldest waiting half's TTL is up (the watermark reaches ``ts + ttl_s``), and, once
nothing waits, when the slab has been quiet for ``memory_s`` (its state is then dropped). No
work happens on events that expire nothing.

Out: every first copy of a request is forwarded at once (the pass is served whether or not
its measurement ever comes); a :class:`~wearwatch.events.JoinedPass` follows when both
halves are in, in whichever order they arrived.

Counters (one spelling each, shared with the runtime's):

* ``requests``, ``actuals``: first copies of each half;
* ``joined``: passes with both halves;
* ``duplicates``: a second copy of a half (dropped);
* ``orphans``: halves that never found a partner — expired at their TTL, or arriving after
  their partner expired;
* ``too_late``: the subset of ``orphans`` that arrived after the partner's TTL, or older than
  the TTL themselves (such a half never waits, so every waiting half's timer lies ahead).

The runtime's ``late`` means something else: events behind the partition's watermark (a
flow's stages take those too; the join decides by its TTL, windows by their grace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wearwatch.events import JoinedPass, PassActual, PassRequest


@dataclass
class SlabJoin:
    """One slab's join state: halves waiting for a partner, by pass number, and the passes
    whose halves have been seen (to drop duplicates and spot halves that come too late)."""

    requests: dict[int, PassRequest] = field(default_factory=dict)
    actuals: dict[int, PassActual] = field(default_factory=dict)
    seen_requests: set[int] = field(default_factory=set)
    seen_actuals: set[int] = field(default_factory=set)
    #: The latest event time (epoch s) of any half of this slab.
    last_s: float = float("-inf")

    def next_due(self, ttl_s: float, memory_s: float) -> float:
        """When the timer must fire next: the oldest waiting half's expiry, or, when
        nothing waits, the moment the slab's memory may be dropped."""
        waiting = [e.ts.timestamp() for e in (*self.requests.values(), *self.actuals.values())]
        if waiting:
            return min(waiting) + ttl_s
        return self.last_s + memory_s


class PassJoin:
    """Join A and B with a TTL in event time; see the module docstring.

    A ``process`` step: ``init() -> SlabJoin``, ``on_event(event, state, ctx)`` and
    ``on_timer(when, state, ctx)``; ``ctx`` offers ``emit``, ``set_timer``, ``watermark``,
    ``count`` and ``clear_state`` (see :meth:`wearwatch.runtime.dataflow.Stream.process`).
    """

    def __init__(self, ttl_s: float, memory_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s={ttl_s}: expected > 0")
        if memory_s < ttl_s:
            raise ValueError(f"memory_s={memory_s}: expected ≥ ttl_s={ttl_s}")
        self.ttl_s = ttl_s
        self.memory_s = memory_s

    def init(self) -> SlabJoin:
        return SlabJoin()

    def on_event(self, event: PassRequest | PassActual, state: SlabJoin, ctx: Any) -> None:
        ts = event.ts.timestamp()
        state.last_s = max(state.last_s, ts)
        if isinstance(event, PassRequest):
            self._on_request(event, ts, state, ctx)
        elif isinstance(event, PassActual):
            self._on_actual(event, ts, state, ctx)
        else:
            raise TypeError(
                f"event type {type(event).__name__!r}: expected PassRequest or PassActual"
            )
        ctx.set_timer(state.next_due(self.ttl_s, self.memory_s))

    def on_timer(self, when: float, state: SlabJoin, ctx: Any) -> None:
        watermark, ttl = ctx.watermark, self.ttl_s
        for waiting in (state.requests, state.actuals):
            # The same sum as next_due's, so a timer that fires always expires its half.
            for n in [n for n, half in waiting.items() if half.ts.timestamp() + ttl <= watermark]:
                del waiting[n]
                ctx.count("orphans")
        due = state.next_due(self.ttl_s, self.memory_s)
        if not (state.requests or state.actuals) and due <= watermark:
            ctx.clear_state()  # quiet for memory_s: duplicates of this slab are no longer expected
        else:
            ctx.set_timer(due)

    def _on_request(self, req: PassRequest, ts: float, state: SlabJoin, ctx: Any) -> None:
        n = req.pass_no
        if n in state.seen_requests:
            ctx.count("duplicates")
            return
        state.seen_requests.add(n)
        ctx.count("requests")
        ctx.emit(req)  # served now, joined or not
        actual = state.actuals.pop(n, None)
        if actual is not None:
            self._join(req, actual, ctx)
        elif n in state.seen_actuals or ts + self.ttl_s <= ctx.watermark:
            # Its measurement came first and expired (or the request is older than the TTL):
            # served, but too late to join.
            ctx.count("too_late")
            ctx.count("orphans")
        else:
            state.requests[n] = req

    def _on_actual(self, act: PassActual, ts: float, state: SlabJoin, ctx: Any) -> None:
        n = act.pass_no
        if n in state.seen_actuals:
            ctx.count("duplicates")
            return
        state.seen_actuals.add(n)
        ctx.count("actuals")
        request = state.requests.pop(n, None)
        if request is not None:
            self._join(request, act, ctx)
        elif n in state.seen_requests or ts + self.ttl_s <= ctx.watermark:
            # The request expired (or the measurement is older than the TTL): too late.
            ctx.count("too_late")
            ctx.count("orphans")
        else:
            state.actuals[n] = act

    @staticmethod
    def _join(req: PassRequest, act: PassActual, ctx: Any) -> None:
        ctx.count("joined")
        ctx.emit(JoinedPass(ts=max(req.ts, act.ts), request=req, actual=act))
