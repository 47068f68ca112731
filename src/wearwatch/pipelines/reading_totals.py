"""Per-key count and sum of readings, emitted when a key has been idle for a TTL.

The smallest pipeline that exercises everything the runtime promises: keyed state, event-time
timers, watermarks, dead letters, checkpoints. The crash-equivalence tests and the runtime
benchmark run it.
"""

from __future__ import annotations

from typing import Any

from wearwatch.events import Reading, ReadingTotals, utc
from wearwatch.runtime.operator import Context, KeyedOperator
from wearwatch.topics import READING_TOTALS, READINGS

READINGS_TOPIC = READINGS.name
TOTALS_TOPIC = READING_TOTALS.name


class ReadingTotalsOperator(KeyedOperator):
    """State per ``machine_id/sensor``: ``[count, total, first_ts, last_ts]``.

    A key's timer is armed once at ``last_ts + ttl``; when it fires and the key has seen
    newer readings, it is re-armed instead of emitting (fewer timer writes than re-setting
    the timer on every reading, same result).
    """

    name = "reading_totals"
    input_topic = READINGS_TOPIC
    input_type = Reading
    outputs = (TOTALS_TOPIC,)

    def __init__(
        self,
        ttl_s: float = 60.0,
        input_topic: str = READINGS_TOPIC,
        output_topic: str = TOTALS_TOPIC,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s={ttl_s}: must be positive")
        self.ttl_s = ttl_s
        self.input_topic = input_topic  # type: ignore[misc]
        self.output_topic = output_topic
        self.outputs = (output_topic,)  # type: ignore[misc]

    def key(self, event: Reading) -> str:
        return f"{event.machine_id}/{event.sensor}"

    def process(self, event: Reading, key: str, ts: float, ctx: Context) -> None:
        keyed = ctx.state.keyed
        slot: list[Any] | None = keyed.get(key)
        if slot is None:
            keyed[key] = [1, event.value, ts, ts]
            ctx.state.timers.set(key, ts + self.ttl_s)
            return
        slot[0] += 1
        slot[1] += event.value
        if ts > slot[3]:
            slot[3] = ts

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        slot = ctx.state.keyed[key]
        idle_at = slot[3] + self.ttl_s
        if idle_at > when:
            ctx.state.timers.set(key, idle_at)
            return
        del ctx.state.keyed[key]
        ctx.emit(
            self.output_topic,
            key,
            ReadingTotals(
                ts=utc(when), key=key, first_ts=utc(slot[2]), count=slot[0], total=slot[1]
            ),
        )
