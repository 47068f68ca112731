"""The alarm lifecycle: dedupe, escalation (rising and persisting evidence), de-escalation,
hysteresis with a hovering value, quiet-period clear (by a later score and by a timer),
recovering → active, acknowledge, silence, re-raise, sensor vs machine alarm types, a
Hypothesis property against a brute-force reference, determinism across a checkpoint, the
process step in a flow, and the analytics tables (idempotent on replay)."""

from __future__ import annotations

import math
import pickle
import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import (
    SEVERITIES,
    Alarm,
    AnomalyScore,
    MachineHealth,
    Reading,
    Trigger,
    WindowResult,
    encode,
    utc,
)
from wearwatch.pipelines.fleet.alarm_state import MachineAlarms
from wearwatch.pipelines.fleet.alarms import AlarmConfig, AlarmPolicy, AlarmStep
from wearwatch.runtime.dataflow import Flow, Source
from wearwatch.runtime.windows import tumbling
from wearwatch.store.analytics import sink_topics
from wearwatch.store.analytics_duckdb import DuckDBStore
from wearwatch.topics import ALARMS, HEALTH, SCORES

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
M = "pump-001"
RANK = {s: i for i, s in enumerate(SEVERITIES)}


def trig(
    severity: str,
    feature: str = "vibration.mean",
    category: str = "machine",
    detector: str = "zscore",
) -> Trigger:
    return Trigger(
        detector=detector,
        feature=feature,
        value=4.0,
        threshold=3.0,
        score=1.0 + RANK[severity],
        severity=severity,  # type: ignore[arg-type]
        category=category,  # type: ignore[arg-type]
    )


def sc(at: float, *triggers: Trigger, machine: str = M) -> AnomalyScore:
    """A score at T0 + at whose severity is its strongest trigger's."""
    top = max(triggers, key=lambda t: RANK[t.severity], default=None)
    return AnomalyScore(
        ts=utc(T0 + at),
        machine_id=machine,
        window_s=30.0,
        severity=top.severity if top else "normal",
        score=top.score if top else 0.0,
        category=top.category if top else "none",
        reason=f"{top.detector} on {top.feature}" if top else "",
        triggers=list(triggers),
    )


def mach(at: float, severity: str) -> AnomalyScore:
    """A score with one machine trigger of ``severity`` (none when normal)."""
    return sc(at, trig(severity)) if severity != "normal" else sc(at)


def run(policy: AlarmPolicy, scores: list[AnomalyScore], state: MachineAlarms) -> list[Alarm]:
    out: list[Alarm] = []
    for s in scores:
        out += policy.on_score(s, state)
    return out


def brief(alarms: list[Alarm]) -> list[tuple[float, str, str, str, str]]:
    """(seconds after T0, alarm id, transition, severity, status) per event."""
    return [(a.ts.timestamp() - T0, a.alarm_id, a.transition, a.severity, a.status) for a in alarms]


def at(seconds: float) -> datetime:
    return utc(T0 + seconds)


QUIET = AlarmConfig(quiet_s=60.0, escalate_after_s=None)


# -- dedupe, escalation, de-escalation ---------------------------------------------------------


def test_repeats_refresh_the_one_active_alarm_without_events() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    out = run(policy, [mach(10.0 * i, "medium") for i in range(10)], state)
    assert brief(out) == [(0.0, f"{M}/machine/1", "raised", "medium", "active")]
    [open_alarm] = policy.open_alarms(state)
    assert open_alarm.refreshes == 9
    assert open_alarm.raised_at == at(0.0)
    assert open_alarm.reason == "zscore on vibration.mean: 4 vs threshold 3 (medium)"


def test_rising_evidence_escalates_at_once() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    scores = [mach(0, "medium"), mach(5, "medium"), mach(10, "high"), mach(15, "critical")]
    assert brief(run(policy, scores, state)) == [
        (0.0, f"{M}/machine/1", "raised", "medium", "active"),
        (10.0, f"{M}/machine/1", "escalated", "high", "active"),
        (15.0, f"{M}/machine/1", "escalated", "critical", "active"),
    ]


def test_persisting_evidence_escalates_one_level_per_period_but_never_to_critical() -> None:
    policy = AlarmPolicy(AlarmConfig(quiet_s=60.0, escalate_after_s=100.0))
    state = policy.init()
    out = run(policy, [mach(10.0 * i, "medium") for i in range(60)], state)  # 590 s at medium
    assert brief(out) == [
        (0.0, f"{M}/machine/1", "raised", "medium", "active"),
        (100.0, f"{M}/machine/1", "escalated", "high", "active"),
    ]
    assert out[1].reason == "evidence at medium for 100 s or more"
    # Evidence at high persisting: high is the ceiling of persistence.
    state = policy.init()
    out = run(policy, [mach(10.0 * i, "high") for i in range(60)], state)
    assert [a.transition for a in out] == ["raised"]
    # A dip below the level restarts the persistence clock.
    state = policy.init()
    sevs = ["medium"] * 9 + ["watch"] + ["medium"] * 12  # dip at 90 s: medium again from 100 s
    out = run(policy, [mach(10.0 * i, s) for i, s in enumerate(sevs)], state)
    assert brief(out)[1:] == [(200.0, f"{M}/machine/1", "escalated", "high", "active")]


def test_deescalation_waits_for_quiet_s_below_the_level() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    scores = [mach(0, "high")]
    scores += [mach(10 + 10.0 * i, "medium") for i in range(4)]  # 10..40: lower since 10
    scores += [mach(50, "high")]  # back at the level: no de-escalation
    scores += [mach(60 + 10.0 * i, s) for i, s in enumerate(["watch", "medium"] * 5)]  # 60..150
    out = run(policy, scores, state)
    # Lower since 60 (max medium), so at 120 it steps down to medium (a deadline, not a score).
    assert brief(out) == [
        (0.0, f"{M}/machine/1", "raised", "high", "active"),
        (120.0, f"{M}/machine/1", "deescalated", "medium", "active"),
    ]
    assert out[1].reason == "evidence below high for 60 s"


# -- hysteresis, recovering, clear, re-raise ---------------------------------------------------


def test_a_value_hovering_around_either_threshold_does_not_flap() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    # Around the raise threshold: watch/medium alternating every 5 s for 1000 s.
    hover = [mach(5.0 * i, "medium" if i % 2 else "watch") for i in range(200)]
    out = run(policy, hover, state)
    assert brief(out) == [(5.0, f"{M}/machine/1", "raised", "medium", "active")]
    # Around the clear threshold: normal/watch alternating: recovering once, never cleared.
    hover = [mach(1000.0 + 5.0 * i, "watch" if i % 2 else "normal") for i in range(200)]
    out = run(policy, hover, state)
    assert brief(out) == [(1000.0, f"{M}/machine/1", "recovering", "medium", "recovering")]
    # Then quiet for 60 s: cleared at exactly 60 s after the first quiet score of the run.
    out = run(policy, [mach(2000.0 + 10.0 * i, "normal") for i in range(8)], state)
    assert brief(out) == [(2060.0, f"{M}/machine/1", "cleared", "medium", "cleared")]
    assert out[0].reason == "evidence below watch for 60 s"
    assert policy.open_alarms(state) == []


def test_recovering_returns_to_active_on_present_evidence_then_clears_and_reraises() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    scores = [
        mach(0, "medium"),
        mach(10, "normal"),  # recovering, quiet since 10
        mach(40, "high"),  # back: reactivated at high, same alarm
        mach(50, "normal"),  # recovering again, quiet since 50
        mach(100, "normal"),
        mach(110, "normal"),  # 50 + 60 = 110: cleared before this score counts
        mach(110.5, "medium"),  # the condition returns: a new alarm
    ]
    out = run(policy, scores, state)
    assert brief(out) == [
        (0.0, f"{M}/machine/1", "raised", "medium", "active"),
        (10.0, f"{M}/machine/1", "recovering", "medium", "recovering"),
        (40.0, f"{M}/machine/1", "reactivated", "high", "active"),
        (50.0, f"{M}/machine/1", "recovering", "high", "recovering"),
        (110.0, f"{M}/machine/1", "cleared", "high", "cleared"),
        (110.5, f"{M}/machine/2", "reraised", "medium", "active"),
    ]
    assert out[-1].raised_at == at(110.5)


def test_the_clear_comes_from_advance_alone_when_no_score_follows() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    run(policy, [mach(0, "medium"), mach(30, "normal")], state)
    assert policy.next_due(state) == T0 + 90.0
    assert policy.advance(state, T0 + 89.0) == []
    assert brief(policy.advance(state, T0 + 500.0)) == [
        (90.0, f"{M}/machine/1", "cleared", "medium", "cleared")
    ]
    assert policy.next_due(state) is None


def test_raise_after_s_is_a_duration_condition() -> None:
    policy = AlarmPolicy(AlarmConfig(quiet_s=60.0, raise_after_s=30.0))
    state = policy.init()
    sevs = ["medium", "medium", "watch", "medium", "medium", "medium", "medium"]
    out = run(policy, [mach(10.0 * i, s) for i, s in enumerate(sevs)], state)
    # present 0..10, broken at 20; present again from 30: 30 s later, at 60, it is raised.
    assert brief(out) == [(60.0, f"{M}/machine/1", "raised", "medium", "active")]


# -- alarm types -------------------------------------------------------------------------------


def test_sensor_faults_raise_sensor_alarms_beside_machine_alarms() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    stuck = trig("high", feature="vibration.std", category="sensor", detector="stuck")
    hot = trig("medium", feature="bearing_temp.mean")
    drop = trig("medium", feature="current.count", category="sensor", detector="dropout")
    scores = [
        sc(0, stuck),  # only the vibration sensor: a sensor alarm, not a machine alarm
        sc(10, stuck, hot, drop),
        sc(20, hot),  # both sensors quiet: both recovering; the machine alarm holds
    ]
    out = run(policy, scores, state)
    assert [(a.ts.timestamp() - T0, a.alarm_id, a.transition, a.severity) for a in out] == [
        (0.0, f"{M}/sensor:vibration/1", "raised", "high"),
        (10.0, f"{M}/machine/1", "raised", "medium"),
        (10.0, f"{M}/sensor:current/1", "raised", "medium"),
        (20.0, f"{M}/sensor:current/1", "recovering", "medium"),
        (20.0, f"{M}/sensor:vibration/1", "recovering", "high"),
    ]
    assert {a.alarm_type for a in out} == {"sensor:vibration", "machine", "sensor:current"}
    assert out[0].triggers == [stuck]
    assert out[0].reason == "stuck on vibration.std: 4 vs threshold 3 (high)"


def test_a_score_escalated_above_its_triggers_counts_for_its_strongest_trigger() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    score = AnomalyScore(
        ts=utc(T0),
        machine_id=M,
        window_s=30.0,
        severity="high",  # the detector's own persistence rule escalated a medium trigger
        score=2.0,
        category="machine",
        triggers=[trig("medium"), trig("watch", "current.std", "sensor")],
    )
    assert [(a.alarm_type, a.severity) for a in policy.on_score(score, state)] == [
        ("machine", "high")
    ]


# -- acknowledge -------------------------------------------------------------------------------


def test_acknowledge_records_who_and_when_and_keeps_the_alarm_active() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    run(policy, [mach(0, "medium")], state)
    alarm_id = f"{M}/machine/1"
    [ack] = policy.acknowledge(state, alarm_id, "alice", at(5.0))
    assert (ack.transition, ack.status, ack.acknowledged, ack.ack_by, ack.ack_at) == (
        "acknowledged",
        "active",
        True,
        "alice",
        at(5.0),
    )
    assert ack.ts == at(5.0) and ack.severity == "medium"
    assert policy.acknowledge(state, alarm_id, "bob", at(6.0)) == []  # once is enough
    with pytest.raises(KeyError, match="pump-001/machine/7"):
        policy.acknowledge(state, f"{M}/machine/7", "alice", at(7.0))
    with pytest.raises(ValueError, match="by=''"):
        policy.acknowledge(state, alarm_id, "", at(7.0))
    with pytest.raises(ValueError, match=r"at=.*timezone-aware"):
        policy.acknowledge(state, alarm_id, "alice", datetime(2026, 1, 1))
    # De-escalation and recovering keep the acknowledgement ...
    out = run(policy, [mach(10, "high")], state)
    assert [(a.transition, a.acknowledged, a.ack_by) for a in out] == [("escalated", False, "")]
    # ... an escalation does not (a worse alarm is news); acknowledge again, then it recovers.
    policy.acknowledge(state, alarm_id, "alice", at(11.0))
    out = run(policy, [mach(20 + i, "watch") for i in range(70)] + [mach(100, "normal")], state)
    assert [(a.transition, a.acknowledged) for a in out] == [
        ("deescalated", True),
        ("recovering", True),
    ]
    # A cleared alarm can still be acknowledged (cleared, unacknowledged → acknowledged).
    state = policy.init()
    run(policy, [mach(0, "medium"), mach(10, "normal"), mach(70, "normal")], state)
    [ack] = policy.acknowledge(state, alarm_id, "carol", at(80.0))
    assert (ack.status, ack.acknowledged) == ("cleared", True)


def test_thingsboard_keeps_the_acknowledgement_on_escalation_when_configured() -> None:
    policy = AlarmPolicy(AlarmConfig(quiet_s=60.0, escalation_unacknowledges=False))
    state = policy.init()
    run(policy, [mach(0, "medium")], state)
    policy.acknowledge(state, f"{M}/machine/1", "alice", at(1.0))
    [esc] = run(policy, [mach(2, "critical")], state)
    assert (esc.transition, esc.acknowledged, esc.ack_by, esc.ack_at) == (
        "escalated",
        True,
        "alice",
        at(1.0),
    )


def test_a_reraised_alarm_is_a_new_unacknowledged_alarm() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    run(policy, [mach(0, "medium")], state)
    policy.acknowledge(state, f"{M}/machine/1", "alice", at(1.0))
    out = run(policy, [mach(10, "normal"), mach(70, "normal"), mach(80, "high")], state)
    assert [(a.alarm_id, a.transition, a.acknowledged) for a in out] == [
        (f"{M}/machine/1", "recovering", True),
        (f"{M}/machine/1", "cleared", True),
        (f"{M}/machine/2", "reraised", False),
    ]
    with pytest.raises(KeyError, match="only the latest alarm of each type"):
        policy.acknowledge(state, f"{M}/machine/1", "alice", at(90.0))


# -- silence -----------------------------------------------------------------------------------


def test_a_silence_holds_raises_back_and_raises_at_its_end_if_the_condition_is_present() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    assert policy.silence(state, until=at(300.0), at=at(0.0)) == []  # nothing open: no event
    out = run(policy, [mach(10.0 * i, "medium") for i in range(1, 30)], state)  # 10..290
    assert out == [] and state.suppressed == 1
    assert policy.next_due(state) == T0 + 300.0
    # The silence ends at 300 (here by advance: the step's timer) with the condition present.
    assert brief(policy.advance(state, T0 + 305.0)) == [
        (300.0, f"{M}/machine/1", "raised", "medium", "active")
    ]
    # A condition gone before the silence ends raises nothing.
    state = policy.init()
    policy.silence(state, until=at(300.0), at=at(0.0))
    run(policy, [mach(10, "high"), mach(20, "normal")], state)
    assert run(policy, [mach(400, "normal")], state) == [] and state.suppressed == 1
    assert policy.open_alarms(state) == []


def test_open_alarms_keep_their_lifecycle_through_a_silence_and_see_it() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    run(policy, [mach(0, "medium")], state)
    [sil] = policy.silence(state, until=at(1000.0), at=at(5.0))
    assert (sil.transition, sil.status, sil.reason) == (
        "silenced",
        "active",
        "silenced until 2026-01-01T00:16:40+00:00",
    )
    out = run(policy, [mach(10, "normal"), mach(70, "normal"), mach(100, "critical")], state)
    assert [(a.transition, a.alarm_id) for a in out] == [
        ("recovering", f"{M}/machine/1"),
        ("cleared", f"{M}/machine/1"),
    ]
    # Ended early by an operator: unsilenced for the open ones, then the present condition.
    run(policy, [mach(110, "medium")], state)
    out = policy.unsilence(state, at(120.0))
    assert brief(out) == [(120.0, f"{M}/machine/2", "reraised", "medium", "active")]
    assert policy.unsilence(state, at(130.0)) == []  # not silenced any more
    policy.silence(state, until=at(200.0), at=at(130.0))
    assert [a.transition for a in policy.unsilence(state, at(140.0))] == ["unsilenced"]
    with pytest.raises(ValueError, match=r"until=.*must be after at="):
        policy.silence(state, until=at(100.0), at=at(100.0))


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"raise_at": "normal"}, "AlarmConfig.raise_at='normal'"),
        ({"raise_at": "severe"}, "AlarmConfig.raise_at='severe'"),
        ({"clear_below": "normal"}, "AlarmConfig.clear_below='normal'"),
        ({"clear_below": "high"}, "AlarmConfig.clear_below='high': must be below raise_at"),
        ({"quiet_s": 0.0}, "AlarmConfig.quiet_s=0.0"),
        ({"quiet_s": math.inf}, "AlarmConfig.quiet_s=inf"),
        ({"escalate_after_s": -1.0}, "AlarmConfig.escalate_after_s=-1.0"),
        ({"raise_after_s": math.nan}, "AlarmConfig.raise_after_s=nan"),
        ({"escalation_unacknowledges": 1}, "AlarmConfig.escalation_unacknowledges=1"),
    ],
)
def test_bad_config_names_the_field_and_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        AlarmConfig(**kwargs)
    assert message in str(err.value)


def test_a_state_belongs_to_one_machine() -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    policy.on_score(mach(0, "medium"), state)
    with pytest.raises(ValueError, match="machine_id='fan-002': this alarm state belongs to"):
        policy.on_score(sc(1, trig("medium"), machine="fan-002"), state)


# -- a property against a brute-force reference ------------------------------------------------

TYPES = ("machine", "sensor:vibration")
ALLOWED = {  # (status before, transition) → status after
    (None, "raised"): "active",
    (None, "reraised"): "active",
    ("active", "escalated"): "active",
    ("active", "deescalated"): "active",
    ("active", "recovering"): "recovering",
    ("recovering", "reactivated"): "active",
    ("recovering", "cleared"): "cleared",
    **{(s, t): s for s in ("active", "recovering") for t in ("silenced", "unsilenced")},
    **{(s, "acknowledged"): s for s in ("active", "recovering", "cleared")},
}


def reference_alarms(
    times: list[float],
    evidence: list[int],
    cfg: AlarmConfig,
    silence: tuple[float, float] | None,
    end: float,
) -> list[tuple[float, float | None]]:
    """(raised at, cleared at or None) of one type's alarms, straight from the rules:

    an alarm raised at r clears at the earliest q + quiet_s ≤ end over quiet scores q ≥ r
    with no score at or above clear_below in [q, q + quiet_s); a score at or above raise_at,
    outside the silence [a, u), raises one when none is open; at u, the last evidence
    before u raises one if it is at or above raise_at and none is open.
    """
    r_, c_ = RANK[cfg.raise_at], RANK[cfg.clear_below]
    quiet = cfg.quiet_s

    def clear_after(r: float) -> float | None:
        for q, e in zip(times, evidence, strict=True):
            quiet_run = all(
                x < c_ for t, x in zip(times, evidence, strict=True) if q <= t < q + quiet
            )
            if q >= r and e < c_ and q + quiet <= end and quiet_run:
                return q + quiet
        return None

    candidates: list[float] = []
    for t, e in zip(times, evidence, strict=True):
        if e >= r_ and not (silence and silence[0] <= t < silence[1]):
            candidates.append(t)
    if silence and silence[1] <= end:
        before = [e for t, e in zip(times, evidence, strict=True) if t < silence[1]]
        if before and before[-1] >= r_:
            candidates.append(silence[1])
    out: list[tuple[float, float | None]] = []
    free_from = -math.inf
    for c in sorted(set(candidates)):
        if c < free_from:
            continue
        cleared = clear_after(c)
        out.append((c, cleared))
        if cleared is None:
            break
        free_from = cleared
    return out


scores_strategy = st.lists(
    st.tuples(st.integers(1, 90), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60
)


THRESHOLDS = [(r, c) for r in (2, 3, 4) for c in range(1, r)]  # (raise_at, clear_below) ranks


@settings(max_examples=300, deadline=None)
@given(
    rows=scores_strategy,
    thresholds=st.sampled_from(THRESHOLDS),
    quiet_s=st.sampled_from([20.0, 60.0, 150.0]),
    escalate_after_s=st.sampled_from([None, 50.0, 200.0]),
    silence=st.none() | st.tuples(st.integers(0, 59), st.integers(1, 400)),
    tail=st.integers(0, 400),
)
def test_the_lifecycle_matches_a_brute_force_reference(
    rows: list[tuple[int, int, int]],
    thresholds: tuple[int, int],
    quiet_s: float,
    escalate_after_s: float | None,
    silence: tuple[int, int] | None,
    tail: int,
) -> None:
    raise_rank, clear_rank = thresholds
    cfg = AlarmConfig(
        raise_at=SEVERITIES[raise_rank],  # type: ignore[arg-type]
        clear_below=SEVERITIES[clear_rank],  # type: ignore[arg-type]
        quiet_s=quiet_s,
        escalate_after_s=escalate_after_s,
    )
    policy = AlarmPolicy(cfg)
    state = policy.init()
    times: list[float] = []
    ev: dict[str, list[int]] = {k: [] for k in TYPES}
    scores = []
    t = 0.0
    for gap, machine_sev, sensor_sev in rows:
        t += gap
        triggers = []
        if machine_sev:
            triggers.append(trig(SEVERITIES[machine_sev]))
        if sensor_sev:
            triggers.append(trig(SEVERITIES[sensor_sev], "vibration.std", "sensor", "stuck"))
        scores.append(sc(t, *triggers))
        times.append(T0 + t)
        ev["machine"].append(machine_sev)
        ev["sensor:vibration"].append(sensor_sev)
    window = None
    if silence is not None and silence[0] < len(scores):
        window = (times[silence[0]], times[silence[0]] + silence[1])
    events: list[Alarm] = []
    for i, score in enumerate(scores):
        if window is not None and times[i] == window[0]:
            events += policy.advance(state, window[0])  # the command, at its event time
            events += policy.silence(state, until=utc(window[1]), at=utc(window[0]))
        events += policy.on_score(score, state)
        # While active, an alarm's severity is at least the evidence just seen and at least
        # the clear threshold; without persistence escalation, at most the highest evidence
        # from the score before its raise on (a raise at a silence's end stands on it).
        for alarm in policy.open_alarms(state):
            if alarm.status != "active":
                continue
            e = ev[alarm.alarm_type]
            assert RANK[alarm.severity] >= max(e[i], clear_rank)
            if escalate_after_s is None:
                raised = alarm.raised_at.timestamp()
                first = max((j for j in range(i + 1) if times[j] < raised), default=0)
                assert RANK[alarm.severity] <= max(e[first : i + 1])
    end = times[-1] + tail
    events += policy.advance(state, end)

    # Transitions follow the allowed graph, a type is raised only while none of its alarms
    # is open, ids count up per type, and event time never runs backwards within an alarm.
    status: dict[str, str | None] = {}
    last_ts: dict[str, datetime] = {}
    latest: dict[str, str] = {}
    for a in events:
        before = status.get(a.alarm_id)
        if a.transition.endswith("raised"):
            assert a.alarm_type not in latest or status[latest[a.alarm_type]] == "cleared"
            latest[a.alarm_type] = a.alarm_id
        assert (before, a.transition) in ALLOWED, (before, a.transition)
        assert a.status == ALLOWED[(before, a.transition)]
        status[a.alarm_id] = a.status
        assert a.ts >= last_ts.get(a.alarm_id, a.ts)
        last_ts[a.alarm_id] = a.ts
    # Never two open alarms of one type; what is open at the end is what open_alarms says.
    for kind in TYPES:
        ids = [
            a.alarm_id for a in events if a.alarm_type == kind and a.transition.endswith("raised")
        ]
        assert ids == [f"{M}/{kind}/{n}" for n in range(1, len(ids) + 1)]
        assert all(status[i] == "cleared" for i in ids[:-1])
        raises = [a for a in events if a.alarm_type == kind and a.transition.endswith("raised")]
        assert [a.transition for a in raises] == (["raised"] + ["reraised"] * len(raises))[
            : len(raises)
        ]
    open_ids = sorted(i for i, s in status.items() if s != "cleared")
    assert sorted(a.alarm_id for a in policy.open_alarms(state)) == open_ids
    # The raise and clear times equal the reference's.
    for kind in TYPES:
        got = []
        for a in events:
            if a.alarm_type != kind:
                continue
            if a.transition.endswith("raised"):
                got.append([a.ts.timestamp(), None])
            elif a.transition == "cleared":
                got[-1][1] = a.ts.timestamp()
        want = reference_alarms(times, ev[kind], cfg, window, end)
        assert [tuple(g) for g in got] == want
    # De-escalations happen only after quiet_s of lower (not quiet) evidence, to its maximum.
    for a in events:
        if a.transition != "deescalated":
            continue
        start = a.ts.timestamp() - quiet_s
        span = [
            e for t, e in zip(times, ev[a.alarm_type], strict=True) if start <= t < a.ts.timestamp()
        ]
        assert start in times and span and max(span) == RANK[a.severity]
        assert min(span) >= clear_rank


# -- determinism and checkpoints ---------------------------------------------------------------


def _noisy_scores(n: int) -> list[AnomalyScore]:
    """Every 13 s: a machine cycling through the lifecycle's regimes, and a sensor that
    misbehaves at random (seeded)."""
    cycle = (
        ["normal"] * 10
        + ["medium"] * 8  # raised, then escalated by persistence
        + ["critical"] * 4
        + ["medium"] * 6  # de-escalated after quiet_s
        + ["normal"] * 2  # recovering ...
        + ["medium"] * 2  # ... reactivated
        + ["normal"] * 6  # cleared; the next cycle re-raises
    )
    rng = random.Random(3)
    out = []
    for i in range(n):
        m = cycle[i % len(cycle)]
        s = rng.choice(["normal"] * 6 + ["watch", "medium", "high"])
        triggers = []
        if m != "normal":
            triggers.append(trig(m))
        if s != "normal":
            triggers.append(trig(s, "bearing_temp.std", "sensor", "stuck"))
        out.append(sc(13.0 * i, *triggers))
    return out


def test_same_scores_same_alarms_even_across_a_pickled_checkpoint() -> None:
    policy = AlarmPolicy(AlarmConfig(quiet_s=40.0, escalate_after_s=60.0))
    scores = _noisy_scores(300)
    silence_at, silence_until = scores[150].ts, scores[220].ts

    def replay(state: MachineAlarms, part: list[AnomalyScore]) -> list[Alarm]:
        out: list[Alarm] = []
        for score in part:
            if score.ts == silence_at:
                out += policy.silence(state, until=silence_until, at=silence_at)
            out += policy.on_score(score, state)
        return out

    reference = replay(policy.init(), scores)
    assert replay(policy.init(), scores) == reference
    state = policy.init()
    first = replay(state, scores[:137])
    restored = pickle.loads(pickle.dumps(state))  # what a checkpoint stores and restores
    assert first + replay(restored, scores[137:]) == reference
    # The sequence exercises the whole lifecycle, so the equality above means something.
    transitions = Counter(a.transition for a in reference)
    assert set(transitions) == {
        "raised",
        "reraised",
        "escalated",
        "deescalated",
        "recovering",
        "reactivated",
        "cleared",
        "silenced",
    }, transitions


# -- the process step in a flow ----------------------------------------------------------------


def _alarm_flow(step: AlarmStep) -> Flow:
    flow = Flow("alarms", Source(SCORES.name, AnomalyScore, partitioned_by="machine_id"))
    flow.stream.key_by("machine_id").process(step).to_topic(ALARMS.name)
    return flow


def test_the_step_in_a_flow_clears_by_timer_without_a_later_score() -> None:
    flow = _alarm_flow(AlarmStep(QUIET, settle_s=2.0))
    scores = [
        mach(0, "medium"),
        mach(10, "normal"),  # recovering: clears at 70 unless evidence returns
        # pump-001 sends nothing more; another machine's scores move the watermark.
        *(sc(20.0 * i, machine="fan-002") for i in range(1, 6)),  # up to 100 s
    ]
    out = flow.test(scores, watermark_delay_s=5.0)
    assert brief(out[ALARMS.name]) == [
        (0.0, f"{M}/machine/1", "raised", "medium", "active"),
        (10.0, f"{M}/machine/1", "recovering", "medium", "recovering"),
        (70.0, f"{M}/machine/1", "cleared", "medium", "cleared"),
    ]
    assert out.totals["alarm_cleared"] == 1 and out.totals["alarm_raised"] == 1
    # Not yet: the watermark (73 - 5 = 68 s) has not reached the deadline 70 + settle 2.
    short = flow.test([*scores[:2], sc(60.0 + 13.0, machine="fan-002")], watermark_delay_s=5.0)
    assert [a.transition for a in short[ALARMS.name]] == ["raised", "recovering"]


def test_the_flow_gives_what_the_policy_gives() -> None:
    scores = _noisy_scores(200)
    flow = _alarm_flow(AlarmStep(AlarmConfig(quiet_s=40.0), settle_s=0.0))
    policy = AlarmPolicy(AlarmConfig(quiet_s=40.0))
    state = policy.init()
    direct = run(policy, scores, state) + policy.advance(state, scores[-1].ts.timestamp() - 5.0)
    assert flow.test(scores, watermark_delay_s=5.0)[ALARMS.name] == direct


def _window_score(w: WindowResult) -> AnomalyScore:
    """A toy detector: a window whose mean vibration exceeds 5 mm/s is a medium anomaly."""
    mean = w.series["vibration"]["mean"]
    return mach(w.ts.timestamp() - T0, "medium" if mean > 5.0 else "normal")


def test_settle_s_waits_for_the_windows_grace_so_timers_see_every_earlier_score() -> None:
    cfg = AlarmConfig(quiet_s=22.0, escalate_after_s=None)
    readings = [
        Reading(
            ts=utc(T0 + i),
            machine_id=M,
            sensor="vibration",
            value=10.0 if i < 10 or 30 <= i < 35 else 1.0,
        )
        for i in range(61)
    ]

    def flow_with(settle_s: float) -> list[Alarm]:
        flow = Flow("w", Source("readings", Reading, partitioned_by="machine_id"))
        (
            flow.stream.key_by("machine_id")
            .window(tumbling(5.0), grace=3.0, series="sensor")
            .map(_window_score)
            .process(AlarmStep(cfg, settle_s=settle_s))
            .to_topic(ALARMS.name)
        )
        return flow.test(readings, watermark_delay_s=0.0)[ALARMS.name]

    # Quiet from the window ending at 15, so the clear is due at 37; the window [30, 35) is
    # not quiet, but closes only at 35 + grace 3 = 38.
    policy = AlarmPolicy(cfg)
    state = policy.init()
    scores = [mach(5.0 * k, "medium" if k in (1, 2, 7) else "normal") for k in range(1, 12)]
    direct = run(policy, scores, state)
    assert brief(direct) == [
        (5.0, f"{M}/machine/1", "raised", "medium", "active"),
        (15.0, f"{M}/machine/1", "recovering", "medium", "recovering"),
        (35.0, f"{M}/machine/1", "reactivated", "medium", "active"),
        (40.0, f"{M}/machine/1", "recovering", "medium", "recovering"),
    ]
    assert flow_with(3.0) == direct
    # Without settling, the timer clears at 37 before the score of [30, 35) arrives, which
    # then re-raises: the premature clear settle_s exists to prevent.
    assert [(a.transition, a.ts.timestamp() - T0) for a in flow_with(0.0)][1:4] == [
        ("recovering", 15.0),
        ("cleared", 37.0),
        ("reraised", 37.0),
    ]


def test_the_step_refuses_what_is_not_a_score() -> None:
    alarm = Alarm(
        ts=at(0.0),
        alarm_id="x/machine/1",
        machine_id="x",
        alarm_type="machine",
        severity="medium",
        status="active",
        transition="raised",
        raised_at=at(0.0),
    )
    with pytest.raises(TypeError, match="expected an AnomalyScore or AlarmCommand, got Alarm"):
        AlarmStep(QUIET).on_event(alarm, MachineAlarms(), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="settle_s=-1"):
        AlarmStep(QUIET, settle_s=-1)


# -- analytics tables --------------------------------------------------------------------------


def test_alarm_score_and_health_rows_are_written_once_per_rid(tmp_path: Path) -> None:
    policy = AlarmPolicy(QUIET)
    state = policy.init()
    scores = [mach(0, "medium"), mach(5, "high"), mach(10, "normal"), mach(70, "normal")]
    alarms = run(policy, scores, state)
    alarms += policy.acknowledge(state, f"{M}/machine/1", "alice", at(80.0))
    health = MachineHealth(
        ts=at(70.0),
        machine_id=M,
        risk=0.75,
        risk_level="high",
        health=31.5,
        time_to_maintenance_h=None,
        explanation={"risk": 0.75, "vibration.mean": 4.2},
        model_version="risk@v0001",
    )
    log = SqliteLog(tmp_path / "log.db")
    for topic in (SCORES, ALARMS, HEALTH):
        topic.create(log)
    log.produce(
        OutRecord(SCORES.name, M.encode(), encode(s), f"s/{i}") for i, s in enumerate(scores)
    )
    log.produce(
        OutRecord(ALARMS.name, M.encode(), encode(a), f"a/{i}") for i, a in enumerate(alarms)
    )
    log.produce([OutRecord(HEALTH.name, M.encode(), encode(health), "h/0")])
    store = DuckDBStore(tmp_path / "a.duckdb")
    topics = [SCORES.name, ALARMS.name, HEALTH.name]
    assert sink_topics(log, store, topics, "sink") == len(scores) + len(alarms) + 1
    for topic in topics:  # a replay (as after a crash before the commit) adds nothing
        assert store.write_records(read_all(log, topic)) == 0
    assert (
        store.count("anomaly_scores"),
        store.count("alarms"),
        store.count("machine_health"),
    ) == (
        4,
        5,
        1,
    )
    rows = store.query(
        "SELECT transition, severity, status, acknowledged, ack_by, epoch(ack_at),"
        " epoch(raised_at), refreshes, json_array_length(triggers) FROM alarms ORDER BY ts, rid"
    )
    assert [r[:5] for r in rows] == [
        ("raised", "medium", "active", False, ""),
        ("escalated", "high", "active", False, ""),
        ("recovering", "high", "recovering", False, ""),
        ("cleared", "high", "cleared", False, ""),
        ("acknowledged", "high", "cleared", True, "alice"),
    ]
    assert [r[5] for r in rows] == [None] * 4 + [T0 + 80.0]
    assert {r[6] for r in rows} == {T0}
    assert [r[7] for r in rows] == [0, 1, 1, 1, 1]
    assert [r[8] for r in rows] == [1, 1, 1, 1, 1]
    assert store.query(
        "SELECT severity, score, category, triggers->0->>'feature' FROM anomaly_scores"
        " ORDER BY ts LIMIT 2"
    ) == [("medium", 3.0, "machine", "vibration.mean"), ("high", 4.0, "machine", "vibration.mean")]
    assert store.query(
        "SELECT risk, risk_level, health, time_to_maintenance_h,"
        " CAST(explanation->>'vibration.mean' AS DOUBLE), model_version FROM machine_health"
    ) == [(0.75, "high", 31.5, None, 4.2, "risk@v0001")]
