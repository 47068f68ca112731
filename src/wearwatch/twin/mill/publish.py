"""Put the mill twin on the log: passes to ``mill.passes`` (keyed by product line), ground
truth and maintenance to ``mill.twin``; in paced runs, live commands from ``mill.control``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wearwatch.bus.base import Consumer, Log, OutRecord, pack_by_partition
from wearwatch.events import (
    DeadLetter,
    Event,
    EventDecodeError,
    PassActual,
    PassRequest,
    TwinCommand,
    decode_event,
    encode,
    utc,
)
from wearwatch.pipelines.mill.operator import CONTROL_TOPIC, PASSES_TOPIC, TWIN_TOPIC
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC
from wearwatch.twin.mill.simulation import ASSET_ID, MillTwin


@dataclass
class PublishStats:
    passes: int = 0
    records: int = 0
    events: int = 0
    commands: int = 0
    rejected_commands: int = 0
    lines_by_slab: dict[str, str] = field(default_factory=dict)


#: Slabs whose product line the publisher remembers (a slab's passes span minutes).
_REMEMBERED_SLABS = 10_000


def _key(stats: PublishStats) -> Callable[[object], str]:
    lines = stats.lines_by_slab

    def key_of(event: object) -> str:
        if isinstance(event, PassRequest):
            lines[event.slab_id] = event.line
            if len(lines) > _REMEMBERED_SLABS:
                del lines[next(iter(lines))]  # the oldest slab (dicts keep insertion order)
            return event.line
        if isinstance(event, PassActual):
            # The request of a pass always precedes its measurement in the twin's log order.
            return lines[event.slab_id]
        return ASSET_ID

    return key_of


def publish(
    log: Log,
    events: Iterable[Event],
    *,
    twin: MillTwin | None = None,
    flush_every_s: float = 0.0,
    batch: int = 200,
    on_flush: Callable[[PublishStats], None] | None = None,
) -> PublishStats:
    """Write ``events`` to the log; returns what was written.

    With ``flush_every_s`` > 0 (paced runs) events are written at least that often, and the
    twin applies the commands found on ``mill.control`` between flushes; a bad command goes to
    the dead letters with its reason.
    """
    for topic in (PASSES_TOPIC, TWIN_TOPIC, CONTROL_TOPIC, DEAD_LETTER_TOPIC):
        log.create_topic(topic)
    partitions = {t: log.partitions(t) for t in (PASSES_TOPIC, TWIN_TOPIC)}
    stats = PublishStats()
    key_of = _key(stats)
    control = log.consumer(f"{ASSET_ID}.control", [CONTROL_TOPIC]) if twin else None
    passes: list[Event] = []
    truth: list[Event] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        records = pack_by_partition(
            PASSES_TOPIC, passes, key_of, partitions[PASSES_TOPIC], encode, batch
        ) + pack_by_partition(TWIN_TOPIC, truth, key_of, partitions[TWIN_TOPIC], encode, batch)
        if records:
            log.produce(records)
            log.flush()
        stats.records += len(records)
        passes.clear()
        truth.clear()
        last_flush = time.monotonic()
        if control is not None and twin is not None:
            _apply_commands(control, twin, log, stats)
        if on_flush is not None:
            on_flush(stats)

    for event in events:
        stats.events += 1
        if isinstance(event, PassRequest | PassActual):
            passes.append(event)
            stats.passes += isinstance(event, PassRequest)
        else:
            truth.append(event)
        if len(passes) >= batch * partitions[PASSES_TOPIC] or (
            flush_every_s and time.monotonic() - last_flush >= flush_every_s
        ):
            flush()
    flush()
    if control is not None:
        control.close()
    return stats


def _apply_commands(control: Consumer, twin: MillTwin, log: Log, stats: PublishStats) -> None:
    records = control.poll(100, 0.0)
    letters: list[OutRecord] = []
    for record in records:
        try:
            command = decode_event(record.value, TwinCommand)
            twin.apply(command)
            stats.commands += 1
        except (EventDecodeError, ValueError) as exc:
            stats.rejected_commands += 1
            letter = DeadLetter(
                ts=utc(time.time()),
                source_topic=CONTROL_TOPIC,
                partition=record.partition,
                offset=record.offset,
                reason=str(exc),
                field=getattr(exc, "field", "args"),
                raw=record.value,
            )
            letters.append(OutRecord(DEAD_LETTER_TOPIC, CONTROL_TOPIC.encode(), encode(letter)))
    if letters:
        log.produce(letters)
        log.flush()  # the letters are durable before the commands' offsets are committed
    if records:
        control.commit()


def send_command(log: Log, command: str, args: dict[str, object]) -> TwinCommand:
    """Validate a command against a scratch twin, then put it on ``mill.control``."""
    event = TwinCommand(ts=utc(time.time()), command=command, args=args)
    MillTwin().apply(event)  # raises ValueError naming the argument
    log.create_topic(CONTROL_TOPIC)
    log.produce([OutRecord(CONTROL_TOPIC, ASSET_ID.encode(), encode(event))])
    log.flush()
    return event
