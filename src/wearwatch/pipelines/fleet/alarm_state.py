"""The state an :class:`~wearwatch.pipelines.fleet.alarms.AlarmPolicy` keeps per machine, and
how an :class:`~wearwatch.events.AnomalyScore` becomes evidence per alarm type.

Small picklable dataclasses: they live in the stream's checkpoints, one
:class:`MachineAlarms` per machine, holding one :class:`AlarmSlot` per alarm type seen. A slot
keeps only its type's latest alarm (open or cleared) and the raise counter behind its ids, so
the state stays bounded by the number of alarm types a machine can have.

Alarm types come from the triggers: a machine-category trigger is evidence for ``machine``, a
sensor-category one for ``sensor:<sensor>`` (the part of its feature before the dot), so a
stuck vibration sensor opens ``sensor:vibration``, never ``machine``:

>>> from wearwatch.events import AnomalyScore, Trigger, utc
>>> stuck = Trigger(detector="stuck", feature="vibration.std", value=0.0, threshold=0.01,
...                 score=3.0, severity="high", category="sensor")
>>> hot = Trigger(detector="zscore", feature="bearing_temp.mean", value=91.0, threshold=85.0,
...               score=1.2, severity="medium")
>>> score = AnomalyScore(ts=utc(0.0), machine_id="pump-001", window_s=30.0, severity="high",
...                      score=3.0, category="sensor", triggers=[stuck, hot])
>>> {t: SEVERITIES[level] for t, (level, _) in evidence_by_type(score).items()}
{'sensor:vibration': 'high', 'machine': 'medium'}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wearwatch.events import SEVERITIES, AnomalyScore, Trigger

#: Severity name → rank (0 normal … 4 critical).
RANK: dict[str, int] = {name: i for i, name in enumerate(SEVERITIES)}
HIGH = RANK["high"]
CRITICAL = RANK["critical"]

#: Alarm statuses (``Alarm.status``).
ACTIVE, RECOVERING, CLEARED = "active", "recovering", "cleared"

Evidence = tuple[int, tuple[Trigger, ...]]


def alarm_type(trigger: Trigger) -> str:
    """``machine`` for an equipment fault, ``sensor:<sensor>`` for a measurement fault (a
    sensor trigger without a feature names no sensor: ``sensor``)."""
    if trigger.category == "sensor":
        sensor = trigger.feature.split(".", 1)[0]
        return f"sensor:{sensor}" if sensor else "sensor"
    return "machine"


def _strength(trigger: Trigger) -> tuple[int, float]:
    return RANK[trigger.severity], trigger.score


def evidence_by_type(score: AnomalyScore) -> dict[str, Evidence]:
    """Alarm type → (severity rank, its triggers) for the types this score has evidence for.

    A type's severity is its strongest trigger's. The score's own severity may stand above
    every trigger (a detector's persistence rule escalates it): it then counts for the type of
    the strongest trigger of the score's category (``machine`` if the score has no trigger).
    """
    grouped: dict[str, list[Trigger]] = {}
    for trigger in score.triggers:
        grouped.setdefault(alarm_type(trigger), []).append(trigger)
    out: dict[str, Evidence] = {
        kind: (max(RANK[t.severity] for t in triggers), tuple(triggers))
        for kind, triggers in grouped.items()
    }
    rank = RANK[score.severity]
    if rank:
        own = [t for t in score.triggers if t.category == score.category] or score.triggers
        kind = alarm_type(max(own, key=_strength)) if own else "machine"
        level, triggers = out.get(kind, (0, ()))
        if rank > level:
            out[kind] = (rank, triggers)
    return out


@dataclass(slots=True)
class AlarmRecord:
    """One alarm: what its events report, plus the clocks its lifecycle runs on (epoch s)."""

    alarm_id: str
    alarm_type: str
    #: When it was (re-)raised.
    raised_at: float
    #: The evidence level (rank) the alarm stands for; severity = level + boost (capped).
    level: int
    #: Levels added because the evidence persisted (never past high).
    boost: int = 0
    status: str = ACTIVE
    acknowledged: bool = False
    ack_by: str = ""
    ack_at: float | None = None
    #: Scores after the raise that found it active with its condition present.
    refreshes: int = 0
    #: Evidence at or above ``level`` continuously since (persistence escalation).
    persist_since: float | None = None
    #: Evidence below ``level`` (but not quiet) continuously since (de-escalation), and the
    #: highest level seen meanwhile.
    lower_since: float | None = None
    lower_max: int = 0
    #: Evidence below the clear threshold continuously since (recovering → cleared).
    quiet_since: float | None = None
    reason: str = ""
    triggers: tuple[Trigger, ...] = ()
    #: The last transition emitted, and when.
    transition: str = "raised"
    ts: float = 0.0

    @property
    def severity(self) -> int:
        """The alarm's severity rank: persistence escalates up to high; only evidence makes
        an alarm critical."""
        return min(self.level + self.boost, max(self.level, HIGH))

    @property
    def open(self) -> bool:
        return self.status != CLEARED


@dataclass(slots=True)
class AlarmSlot:
    """One (machine, alarm type): its latest alarm and the condition behind it."""

    #: Alarms of this type raised so far (the ``n`` of ``<machine>/<type>/<n>``).
    raised: int = 0
    alarm: AlarmRecord | None = None
    #: The latest score's evidence for this type.
    evidence: int = 0
    triggers: tuple[Trigger, ...] = ()
    #: Evidence at or above the raise threshold continuously since (None: it is not).
    present_since: float | None = None
    #: A raise a silence held back (counted once per condition).
    held: bool = False


@dataclass(slots=True)
class MachineAlarms:
    """Every alarm slot of one machine, its silence and its event-time clock."""

    machine_id: str = ""
    slots: dict[str, AlarmSlot] = field(default_factory=dict)
    #: End of the current silence (epoch s); None: not silenced.
    silenced_until: float | None = None
    #: The latest event time seen: the policy's time never runs backwards.
    clock: float = float("-inf")
    #: Raises held back by silences (each condition counted once).
    suppressed: int = 0
