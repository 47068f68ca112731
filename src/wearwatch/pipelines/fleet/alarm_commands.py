"""Operators' alarm commands onto the log: how the API, the dashboard and ``wearwatch alarms``
acknowledge, clear and silence.

A command never touches the alarm stage's state directly: it is appended to
``fleet.alarm_input``, keyed by machine like the scores there, so the ``fleet-alarms`` flow
applies it in the one order that topic holds (and a replay applies it again, identically).

>>> from wearwatch.events import AlarmCommand, decode_event, utc
>>> cmd = AlarmCommand(ts=utc(60.0), machine_id="pump-001", action="acknowledge",
...                    alarm_id="pump-001/machine/1", by="ann")
>>> record = alarm_command_record(cmd)
>>> record.topic, record.key
('fleet.alarm_input', b'pump-001')
>>> decode_event(record.value, AlarmCommand) == cmd
True
"""

from __future__ import annotations

from datetime import datetime

from wearwatch.bus.base import Log, OutRecord, partition_for
from wearwatch.events import AlarmCommand, decode_record, encode, utc
from wearwatch.topics import ALARM_INPUT

#: Records read per step back from the end of a partition (:func:`latest_event_time`).
TAIL_CHUNK = 500


def alarm_command_record(cmd: AlarmCommand) -> OutRecord:
    """The record carrying ``cmd`` on ``fleet.alarm_input``, keyed as the scores there are."""
    return OutRecord(ALARM_INPUT.name, ALARM_INPUT.key_of(cmd).encode(), encode(cmd))


def send_alarm_command(log: Log, cmd: AlarmCommand) -> None:
    """Append ``cmd`` to ``fleet.alarm_input`` (created if missing) and wait until it is
    durable. Whether the alarm stage accepts it is decided there, in log order: a refusal is
    a dead letter naming the reason."""
    ALARM_INPUT.create(log)
    log.produce([alarm_command_record(cmd)])
    log.flush()


def latest_event_time(log: Log, machine_id: str, *, max_records: int = 200_000) -> datetime | None:
    """The event time a command for ``machine_id`` is stamped with: the latest ``ts`` among
    the machine's events on ``fleet.alarm_input``, found by reading its partition back from
    the end (at most ``max_records``); None if the machine has none there yet. A command so
    stamped never moves the alarm stage's watermark past the scores."""
    if ALARM_INPUT.name not in log.topics():
        return None
    partition = partition_for(machine_id.encode(), log.partitions(ALARM_INPUT.name))
    end = log.end_offsets(ALARM_INPUT.name).get(partition, 0)
    stop = max(0, end - max_records)
    while end > stop:
        start = max(stop, end - TAIL_CHUNK)
        latest = None
        for record in log.read(ALARM_INPUT.name, partition, start, end - start):
            decoded = decode_record(record.value, ALARM_INPUT.event_type)
            for event, ts in zip(decoded.events, decoded.times, strict=True):
                if event.machine_id == machine_id and (latest is None or ts > latest):
                    latest = ts
        if latest is not None:
            return utc(latest)
        end = start
    return None
