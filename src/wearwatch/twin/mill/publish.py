"""Put the mill twin on the log: passes to ``mill.passes``, ground truth and maintenance to
``mill.twin``; in paced runs, live commands from ``mill.control``.

The twin is a producer like a real plant: it keys each event by the field its topic declares
(:mod:`wearwatch.topics`, e.g. ``slab_id`` on ``mill.passes``) and knows nothing of the
pipelines that read it or of how they key their state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wearwatch.bus.base import Consumer, Log, OutRecord, pack_by_partition
from wearwatch.events import (
    Event,
    PassActual,
    PassRequest,
    TwinCommand,
    encode,
    utc,
)
from wearwatch.topics import DEAD_LETTERS, MILL_CONTROL, MILL_PASSES, MILL_TWIN
from wearwatch.twin.control import apply_commands
from wearwatch.twin.mill.simulation import ASSET_ID, MillTwin


@dataclass
class PublishStats:
    passes: int = 0
    records: int = 0
    events: int = 0
    commands: int = 0
    rejected_commands: int = 0


def publish(
    log: Log,
    events: Iterable[Event],
    *,
    twin: MillTwin | None = None,
    flush_every_s: float = 0.0,
    batch: int = 200,
    on_flush: Callable[[PublishStats], None] | None = None,
    on_command: Callable[[TwinCommand, int], None] | None = None,
    stop: threading.Event | None = None,
) -> PublishStats:
    """Write ``events`` to the log; returns what was written.

    With ``flush_every_s`` > 0 (paced runs) events are written at least that often, and the
    twin applies the commands found on ``mill.control`` between flushes; a bad command goes to
    the dead letters with its reason. ``on_command(command, events_taken)`` follows each
    applied command (a resume journal); ``stop`` ends the run cleanly: what was taken from
    ``events`` is written, the rest is not taken.
    """
    for topic in (MILL_PASSES, MILL_TWIN, MILL_CONTROL, DEAD_LETTERS):
        topic.create(log)
    partitions = {t.name: log.partitions(t.name) for t in (MILL_PASSES, MILL_TWIN)}
    stats = PublishStats()
    control = log.consumer(f"{ASSET_ID}.control", [MILL_CONTROL.name]) if twin else None
    passes: list[Event] = []
    truth: list[Event] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        records = [
            record
            for topic, events in ((MILL_PASSES, passes), (MILL_TWIN, truth))
            for record in pack_by_partition(
                topic.name, events, topic.key_of, partitions[topic.name], encode, batch
            )
        ]
        if records:
            log.produce(records)
            log.flush()
        stats.records += len(records)
        passes.clear()
        truth.clear()
        last_flush = time.monotonic()
        if control is not None and twin is not None:
            _apply_commands(control, twin, log, stats, on_command)
        if on_flush is not None:
            on_flush(stats)

    for event in events:
        if stop is not None and stop.is_set():
            break  # taken but not counted: a resumed twin takes it again
        stats.events += 1
        if isinstance(event, PassRequest | PassActual):
            passes.append(event)
            stats.passes += isinstance(event, PassRequest)
        else:
            truth.append(event)
        if len(passes) >= batch * partitions[MILL_PASSES.name] or (
            flush_every_s and time.monotonic() - last_flush >= flush_every_s
        ):
            flush()
    flush()
    if control is not None:
        control.close()
    return stats


def _apply_commands(
    control: Consumer,
    twin: MillTwin,
    log: Log,
    stats: PublishStats,
    on_command: Callable[[TwinCommand, int], None] | None,
) -> None:
    def apply(command: TwinCommand) -> None:
        twin.apply(command)
        if on_command is not None:
            on_command(command, stats.events)

    applied, rejected = apply_commands(control, MILL_CONTROL.name, apply, log)
    stats.commands += applied
    stats.rejected_commands += rejected


def send_command(log: Log, command: str, args: dict[str, object]) -> TwinCommand:
    """Validate a command against a scratch twin, then put it on ``mill.control``."""
    event = TwinCommand(ts=utc(time.time()), command=command, args=args)
    MillTwin().apply(event)  # raises ValueError naming the argument
    MILL_CONTROL.create(log)
    log.produce([OutRecord(MILL_CONTROL.name, MILL_CONTROL.key_of(event).encode(), encode(event))])
    log.flush()
    return event
