"""Put the fleet twin on the log: readings as columnar records on ``fleet.readings`` (keyed by
machine), ground truth as JSON on ``fleet.maintenance`` (keyed by asset); in paced runs, live
commands from ``fleet.control``.

The twin is a producer like a plant: it keys by the field each topic declares and knows
nothing of the pipelines that read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from wearwatch.bus.base import Log, OutRecord, pack_by_partition
from wearwatch.columnar import pack_columns
from wearwatch.events import TwinCommand, encode, utc
from wearwatch.topics import DEAD_LETTERS, FLEET_CONTROL, MAINTENANCE, READINGS
from wearwatch.twin.control import apply_commands
from wearwatch.twin.fleet.commands import check_command
from wearwatch.twin.fleet.config import FleetConfig
from wearwatch.twin.fleet.simulation import FleetTwin

#: Readings per chunk when running as fast as possible.
FAST_CHUNK_READINGS = 500_000
#: Consumer group the twin reads its commands with.
CONTROL_GROUP = "fleet-twin.control"


@dataclass
class FleetPublishStats:
    ticks: int = 0
    readings: int = 0
    records: int = 0
    events: int = 0
    failures: int = 0
    fault_onsets: int = 0
    sensor_faults: int = 0
    commands: int = 0
    rejected_commands: int = 0
    #: Virtual time reached (epoch seconds).
    now_s: float = 0.0


def publish_fleet(
    log: Log,
    twin: FleetTwin,
    ticks: int,
    *,
    speed: float = 0.0,
    flush_every_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_flush: Callable[[FleetPublishStats], None] | None = None,
    on_command: Callable[[TwinCommand, int], None] | None = None,
    stop: threading.Event | None = None,
) -> FleetPublishStats:
    """Run ``twin`` for ``ticks`` ticks onto ``log``; returns what was written.

    ``speed`` 0: as fast as possible (virtual time; commands are not read). ``speed`` > 0:
    ``speed`` virtual seconds per wall second, written every ``flush_every_s`` of wall time;
    between writes the twin applies the commands waiting on ``fleet.control`` (a bad one goes
    to the dead letters with its reason). ``on_command(command, tick)`` follows each applied
    command (a resume journal); ``stop`` ends the run cleanly between two chunks (it also cuts
    the pacing wait short).
    """
    if speed < 0:
        raise ValueError(f"speed={speed!r}: expected ≥ 0 (0: as fast as possible)")
    for topic in (READINGS, MAINTENANCE, FLEET_CONTROL, DEAD_LETTERS):
        topic.create(log)
    readings_partitions = log.partitions(READINGS.name)
    truth_partitions = log.partitions(MAINTENANCE.name)
    if speed > 0:
        chunk = max(1, round(speed * flush_every_s / twin.tick_s))
    else:
        chunk = max(1, FAST_CHUNK_READINGS // twin.readings_per_tick)
    control = log.consumer(CONTROL_GROUP, [FLEET_CONTROL.name]) if speed > 0 else None
    stats = FleetPublishStats(now_s=twin.now_s)
    start_wall, start_tick, done = clock(), twin.tick, 0

    def apply(command: TwinCommand) -> None:
        twin.apply(command)
        if on_command is not None:
            on_command(command, twin.tick)

    wait_for = stop.wait if stop is not None else sleep
    try:
        while done < ticks and not (stop is not None and stop.is_set()):
            if control is not None:  # commands first: their events go out with this chunk
                applied, rejected = apply_commands(control, FLEET_CONTROL.name, apply, log)
                stats.commands += applied
                stats.rejected_commands += rejected
            n = min(chunk, ticks - done)
            columns, events = twin.step(n)
            records = pack_columns(READINGS.name, columns, "machine_id", readings_partitions)
            records += pack_by_partition(
                MAINTENANCE.name, events, MAINTENANCE.key_of, truth_partitions, encode
            )
            if records:
                log.produce(records)
                log.flush()
            done += n
            stats.ticks += n
            stats.readings += len(columns)
            stats.records += len(records)
            stats.events += len(events)
            for event in events:
                stats.failures += event.kind == "failure"
                stats.fault_onsets += event.kind == "fault_onset"
                stats.sensor_faults += event.kind == "sensor_fault"
            stats.now_s = twin.now_s
            if speed > 0:
                wait = start_wall + (twin.tick - start_tick) * twin.tick_s / speed - clock()
                if wait > 0:
                    wait_for(wait)
            if on_flush is not None:
                on_flush(stats)
    finally:
        if control is not None:
            control.close()
    return stats


def send_fleet_command(
    log: Log, command: str, args: dict[str, object], config: FleetConfig
) -> TwinCommand:
    """Check a command against the fleet ``config`` (a ValueError names the bad argument),
    then put it on ``fleet.control``; the running twin checks the machine is one of its own."""
    event = TwinCommand(ts=utc(time.time()), command=command, args=args)
    check_command(config, event)
    FLEET_CONTROL.create(log)
    key = FLEET_CONTROL.key_of(event).encode()
    log.produce([OutRecord(FLEET_CONTROL.name, key, encode(event))])
    log.flush()
    return event
