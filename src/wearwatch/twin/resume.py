"""Twins that resume: a journal of the commands a twin applied and of the position it reached,
and the fast-forward that rebuilds the twin's state from it.

A twin is deterministic given its seed, except for live commands, which arrive when an operator
sends them. So a twin run is fully described by its identity (seed, size, configuration), the
commands it applied with the *position* at which each took effect, and the position its
published output reached. On restart the twin is rebuilt from scratch and fast-forwarded without
publishing — :meth:`FleetTwin.advance` (ground truth only, no readings) for the fleet, the
SimPy run with its events discarded for the mill — re-applying each command at its position, and
then continues: event time continues, ids never repeat, and after a clean stop no output is
published twice.

Positions: the fleet twin's tick; the mill twin's count of events taken from its event
stream (commands are applied between two events, and the SimPy run is deterministic, so the
count pins the moment). A command whose position equals the journal's end (applied, its events
not yet published when the twin stopped) is applied after the fast-forward, so its events go out
with the next output.

What a SIGKILL can repeat: the output published since the last position was written (the
position is written after every flush, about once a second of wall time) is published again on
restart (the same readings or passes, with the same timestamps and ids); a command journalled
but not yet committed on the control topic is applied twice.

Files in the state directory: ``identity.json`` (refuses a journal of another run),
``commands.jsonl`` (appended and fsynced per command), ``position.json`` (replaced atomically).

>>> import tempfile
>>> from pathlib import Path
>>> from wearwatch.events import TwinCommand, utc
>>> d = Path(tempfile.mkdtemp())
>>> j = TwinJournal(d, {"twin": "mill", "seed": 7})
>>> j.record_command(12, TwinCommand(ts=utc(0), command="shock", args={"wear": 0.9}))
>>> j.record_position(40, 1000.0)
>>> j2 = TwinJournal(d, {"twin": "mill", "seed": 7})
>>> j2.position, [(e.at, e.command.command) for e in j2.commands]
(40, [(12, 'shock')])
>>> try:
...     TwinJournal(d, {"twin": "mill", "seed": 8})
... except ValueError as exc:
...     print(str(exc).split(": ", 1)[1])
holds a run with seed=7, not seed=8; use another state directory or remove it to start over
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from wearwatch.events import Event, TwinCommand, decode_event, encode
from wearwatch.twin.fleet.simulation import FleetTwin
from wearwatch.twin.mill.simulation import MillTwin


@dataclass(frozen=True)
class JournalEntry:
    """A command the twin applied, at the position it took effect."""

    at: int
    command: TwinCommand


class TwinJournal:
    """The resume journal of one twin run in ``directory`` (created if missing)."""

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        ident = directory / "identity.json"
        wanted = json.loads(json.dumps(identity))  # as stored: JSON types
        if ident.exists():
            stored = json.loads(ident.read_text())
            for key in sorted(set(stored) | set(wanted)):
                if stored.get(key) != wanted.get(key):
                    held = (
                        f"a run with {key}={stored[key]!r}"
                        if key in stored
                        else f"a run of an older wearwatch (no {key})"
                    )
                    raise ValueError(
                        f"state dir {directory}: holds {held}, not {key}={wanted.get(key)!r}; "
                        "use another state directory or remove it to start over"
                    )
        else:
            _atomic_write(ident, json.dumps(wanted, sort_keys=True).encode())
        self.commands: list[JournalEntry] = []
        log = directory / "commands.jsonl"
        if log.exists():
            data = log.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            if len(whole) < len(data):  # a line cut short by a crash: drop it
                with log.open("r+b") as f:
                    f.truncate(len(whole))
            for line in whole.splitlines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    raw = json.dumps(item["command"]).encode()
                    entry = JournalEntry(int(item["at"]), decode_event(raw, TwinCommand))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{log}: unreadable line {line[:80]!r} ({exc})") from None
                self.commands.append(entry)
        self.position = 0
        self.virtual_s: float | None = None
        pos = directory / "position.json"
        if pos.exists():
            data = json.loads(pos.read_text())
            self.position = int(data["position"])
            self.virtual_s = data.get("virtual_s")
        self._log = log

    @property
    def resumed(self) -> bool:
        """True when the journal holds a run to continue."""
        return self.position > 0 or bool(self.commands)

    def record_command(self, at: int, command: TwinCommand) -> None:
        """Append a command applied at position ``at`` (durable before returning)."""
        line = json.dumps({"at": at, "command": msgspec.json.decode(encode(command))})
        with self._log.open("ab") as f:
            f.write(line.encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.commands.append(JournalEntry(at, command))

    def record_position(self, at: int, virtual_s: float) -> None:
        """The position the twin's published output has reached (and its virtual time)."""
        self.position = at
        self.virtual_s = virtual_s
        payload = json.dumps({"position": at, "virtual_s": virtual_s}).encode()
        _atomic_write(self.directory / "position.json", payload)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def resume_fleet(twin: FleetTwin, journal: TwinJournal) -> int:
    """Fast-forward a fresh ``twin`` to the journal's position, re-applying its commands at
    their ticks; returns the ticks skipped. The events of re-applied commands are dropped
    (published before), except those of commands at the very end (see the module docstring)."""
    if twin.tick != 0:
        raise ValueError(f"tick={twin.tick}: resume a fresh twin")
    for entry in journal.commands:
        if entry.at > journal.position:
            raise ValueError(f"journal: a command at tick {entry.at} after the position")
        if entry.at < journal.position:
            twin.advance(entry.at - twin.tick)
            twin.apply(entry.command)
    twin.advance(journal.position - twin.tick)
    for entry in journal.commands:
        if entry.at == journal.position:
            twin.apply(entry.command)
    return twin.tick


def resume_mill(twin: MillTwin, journal: TwinJournal, until_s: float | None = None) -> int:
    """Fast-forward a fresh ``twin`` through the journal's count of events (discarded),
    re-applying its commands where they were applied; returns the events skipped."""
    events: Iterator[Event] = twin.events(until_s=until_s)
    taken = 0
    pending = list(journal.commands)
    while True:
        while pending and pending[0].at == taken:
            twin.apply(pending.pop(0).command)
        if taken >= journal.position:
            break
        if next(events, None) is None:
            break
        taken += 1
    if pending:
        raise ValueError(f"journal: a command at event {pending[0].at} after the position")
    return taken
