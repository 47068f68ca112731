"""Live commands for a running twin: read from its control topic, applied in the order sent.

A command that does not decode or that the twin refuses goes to the dead letters with the
reason and its raw bytes; the letters are durable before the commands' offsets are committed,
so a crash never loses a refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wearwatch.bus.base import Consumer, Log, OutRecord
from wearwatch.events import DeadLetter, EventDecodeError, TwinCommand, decode_event, encode, utc
from wearwatch.topics import DEAD_LETTERS


def apply_commands(
    control: Consumer, topic: str, apply: Callable[[TwinCommand], object], log: Log
) -> tuple[int, int]:
    """Apply the commands waiting on ``control`` (a consumer of ``topic``); returns
    (applied, rejected)."""
    records = control.poll(100, 0.0)
    letters: list[OutRecord] = []
    applied = 0
    for record in records:
        try:
            apply(decode_event(record.value, TwinCommand))
            applied += 1
        except (EventDecodeError, ValueError) as exc:
            letter = DeadLetter(
                ts=utc(time.time()),
                source_topic=topic,
                partition=record.partition,
                offset=record.offset,
                reason=str(exc),
                field=getattr(exc, "field", "args"),
                raw=record.value,
            )
            letters.append(
                OutRecord(DEAD_LETTERS.name, DEAD_LETTERS.key_of(letter).encode(), encode(letter))
            )
    if letters:
        log.produce(letters)
        log.flush()  # the letters are durable before the commands' offsets are committed
    if records:
        control.commit()  # type: ignore[call-arg]
    return applied, len(letters)
