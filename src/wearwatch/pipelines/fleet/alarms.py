"""Alarms with a lifecycle: one alarm per (machine, alarm type), raised, escalated,
de-escalated, recovering, cleared after a quiet period, re-raised, acknowledged and silenced.

The vocabulary is ThingsBoard's: an alarm of a *type* on an *originator* (here a machine),
with a severity and a status that is active or cleared × acknowledged or not; a repeat of an
active alarm refreshes it (ThingsBoard's create-alarm node updates the existing alarm instead
of duplicating it); a *clear condition* ends it. Where ThingsBoard users ask for more, this
goes further: a clear threshold separate from the raise threshold (hysteresis), a quiet period
in event time before an alarm clears, a ``recovering`` status while that period runs,
escalation when evidence persists, and silences for maintenance windows.

Evidence comes from :class:`~wearwatch.events.AnomalyScore` triggers, per alarm type
(:func:`~wearwatch.pipelines.fleet.alarm_state.evidence_by_type`): ``machine`` from machine
triggers, ``sensor:<sensor>`` from sensor triggers. With ``R = raise_at`` and
``C = clear_below`` (``C < R``), each score's evidence ``e`` for a type is *present*
(``e ≥ R``), in the *band* (``C ≤ e < R``) or *quiet* (``e < C``)::

    (none) ─present─▶ active ─quiet─▶ recovering ─quiet for quiet_s─▶ cleared ─present─▶ active
                        ▲                 │  band: the quiet clock restarts         (reraised,
                        └─────present─────┘        (reactivated)                     id n+1)

Rules, per alarm (every transition is one :class:`~wearwatch.events.Alarm` event):

* **raise**: evidence present (for ``raise_after_s``, ThingsBoard's *duration* condition;
  0: at once) and no open alarm of the type: ``raised`` (``<machine>/<type>/1``), or
  ``reraised`` with the next id after a clear. Severity = the evidence.
* **refresh**: a score with evidence ≥ C on an active alarm counts in ``refreshes``; no event.
* **escalate**: evidence above the alarm's level escalates at once; evidence that stays at the
  level (≥ R) for ``escalate_after_s`` escalates one more level, up to high (only evidence
  makes an alarm critical), and again after each further ``escalate_after_s``.
* **de-escalate**: evidence below the level but not quiet, for ``quiet_s`` without a score back
  at the level: down to the highest evidence seen in that span. De-escalation waits as clearing
  does, so evidence hovering around a severity boundary does not flap the severity.
* **recover / clear**: the first quiet score makes the alarm ``recovering``; ``quiet_s`` of
  quiet after that clears it. Band evidence while recovering restarts the quiet clock; present
  evidence makes it active again (``reactivated``, same id). So a value hovering around the
  raise threshold (band ↔ present) keeps one active alarm, and one hovering around the clear
  threshold (quiet ↔ band) keeps it recovering: neither flaps.
* **acknowledge** (who, when): the alarm stays active; a cleared alarm can still be
  acknowledged (ThingsBoard's CLEARED_UNACK → CLEARED_ACK). ThingsBoard keeps an
  acknowledgement when an alarm's severity is updated; here an escalation (or a reactivation
  at a higher severity) unacknowledges it by default (``escalation_unacknowledges``), because
  a worse alarm is news an operator has not seen. Refreshes, de-escalation and recovering keep
  the acknowledgement.
* **clear** (who, when): an operator ends an open alarm (``cleared``, reason ``cleared by
  <who>``). Its condition is still tracked: evidence present at a later score re-raises the
  type with the next id, so a clear never hides a present condition.
* **silence** a machine until a time: no alarm is raised meanwhile (the conditions are still
  tracked, and every raise held back is counted in ``MachineAlarms.suppressed``); open alarms
  keep their lifecycle. When the silence ends (at ``until`` or by ``unsilence``) a condition
  present at that moment is raised then.

Time is event time only (the scores' ``ts``: a window's end), never the wall clock; deadlines
(clear, de-escalation, end of a silence) are applied before any score at or after them, so
the same scores give the same alarms whether a timer or a later score applies them.

>>> from wearwatch.events import AnomalyScore, Trigger, utc
>>> def score(t, severity):
...     trig = [Trigger(detector="zscore", feature="vibration.mean", value=5.0, threshold=3.0,
...                     score=1.7, severity=severity)] if severity != "normal" else []
...     return AnomalyScore(ts=utc(t), machine_id="fan-001", window_s=30.0, severity=severity,
...                         score=1.7 if trig else 0.0, triggers=trig)
>>> policy = AlarmPolicy(AlarmConfig(quiet_s=60.0))
>>> state = policy.init()
>>> for t, sev in [(0, "medium"), (30, "watch"), (60, "medium"), (90, "normal"), (150, "normal")]:
...     for a in policy.on_score(score(t, sev), state):
...         print(t, a.alarm_id, a.transition, a.severity, a.status)
0 fan-001/machine/1 raised medium active
90 fan-001/machine/1 recovering medium recovering
150 fan-001/machine/1 cleared medium cleared
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wearwatch.events import SEVERITIES, Alarm, AlarmCommand, AnomalyScore, Severity, Trigger, utc
from wearwatch.pipelines.fleet.alarm_state import (
    ACTIVE,
    CLEARED,
    HIGH,
    RANK,
    RECOVERING,
    AlarmRecord,
    AlarmSlot,
    MachineAlarms,
    evidence_by_type,
)

__all__ = ["AlarmCommandRejected", "AlarmConfig", "AlarmPolicy", "AlarmStep", "MachineAlarms"]


@dataclass(frozen=True)
class AlarmConfig:
    """The alarm policy's thresholds and clocks (event-time seconds).

    >>> AlarmConfig(raise_at="medium", clear_below="medium")
    Traceback (most recent call last):
    ...
    ValueError: AlarmConfig.clear_below='medium': must be below raise_at='medium' (hysteresis)
    """

    #: Evidence at or above this raises an alarm.
    raise_at: Severity = "medium"
    #: Evidence below this is quiet (``watch``: only ``normal`` is quiet); must be below
    #: ``raise_at``, so the band between the two holds an alarm without raising one.
    clear_below: Severity = "watch"
    #: Quiet time before a recovering alarm clears (and lower time before it de-escalates).
    quiet_s: float = 600.0
    #: Evidence persisting at an alarm's level this long escalates it one level (None: never).
    escalate_after_s: float | None = 1800.0
    #: Evidence must stay present this long before an alarm is raised (0: at once).
    raise_after_s: float = 0.0
    #: An escalation unacknowledges the alarm (ThingsBoard keeps the acknowledgement: False).
    escalation_unacknowledges: bool = True

    def __post_init__(self) -> None:
        raisable = SEVERITIES[1:]
        if self.raise_at not in raisable:
            raise ValueError(
                f"AlarmConfig.raise_at={self.raise_at!r}: expected one of {', '.join(raisable)}"
            )
        if self.clear_below not in raisable:
            raise ValueError(
                f"AlarmConfig.clear_below={self.clear_below!r}: expected one of "
                f"{', '.join(raisable)} (normal would never be quiet)"
            )
        if RANK[self.clear_below] >= RANK[self.raise_at]:
            raise ValueError(
                f"AlarmConfig.clear_below={self.clear_below!r}: must be below "
                f"raise_at={self.raise_at!r} (hysteresis)"
            )
        _seconds("quiet_s", self.quiet_s, positive=True)
        if self.escalate_after_s is not None:
            _seconds("escalate_after_s", self.escalate_after_s, positive=True)
        _seconds("raise_after_s", self.raise_after_s, positive=False)
        if not isinstance(self.escalation_unacknowledges, bool):
            raise ValueError(
                f"AlarmConfig.escalation_unacknowledges={self.escalation_unacknowledges!r}: "
                "expected a bool"
            )


def _seconds(name: str, value: Any, *, positive: bool) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        bound = "> 0" if positive else "≥ 0"
        raise ValueError(f"AlarmConfig.{name}={value!r}: expected finite seconds {bound}")


def _epoch(value: datetime, name: str) -> float:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name}={value!r}: expected a timezone-aware datetime")
    return value.timestamp()


def _describe(triggers: tuple[Trigger, ...], level: int) -> str:
    """The strongest trigger in words (what ``Alarm.reason`` shows an operator)."""
    if not triggers:
        return f"anomaly score {SEVERITIES[level]}"
    t = max(triggers, key=lambda x: (RANK[x.severity], x.score))
    on = t.feature or "all features"
    return f"{t.detector} on {on}: {t.value:.4g} vs threshold {t.threshold:.4g} ({t.severity})"


class AlarmPolicy:
    """The alarm lifecycle of one machine as a deterministic state machine (see the module
    docstring). Methods update the :class:`MachineAlarms` they are given in place and return
    the transitions they caused, in event-time order; nothing else is touched."""

    def __init__(self, config: AlarmConfig | None = None) -> None:
        self.config = config or AlarmConfig()
        self._raise = RANK[self.config.raise_at]
        self._clear = RANK[self.config.clear_below]

    def init(self) -> MachineAlarms:
        return MachineAlarms()

    # -- scores ------------------------------------------------------------------------------

    def on_score(self, score: AnomalyScore, state: MachineAlarms) -> list[Alarm]:
        """Apply one score (after any deadline due by its time); the transitions it caused."""
        if not state.machine_id:
            state.machine_id = score.machine_id
        elif score.machine_id != state.machine_id:
            raise ValueError(
                f"machine_id={score.machine_id!r}: this alarm state belongs to {state.machine_id!r}"
            )
        ts = score.ts.timestamp()
        if ts < state.clock:
            ts = state.clock
        due = self.next_due(state)
        out = self.advance(state, ts) if due is not None and due <= ts else []
        state.clock = ts
        if (
            not score.triggers
            and score.severity == "normal"
            and all(
                not slot.evidence and (slot.alarm is None or slot.alarm.status == CLEARED)
                for slot in state.slots.values()
            )
        ):
            return out  # the common case: a healthy window on a machine with nothing open
        evidence = evidence_by_type(score)
        for kind in sorted(evidence.keys() | state.slots.keys()):
            level, triggers = evidence.get(kind, (0, ()))
            slot = state.slots.get(kind)
            if slot is None:
                if not level:
                    continue
                slot = state.slots[kind] = AlarmSlot()
            self._on_evidence(state, kind, slot, level, triggers, ts, out)
        return out

    def _on_evidence(
        self,
        state: MachineAlarms,
        kind: str,
        slot: AlarmSlot,
        level: int,
        triggers: tuple[Trigger, ...],
        ts: float,
        out: list[Alarm],
    ) -> None:
        cfg = self.config
        slot.evidence, slot.triggers = level, triggers
        present = level >= self._raise
        if not present:
            slot.present_since, slot.held = None, False
        elif slot.present_since is None:
            slot.present_since = ts
        alarm = slot.alarm
        if alarm is None or alarm.status == CLEARED:
            if present and ts - slot.present_since >= cfg.raise_after_s:  # type: ignore[operator]
                if state.silenced_until is not None:
                    if not slot.held:
                        slot.held = True
                        state.suppressed += 1
                else:
                    self._open(state, kind, slot, ts, out)
            return
        if alarm.status == RECOVERING:
            if present:
                before = alarm.severity
                alarm.status, alarm.quiet_since = ACTIVE, None
                self._set_level(alarm, level, ts)
                alarm.triggers = triggers
                if alarm.severity > before:
                    self._unacknowledge(alarm)
                out.append(self._event(state, alarm, "reactivated", ts, _describe(triggers, level)))
            elif level >= self._clear:
                alarm.quiet_since = None
            elif alarm.quiet_since is None:
                alarm.quiet_since = ts
            return
        # active
        if level < self._clear:
            alarm.status, alarm.quiet_since = RECOVERING, ts
            alarm.lower_since = alarm.persist_since = None
            reason = f"evidence below {cfg.clear_below}"
            out.append(self._event(state, alarm, "recovering", ts, reason))
            return
        alarm.refreshes += 1
        if level > alarm.level:
            before = alarm.severity
            self._set_level(alarm, level, ts)
            if alarm.severity > before:
                alarm.triggers = triggers
                self._unacknowledge(alarm)
                reason = _describe(triggers, level)
                out.append(self._event(state, alarm, "escalated", ts, reason))
        elif level == alarm.level:
            alarm.lower_since = None
            if alarm.persist_since is None:
                alarm.persist_since = ts
            elif (
                cfg.escalate_after_s is not None
                and level >= self._raise
                and alarm.severity < HIGH
                and ts - alarm.persist_since >= cfg.escalate_after_s
            ):
                alarm.boost += 1
                alarm.persist_since = ts
                alarm.triggers = triggers
                self._unacknowledge(alarm)
                reason = f"evidence at {SEVERITIES[level]} for {cfg.escalate_after_s:g} s or more"
                out.append(self._event(state, alarm, "escalated", ts, reason))
        else:  # in the band or above it, below the alarm's level
            alarm.persist_since = None
            if alarm.lower_since is None:
                alarm.lower_since, alarm.lower_max = ts, level
            else:
                alarm.lower_max = max(alarm.lower_max, level)

    @staticmethod
    def _set_level(alarm: AlarmRecord, level: int, ts: float) -> None:
        alarm.level, alarm.boost = level, 0
        alarm.persist_since, alarm.lower_since = ts, None

    def _open(
        self, state: MachineAlarms, kind: str, slot: AlarmSlot, ts: float, out: list[Alarm]
    ) -> None:
        slot.raised += 1
        slot.held = False
        alarm = slot.alarm = AlarmRecord(
            alarm_id=f"{state.machine_id}/{kind}/{slot.raised}",
            alarm_type=kind,
            raised_at=ts,
            level=slot.evidence,
            persist_since=ts,
            triggers=slot.triggers,
        )
        transition = "raised" if slot.raised == 1 else "reraised"
        out.append(
            self._event(state, alarm, transition, ts, _describe(slot.triggers, slot.evidence))
        )

    def _unacknowledge(self, alarm: AlarmRecord) -> None:
        if self.config.escalation_unacknowledges and alarm.acknowledged:
            alarm.acknowledged, alarm.ack_by, alarm.ack_at = False, "", None

    # -- event time ----------------------------------------------------------------------------

    def _deadline(self, alarm: AlarmRecord | None) -> float | None:
        """When the alarm clears (recovering) or de-escalates (active, evidence lower), if
        nothing changes meanwhile."""
        if alarm is None:
            return None
        if alarm.status == RECOVERING and alarm.quiet_since is not None:
            return alarm.quiet_since + self.config.quiet_s
        if alarm.status == ACTIVE and alarm.lower_since is not None:
            return alarm.lower_since + self.config.quiet_s
        return None

    def next_due(self, state: MachineAlarms) -> float | None:
        """The earliest pending deadline (a clear, a de-escalation, the end of a silence)."""
        due = state.silenced_until
        for slot in state.slots.values():
            when = self._deadline(slot.alarm)
            if when is not None and (due is None or when < due):
                due = when
        return due

    def advance(self, state: MachineAlarms, now: float) -> list[Alarm]:
        """Let event time reach ``now`` (epoch s): apply every deadline at or before it, each
        at its own time, earliest first (alarms by type, then the end of a silence)."""
        out: list[Alarm] = []
        quiet = self.config.quiet_s
        while (due := self.next_due(state)) is not None and due <= now:
            applied = len(out)
            for kind in sorted(state.slots):
                slot = state.slots[kind]
                alarm = slot.alarm
                if alarm is None or self._deadline(alarm) != due:
                    continue
                if alarm.status == RECOVERING:
                    alarm.status, alarm.quiet_since = CLEARED, None
                    reason = f"evidence below {self.config.clear_below} for {quiet:g} s"
                    out.append(self._event(state, alarm, "cleared", due, reason))
                else:
                    before = SEVERITIES[alarm.severity]
                    self._set_level(alarm, alarm.lower_max, due)
                    alarm.triggers = slot.triggers
                    reason = f"evidence below {before} for {quiet:g} s"
                    out.append(self._event(state, alarm, "deescalated", due, reason))
            if state.silenced_until == due:
                out.extend(self._end_silence(state, due))
            elif len(out) == applied:  # pragma: no cover - next_due and this loop disagree
                raise RuntimeError(f"alarm deadline {due} matched nothing")
        state.clock = max(state.clock, now)
        return out

    # -- operator actions ------------------------------------------------------------------------

    def acknowledge(
        self, state: MachineAlarms, alarm_id: str, by: str, at: datetime
    ) -> list[Alarm]:
        """``by`` acknowledges the alarm at ``at``; it keeps its status. Acknowledging it
        again changes nothing. Only a type's latest alarm is known (KeyError otherwise)."""
        if not isinstance(by, str) or not by.strip():
            raise ValueError(f"by={by!r}: expected who acknowledges (a non-empty name)")
        at_s = _epoch(at, "at")
        alarm = self._find(state, alarm_id)
        if alarm.acknowledged:
            return []
        alarm.acknowledged, alarm.ack_by, alarm.ack_at = True, by, at_s
        return [self._event(state, alarm, "acknowledged", at_s, f"acknowledged by {by}")]

    def clear(self, state: MachineAlarms, alarm_id: str, by: str, at: datetime) -> list[Alarm]:
        """``by`` clears the open alarm at ``at`` (an operator's clear: the condition is
        resolved or known). It keeps its acknowledgement. Its condition is not forgotten: if
        the evidence is still present, the next score showing it re-raises the type with a
        new id — clearing never hides a present condition (a silence holds raises back). An
        unknown id is a KeyError, an alarm cleared already a ValueError.

        >>> from wearwatch.events import AnomalyScore, Trigger, utc
        >>> hot = Trigger(detector="zscore", feature="bearing_temp.mean", value=91.0,
        ...               threshold=85.0, score=1.2, severity="medium")
        >>> def score(t, trig):
        ...     return AnomalyScore(ts=utc(t), machine_id="fan-001", window_s=30.0,
        ...         severity="medium" if trig else "normal", score=1.2 if trig else 0.0,
        ...         triggers=trig)
        >>> policy = AlarmPolicy()
        >>> state = policy.init()
        >>> _ = policy.on_score(score(0, [hot]), state)
        >>> [(a.transition, a.status, a.reason) for a in
        ...  policy.clear(state, "fan-001/machine/1", "ann", utc(10))]
        [('cleared', 'cleared', 'cleared by ann')]
        >>> [(a.transition, a.alarm_id) for a in policy.on_score(score(30, [hot]), state)]
        [('reraised', 'fan-001/machine/2')]
        """
        if not isinstance(by, str) or not by.strip():
            raise ValueError(f"by={by!r}: expected who clears (a non-empty name)")
        at_s = _epoch(at, "at")
        alarm = self._find(state, alarm_id)
        if alarm.status == CLEARED:
            raise ValueError(
                f"alarm_id={alarm_id!r}: already cleared ({alarm.reason or 'cleared'})"
            )
        alarm.status = CLEARED
        alarm.quiet_since = alarm.lower_since = alarm.persist_since = None
        return [self._event(state, alarm, "cleared", at_s, f"cleared by {by}")]

    @staticmethod
    def _find(state: MachineAlarms, alarm_id: str) -> AlarmRecord:
        for slot in state.slots.values():
            alarm = slot.alarm
            if alarm is not None and alarm.alarm_id == alarm_id:
                return alarm
        raise KeyError(
            f"alarm_id={alarm_id!r}: no such alarm on machine {state.machine_id!r} "
            "(only the latest alarm of each type is kept)"
        )

    def silence(self, state: MachineAlarms, until: datetime, at: datetime) -> list[Alarm]:
        """Silence the machine from ``at`` until ``until`` (event time): no alarm is raised
        meanwhile. A second silence replaces the first. One ``silenced`` event per open alarm."""
        until_s, at_s = _epoch(until, "until"), _epoch(at, "at")
        if until_s <= at_s:
            raise ValueError(f"until={until.isoformat()}: must be after at={at.isoformat()}")
        state.silenced_until = until_s
        reason = f"silenced until {utc(until_s).isoformat()}"
        return [self._event(state, a, "silenced", at_s, reason) for a in self._open_records(state)]

    def unsilence(self, state: MachineAlarms, at: datetime) -> list[Alarm]:
        """End the silence at ``at``: ``unsilenced`` per open alarm, then the conditions
        present now are raised. Not silenced: nothing happens."""
        at_s = _epoch(at, "at")
        if state.silenced_until is None:
            return []
        return self._end_silence(state, at_s)

    def _end_silence(self, state: MachineAlarms, ts: float) -> list[Alarm]:
        state.silenced_until = None
        out = [
            self._event(state, a, "unsilenced", ts, "silence ended")
            for a in self._open_records(state)
        ]
        for kind in sorted(state.slots):
            slot = state.slots[kind]
            since = slot.present_since
            closed = slot.alarm is None or not slot.alarm.open
            if closed and since is not None and ts - since >= self.config.raise_after_s:
                self._open(state, kind, slot, ts, out)
            slot.held = False
        return out

    # -- views ---------------------------------------------------------------------------------

    def open_alarms(self, state: MachineAlarms) -> list[Alarm]:
        """The machine's open (active or recovering) alarms, as of their last transition."""
        return [self._snapshot(state, a) for a in self._open_records(state)]

    @staticmethod
    def _open_records(state: MachineAlarms) -> list[AlarmRecord]:
        return [
            slot.alarm
            for _, slot in sorted(state.slots.items())
            if slot.alarm is not None and slot.alarm.open
        ]

    def _event(
        self, state: MachineAlarms, alarm: AlarmRecord, transition: str, ts: float, reason: str
    ) -> Alarm:
        alarm.transition, alarm.ts, alarm.reason = transition, ts, reason
        return self._snapshot(state, alarm)

    @staticmethod
    def _snapshot(state: MachineAlarms, alarm: AlarmRecord) -> Alarm:
        return Alarm(
            ts=utc(alarm.ts),
            alarm_id=alarm.alarm_id,
            machine_id=state.machine_id,
            alarm_type=alarm.alarm_type,
            severity=SEVERITIES[alarm.severity],  # type: ignore[arg-type]
            status=alarm.status,  # type: ignore[arg-type]
            acknowledged=alarm.acknowledged,
            transition=alarm.transition,  # type: ignore[arg-type]
            reason=alarm.reason,
            triggers=list(alarm.triggers),
            raised_at=utc(alarm.raised_at),
            ack_by=alarm.ack_by,
            ack_at=None if alarm.ack_at is None else utc(alarm.ack_at),
            refreshes=alarm.refreshes,
        )


class AlarmCommandRejected(ValueError):
    """An operator's :class:`~wearwatch.events.AlarmCommand` the policy refuses (unknown
    alarm, cleared already, a silence ending before it starts...). ``field`` names the
    command's field at fault; the worker dead-letters the command with it, the reason and the
    command's original bytes, and goes on."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


#: The command fields a policy refusal can name (its messages start ``<field>=``).
_COMMAND_FIELDS = ("alarm_id", "by", "until", "at")


class AlarmStep:
    """The policy as a ``Stream.process`` step keyed by machine: AnomalyScores and operators'
    AlarmCommands in (in the one order their topic holds, so a replay acknowledges, clears
    and silences the same alarms), Alarms out.

    An event-time timer per machine applies deadlines (clears, de-escalations, silence ends)
    when no later score comes. ``settle_s`` delays that timer past the deadline by the time
    scores need to arrive: a window's score is emitted once the watermark passes its end plus
    the windows' grace, so with ``settle_s`` ≥ that grace every score before a deadline has
    been applied when the timer applies the deadline, and the alarms equal those a later
    score would have produced. Counters: ``alarm_<transition>`` per event emitted and
    ``alarm_suppressed`` per raise a silence held back, ``alarm_command_rejected`` per
    command refused (raised as :class:`AlarmCommandRejected`: the runtime dead-letters it).

    A command acts at its own event time (``ts``: the latest event time its sender saw for
    the machine) on the state as the scores before it left it; it moves no deadline.
    """

    def __init__(self, config: AlarmConfig | None = None, *, settle_s: float = 0.0) -> None:
        if not (isinstance(settle_s, int | float) and math.isfinite(settle_s) and settle_s >= 0):
            raise ValueError(f"settle_s={settle_s!r}: expected finite seconds ≥ 0")
        self.policy = AlarmPolicy(config)
        self.settle_s = float(settle_s)

    def init(self) -> MachineAlarms:
        return self.policy.init()

    def on_event(self, score: AnomalyScore | AlarmCommand, state: MachineAlarms, ctx: Any) -> None:
        if isinstance(score, AlarmCommand):
            self._command(score, state, ctx)
            return
        if not isinstance(score, AnomalyScore):
            raise TypeError(
                f"AlarmStep: expected an AnomalyScore or AlarmCommand, got {type(score).__name__}"
            )
        suppressed = state.suppressed
        self._emit(self.policy.on_score(score, state), ctx)
        if state.suppressed != suppressed:
            ctx.count("alarm_suppressed", state.suppressed - suppressed)
        self._arm(state, ctx)

    def _command(self, cmd: AlarmCommand, state: MachineAlarms, ctx: Any) -> None:
        """Apply an operator's command, or count it and raise :class:`AlarmCommandRejected`."""
        if not state.machine_id:
            state.machine_id = cmd.machine_id
        policy = self.policy
        suppressed = state.suppressed
        try:
            if cmd.action == "acknowledge":
                out = policy.acknowledge(state, cmd.alarm_id, cmd.by, cmd.ts)
            elif cmd.action == "clear":
                out = policy.clear(state, cmd.alarm_id, cmd.by, cmd.ts)
            elif cmd.action == "silence":
                if cmd.until is None:
                    raise ValueError("until=None: a silence needs its end (event time)")
                out = policy.silence(state, cmd.until, cmd.ts)
            else:  # unsilence (the contract's Literal admits nothing else)
                out = policy.unsilence(state, cmd.ts)
        except (KeyError, ValueError) as exc:
            ctx.count("alarm_command_rejected")
            message = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
            name = message.partition("=")[0]
            field = "ts" if name == "at" else name if name in _COMMAND_FIELDS else ""
            raise AlarmCommandRejected(f"{cmd.action} refused: {message}", field) from None
        self._emit(out, ctx)
        if state.suppressed != suppressed:
            ctx.count("alarm_suppressed", state.suppressed - suppressed)
        self._arm(state, ctx)

    def on_timer(self, when: float, state: MachineAlarms, ctx: Any) -> None:
        due = self.policy.next_due(state)
        while due is not None and due + self.settle_s <= when:
            self._emit(self.policy.advance(state, due), ctx)
            due = self.policy.next_due(state)
        self._arm(state, ctx)

    def _arm(self, state: MachineAlarms, ctx: Any) -> None:
        due = self.policy.next_due(state)
        if due is None:
            ctx.delete_timer()
        else:
            ctx.set_timer(due + self.settle_s)

    @staticmethod
    def _emit(alarms: list[Alarm], ctx: Any) -> None:
        for alarm in alarms:
            ctx.count(f"alarm_{alarm.transition}")
            ctx.emit(alarm)
