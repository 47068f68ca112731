"""The API's read model (store/live.py): every query equals a brute-force recomputation over
the events in the log (Hypothesis), bounds hold, a restart from the tail equals a view fed
only the tail, undecodable input is counted and skipped, subscribers hear each alarm,
outcome and health exactly once in log order, and real twin + worker output is folded."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearwatch.bus.base import Log, OutRecord, read_all
from wearwatch.bus.memory import MemoryLog
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
    utc,
)
from wearwatch.store import live
from wearwatch.store.live import (
    ALARM_STATUSES,
    EWMA_ALPHA,
    RECENT_PASSES,
    VIEW_TOPICS,
    LineSummary,
    LiveView,
    MachineSummary,
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
    TOPICS,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MACHINES = ("m1", "m2", "m3")
LINES = ("A", "B")
LEARNER = "rls"

# -- a random stream of every kind of event the view reads ------------------------------------

ts_st = st.integers(0, 40).map(lambda k: utc(T0 + 5.0 * k))
ape_st = st.floats(0.0, 50.0, allow_nan=False)


@st.composite
def events(draw: Any) -> Any:
    kind = draw(
        st.sampled_from(
            ("feature", "score", "health", "alarm", "truth", "outcome", "setpoint", "wear", "dead")
        )
    )
    ts = draw(ts_st)
    machine = draw(st.sampled_from(MACHINES))
    if kind == "feature":
        return FeatureVector(
            ts=ts,
            machine_id=machine,
            window_s=draw(st.sampled_from((5.0, 30.0))),
            features={"vib.mean": draw(ape_st)},
        )
    if kind == "score":
        return AnomalyScore(
            ts=ts,
            machine_id=machine,
            window_s=30.0,
            severity=draw(st.sampled_from(SEVERITIES)),
            score=draw(ape_st),
            reason=draw(st.sampled_from(("", "vib.max"))),
            model_version=draw(st.sampled_from(("", "anomaly@v0001"))),
        )
    if kind == "health":
        return MachineHealth(
            ts=ts,
            machine_id=machine,
            risk=draw(st.floats(0, 1)),
            risk_level=draw(st.sampled_from(("low", "medium", "high"))),
            health=draw(st.floats(0, 100)),
            time_to_maintenance_h=draw(st.none() | st.floats(0, 1000)),
            model_version=draw(st.sampled_from(("", "risk@v0002"))),
        )
    if kind == "alarm":
        n = draw(st.integers(1, 3))
        return Alarm(
            ts=ts,
            alarm_id=f"{machine}/machine/{n}",
            machine_id=machine,
            alarm_type="machine",
            severity=draw(st.sampled_from(SEVERITIES[1:])),
            status=draw(st.sampled_from(("active", "recovering", "cleared"))),
            transition="raised",
            raised_at=utc(T0 + draw(st.integers(0, 3))),
        )
    if kind == "truth":
        return MaintenanceEvent(
            ts=ts, asset_id=machine, kind=draw(st.sampled_from(("fault_onset", "repair")))
        )
    line = draw(st.sampled_from(LINES))
    if kind == "outcome":
        model_ape = draw(st.dictionaries(st.sampled_from((LEARNER, "mean")), ape_st))
        return PassOutcome(
            ts=ts,
            slab_id=f"s{draw(st.integers(0, 20))}",
            pass_no=draw(st.integers(1, 7)),
            line=line,
            actual_force_kn=1.0,
            baseline_force_kn=1.0,
            served_force_kn=1.0,
            source=draw(st.sampled_from(("model", "physics", "clipped"))),
            physics_ape=draw(ape_st),
            served_ape=draw(ape_st),
            model_ape=model_ape,
            router_state=draw(st.sampled_from(("warmup", "serving", "benched"))),
        )
    if kind == "setpoint":
        return Setpoint(
            ts=ts,
            slab_id="s1",
            pass_no=1,
            line=line,
            served_force_kn=1.0,
            source=draw(st.sampled_from(("model", "physics"))),
            reason=draw(st.sampled_from(("model", "warmup", "trust_deficit"))),
            baseline_force_kn=1.0,
        )
    if kind == "wear":
        return TwinTelemetry(
            ts=ts,
            asset_id="mill-R1",
            name=draw(st.sampled_from(("roll_wear", "other"))),
            value=draw(ape_st),
        )
    return DeadLetter(ts=ts, source_topic=draw(st.sampled_from(("fleet.readings", "mill.passes"))))


TOPIC_OF = {
    FeatureVector: FEATURES,
    AnomalyScore: SCORES,
    MachineHealth: HEALTH,
    Alarm: ALARMS,
    MaintenanceEvent: MAINTENANCE,
    PassOutcome: MILL_OUTCOMES,
    Setpoint: MILL_DECISIONS,
    TwinTelemetry: MILL_TWIN,
    DeadLetter: DEAD_LETTERS,
}


def produce(log: MemoryLog, stream: Sequence[Any], batch: bool = False) -> None:
    """One record per event, keyed as the topic says; ``batch``: runs of events for the same
    topic and partition travel as one JSON-array record (as the workers write them)."""
    records: list[tuple[str, bytes, list[Any]]] = []
    for event in stream:
        topic = TOPIC_OF[type(event)]
        key = topic.key_of(event).encode()
        if batch and records and records[-1][:2] == (topic.name, key):
            records[-1][2].append(event)
        else:
            records.append((topic.name, key, [event]))
    for name, key, items in records:
        value = encode(items) if len(items) > 1 else encode(items[0])
        log.produce([OutRecord(name, key, value)])


def make_log(partitions: int = 2) -> MemoryLog:
    log = MemoryLog(default_partitions=partitions)
    for topic in VIEW_TOPICS:
        topic.create(log)
    return log


def drain(view: LiveView, max_records: int = 5000) -> int:
    total = 0
    while n := view.poll(max_records):
        total += n
    return total


# -- the brute-force reference --------------------------------------------------------------


@dataclass
class Reference:
    """Every query answered naively from the full list of events per topic, in log order
    (partition by partition: per-key order is all the log promises)."""

    by_topic: dict[str, list[Any]]
    history: int
    outcomes: int
    skipped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, log: Log, history: int, outcomes: int, tail: int | None = None) -> Reference:
        by_topic: dict[str, list[Any]] = {}
        for topic in VIEW_TOPICS:
            records = read_all(log, topic.name)
            if tail is not None and topic is not ALARMS:
                ends = log.end_offsets(topic.name)
                records = [r for r in records if r.offset >= ends[r.partition] - tail]
            by_topic[topic.name] = [
                e for r in records for e in decode_record(r.value, topic.event_type).events
            ]
        return cls(by_topic, history, outcomes)

    def of_type(self, topic: Any) -> list[Any]:
        return self.by_topic[topic.name]

    def machine_ids(self) -> list[str]:
        topics = (FEATURES, SCORES, HEALTH, ALARMS)
        return sorted({e.machine_id for t in topics for e in self.of_type(t)})

    def latest(self, topic: Any, machine: str) -> Any:
        found = [e for e in self.of_type(topic) if e.machine_id == machine]
        return found[-1] if found else None

    def alarms(
        self, status: str | None = None, severity: str | None = None, machine: str | None = None
    ) -> list[Alarm]:
        latest: dict[str, Alarm] = {}
        for a in self.of_type(ALARMS):
            latest[a.alarm_id] = a
        out = [
            a
            for a in latest.values()
            if (
                status is None or a.status == status or (status == "open" and a.status != "cleared")
            )
            and (severity is None or a.severity == severity)
            and (machine is None or a.machine_id == machine)
        ]
        return sorted(out, key=lambda a: (a.raised_at, a.alarm_id))

    def summary(self, machine: str) -> MachineSummary:
        score, health = self.latest(SCORES, machine), self.latest(HEALTH, machine)
        open_ = self.alarms(status="open", machine=machine)
        times = [
            e.ts
            for t in (FEATURES, SCORES, HEALTH, ALARMS)
            for e in self.of_type(t)
            if e.machine_id == machine
        ]
        versions = {}
        if score is not None and score.model_version:
            versions["anomaly"] = score.model_version
        if health is not None and health.model_version:
            versions["risk"] = health.model_version
        return MachineSummary(
            machine_id=machine,
            health=health.health if health else None,
            risk=health.risk if health else None,
            risk_level=health.risk_level if health else "",
            time_to_maintenance_h=health.time_to_maintenance_h if health else None,
            severity=score.severity if score else "",
            reason=score.reason if score else "",
            open_alarms=len(open_),
            worst_alarm=max((a.severity for a in open_), key=SEVERITIES.index, default=""),
            event_time=max(times) if times else None,
            model_versions=versions,
        )

    def features(self, machine: str, window_s: float, since: datetime | None) -> list[Any]:
        ring = [
            e for e in self.of_type(FEATURES) if e.machine_id == machine and e.window_s == window_s
        ][-self.history :]
        return [e for e in ring if since is None or e.ts > since]

    def scores(self, machine: str, since: datetime | None) -> list[Any]:
        ring = [e for e in self.of_type(SCORES) if e.machine_id == machine][-self.history :]
        return [e for e in ring if since is None or e.ts > since]

    def outcomes_kept(self, line: str) -> list[PassOutcome]:
        return [o for o in self.of_type(MILL_OUTCOMES) if o.line == line][-self.outcomes :]

    def mill_outcomes(self, since: datetime | None, line: str | None, limit: int) -> list[Any]:
        out = [
            o
            for name in self.line_names()
            if line is None or name == line
            for o in self.outcomes_kept(name)
            if since is None or o.ts > since
        ]
        out.sort(key=lambda o: (o.ts, o.line, o.slab_id, o.pass_no))
        return out[-limit:] if limit else []

    def line_names(self) -> list[str]:
        names = {o.line for o in self.of_type(MILL_OUTCOMES)}
        return sorted(names | {s.line for s in self.of_type(MILL_DECISIONS)})

    def lines(self) -> list[LineSummary]:
        out = []
        for name in self.line_names():
            outs = [o for o in self.of_type(MILL_OUTCOMES) if o.line == name]
            sets = [s for s in self.of_type(MILL_DECISIONS) if s.line == name]
            ewma: dict[str, float] = {}
            for o in outs:
                for key, ape in (
                    ("physics", o.physics_ape),
                    ("model", o.model_ape.get(LEARNER)),
                    ("served", o.served_ape),
                ):
                    if ape is not None:
                        prev = ewma.get(key)
                        ewma[key] = (
                            ape if prev is None else EWMA_ALPHA * ape + (1 - EWMA_ALPHA) * prev
                        )
            recent = outs[-RECENT_PASSES:]
            means: dict[str, float] = {}
            if recent:
                means["physics"] = sum(o.physics_ape for o in recent) / len(recent)
                models = [o.model_ape[LEARNER] for o in recent if LEARNER in o.model_ape]
                if models:
                    means["model"] = sum(models) / len(models)
                means["served"] = sum(o.served_ape for o in recent) / len(recent)
            out.append(
                LineSummary(
                    line=name,
                    passes=len(outs),
                    router_state=outs[-1].router_state if outs else "",
                    source=sets[-1].source if sets else "",
                    reason=sets[-1].reason if sets else "",
                    model_share=(sum(o.source == "model" for o in recent) / len(recent))
                    if recent
                    else 0.0,
                    ewma_ape=ewma,
                    mean_ape_recent=means,
                    last_ts=max(e.ts for e in outs + sets),
                )
            )
        return out

    def wear(self) -> list[tuple[datetime, float]]:
        w = [
            (t.ts, t.value)
            for t in self.of_type(MILL_TWIN)
            if isinstance(t, TwinTelemetry) and t.name == "roll_wear"
        ]
        return w[-self.outcomes :]

    def truth(self, asset: str) -> list[Any]:
        return [
            e
            for t in (MAINTENANCE, MILL_TWIN)
            for e in self.of_type(t)
            if isinstance(e, MaintenanceEvent) and e.asset_id == asset
        ][-self.history :]

    def dead_letters(self) -> dict[str, int]:
        return {
            f"dead_letters:{k}": v
            for k, v in Counter(d.source_topic for d in self.of_type(DEAD_LETTERS)).items()
        }


def approx_line(a: LineSummary) -> dict[str, Any]:
    d = {f: getattr(a, f) for f in a.__struct_fields__}
    for key in ("ewma_ape", "mean_ape_recent"):
        d[key] = {k: pytest.approx(v, rel=1e-9, abs=1e-9) for k, v in d[key].items()}
    d["model_share"] = pytest.approx(d["model_share"])
    return d


def assert_matches(
    view: LiveView, ref: Reference, machines: Sequence[str] = MACHINES, lines: Sequence[str] = LINES
) -> None:
    """Every query of the view equals the reference's answer."""
    assert view.machine_ids() == ref.machine_ids()
    assert view.machines() == [ref.summary(m) for m in ref.machine_ids()]
    probes = [None, *(utc(T0 + 5.0 * k) for k in (0, 7, 20, 39))]
    for m in (*machines, "nope"):
        score, health = ref.latest(SCORES, m), ref.latest(HEALTH, m)
        assert view.latest_score(m) == score
        assert view.latest_health(m) == health
        assert view.latest_score_json(m) == (encode(score) if score else None)
        assert view.latest_health_json(m) == (encode(health) if health else None)
        assert view.machine(m) == (ref.summary(m) if m in ref.machine_ids() else None)
        for since in probes:
            assert view.scores(m, since) == ref.scores(m, since)
            for w in (5.0, 30.0):
                assert view.features(m, w, since) == ref.features(m, w, since)
        assert view.truth(m) == ref.truth(m)
        assert (
            view.alarm_history(m)
            == [a for a in ref.of_type(ALARMS) if a.machine_id == m][-ref.history :]
        )
    for status in (None, *ALARM_STATUSES):
        for severity in (None, *SEVERITIES):
            for m in (None, *machines):
                assert view.alarms(status, severity, m) == ref.alarms(status, severity, m)
    for a in ref.alarms():
        assert view.alarm(a.alarm_id) == a
    for since in probes:
        for line in (None, *lines):
            for limit in (0, 3, 1000):
                assert view.mill_outcomes(since, line, limit) == ref.mill_outcomes(
                    since, line, limit
                )
        assert view.mill_wear(since) == [w for w in ref.wear() if since is None or w[0] > since]
    assert [approx_line(x) for x in view.mill_lines()] == [approx_line(x) for x in ref.lines()]
    counts = view.counts()
    for topic in VIEW_TOPICS:
        assert counts.get(topic.name, 0) == len(ref.of_type(topic))
    assert {k: v for k, v in counts.items() if k.startswith("dead_letters:")} == ref.dead_letters()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(events(), max_size=120),
    st.booleans(),
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(1, 50),
    st.integers(1, 4),
    st.sampled_from((1, 3, 256)),
)
def test_every_query_equals_a_brute_force_recomputation(
    stream: list[Any],
    batch: bool,
    history: int,
    outcomes: int,
    max_records: int,
    chunks: int,
    apply_slice: int,
) -> None:
    """Random events of every kind, produced in ``chunks`` with polls (of at most
    ``max_records`` records, applied ``apply_slice`` at a time) in between; tiny bounds so the
    ring buffers evict."""
    log = make_log()
    view = LiveView(log, history=history, outcomes=outcomes, learner=LEARNER)
    size = -(-len(stream) // chunks) if stream else 1
    with patch.object(live, "APPLY_SLICE", apply_slice):
        for i in range(0, max(len(stream), 1), size):
            produce(log, stream[i : i + size], batch)
            view.poll(max_records)
        drain(view, max_records)
    assert_matches(view, Reference.of(log, history, outcomes))
    # bounds hold, whatever the stream
    for m in view._machines.values():
        assert len(m.scores) <= history and len(m.history) <= history
        assert all(len(ring) <= history for ring in m.features.values())
    assert all(len(ring) <= history for ring in view._truth.values())
    assert all(len(line.outcomes) <= outcomes for line in view._lines.values())
    assert all(len(line.recent) <= RECENT_PASSES for line in view._lines.values())
    assert len(view._wear) <= outcomes


@settings(max_examples=40, deadline=None)
@given(st.lists(events(), max_size=120), st.integers(1, 10))
def test_a_restart_reads_the_tail_and_equals_a_view_of_only_the_tail(
    stream: list[Any], tail: int
) -> None:
    """A view started on a log that already holds records reads each topic from
    ``end − tail_records`` per partition (alarms from 0): it answers every query as the brute
    force does over exactly those records."""
    log = make_log()
    produce(log, stream)
    view = LiveView(log, history=720, outcomes=5000, tail_records=tail, learner=LEARNER)
    drain(view)
    assert_matches(view, Reference.of(log, 720, 5000, tail=tail))
    for topic in VIEW_TOPICS:
        ends = log.end_offsets(topic.name)
        assert view.positions()[topic.name] == ends


def test_a_restarted_view_shows_the_latest_state_of_one_that_followed_from_the_start() -> None:
    """Every machine reports each round; a view restarted with a tail of one round per
    partition has the same latest state, summaries and alarms as one that read everything."""
    log = make_log(partitions=2)
    followed = LiveView(log)
    for k in range(50):
        ts = utc(T0 + 30.0 * k)
        round_: list[Any] = []
        for m in MACHINES:
            round_.append(
                AnomalyScore(
                    ts=ts, machine_id=m, window_s=30.0, severity=SEVERITIES[k % 5], score=float(k)
                )
            )
            round_.append(
                MachineHealth(ts=ts, machine_id=m, risk=k / 50, risk_level="low", health=100 - k)
            )
            if k % 10 == 0:
                round_.append(
                    Alarm(
                        ts=ts,
                        alarm_id=f"{m}/machine/{k}",
                        machine_id=m,
                        alarm_type="machine",
                        severity="high",
                        status="active",
                        transition="raised",
                        raised_at=ts,
                    )
                )
        produce(log, round_)
        followed.poll()
    restarted = LiveView(log, tail_records=2 * len(MACHINES))
    assert drain(restarted) < sum(len(read_all(log, t.name)) for t in VIEW_TOPICS)
    assert restarted.machines() == followed.machines()
    assert restarted.alarms() == followed.alarms() and len(restarted.alarms()) == 15
    for m in MACHINES:
        assert restarted.latest_score_json(m) == followed.latest_score_json(m) is not None
        assert restarted.latest_health_json(m) == followed.latest_health_json(m) is not None


def test_lag_counts_what_the_last_poll_saw_and_left_unread() -> None:
    log = make_log(partitions=2)
    produce(
        log,
        [
            MachineHealth(
                ts=utc(T0 + k), machine_id=MACHINES[k % 3], risk=0.0, risk_level="low", health=1.0
            )
            for k in range(9)
        ],
    )
    view = LiveView(log)
    assert view.lag() == {}
    assert view.poll(max_records=4) == 4
    assert view.lag() == {t.name: 5 if t is HEALTH else 0 for t in VIEW_TOPICS}
    drain(view)
    assert set(view.lag().values()) == {0}


def test_catch_up_applies_what_the_log_holds_and_subscribers_then_hear_only_new_records() -> None:
    log = make_log(partitions=2)
    health = [
        MachineHealth(
            ts=utc(T0 + k), machine_id=MACHINES[k % 3], risk=0.0, risk_level="low", health=float(k)
        )
        for k in range(24)
    ]
    produce(log, health[:20])
    view = LiveView(log)
    assert view.catch_up(max_records=3) == 20
    assert set(view.lag().values()) == {0} and view.counts()[HEALTH.name] == 20
    heard: list[bytes] = []
    view.subscribe(lambda kind, payload: heard.append(payload))
    produce(log, health[20:])
    assert view.catch_up() == 4
    assert sorted(heard) == sorted(encode(h) for h in health[20:])
    assert view.catch_up() == 0


def test_a_topic_created_after_the_start_is_read_from_its_beginning() -> None:
    log = MemoryLog()
    view = LiveView(log, tail_records=1)
    assert view.poll() == 0
    HEALTH.create(log)
    events_ = [
        MachineHealth(ts=utc(T0 + k), machine_id="m1", risk=0.0, risk_level="low", health=float(k))
        for k in range(3)
    ]
    produce(log, events_)
    assert view.poll() == 3
    assert view.counts()[HEALTH.name] == 3 and view.latest_health("m1") == events_[-1]


def test_undecodable_records_and_items_are_counted_and_skipped() -> None:
    """Garbage, a batch with one bad item, a wrong event type, a naive timestamp: counted
    once per bad item; the good events of the batch are applied and the view keeps going."""
    log = make_log(partitions=1)
    good = [
        MachineHealth(
            ts=utc(T0 + k), machine_id="m1", risk=0.5, risk_level="medium", health=50.0 + k
        )
        for k in range(2)
    ]
    bad_item = json.loads(encode(good[0]))
    bad_item["health"] = 101.0
    batch = b"[" + encode(good[0]) + b"," + json.dumps(bad_item).encode() + b","
    batch += encode(good[1]) + b"]"
    score = AnomalyScore(ts=utc(T0), machine_id="m1", window_s=5.0, severity="normal", score=0.0)
    naive = encode(score).replace(b"Z", b"")
    log.produce(
        [
            OutRecord(HEALTH.name, b"m1", b"\x00garbage"),
            OutRecord(HEALTH.name, b"m1", batch),
            OutRecord(HEALTH.name, b"m1", encode(score)),  # an AnomalyScore on fleet.health
            OutRecord(SCORES.name, b"m1", naive),
            OutRecord(SCORES.name, b"m1", encode(score)),
        ]
    )
    view = LiveView(log)
    assert drain(view) == 5
    counts = view.counts()
    assert counts["undecodable"] == 4
    assert counts[HEALTH.name] == 2 and counts[SCORES.name] == 1
    assert view.latest_health("m1") == good[1] and view.latest_score("m1") == score


def test_subscribers_hear_each_alarm_outcome_and_health_once_in_log_order() -> None:
    log = make_log(partitions=2)
    view = LiveView(log)
    heard: list[tuple[str, bytes]] = []
    unsubscribe = view.subscribe(lambda kind, payload: heard.append((kind, payload)))
    stream = []
    for k in range(30):
        ts = utc(T0 + k)
        m = MACHINES[k % 3]
        stream.append(
            MachineHealth(ts=ts, machine_id=m, risk=0.1, risk_level="low", health=float(k))
        )
        stream.append(
            Alarm(
                ts=ts,
                alarm_id=f"{m}/machine/1",
                machine_id=m,
                alarm_type="machine",
                severity="high",
                status="active",
                transition="raised",
                raised_at=ts,
            )
        )
        stream.append(
            PassOutcome(
                ts=ts,
                slab_id=f"s{k}",
                pass_no=1,
                line=LINES[k % 2],
                actual_force_kn=1.0,
                baseline_force_kn=1.0,
                served_force_kn=1.0,
                physics_ape=1.0,
                served_ape=1.0,
            )
        )
        stream.append(
            AnomalyScore(ts=ts, machine_id=m, window_s=5.0, severity="normal", score=0.0)
        )  # not a subscribed kind

    for i in range(0, len(stream), 7):
        produce(log, stream[i : i + 7], batch=True)
        view.poll(max_records=3)
    drain(view, 3)
    kinds = {MachineHealth: "health", Alarm: "alarm", PassOutcome: "outcome"}
    expected = [(kinds[type(e)], encode(e)) for e in stream if type(e) in kinds]
    assert Counter(heard) == Counter(expected) and len(heard) == len(expected)

    def keyed(pairs: list[tuple[str, bytes]]) -> dict[tuple[str, str], list[bytes]]:
        out: dict[tuple[str, str], list[bytes]] = {}
        for kind, payload in pairs:
            doc = json.loads(payload)
            out.setdefault((kind, doc.get("machine_id") or doc["line"]), []).append(payload)
        return out

    assert keyed(heard) == keyed(expected)  # per key (= per partition): the log's order
    unsubscribe()
    produce(log, stream[:3])
    drain(view)
    assert len(heard) == len(expected)


def test_a_subscriber_that_raises_is_removed_and_counted_and_the_view_goes_on() -> None:
    log = make_log(partitions=1)
    view = LiveView(log)
    heard: list[str] = []

    def broken(kind: str, payload: bytes) -> None:
        raise RuntimeError("client went away")

    view.subscribe(broken)
    view.subscribe(lambda kind, payload: heard.append(kind))
    health = [
        MachineHealth(ts=utc(T0 + k), machine_id="m1", risk=0.0, risk_level="low", health=float(k))
        for k in range(4)
    ]
    produce(log, health[:2])
    drain(view)
    produce(log, health[2:])
    drain(view)
    assert heard == ["health"] * 4
    assert view.counts()["subscriber_errors"] == 1
    assert view.latest_health("m1") == health[-1]


class FlakyLog(MemoryLog):
    """A log whose first ``failures`` reads fail, as a broker outage does."""

    def __init__(self, failures: int) -> None:
        super().__init__(default_partitions=2)
        self.failures = failures

    def read(self, topic: str, partition: int, start: int, max_records: int) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker kafka://h:9092 unreachable")
        return super().read(topic, partition, start, max_records)


def test_the_polling_thread_outlives_log_errors_and_catches_up() -> None:
    import threading

    log = FlakyLog(failures=3)
    HEALTH.create(log)
    health = [
        MachineHealth(ts=utc(T0 + k), machine_id=m, risk=0.0, risk_level="low", health=float(k))
        for k in range(5)
        for m in MACHINES
    ]
    produce(log, health)
    view = LiveView(log)
    stop = threading.Event()
    follower = threading.Thread(target=view.run, args=(stop, 0.01))
    follower.start()
    deadline = time.monotonic() + 30.0
    while view.counts().get(HEALTH.name, 0) < len(health) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    follower.join(timeout=30.0)
    assert view.counts()[HEALTH.name] == len(health) and view.counts()["poll_errors"] == 3
    assert view.last_error == "" and not follower.is_alive()
    assert [view.latest_health(m) for m in MACHINES] == health[-3:]


def test_the_default_learner_is_the_one_the_mill_router_serves() -> None:
    from wearwatch.pipelines.mill.pipeline import MillPipelineConfig

    assert LiveView(MemoryLog()).learner == MillPipelineConfig().default_learner


def test_cleared_alarms_are_bounded_and_open_ones_always_kept() -> None:
    log = make_log(partitions=1)
    stream = []
    for k in range(10):
        ts = utc(T0 + k)
        status = "active" if k < 2 else "cleared"
        stream.append(
            Alarm(
                ts=ts,
                alarm_id=f"m1/machine/{k}",
                machine_id="m1",
                alarm_type="machine",
                severity="high",
                status=status,
                transition="raised",
                raised_at=ts,
            )
        )
    produce(log, stream)
    view = LiveView(log, cleared_alarms=3)
    drain(view)
    assert [a.alarm_id for a in view.alarms()] == [
        "m1/machine/0",
        "m1/machine/1",
        "m1/machine/7",
        "m1/machine/8",
        "m1/machine/9",
    ]
    assert view.alarm("m1/machine/2") is None
    assert view.machine("m1").open_alarms == 2


def test_bad_arguments_name_the_field() -> None:
    view = LiveView(MemoryLog())
    with pytest.raises(ValueError, match="status='closed'"):
        view.alarms(status="closed")
    with pytest.raises(ValueError, match="severity='huge'"):
        view.alarms(severity="huge")
    with pytest.raises(ValueError, match="limit=-1"):
        view.mill_outcomes(limit=-1)
    with pytest.raises(ValueError, match="history=0"):
        LiveView(MemoryLog(), history=0)


def test_every_topic_the_view_reads_is_in_the_contract() -> None:
    assert all(TOPICS[t.name] is t for t in VIEW_TOPICS)


def test_real_twin_and_worker_output_is_folded_while_the_workers_run(tmp_path: Path) -> None:
    """The mill twin (300 passes, an abrupt shock) and a 4-machine fleet twin (20 min, a low
    vibration limit so an alarm is raised) on the embedded log; the view follows in its own
    thread while both pipelines run, then answers every query as the brute force does."""
    import threading

    from wearwatch.bus.sqlite import SqliteLog
    from wearwatch.pipelines.fleet.flow import fleet_pipeline
    from wearwatch.pipelines.mill.flow import mill_flow
    from wearwatch.runtime.flow_worker import FlowWorker
    from wearwatch.runtime.worker import WorkerOptions
    from wearwatch.twin.fleet.config import load_fleet_config
    from wearwatch.twin.fleet.publish import publish_fleet
    from wearwatch.twin.fleet.simulation import FleetTwin
    from wearwatch.twin.mill.publish import publish
    from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

    path = tmp_path / "log.db"
    log = SqliteLog(path)
    mill = MillTwin(MillTwinConfig(seed=3, scenario="abrupt", planned_passes=300))
    publish(log, mill.events(max_passes=300), batch=200)
    fleet = FleetTwin(load_fleet_config(None), machines=4, seed=7)
    publish_fleet(log, fleet, round(1200 / fleet.tick_s))
    view = LiveView(log, learner=LEARNER)
    heard: list[str] = []
    view.subscribe(lambda kind, payload: heard.append(kind))
    stop = threading.Event()
    follower = threading.Thread(target=view.run, args=(stop, 0.05))
    follower.start()
    try:
        options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0)
        FlowWorker(lambda: SqliteLog(path), mill_flow(), "mill", options).run(install_signals=False)
        limits = {m: {"vibration": (None, 2.5)} for m in fleet.machine_ids}
        FlowWorker(lambda: SqliteLog(path), fleet_pipeline(limits=limits), "fleet", options).run(
            install_signals=False
        )
        ends = {t.name: log.end_offsets(t.name) for t in VIEW_TOPICS if t.name in log.topics()}
        deadline = time.monotonic() + 60.0
        while view.positions() != ends and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        follower.join(timeout=30.0)
    assert view.positions() == ends
    ref = Reference.of(log, view.history, view.outcomes)
    assert view.machine_ids() == sorted(fleet.machine_ids)
    assert [line.line for line in view.mill_lines()] == ref.line_names() != []
    assert sum(line.passes for line in view.mill_lines()) == 300
    assert [a.alarm_id for a in view.alarms(status="open")] == ["fan-004/machine/1"]
    assert len(view.mill_wear()) == 300 and view.counts()["undecodable"] == 0
    assert Counter(heard) == {"alarm": 1, "outcome": 300, "health": len(ref.of_type(HEALTH))}
    assert_matches(view, ref, fleet.machine_ids, ref.line_names())


def test_the_view_folds_a_kafka_log_too(kafka_url: str) -> None:
    """The same reads on the Kafka backend (machines of their own: the broker is shared by
    the session's tests, which may write these topics too)."""
    import secrets

    from wearwatch.bus.kafka import KafkaLog

    log = KafkaLog(kafka_url)
    try:
        for topic in (HEALTH, ALARMS, MILL_OUTCOMES):
            topic.create(log)
        tag = secrets.token_hex(4)
        machines = [f"kv-{tag}-{i}" for i in range(3)]
        stream: list[Any] = []
        for k in range(6):
            for m in machines:
                ts = utc(T0 + k)
                stream.append(
                    MachineHealth(
                        ts=ts, machine_id=m, risk=k / 10, risk_level="low", health=90.0 - k
                    )
                )
                stream.append(
                    Alarm(
                        ts=ts,
                        alarm_id=f"{m}/machine/1",
                        machine_id=m,
                        alarm_type="machine",
                        severity=SEVERITIES[1 + k % 4],
                        status="active",
                        transition="raised",
                        raised_at=utc(T0),
                    )
                )
        log.produce(
            OutRecord(TOPIC_OF[type(e)].name, TOPIC_OF[type(e)].key_of(e).encode(), encode(e))
            for e in stream
        )
        log.flush()
        view = LiveView(log)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            view.poll()
            if all(view.latest_health(m) == stream[-6 + 2 * i] for i, m in enumerate(machines)):
                break
            time.sleep(0.1)
        for i, m in enumerate(machines):
            assert view.latest_health_json(m) == encode(stream[-6 + 2 * i])
            assert view.alarms(machine_id=m) == [stream[-5 + 2 * i]]
            assert view.machine(m).worst_alarm == SEVERITIES[1 + 5 % 4]
    finally:
        log.close()
