"""The API's read model: the pipelines' output topics folded into bounded, in-memory state.

The API process never shares memory with the workers. It tails the output topics itself (with
``Log.read`` and its own offsets: no consumer group, so it never takes partitions from a
worker) and keeps, per machine and per product line, the latest state and short histories:

- "latest" lookups (a machine's score or health) are dict lookups of bytes encoded when the
  record was applied, so the API returns them as they are and their cost does not grow with
  the log's history;
- every history is a ring buffer (``collections.deque(maxlen=…)``): features and scores per
  machine (and window), alarm transitions and twin ground truth per machine, pass outcomes
  per product line, the mill twin's wear; memory is bounded whatever the log holds.

On start each topic is read from ``max(0, end − tail_records)`` per partition (``fleet.alarms``
from 0: alarms are few and their latest state needs every transition), so a restarted API
shows the latest state at once; then :meth:`LiveView.poll` follows new records. A topic that
does not exist yet is looked for again at every poll and read from its start once it appears.

The view is a reader: a record that does not decode is counted (``counts()["undecodable"]``)
and skipped — the workers that wrote it already dead-letter bad input.

Threads: :meth:`LiveView.poll` runs in one thread (:meth:`LiveView.run`); readers run in
others. One lock guards the state; readers copy under it, the log is read outside it, and a
poll holds it for at most :data:`APPLY_SLICE` records at a time. The ``latest_*`` lookups take
no lock: each is one dict lookup and one attribute read of an immutable value (atomic under
the GIL), so the API's hot endpoints never wait for a poll.

>>> from wearwatch.bus.memory import MemoryLog
>>> from wearwatch.bus.base import OutRecord
>>> from wearwatch.events import MachineHealth, encode, utc
>>> log = MemoryLog()
>>> log.create_topic("fleet.health")
>>> h = MachineHealth(ts=utc(60.0), machine_id="p1", risk=0.1, risk_level="low", health=92.0)
>>> log.produce([OutRecord("fleet.health", b"p1", encode(h))])
>>> view = LiveView(log)
>>> view.poll()
1
>>> view.latest_health_json("p1") == encode(h), view.machine("p1").health
(True, 92.0)
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from wearwatch.bus.base import Log, Record
from wearwatch.events import (
    SEVERITIES,
    Alarm,
    AnomalyScore,
    DeadLetter,
    FeatureVector,
    MachineHealth,
    MaintenanceEvent,
    PassOutcome,
    Setpoint,
    TwinTelemetry,
    decode_record,
    encode,
)
from wearwatch.topics import (
    ALARMS,
    DEAD_LETTERS,
    FEATURES,
    HEALTH,
    MAINTENANCE,
    MILL_DECISIONS,
    MILL_OUTCOMES,
    MILL_TWIN,
    SCORES,
    Topic,
)

#: The topics the view folds, in the order a poll reads them.
VIEW_TOPICS: tuple[Topic, ...] = (
    FEATURES,
    SCORES,
    HEALTH,
    ALARMS,
    MAINTENANCE,
    MILL_OUTCOMES,
    MILL_DECISIONS,
    MILL_TWIN,
    DEAD_LETTERS,
)
#: Topics read from offset 0 on start, whatever ``tail_records`` says.
FROM_START: frozenset[str] = frozenset({ALARMS.name})
#: Records applied per hold of the lock: readers wait at most that long (~5 ms) at start-up.
APPLY_SLICE = 256
#: The mill router's EWMA weight (``RouterConfig.alpha``) and the "recent" window of a line.
EWMA_ALPHA = 0.2
RECENT_PASSES = 100
#: The mill twin's telemetry name for the true roll wear (``twin/mill/simulation.py``).
WEAR = "roll_wear"
#: ``alarms(status=…)``: an alarm's own statuses, or ``open`` (any but cleared).
ALARM_STATUSES = ("active", "recovering", "cleared", "open")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

Subscriber = Callable[[str, bytes], None]


class MachineSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One machine at a glance: latest health and score, its open alarms. ``None``/``""``:
    nothing of that kind seen yet."""

    machine_id: str
    health: float | None = None
    risk: float | None = None
    risk_level: str = ""
    time_to_maintenance_h: float | None = None
    #: The latest anomaly score's severity and reason.
    severity: str = ""
    reason: str = ""
    open_alarms: int = 0
    #: The highest severity among open (not cleared) alarms; ``""`` when none is open.
    worst_alarm: str = ""
    #: The latest event time of the machine's features, scores, health and alarms.
    event_time: datetime | None = None
    #: ``anomaly`` and ``risk``: the model versions behind the latest score and health.
    model_versions: dict[str, str] = {}


class LineSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One mill product line: how its router serves and how good each force is.

    ``passes``, ``router_state``, ``model_share``, the APEs and ``last_ts`` come from pass
    outcomes; ``source`` and ``reason`` from the latest router decision (setpoint), which is
    made at the request, before its outcome. APE keys: ``physics``, ``model`` (the learner the
    router serves) and ``served``; a key is missing until a value was seen.
    """

    line: str
    passes: int = 0
    router_state: str = ""
    source: str = ""
    reason: str = ""
    #: Share of the last ``RECENT_PASSES`` outcomes served by the model.
    model_share: float = 0.0
    #: EWMAs (α = 0.2, as the router's trust) of each APE, in %.
    ewma_ape: dict[str, float] = {}
    #: Mean APE over the last ``RECENT_PASSES`` outcomes, in %.
    mean_ape_recent: dict[str, float] = {}
    last_ts: datetime | None = None


class FeatureRing:
    """The last ``maxlen`` feature vectors of one machine and window, stored compactly.

    A vector is ~2 KB as a Struct (35 features in a dict); here it is its time, its feature
    names (one tuple shared by every vector with the same names) and its values as a float
    array, ~0.5 KB: 200 machines × 2 windows × 720 vectors fit in ~150 MB rather than ~600.
    Reading rebuilds equal FeatureVectors.

    >>> from wearwatch.events import utc
    >>> ring = FeatureRing(2)
    >>> for k in range(3):
    ...     ring.append(FeatureVector(ts=utc(k), machine_id="p1", window_s=5.0,
    ...                               features={"vib.mean": k + 0.5, "vib.max": 2.0}))
    >>> [(v.ts.second, v.features) for v in ring.vectors("p1", 5.0)]
    [(1, {'vib.mean': 1.5, 'vib.max': 2.0}), (2, {'vib.mean': 2.5, 'vib.max': 2.0})]
    """

    __slots__ = ("_names", "rows")

    #: Distinct name tuples interned per ring before the table is reset (bounds odd input).
    MAX_NAME_SETS = 64

    def __init__(self, maxlen: int) -> None:
        self.rows: deque[tuple[datetime, tuple[str, ...], array[float]]] = deque(maxlen=maxlen)
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, vector: FeatureVector) -> None:
        names = tuple(vector.features)
        shared = self._names.get(names)
        if shared is None:
            if len(self._names) >= self.MAX_NAME_SETS:
                self._names.clear()
            shared = self._names[names] = names
        self.rows.append((vector.ts, shared, array("d", vector.features.values())))

    def vectors(
        self, machine_id: str, window_s: float, since: datetime | None = None
    ) -> list[FeatureVector]:
        """The vectors kept, oldest first; ``since``: only those with ``ts`` after it."""
        return _vectors(list(self.rows), machine_id, window_s, since)


def _vectors(
    rows: list[tuple[datetime, tuple[str, ...], array[float]]],
    machine_id: str,
    window_s: float,
    since: datetime | None,
) -> list[FeatureVector]:
    return [
        FeatureVector(
            ts=ts,
            machine_id=machine_id,
            window_s=window_s,
            features=dict(zip(names, values, strict=True)),
        )
        for ts, names, values in rows
        if since is None or ts > since
    ]


@dataclass
class _Machine:
    """What the view keeps for one machine."""

    score: AnomalyScore | None = None
    score_json: bytes | None = None
    health: MachineHealth | None = None
    health_json: bytes | None = None
    event_time: datetime | None = None
    scores: deque[AnomalyScore] = field(default_factory=deque)
    features: dict[float, FeatureRing] = field(default_factory=dict)
    history: deque[Alarm] = field(default_factory=deque)
    #: Open alarms (latest snapshot not cleared), by id.
    open: dict[str, Alarm] = field(default_factory=dict)


@dataclass
class _Line:
    """What the view keeps for one product line."""

    passes: int = 0
    router_state: str = ""
    source: str = ""
    reason: str = ""
    last_ts: datetime | None = None
    ewma: dict[str, float] = field(default_factory=dict)
    #: The last RECENT_PASSES outcomes: (physics APE, model APE or None, served APE, by model).
    recent: deque[tuple[float, float | None, float, bool]] = field(
        default_factory=lambda: deque(maxlen=RECENT_PASSES)
    )
    outcomes: deque[PassOutcome] = field(default_factory=deque)


class LiveView:
    """The latest state of the plant, folded from the log (see the module docstring).

    ``history``: features per (machine, window), scores, alarm transitions and ground truth
    per machine; ``outcomes``: pass outcomes per product line and twin wear samples;
    ``cleared_alarms``: cleared alarms remembered (open ones are always kept); ``learner``:
    the learner the mill router serves (the mill pipeline's ``default_learner``), whose APE
    is the line's ``model`` APE.
    """

    def __init__(
        self,
        log: Log,
        *,
        history: int = 720,
        outcomes: int = 5000,
        tail_records: int = 50_000,
        cleared_alarms: int = 5000,
        learner: str = "rls",
    ) -> None:
        for name, value in (
            ("history", history),
            ("outcomes", outcomes),
            ("tail_records", tail_records),
            ("cleared_alarms", cleared_alarms),
        ):
            if value < 1:
                raise ValueError(f"{name}={value}: expected at least 1")
        self.log = log
        self.history = history
        self.outcomes = outcomes
        self.tail_records = tail_records
        self.cleared_alarms = cleared_alarms
        self.learner = learner
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        #: Next offset to read, per topic and partition (a topic is absent until it exists).
        self._positions: dict[str, dict[int, int]] = {}
        #: The end offsets the last poll saw, per topic and partition.
        self._ends: dict[str, dict[int, int]] = {}
        self._machines: dict[str, _Machine] = {}
        #: Latest snapshot per alarm id; cleared ones also in ``_cleared`` (eviction order).
        self._alarms: dict[str, Alarm] = {}
        self._cleared: dict[str, None] = {}
        self._truth: dict[str, deque[MaintenanceEvent]] = {}
        self._lines: dict[str, _Line] = {}
        self._wear: deque[tuple[datetime, float]] = deque(maxlen=outcomes)
        self._counts: dict[str, int] = {"undecodable": 0, "subscriber_errors": 0, "poll_errors": 0}
        #: The last poll error :meth:`run` met, ``""`` once a poll succeeds again.
        self.last_error = ""
        self._subscribers: list[Subscriber] = []
        self._started = False

    # -- following the log -------------------------------------------------------------------

    def poll(self, max_records: int = 5000) -> int:
        """Read and apply up to ``max_records`` new records; returns how many were read.

        Callbacks of :meth:`subscribe` run here, after the state is updated, in log order.
        """
        with self._poll_lock:
            backlog = self._backlog()
            read = 0
            while backlog and read < max_records:
                share = max(1, (max_records - read) // len(backlog))
                still: list[tuple[Topic, int, int]] = []
                for topic, partition, end in backlog:
                    budget = min(share, max_records - read)
                    if budget <= 0:
                        break
                    start = self._positions[topic.name][partition]
                    records = self.log.read(topic.name, partition, start, budget)
                    if not records:
                        continue
                    read += len(records)
                    for i in range(0, len(records), APPLY_SLICE):
                        chunk = records[i : i + APPLY_SLICE]
                        with self._lock:
                            self._positions[topic.name][partition] = chunk[-1].offset + 1
                            # Who hears of these records: the subscribers when they are applied.
                            subscribers = list(self._subscribers)
                            notes: list[tuple[str, Any]] | None = [] if subscribers else None
                            self._apply(topic, chunk, notes)
                        if notes:
                            self._notify(subscribers, notes)
                    if records[-1].offset + 1 < end:
                        still.append((topic, partition, end))
                backlog = still
            return read

    def catch_up(self, max_records: int = 5000) -> int:
        """Poll until the view has applied every record the log held when called (at start:
        the tail); returns how many records were read. The API calls it before serving, so
        its first answers are the latest state and subscribers hear only new records."""
        existing = self.log.topics()
        target = {t.name: self.log.end_offsets(t.name) for t in VIEW_TOPICS if t.name in existing}
        total = 0
        while read := self.poll(max_records):
            total += read
            with self._lock:
                if all(
                    self._positions.get(topic, {}).get(p, 0) >= end
                    for topic, ends in target.items()
                    for p, end in ends.items()
                ):
                    break
        return total

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Poll until ``stop`` is set, pausing ``interval_s`` whenever caught up.

        A poll that fails (the log unreachable, a broker outage) is counted (``poll_errors``),
        its error kept in :attr:`last_error`, and retried after ``interval_s``: the API keeps
        serving the last state it has, and catches up once the log answers again.
        """
        while not stop.is_set():
            try:
                read = self.poll()
            except Exception as exc:  # the reader must outlive a log outage
                with self._lock:
                    self._counts["poll_errors"] += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                read = 0
            else:
                self.last_error = ""
            if read == 0:
                stop.wait(interval_s)

    def _backlog(self) -> list[tuple[Topic, int, int]]:
        """(topic, partition, end offset) of every partition with records not read yet."""
        existing = self.log.topics()
        ends = {t.name: self.log.end_offsets(t.name) for t in VIEW_TOPICS if t.name in existing}
        out: list[tuple[Topic, int, int]] = []
        with self._lock:
            self._ends = ends
            for topic in VIEW_TOPICS:
                if topic.name not in ends:
                    continue
                positions = self._positions.get(topic.name)
                if positions is None:
                    # First sight: the tail of a topic that existed at start, all of a newer one.
                    tail = topic.name not in FROM_START and not self._started
                    positions = self._positions[topic.name] = {
                        p: max(0, end - self.tail_records) if tail else 0
                        for p, end in ends[topic.name].items()
                    }
                for partition, end in sorted(ends[topic.name].items()):
                    if positions.setdefault(partition, 0) < end:
                        out.append((topic, partition, end))
        self._started = True
        return out

    def _apply(self, topic: Topic, records: Iterable[Record], notes: list | None) -> None:
        counts = self._counts
        dirty: set[str] = set()
        for record in records:
            decoded = decode_record(record.value, topic.event_type)
            if decoded.rejected:
                counts["undecodable"] += len(decoded.rejected)
            counts[topic.name] = counts.get(topic.name, 0) + len(decoded.events)
            for event in decoded.events:
                self._apply_event(event, dirty, notes)
        for machine_id in dirty:  # each machine's latest, encoded once per chunk read
            m = self._machines[machine_id]
            if m.score is not None:
                m.score_json = encode(m.score)
            if m.health is not None:
                m.health_json = encode(m.health)

    def _apply_event(self, event: Any, dirty: set[str], notes: list | None) -> None:
        if isinstance(event, FeatureVector):
            m = self._machine(event.machine_id, event.ts)
            ring = m.features.get(event.window_s)
            if ring is None:
                ring = m.features[event.window_s] = FeatureRing(self.history)
            ring.append(event)
        elif isinstance(event, AnomalyScore):
            m = self._machine(event.machine_id, event.ts)
            m.score = event
            m.scores.append(event)
            dirty.add(event.machine_id)
        elif isinstance(event, MachineHealth):
            m = self._machine(event.machine_id, event.ts)
            m.health = event
            dirty.add(event.machine_id)
            if notes is not None:
                notes.append(("health", event))
        elif isinstance(event, Alarm):
            self._apply_alarm(event)
            if notes is not None:
                notes.append(("alarm", event))
        elif isinstance(event, MaintenanceEvent):
            ring = self._truth.get(event.asset_id)
            if ring is None:
                ring = self._truth[event.asset_id] = deque(maxlen=self.history)
            ring.append(event)
        elif isinstance(event, PassOutcome):
            self._apply_outcome(event)
            if notes is not None:
                notes.append(("outcome", event))
        elif isinstance(event, Setpoint):
            line = self._line(event.line, event.ts)
            line.source, line.reason = event.source, event.reason
        elif isinstance(event, TwinTelemetry):
            if event.name == WEAR:
                self._wear.append((event.ts, event.value))
        elif isinstance(event, DeadLetter):
            key = f"dead_letters:{event.source_topic}"
            self._counts[key] = self._counts.get(key, 0) + 1

    def _machine(self, machine_id: str, ts: datetime) -> _Machine:
        m = self._machines.get(machine_id)
        if m is None:
            h = self.history
            m = self._machines[machine_id] = _Machine(
                scores=deque(maxlen=h), history=deque(maxlen=h)
            )
        if m.event_time is None or ts > m.event_time:
            m.event_time = ts
        return m

    def _apply_alarm(self, alarm: Alarm) -> None:
        m = self._machine(alarm.machine_id, alarm.ts)
        m.history.append(alarm)
        self._alarms[alarm.alarm_id] = alarm
        if alarm.status == "cleared":
            m.open.pop(alarm.alarm_id, None)
            self._cleared.pop(alarm.alarm_id, None)
            self._cleared[alarm.alarm_id] = None
            while len(self._cleared) > self.cleared_alarms:
                oldest = next(iter(self._cleared))
                del self._cleared[oldest]
                del self._alarms[oldest]
        else:
            m.open[alarm.alarm_id] = alarm
            self._cleared.pop(alarm.alarm_id, None)

    def _line(self, name: str, ts: datetime) -> _Line:
        line = self._lines.get(name)
        if line is None:
            line = self._lines[name] = _Line(outcomes=deque(maxlen=self.outcomes))
        if line.last_ts is None or ts > line.last_ts:
            line.last_ts = ts
        return line

    def _apply_outcome(self, o: PassOutcome) -> None:
        line = self._line(o.line, o.ts)
        line.passes += 1
        line.router_state = o.router_state
        line.outcomes.append(o)
        model = o.model_ape.get(self.learner)
        line.recent.append((o.physics_ape, model, o.served_ape, o.source == "model"))
        for key, ape in (("physics", o.physics_ape), ("model", model), ("served", o.served_ape)):
            if ape is None:
                continue
            prev = line.ewma.get(key)
            line.ewma[key] = ape if prev is None else EWMA_ALPHA * ape + (1 - EWMA_ALPHA) * prev

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(kind, json_bytes)`` from the polling thread for every Alarm
        (``"alarm"``), PassOutcome (``"outcome"``) and MachineHealth (``"health"``) applied
        from now on, once each, in log order (subscribe after :meth:`catch_up` to hear only
        new records, not the start-up tail). A callback that raises is removed (counted as
        ``subscriber_errors``); it never stops the view. Returns the unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _notify(self, subscribers: list[Subscriber], notes: list[tuple[str, Any]]) -> None:
        payloads = [(kind, encode(event)) for kind, event in notes]
        for callback in subscribers:
            for kind, payload in payloads:
                try:
                    callback(kind, payload)
                except Exception:  # a broken subscriber must not stop the view
                    with self._lock:
                        if callback in self._subscribers:
                            self._subscribers.remove(callback)
                        self._counts["subscriber_errors"] += 1
                    break

    # -- fleet -------------------------------------------------------------------------------

    def machine_ids(self) -> list[str]:
        """Every machine seen on a fleet topic, sorted."""
        with self._lock:
            return sorted(self._machines)

    def machine(self, machine_id: str) -> MachineSummary | None:
        with self._lock:
            m = self._machines.get(machine_id)
            return None if m is None else _summary(machine_id, m)

    def machines(self) -> list[MachineSummary]:
        """Every machine's summary, sorted by machine id."""
        with self._lock:
            return [_summary(mid, self._machines[mid]) for mid in sorted(self._machines)]

    def latest_score_json(self, machine_id: str) -> bytes | None:
        """The latest AnomalyScore as JSON, encoded when applied (an O(1) lookup)."""
        m = self._machines.get(machine_id)  # one dict read of immutable bytes: atomic
        return None if m is None else m.score_json

    def latest_health_json(self, machine_id: str) -> bytes | None:
        """The latest MachineHealth as JSON, encoded when applied (an O(1) lookup)."""
        m = self._machines.get(machine_id)
        return None if m is None else m.health_json

    def latest_score(self, machine_id: str) -> AnomalyScore | None:
        m = self._machines.get(machine_id)
        return None if m is None else m.score

    def latest_health(self, machine_id: str) -> MachineHealth | None:
        m = self._machines.get(machine_id)
        return None if m is None else m.health

    def features(
        self, machine_id: str, window_s: float, since: datetime | None = None
    ) -> list[FeatureVector]:
        """The machine's last ``history`` feature vectors of one window size, oldest first;
        ``since``: only those with ``ts`` after it."""
        window_s = float(window_s)
        with self._lock:
            m = self._machines.get(machine_id)
            ring = None if m is None else m.features.get(window_s)
            rows = [] if ring is None else list(ring.rows)
        return _vectors(rows, machine_id, window_s, since)  # built outside the lock

    def window_sizes(self, machine_id: str) -> list[float]:
        """The feature window sizes (s) seen for a machine, ascending."""
        with self._lock:
            m = self._machines.get(machine_id)
            return [] if m is None else sorted(m.features)

    def scores(self, machine_id: str, since: datetime | None = None) -> list[AnomalyScore]:
        """The machine's last ``history`` anomaly scores, oldest first; ``since``: after it."""
        with self._lock:
            m = self._machines.get(machine_id)
            return _after(None if m is None else m.scores, since)

    def alarms(
        self, status: str | None = None, severity: str | None = None, machine_id: str | None = None
    ) -> list[Alarm]:
        """The latest snapshot of every alarm kept, by (raised_at, alarm_id). ``status``: one
        of ``active``, ``recovering``, ``cleared`` or ``open`` (not cleared); ``severity``: that
        severity exactly; ``machine_id``: that machine's."""
        if status is not None and status not in ALARM_STATUSES:
            raise ValueError(f"status={status!r}: expected one of {', '.join(ALARM_STATUSES)}")
        if severity is not None and severity not in SEVERITIES:
            raise ValueError(f"severity={severity!r}: expected one of {', '.join(SEVERITIES)}")
        with self._lock:
            if machine_id is not None:
                m = self._machines.get(machine_id)
                if m is None:
                    return []
                if status == "open" or status in ("active", "recovering"):
                    pool: Iterable[Alarm] = list(m.open.values())
                else:
                    pool = [a for a in self._alarms.values() if a.machine_id == machine_id]
            elif status in ("open", "active", "recovering"):
                pool = [a for m in self._machines.values() for a in m.open.values()]
            else:
                pool = list(self._alarms.values())
        out = [
            a
            for a in pool
            if (status is None or status == "open" or a.status == status)
            and (severity is None or a.severity == severity)
        ]
        out.sort(key=lambda a: (a.raised_at, a.alarm_id))
        return out

    def alarm(self, alarm_id: str) -> Alarm | None:
        with self._lock:
            return self._alarms.get(alarm_id)

    def alarm_history(self, machine_id: str) -> list[Alarm]:
        """The machine's last ``history`` alarm transitions, in log order."""
        with self._lock:
            m = self._machines.get(machine_id)
            return [] if m is None else list(m.history)

    def truth(self, machine_id: str) -> list[MaintenanceEvent]:
        """The twin's ground truth for an asset (faults, failures, repairs): its last
        ``history`` maintenance events, in log order. Twin-only: a real plant has none."""
        with self._lock:
            return list(self._truth.get(machine_id, ()))

    def event_time(self, machine_id: str) -> datetime | None:
        """The latest event time seen for the machine (what an alarm command is stamped with,
        so it never moves a watermark past the data)."""
        with self._lock:
            m = self._machines.get(machine_id)
            return None if m is None else m.event_time

    # -- mill --------------------------------------------------------------------------------

    def mill_lines(self) -> list[LineSummary]:
        """Every product line seen, sorted by name."""
        with self._lock:
            return [_line_summary(name, self._lines[name]) for name in sorted(self._lines)]

    def mill_outcomes(
        self, since: datetime | None = None, line: str | None = None, limit: int = 1000
    ) -> list[PassOutcome]:
        """The latest ``limit`` pass outcomes kept (after ``since``, of ``line``), ordered by
        (ts, line, slab_id, pass_no): an order that does not depend on how the view's reads of
        the lines' partitions interleaved."""
        if limit < 0:
            raise ValueError(f"limit={limit}: expected 0 or more")
        with self._lock:
            names = [line] if line is not None else list(self._lines)
            out = [
                o
                for name in names
                if name in self._lines
                for o in _after(self._lines[name].outcomes, since)
            ]
        out.sort(key=lambda o: (o.ts, o.line, o.slab_id, o.pass_no))
        return out[-limit:] if limit else []

    def mill_wear(self, since: datetime | None = None) -> list[tuple[datetime, float]]:
        """The mill twin's true roll wear, (ts, wear) oldest first, the last ``outcomes``
        samples. Twin-only ground truth: a real mill cannot measure it, no pipeline reads it."""
        with self._lock:
            return [(ts, v) for ts, v in self._wear if since is None or ts > since]

    # -- plumbing ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Events applied per topic, ``undecodable`` items skipped, dead letters per source
        topic (``dead_letters:<topic>``), ``subscriber_errors`` and ``poll_errors``."""
        with self._lock:
            return dict(self._counts)

    def lag(self) -> dict[str, int]:
        """Per topic, the records the view has not applied yet of those the last poll saw at
        the end of the log (summed over partitions); 0 everywhere once caught up."""
        with self._lock:
            return {
                topic: sum(
                    max(0, end - self._positions[topic].get(p, 0)) for p, end in ends.items()
                )
                for topic, ends in self._ends.items()
            }

    def positions(self) -> dict[str, dict[int, int]]:
        """The next offset the view reads, per topic and partition."""
        with self._lock:
            return {t: dict(p) for t, p in self._positions.items()}


def _after(ring: Iterable[Any] | None, since: datetime | None) -> list[Any]:
    if ring is None:
        return []
    if since is None:
        return list(ring)
    return [e for e in ring if e.ts > since]


def _summary(machine_id: str, m: _Machine) -> MachineSummary:
    score, health = m.score, m.health
    versions: dict[str, str] = {}
    if score is not None and score.model_version:
        versions["anomaly"] = score.model_version
    if health is not None and health.model_version:
        versions["risk"] = health.model_version
    worst = max((a.severity for a in m.open.values()), key=_RANK.__getitem__, default="")
    return MachineSummary(
        machine_id=machine_id,
        health=None if health is None else health.health,
        risk=None if health is None else health.risk,
        risk_level="" if health is None else health.risk_level,
        time_to_maintenance_h=None if health is None else health.time_to_maintenance_h,
        severity="" if score is None else score.severity,
        reason="" if score is None else score.reason,
        open_alarms=len(m.open),
        worst_alarm=worst,
        event_time=m.event_time,
        model_versions=versions,
    )


def _line_summary(name: str, line: _Line) -> LineSummary:
    recent = line.recent
    means: dict[str, float] = {}
    if recent:
        n = len(recent)
        means["physics"] = sum(r[0] for r in recent) / n
        models = [r[1] for r in recent if r[1] is not None]
        if models:
            means["model"] = sum(models) / len(models)
        means["served"] = sum(r[2] for r in recent) / n
    return LineSummary(
        line=name,
        passes=line.passes,
        router_state=line.router_state,
        source=line.source,
        reason=line.reason,
        model_share=sum(r[3] for r in recent) / len(recent) if recent else 0.0,
        ewma_ape=dict(line.ewma),
        mean_ape_recent=means,
        last_ts=line.last_ts,
    )
