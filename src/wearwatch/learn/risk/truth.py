"""Ground truth for training: maintenance events from a JSON-lines file or from the log.

A plant's maintenance log exported as one :class:`~wearwatch.events.MaintenanceEvent` per line,
or the ``fleet.maintenance`` topic a twin (or a CMMS bridge) writes. Training is not a stream:
an event that does not decode stops it with an error naming where it was and why, instead of
training on part of the truth.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "maintenance.jsonl"
>>> _ = path.write_text('{"type":"maintenance","ts":"2026-01-01T00:00:00Z",'
...                     '"asset_id":"pump-001","kind":"failure"}\\n\\n')
>>> [(e.asset_id, e.kind) for e in read_maintenance_file(path)]
[('pump-001', 'failure')]
>>> _ = path.write_text('{"type":"maintenance","ts":"2026-01-01T00:00:00Z",'
...                     '"asset_id":"pump-001","kind":"broken"}\\n')
>>> read_maintenance_file(path)
Traceback (most recent call last):
...
ValueError: maintenance.jsonl line 1: field `kind`: invalid enum value 'broken', got 'broken'
"""

from __future__ import annotations

from pathlib import Path

from wearwatch.bus.base import Log, read_events
from wearwatch.events import EventDecodeError, MaintenanceEvent, decode_event
from wearwatch.topics import MAINTENANCE


def read_maintenance_file(path: Path) -> list[MaintenanceEvent]:
    """Every event of a JSON-lines file (blank lines skipped), in file order."""
    events = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                events.append(decode_event(line.strip(), MaintenanceEvent))
            except EventDecodeError as exc:
                raise ValueError(f"{Path(path).name} line {number}: {exc}") from None
    return events


def read_maintenance_topic(log: Log, topic: str = MAINTENANCE.name) -> list[MaintenanceEvent]:
    """Every retained event of the maintenance topic (records may hold batches)."""
    return read_events(log, topic, MaintenanceEvent)
