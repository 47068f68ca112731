"""Operators' alarm commands in the stream (issue 10): acknowledge, clear, silence and unsilence
travel on ``fleet.alarm_input`` with the scores and are applied by the ``fleet-alarms`` flow in
log order. Asserts the exact Alarm events, a re-raise with a new id after an operator clear,
the dead letter of a refused command (reason, field, original bytes) with the stream going on,
the two-flow setup equal to the fused flow, and SIGKILL crash equivalence on the embedded log."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearwatch import topics
from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.memory import MemoryLog
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import (
    Alarm,
    AlarmCommand,
    AnomalyScore,
    DeadLetter,
    Reading,
    Trigger,
    decode_event,
    encode,
    utc,
)
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.model import AnomalyModel
from wearwatch.pipelines import build_pipeline
from wearwatch.pipelines.fleet.alarm_commands import alarm_command_record, send_alarm_command
from wearwatch.pipelines.fleet.alarms import AlarmConfig, AlarmPolicy
from wearwatch.pipelines.fleet.flow import fleet_alarms_flow, fleet_pipeline
from wearwatch.pipelines.fleet_features import fleet_features
from wearwatch.runtime.dataflow import Flow

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
M = "fan-001"
A1, A2 = f"{M}/machine/1", f"{M}/machine/2"
HOT = Trigger(
    detector="zscore",
    feature="bearing_temp.mean",
    value=91.0,
    threshold=85.0,
    score=1.2,
    severity="medium",
)

#: The reason of an alarm HOT raises.
WHY = "zscore on bearing_temp.mean: 91 vs threshold 85 (medium)"


def score(t: float, hot: bool, machine: str = M) -> AnomalyScore:
    return AnomalyScore(
        ts=utc(T0 + t),
        machine_id=machine,
        window_s=30.0,
        severity="medium" if hot else "normal",
        score=1.2 if hot else 0.0,
        triggers=[HOT] if hot else [],
    )


def command(t: float, action: str, alarm_id: str = "", by: str = "", **kw: object) -> AlarmCommand:
    return AlarmCommand(
        ts=utc(T0 + t),
        machine_id=M,
        action=action,  # type: ignore[arg-type]
        alarm_id=alarm_id,
        by=by,
        **kw,  # type: ignore[arg-type]
    )


def rows(alarms: Iterable[Alarm]) -> list[tuple]:
    return [
        (
            a.ts.timestamp() - T0,
            a.alarm_id,
            a.transition,
            a.status,
            a.acknowledged,
            a.ack_by,
            None if a.ack_at is None else a.ack_at.timestamp() - T0,
            a.reason,
        )
        for a in alarms
    ]


def run(events: list[object]) -> dict:
    return fleet_alarms_flow(AlarmConfig(quiet_s=60.0)).test(events)


def test_acknowledge_silence_clear_unsilence_in_log_order() -> None:
    """Every command acts where the log puts it among the scores: the acknowledgement, the
    silence (one event per open alarm), the operator clear (acknowledgement kept), the raise a
    silence holds back (counted), the re-raise when the silence ends (new id), then the
    ordinary quiet-period clear of the new alarm by its deadline."""
    until = utc(T0 + 400.0)
    out = run(
        [
            score(0, True),
            command(30, "acknowledge", A1, "ann"),
            score(60, True),
            command(90, "silence", until=until),
            command(120, "clear", A1, "bob"),
            score(150, True),
            command(180, "unsilence"),
            command(190, "acknowledge", A2, "ann"),
            command(195, "acknowledge", A2, "carl"),  # once is enough: no event
            score(210, False),
            score(240, False),
            score(300, False),
        ]
    )
    assert rows(out[topics.ALARMS.name]) == [
        (0.0, A1, "raised", "active", False, "", None, WHY),
        (30.0, A1, "acknowledged", "active", True, "ann", 30.0, "acknowledged by ann"),
        (90.0, A1, "silenced", "active", True, "ann", 30.0, f"silenced until {until.isoformat()}"),
        (120.0, A1, "cleared", "cleared", True, "ann", 30.0, "cleared by bob"),
        (180.0, A2, "reraised", "active", False, "", None, WHY),
        (190.0, A2, "acknowledged", "active", True, "ann", 190.0, "acknowledged by ann"),
        (210.0, A2, "recovering", "recovering", True, "ann", 190.0, "evidence below watch"),
        (270.0, A2, "cleared", "cleared", True, "ann", 190.0, "evidence below watch for 60 s"),
    ]  # fmt: skip
    raised_at = [a.raised_at.timestamp() - T0 for a in out[topics.ALARMS.name]]
    assert raised_at == [0.0] * 4 + [180.0] * 4
    assert out[topics.DEAD_LETTERS.name] == []
    totals = out.totals
    assert (totals["alarm_suppressed"], totals["alarm_command_rejected"], totals["failed"]) == (
        1,
        0,
        0,
    )
    assert totals["processed"] == 12


def test_operator_clear_then_the_condition_returns_with_a_new_id() -> None:
    """Cleared by an operator while the condition was quiet: nothing is raised until evidence
    returns, then the type re-raises with the next id (and clearing that one works too)."""
    out = run(
        [
            score(0, True),
            score(30, False),  # recovering (quiet clock runs)
            command(40, "clear", A1, "ann"),  # the operator does not wait for the clock
            score(60, False),
            score(120, False),  # the quiet-period clear does not come a second time
            score(150, True),
            command(160, "clear", A2, "bob"),
        ]
    )
    assert [(r[0], r[1], r[2], r[3], r[7]) for r in rows(out[topics.ALARMS.name])] == [
        (0.0, A1, "raised", "active", WHY),
        (30.0, A1, "recovering", "recovering", "evidence below watch"),
        (40.0, A1, "cleared", "cleared", "cleared by ann"),
        (150.0, A2, "reraised", "active", WHY),
        (160.0, A2, "cleared", "cleared", "cleared by bob"),
    ]  # fmt: skip


def test_a_refused_command_is_dead_lettered_with_its_bytes_and_the_stream_goes_on() -> None:
    """An unknown alarm id, a second clear, a silence ending before it starts and a clear
    without a name: each a dead letter with the reason, the field at fault and the command's
    original bytes (here sent with spaces, as a client might); the scores after them are
    processed as if the refused commands had never been sent."""
    unknown = (
        b'{"type": "alarm_command", "ts": "2026-01-01T00:00:10Z", "machine_id": "fan-001", '
        b'"action": "acknowledge", "alarm_id": "fan-001/machine/9", "by": "ann"}'
    )
    twice = command(50, "clear", A1, "bob")
    backwards = command(60, "silence", until=utc(T0 + 60.0))
    nameless = command(70, "acknowledge", A1, "  ")
    events: list[object] = [
        score(0, True),
        unknown,
        command(40, "clear", A1, "ann"),
        twice,
        backwards,
        nameless,
        score(90, True),
    ]
    out = run(events)
    assert [(r[0], r[1], r[2]) for r in rows(out[topics.ALARMS.name])] == [
        (0.0, A1, "raised"),
        (40.0, A1, "cleared"),
        (90.0, A2, "reraised"),
    ]
    letters = out[topics.DEAD_LETTERS.name]
    assert [(d.source_topic, d.field, d.ts.timestamp() - T0) for d in letters] == [
        ("fleet.alarm_input", "alarm_id", 10.0),
        ("fleet.alarm_input", "alarm_id", 50.0),
        ("fleet.alarm_input", "until", 60.0),
        ("fleet.alarm_input", "by", 70.0),
    ]
    assert [d.raw for d in letters] == [unknown, encode(twice), encode(backwards), encode(nameless)]
    assert [d.reason for d in letters] == [
        "processing failed: AlarmCommandRejected: acknowledge refused: "
        "alarm_id='fan-001/machine/9': no such alarm on machine 'fan-001' "
        "(only the latest alarm of each type is kept)",
        "processing failed: AlarmCommandRejected: clear refused: "
        "alarm_id='fan-001/machine/1': already cleared (cleared by ann)",
        "processing failed: AlarmCommandRejected: silence refused: "
        "until=2026-01-01T00:01:00+00:00: must be after at=2026-01-01T00:01:00+00:00",
        "processing failed: AlarmCommandRejected: acknowledge refused: "
        "by='  ': expected who acknowledges (a non-empty name)",
    ]
    totals = out.totals
    rejected = (totals["alarm_command_rejected"], totals["failed"], totals["dead_lettered"])
    assert rejected == (4, 4, 4)
    assert (totals["in"], totals["processed"]) == (7, 3)


def test_a_silence_without_its_end_is_refused() -> None:
    out = run([score(0, True), command(10, "silence")])
    [letter] = out[topics.DEAD_LETTERS.name]
    assert letter.field == "until"
    assert letter.reason.endswith("refused: until=None: a silence needs its end (event time)")
    assert [a.transition for a in out[topics.ALARMS.name]] == ["raised"]


def test_the_command_record_and_send_put_it_where_the_scores_are() -> None:
    """Keyed by machine like the fleet flow's scores (same partition), created if missing,
    and decoded back to the same command."""
    log = MemoryLog(default_partitions=4)
    cmd = command(10, "acknowledge", A1, "ann")
    send_alarm_command(log, cmd)
    assert log.partitions(topics.ALARM_INPUT.name) == 4
    [record] = read_all(log, topics.ALARM_INPUT.name)
    assert record.key == M.encode() == alarm_command_record(cmd).key
    assert decode_event(record.value, AlarmCommand) == cmd
    scores = fleet_pipeline(alarm_input=True).sink_topics()
    assert topics.ALARM_INPUT.name in scores and topics.ALARMS.name not in scores


def test_fleet_alarms_is_registered_and_takes_an_alarm_config_table() -> None:
    flow = build_pipeline("fleet-alarms", {"alarms": {"quiet_s": 30.0}, "settle_s": 1.0})
    assert isinstance(flow, Flow)
    assert [(s.name, s.input_topic, s.outputs) for s in flow.compile()] == [
        ("fleet-alarms", "fleet.alarm_input", ("fleet.alarms",))
    ]
    with pytest.raises(ValueError, match="quiet_s"):
        build_pipeline("fleet-alarms", {"alarms": {"quiet_s": -1}})
    # `wearwatch worker fleet --param alarm_input=true`: its counterpart
    fleet = build_pipeline("fleet", {"alarm_input": True})
    assert isinstance(fleet, Flow)
    [stage] = fleet.compile()
    assert "fleet.alarm_input" in stage.outputs and "fleet.alarms" not in stage.outputs


# -- two flows = the fused flow ------------------------------------------------------------

LIMITS = {"*": {"vibration": (None, 7.1), "bearing_temp": (None, 85.0)}}
WINDOWS = (5.0, 30.0)
GRACE = 2.0


def fleet_readings(seed: int, machines: int, seconds: int) -> list[Reading]:
    """Readings every second from ``machines`` machines, with fault episodes of random
    lengths and sizes (from a fraction of a baseline's spread to past the hard limit: every
    severity), ending with a long healthy stretch: every alarm deadline falls well inside the
    input, where both setups apply it."""
    rng = random.Random(seed)
    episodes: dict[str, list[tuple[int, int, float]]] = {}
    for m in range(machines):
        spans = []
        t = rng.randint(0, 120)
        while t < seconds - 600:
            length = rng.choice([20, 45, 90, 200, 400])
            shift = rng.choice([0.1, 0.2, 0.3, 0.5, 1.0, 7.0])
            spans.append((t, min(t + length, seconds - 600), shift))
            t += length + rng.choice([10, 40, 100, 300])
        episodes[f"m-{m:03d}"] = spans
    out = []
    for s in range(seconds):
        for machine, spans in episodes.items():
            shift = next((x for a, b, x in spans if a <= s < b), 0.0)
            for sensor, value in (
                ("vibration", 2.0 + shift + rng.gauss(0, 0.2)),
                ("bearing_temp", 60.0 + rng.gauss(0, 1.0)),
            ):
                out.append(Reading(ts=utc(T0 + s), machine_id=machine, sensor=sensor, value=value))
    return out


@pytest.fixture(scope="module")
def model() -> AnomalyModel:
    """Rules (z-scores, persistence, hard limits) fitted on half an hour of healthy windows."""
    rng = random.Random(1)
    healthy = [
        Reading(ts=utc(T0 + s), machine_id=f"m-{m:03d}", sensor=sensor, value=rng.gauss(v, sd))
        for s in range(1800)
        for m in range(6)
        for sensor, v, sd in (("vibration", 2.0, 0.2), ("bearing_temp", 60.0, 1.0))
    ]
    windows = fleet_features(WINDOWS, GRACE).test(healthy)[topics.FEATURES.name]
    frame = pd.DataFrame(
        {"ts": pd.Timestamp(f.ts), "machine_id": f.machine_id, "window_s": f.window_s, **f.features}
        for f in windows
    )
    return AnomalyModel.fit(frame, LIMITS, AnomalyConfig(pca=False, hst=False))


def per_machine(alarms: list[Alarm]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for alarm in alarms:
        out[alarm.machine_id].append(encode(alarm))
    return dict(out)


def two_flows(
    model: AnomalyModel, readings: list[Reading], config: AlarmConfig, partitions: int
) -> tuple:
    fused = fleet_pipeline(model, None, config, WINDOWS, GRACE, limits=LIMITS)
    split = fleet_pipeline(model, None, config, WINDOWS, GRACE, limits=LIMITS, alarm_input=True)
    want = fused.test(readings, partitions=partitions, watermark_delay_s=1.0)
    first = split.test(readings, partitions=partitions, watermark_delay_s=1.0)
    assert topics.ALARMS.name not in first
    scores = first[topics.ALARM_INPUT.name]
    got = fleet_alarms_flow(config, settle_s=GRACE).test(scores, partitions=partitions)
    return want, first, got


def test_the_two_flow_setup_gives_the_fused_flows_alarms(model: AnomalyModel) -> None:
    """Same readings, no commands: the alarm stage fed from ``fleet.alarm_input`` emits the
    fused flow's alarms, byte for byte and in the same order per machine."""
    readings = fleet_readings(7, machines=6, seconds=2400)
    config = AlarmConfig(quiet_s=60.0, escalate_after_s=120.0)
    want, first, got = two_flows(model, readings, config, partitions=3)
    alarms = want[topics.ALARMS.name]
    transitions = {a.transition for a in alarms}
    every = {"raised", "reraised", "recovering", "cleared", "escalated", "deescalated"}
    assert every | {"reactivated"} == transitions
    assert len({a.machine_id for a in alarms}) == 6
    assert per_machine(got[topics.ALARMS.name]) == per_machine(alarms)
    # the scores on alarm_input are exactly the fused flow's alarm-window scores
    window = [s for s in want[topics.SCORES.name] if s.window_s == 30.0]
    assert sorted(map(encode, first[topics.ALARM_INPUT.name])) == sorted(map(encode, window))
    assert first[topics.SCORES.name] == want[topics.SCORES.name]
    for name in ("alarm_raised", "alarm_reraised", "alarm_cleared", "alarm_escalated"):
        assert got.totals[name] == want.totals[name]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    quiet_s=st.sampled_from([20.0, 60.0, 150.0]),
    raise_after_s=st.sampled_from([0.0, 30.0]),
    partitions=st.integers(1, 3),
)
def test_two_flows_equal_the_fused_flow_property(
    model: AnomalyModel, seed: int, quiet_s: float, raise_after_s: float, partitions: int
) -> None:
    readings = fleet_readings(seed, machines=3, seconds=1500)
    config = AlarmConfig(quiet_s=quiet_s, raise_after_s=raise_after_s, escalate_after_s=90.0)
    want, _, got = two_flows(model, readings, config, partitions)
    assert want[topics.ALARMS.name]  # something to compare
    assert per_machine(got[topics.ALARMS.name]) == per_machine(want[topics.ALARMS.name])


def test_policy_clear_refuses_without_changing_state() -> None:
    policy = AlarmPolicy(AlarmConfig(quiet_s=60.0))
    state = policy.init()
    policy.on_score(score(0, True), state)
    before = repr(state)
    with pytest.raises(KeyError, match="fan-001/machine/2"):
        policy.clear(state, A2, "ann", utc(T0 + 1))
    with pytest.raises(ValueError, match="by=''"):
        policy.clear(state, A1, "", utc(T0 + 1))
    assert repr(state) == before
    [cleared] = policy.clear(state, A1, "ann", utc(T0 + 2))
    assert (cleared.transition, cleared.status) == ("cleared", "cleared")
    assert not cleared.acknowledged
    assert policy.next_due(state) is None  # an operator clear leaves no deadline behind
    # a cleared alarm can still be acknowledged (CLEARED_UNACK → CLEARED_ACK)
    [ack] = policy.acknowledge(state, A1, "bob", utc(T0 + 3))
    assert (ack.status, ack.acknowledged, ack.ack_by) == ("cleared", True, "bob")


# -- crash equivalence on the embedded log --------------------------------------------------

CRASH_MACHINES = 40


def crash_input(path: Path) -> int:
    """Scores and commands for ``CRASH_MACHINES`` machines on ``fleet.alarm_input`` (4
    partitions), one event per record so the worker checkpoints between commands."""
    rng = random.Random(99)
    log = SqliteLog(path)
    log.create_topic(topics.ALARM_INPUT.name, 4)
    events: list[AnomalyScore | AlarmCommand] = []
    raised: dict[str, int] = defaultdict(int)
    hot_now: dict[str, bool] = defaultdict(bool)
    for step in range(60):
        t = 30.0 * step
        for m in range(CRASH_MACHINES):
            machine = f"m-{m:03d}"
            if rng.random() < 0.15:
                hot_now[machine] = not hot_now[machine]
            events.append(score(t, hot_now[machine], machine))
            if raised[machine] == 0 and hot_now[machine]:
                raised[machine] = 1
            roll = rng.random()
            base = dict(ts=utc(T0 + t), machine_id=machine)
            if roll < 0.05 and raised[machine]:
                events.append(
                    AlarmCommand(
                        **base,
                        action="acknowledge",  # type: ignore[arg-type]
                        alarm_id=f"{machine}/machine/{rng.randint(1, 3)}",
                        by="ann",
                    )
                )
            elif roll < 0.08 and raised[machine]:
                events.append(
                    AlarmCommand(
                        **base,
                        action="clear",  # type: ignore[arg-type]
                        alarm_id=f"{machine}/machine/{rng.randint(1, 3)}",
                        by="bob",
                    )
                )
            elif roll < 0.09:
                events.append(
                    AlarmCommand(
                        **base,
                        action="silence",  # type: ignore[arg-type]
                        until=utc(T0 + t + rng.choice([-30, 60, 300])),
                    )
                )
            elif roll < 0.10:
                events.append(AlarmCommand(**base, action="unsilence"))  # type: ignore[arg-type]
    log.produce(
        [
            alarm_command_record(e) if isinstance(e, AlarmCommand) else _score_record(e)
            for e in events
        ]
    )
    log.close()
    return len(events)


def _score_record(event: AnomalyScore) -> OutRecord:
    return OutRecord(topics.ALARM_INPUT.name, event.machine_id.encode(), encode(event))


def outputs(path: Path) -> tuple[dict[str, list[bytes]], list[bytes], list[str]]:
    log = SqliteLog(path)
    for topic in (topics.ALARMS.name, topics.DEAD_LETTERS.name):
        log.create_topic(topic)
    per_key: dict[str, list[bytes]] = defaultdict(list)
    rids = []
    for record in read_all(log, topics.ALARMS.name):
        per_key[decode_event(record.value, Alarm).machine_id].append(record.value)
        rids.append(record.rid)
    letters = sorted(
        decode_event(r.value, DeadLetter).raw for r in read_all(log, topics.DEAD_LETTERS.name)
    )
    log.close()
    return dict(per_key), letters, rids


@pytest.mark.slow
def test_sigkill_the_alarm_worker_gives_the_uninterrupted_alarms(
    tmp_path: Path, kill_at_progress: Callable[..., int], sqlite_committed: Callable[..., int]
) -> None:
    reference = tmp_path / "reference.db"
    crashed = tmp_path / "crashed.db"
    n_records = crash_input(reference)
    shutil.copy(reference, crashed)
    env = dict(os.environ)
    env.update(
        WEARWATCH_WATERMARK_DELAY_S="5",
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.02",
        WEARWATCH_POLL_MAX_RECORDS="7",
        WEARWATCH_LEASE_S="1",  # a restart waits for the killed worker's lease to expire
    )

    def cmd(path: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "fleet-alarms",
            "--bus",
            f"sqlite:///{path}",
            "--param",
            'alarms={"quiet_s": 60.0}',
            "--exit-when-idle",
            "--quiet",
        ]

    assert subprocess.run(cmd(reference), env=env, timeout=300).returncode == 0
    rng = random.Random(2026)
    targets = [rng.uniform(0.05, 0.9) * n_records for _ in range(5)]
    progress = lambda: sqlite_committed(crashed, "fleet-alarms")  # noqa: E731
    kills = kill_at_progress(cmd(crashed), env, progress, targets)
    assert kills >= 4
    assert progress() < n_records  # the last restart has work left to do
    assert subprocess.run(cmd(crashed), env=env, timeout=300).returncode == 0
    assert progress() == n_records

    expected, expected_letters, expected_rids = outputs(reference)
    actual, actual_letters, actual_rids = outputs(crashed)
    transitions = {decode_event(v, Alarm).transition for vs in expected.values() for v in vs}
    assert {"raised", "acknowledged", "cleared", "reraised", "silenced"} <= transitions
    assert len(expected_letters) > 0  # refused commands are part of the equivalence
    assert actual == expected  # same alarms, same per-machine order
    assert actual_letters == expected_letters
    assert len(actual_rids) == len(set(actual_rids)) == len(expected_rids)


# -- wearwatch alarms ------------------------------------------------------------------------


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp: Path, *args: str
) -> tuple[int, str, str]:
    """``wearwatch ARGS`` in this process (the real entry point, its one-line errors)."""
    from wearwatch.cli import main
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp / "data"))
    monkeypatch.setattr(sys, "argv", ["wearwatch", *args])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def scores_log(path: Path) -> str:
    """An embedded log whose alarm input holds fan-001's scores up to T0 + 90 s."""
    log = SqliteLog(path)
    log.create_topic(topics.ALARM_INPUT.name, 2)
    log.produce([_score_record(score(t, t in (0, 30))) for t in (0, 30, 60, 90)])
    log.produce([_score_record(score(120, False, "pump-002"))])
    log.close()
    return f"sqlite:///{path}"


def sent(path: Path) -> list[AlarmCommand]:
    log = SqliteLog(path)
    out = [
        decode_event(r.value, AlarmCommand)
        for r in read_all(log, topics.ALARM_INPUT.name)
        if b'"alarm_command"' in r.value
    ]
    log.close()
    return out


def test_the_cli_sends_commands_stamped_with_the_machines_event_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each command lands on fleet.alarm_input with the machine's latest event time there (not
    another machine's, not the wall clock); the fleet-alarms flow then applies them."""
    bus = scores_log(tmp_path / "log.db")
    runs = [
        ["alarms", "ack", A1, "--by", "ann", "--note", "on it"],
        ["alarms", "silence", M, "--until", "2h", "--by", "ann"],
        ["alarms", "silence", M, "--until", "2026-01-01T05:00:00+01:00"],
        ["alarms", "unsilence", M],
        ["alarms", "clear", A1, "--by", "bob"],
    ]
    for args in runs:
        code, out, err = cli(monkeypatch, capsys, tmp_path, *args, "--bus", bus)
        assert (code, err) == (0, ""), err
        assert out.startswith("sent: ") and "at event time 2026-01-01T00:01:30+00:00" in out
    at = utc(T0 + 90.0)
    assert sent(tmp_path / "log.db") == [
        AlarmCommand(ts=at, machine_id=M, action="acknowledge", alarm_id=A1, by="ann",
                     note="on it"),
        AlarmCommand(ts=at, machine_id=M, action="silence", by="ann", until=utc(T0 + 7290.0)),
        AlarmCommand(ts=at, machine_id=M, action="silence", until=utc(T0 + 4 * 3600.0)),
        AlarmCommand(ts=at, machine_id=M, action="unsilence"),
        AlarmCommand(ts=at, machine_id=M, action="clear", alarm_id=A1, by="bob"),
    ]  # fmt: skip
    # ... and the alarm stage applies them, in log order, after the scores
    from wearwatch.runtime.flow_worker import FlowWorker
    from wearwatch.runtime.worker import WorkerOptions

    options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, checkpoint_key="k" * 64)
    flow = fleet_alarms_flow(AlarmConfig(quiet_s=600.0))
    FlowWorker(lambda: SqliteLog(tmp_path / "log.db"), flow, "alarms", options).run(
        install_signals=False
    )
    log = SqliteLog(tmp_path / "log.db")
    alarms = [decode_event(r.value, Alarm) for r in read_all(log, topics.ALARMS.name)]
    log.close()
    assert [(a.ts.timestamp() - T0, a.transition, a.ack_by, a.reason) for a in alarms] == [
        (0.0, "raised", "", WHY),
        (60.0, "recovering", "", "evidence below watch"),
        (90.0, "acknowledged", "ann", "acknowledged by ann"),
        (90.0, "silenced", "ann", "silenced until 2026-01-01T02:01:30+00:00"),
        (90.0, "silenced", "ann", "silenced until 2026-01-01T04:00:00+00:00"),
        (90.0, "unsilenced", "ann", "silence ended"),
        (90.0, "cleared", "ann", "cleared by bob"),
    ]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["ack", "fan-001", "--by", "ann"], ["ALARM_ID 'fan-001'", "<machine>/<type>/<n>"]),
        (["clear", "fan-001/machine/0", "--by", "ann"], ["ALARM_ID 'fan-001/machine/0'"]),
        (["ack", A1, "--by", "  "], ["--by '  '", "non-empty name"]),
        (["ack", A1], ["Missing option '--by'"]),
        (["silence", M, "--until", "ten"], ["--until", "duration 'ten'"]),
        (["silence", M, "--until", "2026-01-01T05:00"], ["--until", "UTC offset"]),
        (["silence", M, "--until", "2025-12-31T00:00:00Z"], ["--until", "must be after"]),
        (["silence", M, "--until", "2026-13-01T00:00:00Z"], ["--until", "ISO time"]),
        (["silence", "nope", "--until", "1h"], ["machine 'nope'", "no scores"]),
        (["ack", "nope/machine/1", "--by", "ann"], ["machine 'nope'", "no scores"]),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_bad_cli_input_is_one_line_naming_the_option(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    names: list[str],
) -> None:
    bus = scores_log(tmp_path / "log.db")
    code, _, err = cli(monkeypatch, capsys, tmp_path, "alarms", *args, "--bus", bus)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert sent(tmp_path / "log.db") == []  # nothing was sent
