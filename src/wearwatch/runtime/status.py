"""Component status files: how a running worker or twin tells the API what it is doing.

``wearwatch up`` runs each component in its own process. Each writes one small JSON file
(``<directory>/<name>.json``) about once a second; the API reads the directory for ``GET
/health`` and ``GET /metrics``. A file is replaced atomically (temp file + rename), so a
reader never sees half of one. A file not updated for a while belongs to a component that is
stuck or gone: :meth:`ComponentStatus.age_s` tells how long.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> _ = write_status(d, ComponentStatus(name="worker-fleet", kind="worker", pid=42,
...     updated_at=1000.0, counters={"events_in": 7}, lag={"fleet.readings": 3}))
>>> [(s.name, s.counters["events_in"], s.total_lag) for s in read_statuses(d)]
[('worker-fleet', 7, 3)]
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Literal

import msgspec

#: A component name: also its file name.
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class ComponentStatus(msgspec.Struct, kw_only=True):
    """What one process reports. Counters are totals since the process started."""

    name: str
    kind: Literal["worker", "twin", "api", "sink"]
    pid: int
    #: Wall-clock time of this report (epoch seconds).
    updated_at: float
    started_at: float = 0.0
    state: Literal["starting", "running", "outage", "stopped", "failed"] = "running"
    #: Consumer group (workers).
    group: str = ""
    counters: dict[str, int] = {}
    #: Records behind the end of each input topic (workers), summed over partitions.
    lag: dict[str, int] = {}
    #: Last checkpoint: how long it took, and how many so far (workers).
    checkpoint_ms: float | None = None
    checkpoints: int = 0
    #: Latest event time the component has produced or processed (epoch seconds).
    event_time: float | None = None
    #: Free-form facts worth showing (model versions, speed, the twin's virtual time...).
    info: dict[str, str] = {}
    #: Why the state is ``outage`` or ``failed``.
    detail: str = ""

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def age_s(self, now: float | None = None) -> float:
        """Seconds since this report was written."""
        return (time.time() if now is None else now) - self.updated_at


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ComponentStatus)


def write_status(directory: Path, status: ComponentStatus) -> Path:
    """Replace ``<directory>/<status.name>.json`` atomically; returns its path."""
    if not NAME.match(status.name):
        raise ValueError(f"name={status.name!r}: expected [a-z0-9][a-z0-9_.-]* (≤ 64 chars)")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{status.name}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(_encoder.encode(status))
    os.replace(tmp, path)
    return path


def read_statuses(directory: Path) -> list[ComponentStatus]:
    """Every readable status in ``directory``, sorted by name (a file that does not decode —
    say, written by another version — is skipped rather than failing the health check)."""
    out: list[ComponentStatus] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            out.append(_decoder.decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
    return out
