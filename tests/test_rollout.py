"""Shadow and canary rollout of a risk model: registry state, the fleet flow's serving
decisions and ``fleet.model_scores``, live metrics against brute force, the promote gate."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from wearwatch import topics
from wearwatch.bus import open_log
from wearwatch.bus.base import OutRecord
from wearwatch.events import MachineHealth, MaintenanceEvent, ModelScore, encode, utc
from wearwatch.pipelines.fleet.live_metrics import PromoteGate, compare
from wearwatch.store.registry import (
    ChecksumMismatch,
    ModelRegistry,
    RolloutError,
    UnknownVersion,
)
from wearwatch.store.rollout import Rollout, cohort_point

CURRENT, CANDIDATE = "risk@v0001", "risk@v0002"
HORIZON_S = 4 * 3600.0


# ---------------------------------------------------------------------------- registry
@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models")
    registry.register("risk", {"w": 1}, promote=True)
    registry.register("risk", {"w": 2})
    return registry


@pytest.mark.parametrize("share", [0, 0.0, -0.1, 1.5, math.nan, math.inf, True, "0.5"])
def test_a_canary_share_outside_0_1_is_refused(reg: ModelRegistry, share: Any) -> None:
    with pytest.raises(RolloutError, match=rf"share: .* in \(0, 1\], got {share!r}"):
        reg.start_rollout("risk", 2, "canary", share)
    assert reg.rollout("risk") is None


def test_rollout_validation_errors(reg: ModelRegistry) -> None:
    with pytest.raises(UnknownVersion, match="no version v0007"):
        reg.start_rollout("risk", 7, "shadow")
    with pytest.raises(RolloutError, match="mode: expected one of shadow, canary, got 'blue'"):
        reg.start_rollout("risk", 2, "blue")  # type: ignore[arg-type]
    with pytest.raises(RolloutError, match=r"a shadow serves no machines, got share=0\.5"):
        reg.start_rollout("risk", 2, "shadow", 0.5)
    with pytest.raises(RolloutError, match="v0001 is already current"):
        reg.start_rollout("risk", 1, "shadow")
    fresh = ModelRegistry(reg.root.parent / "fresh")
    fresh.register("risk", {"w": 1})
    with pytest.raises(RolloutError, match="no current version to compare"):
        fresh.start_rollout("risk", 1, "shadow")
    (reg.root / "risk" / "v0002" / "model.json").write_text('{"w": 3}')
    with pytest.raises(ChecksumMismatch):
        reg.start_rollout("risk", 2, "shadow")
    assert reg.rollout("risk") is None


def test_one_rollout_per_family_and_what_it_forbids(reg: ModelRegistry) -> None:
    reg.register("risk", {"w": 3})
    plan = reg.start_rollout("risk", "v2", "canary", 0.25)
    assert (plan.version, plan.mode, plan.share) == (2, "canary", 0.25)
    assert reg.rollout("risk") == plan
    with pytest.raises(RolloutError, match=r"v0002 \(canary 25%\) is already running"):
        reg.start_rollout("risk", 3, "shadow")
    with pytest.raises(RolloutError, match=r"rollout of v0002 .* promote it or abort it first"):
        reg.promote("risk", 3)
    with pytest.raises(RolloutError, match="abort it first"):
        reg.rollback("risk")
    assert reg.abort_rollout("risk") == plan
    with pytest.raises(RolloutError, match="no rollout is running"):
        reg.abort_rollout("risk")
    pointer = json.loads((reg.root / "risk" / "current.json").read_text())
    assert "rollout" not in pointer and pointer["version"] == 1
    assert [(h["action"], h["version"], h.get("mode"), h.get("share"))
            for h in pointer["history"]] == [
        ("promote", 1, None, None), ("rollout", 2, "canary", 0.25), ("abort", 2, "canary", 0.25)
    ]  # fmt: skip
    reg.start_rollout("risk", 3, "shadow")
    reg.promote("risk", 3, forced=True)
    last = reg.pointer("risk")["history"][-1]
    assert (last["action"], last["version"], last["from"]) == ("promote", 3, 1)
    assert (last["rollout"], last["forced"]) == ("shadow", True)
    assert reg.rollout("risk") is None and reg.current_version("risk") == 3


def test_cohort_is_sha256_of_the_machine_id_and_monotone_in_the_share() -> None:
    machines = [f"pump-{i:03d}" for i in range(200)]
    for m in machines:
        h = int(hashlib.sha256(m.encode()).hexdigest()[:16], 16)
        assert cohort_point(m) == h / 2**64
    cohorts = [{m for m in machines if Rollout(2, "canary", s).serves(m)} for s in (0.1, 0.5, 1.0)]
    assert cohorts[0] <= cohorts[1] <= cohorts[2] == set(machines)
    assert len(cohorts[1]) == sum(cohort_point(m) < 0.5 for m in machines)
    assert not any(Rollout(2, "shadow").serves(m) for m in machines)


# ---------------------------------------------------------------------------- live metrics
def _brute_force(
    scores: list[ModelScore], truth: list[MaintenanceEvent], current: str, candidate: str
) -> dict[str, Any]:
    """Each definition of live_metrics' docstring, one prediction at a time."""
    end = max([s.ts for s in scores] + [e.ts for e in truth]).timestamp()

    def outcome(s: ModelScore) -> float | None:
        t, h = s.ts.timestamp(), float(s.horizon_s or 0)
        if t + h > end:
            return None
        mine = sorted((e for e in truth if e.asset_id == s.machine_id), key=lambda e: e.ts)
        for f in (e for e in mine if e.kind == "failure" and e.ts.timestamp() < t):
            repair = min(
                (r.ts.timestamp() for r in mine
                 if r.kind == "repair" and r.ts.timestamp() >= f.ts.timestamp()),
                default=math.inf,
            )  # fmt: skip
            if repair > t:
                return None  # down
        hit = any(e.kind == "failure" and t <= e.ts.timestamp() < t + h for e in mine)
        return 1.0 if hit else 0.0

    last: dict[tuple[str, str, float], ModelScore] = {}
    for s in scores:
        last[(s.version, s.machine_id, s.ts.timestamp())] = s
    pairs = []
    for (v, m, t), s in sorted(last.items()):
        other = last.get((candidate, m, t))
        if v == current and other is not None:
            ya, yb = outcome(s), outcome(other)
            if ya is not None and yb is not None:
                pairs.append((s.value, ya, other.value, yb))
    eps = np.finfo(np.float64).eps

    def ll(p: float, y: float) -> float:
        p = min(max(p, eps), 1 - eps)
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    n = len(pairs)
    return {
        "pairs": n,
        "brier": (
            sum((p - y) ** 2 for p, y, _, _ in pairs) / n if n else None,
            sum((p - y) ** 2 for _, _, p, y in pairs) / n if n else None,
        ),
        "log_loss": (
            sum(ll(p, y) for p, y, _, _ in pairs) / n if n else None,
            sum(ll(p, y) for _, _, p, y in pairs) / n if n else None,
        ),
    }


_prob = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


@st.composite
def _histories(draw: Any) -> tuple[list[ModelScore], list[MaintenanceEvent]]:
    machines = ["a", "b", "c"]
    horizon = draw(st.sampled_from([10.0, 25.0, 60.0]))
    scores = []
    for m in machines:
        for t in draw(st.lists(st.integers(0, 100), max_size=12)):
            for v in draw(st.sampled_from([[CURRENT], [CANDIDATE], [CURRENT, CANDIDATE]])):
                scores.append(
                    ModelScore(
                        ts=utc(float(t)), machine_id=m, family="risk", version=v,
                        value=draw(_prob), served=v == CURRENT, rollout="shadow",
                        horizon_s=horizon,
                    )
                )  # fmt: skip
    truth = [
        MaintenanceEvent(ts=utc(float(t)), asset_id=m, kind=k)
        for m, t, k in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(machines),
                    st.integers(0, 130),
                    st.sampled_from(["failure", "repair", "maintenance", "fault_onset"]),
                ),
                max_size=8,
            )
        )
    ]
    return scores, truth


@settings(max_examples=80, deadline=None)
@given(_histories())
def test_live_metrics_equal_a_brute_force_recount(
    history: tuple[list[ModelScore], list[MaintenanceEvent]],
) -> None:
    scores, truth = history
    if not scores and not truth:
        return
    got = compare(scores, truth, CURRENT, CANDIDATE)
    want = _brute_force(scores, truth, CURRENT, CANDIDATE)
    assert got.pairs == got.current.scored == got.candidate.scored == want["pairs"]
    assert got.current.predictions == len({(s.machine_id, s.ts) for s in scores
                                           if s.version == CURRENT})  # fmt: skip
    if want["pairs"] == 0:
        assert math.isnan(got.current.brier) and math.isnan(got.candidate.log_loss)
        return
    assert (got.current.brier, got.candidate.brier) == pytest.approx(want["brier"], abs=1e-12)
    assert (got.current.log_loss, got.candidate.log_loss) == pytest.approx(
        want["log_loss"], rel=1e-9
    )


def test_promote_gate_rule() -> None:
    from wearwatch.pipelines.fleet.live_metrics import Comparison, VersionMetrics

    def c(current: float, candidate: float, pairs: int) -> Comparison:
        return Comparison(
            VersionMetrics(CURRENT, pairs, pairs, current, 0.0),
            VersionMetrics(CANDIDATE, pairs, pairs, candidate, 0.0),
            pairs,
            None,
        )

    gate = PromoteGate(tolerance=0.01, min_scored=100)
    assert gate.verdict(c(0.1, 0.101, 100)).ok  # within 1 %
    worse = gate.verdict(c(0.1, 0.1011, 100))
    assert not worse.ok
    assert "Brier 0.1011 vs 0.1000 on 100 predictions" in worse.reason
    assert worse.reason.endswith("force it to promote anyway")  # each caller names how
    few = gate.verdict(c(0.1, 0.05, 99))
    assert not few.ok and "only 99 live predictions" in few.reason


# ---------------------------------------------------------------------------- the stream
@dataclass
class Setup:
    cfg: Any
    anomaly: Any
    good: Any
    worse: Any
    records: list[bytes]
    truth: list[MaintenanceEvent]
    limits: dict[str, Any]


def _small_config() -> Any:
    """test_fleet_evaluate's small run (faults 20x as frequent and fast as shipped: 6 machines
    see some 20 failures within 3 days), with a risk horizon of 4 h (a day would hold a
    failure for 88 % of the windows)."""
    from wearwatch.pipelines.fleet.evaluate import EvaluationConfig
    from wearwatch.twin.fleet.config import load_fleet_config

    base = load_fleet_config()
    fleet = msgspec.structs.replace(base.fleet, compression=base.fleet.compression * 20)
    return EvaluationConfig(
        seed=3,
        machines=6,
        days=3.0,
        tick_s=60.0,
        windows_s=(600.0, 1800.0),
        fleet=msgspec.structs.replace(base, fleet=fleet),
        horizon_s=HORIZON_S,
    )


@pytest.fixture(scope="module")
def setup() -> Setup:
    return _setup()


def _setup() -> Setup:
    """A 6-machine, 3-day accelerated fleet (test_fleet_evaluate's small run: several
    failures), a risk model trained on its training twin, and a worse one trained on the same
    windows with wrong labels."""
    from wearwatch.learn.anomaly.training import train_anomaly
    from wearwatch.learn.risk.model import RiskConfig, train_risk
    from wearwatch.pipelines.fleet.evaluate import _run_twin, fleet_config, twin_features
    from wearwatch.pipelines.fleet.features import reading_records
    from wearwatch.twin.fleet.simulation import FleetTwin

    cfg = _small_config()
    trainer = FleetTwin(fleet_config(cfg.tick_s, cfg.fleet), cfg.machines, cfg.training_seed)
    frame, events = twin_features(trainer, cfg, None, "training run")
    anomaly = train_anomaly(frame, trainer.hard_limits(), events, cfg.anomaly_config()).model
    good, _ = train_risk(frame, events, cfg.horizon_s, cfg.training_seed)
    # Wrong labels: a failure (repaired a minute later) invented every 5 h on every machine,
    # so the worse model believes most windows fail within the horizon (4 h).
    start = frame["ts"].min().to_pydatetime()
    invented = [
        MaintenanceEvent(ts=start + timedelta(hours=h, minutes=k), asset_id=m, kind=kind)
        for m in sorted(trainer.hard_limits())
        for h in range(0, int(cfg.days * 24), 5)
        for k, kind in ((0, "failure"), (1, "repair"))
    ]
    by_machine = RiskConfig(time_cut=None)  # its held-out test needs no later period
    worse, _ = train_risk(frame, invented, cfg.horizon_s, cfg.training_seed, by_machine)
    twin = FleetTwin(fleet_config(cfg.tick_s, cfg.fleet), cfg.machines, cfg.seed)
    records: list[bytes] = []
    truth = _run_twin(
        twin, cfg.days, cfg.chunk_s, lambda cols: records.extend(reading_records(cols))
    )
    return Setup(cfg, anomaly, good, worse, records, truth, twin.hard_limits())


def _registry(root: Path, s: Setup, current: Any, candidate: Any) -> ModelRegistry:
    reg = ModelRegistry(root)
    reg.register("anomaly", s.anomaly, promote=True)
    reg.register("risk", current, promote=True)
    reg.register("risk", candidate)
    return reg


def _stream(s: Setup, registry: Path) -> dict[str, list[Any]]:
    from wearwatch.pipelines.fleet.flow import fleet_pipeline
    from wearwatch.runtime.harness import StreamRunner

    flow = fleet_pipeline(
        alarms=s.cfg.alarms,
        windows_s=s.cfg.windows_s,
        grace_s=s.cfg.grace_s,
        limits=s.limits,
        registry=str(registry),
    )
    runner = StreamRunner(flow, watermark_delay_s=s.cfg.watermark_delay_s)
    out: dict[str, list[Any]] = {}
    for record in s.records:
        for topic, events in runner.feed([record]).items():
            out.setdefault(topic, []).extend(events)
    return out


def _worker_run(s: Setup, data_dir: Path) -> list[ModelScore]:
    """The readings and ground truth on the data dir's log, and the fleet flow run there by
    the worker (checkpoints included); its ``fleet.model_scores``."""
    from wearwatch.bus.base import read_all
    from wearwatch.events import decode_record
    from wearwatch.pipelines.fleet.flow import fleet_pipeline
    from wearwatch.runtime.flow_worker import FlowWorker
    from wearwatch.runtime.worker import WorkerOptions

    url = f"sqlite:///{data_dir / 'log.db'}"
    log = open_log(url)
    log.create_topic(topics.READINGS.name, 1)
    log.produce(OutRecord(topics.READINGS.name, None, r, "", 0) for r in s.records)
    topics.MAINTENANCE.create(log)
    log.produce(OutRecord(topics.MAINTENANCE.name, e.asset_id.encode(), encode(e)) for e in s.truth)
    log.flush()
    log.close()
    flow = fleet_pipeline(
        alarms=s.cfg.alarms,
        windows_s=s.cfg.windows_s,
        grace_s=s.cfg.grace_s,
        limits=s.limits,
        registry=str(data_dir / "models"),
    )
    options = WorkerOptions(
        watermark_delay_s=s.cfg.watermark_delay_s,
        exit_when_idle=True,
        poll_timeout_s=0.0,
        checkpoint_key="k" * 64,
    )
    FlowWorker(lambda: open_log(url), flow, "fleet", options).run(install_signals=False)
    log = open_log(url)
    try:
        return [
            e for r in read_all(log, topics.MODEL_SCORES.name)
            for e in decode_record(r.value, ModelScore).events
        ]  # fmt: skip
    finally:
        log.close()


def _to_log(data_dir: Path, out: dict[str, list[Any]], truth: list[MaintenanceEvent]) -> None:
    """What the worker would have written, as the CLI reads it."""
    log = open_log(f"sqlite:///{data_dir / 'log.db'}")
    for topic, events in ((topics.MODEL_SCORES, out[topics.MODEL_SCORES.name]),
                          (topics.MAINTENANCE, truth)):  # fmt: skip
        topic.create(log)
        log.produce(OutRecord(topic.name, topic.key_of(e).encode(), encode(e)) for e in events)
    log.flush()
    log.close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    (tmp_path / "var").mkdir()
    yield tmp_path / "var"
    get_settings.cache_clear()


def _cli(*args: str) -> Any:
    from wearwatch.cli import app

    return CliRunner().invoke(app, list(args))


def _api_promote(data_dir: Path, body: dict[str, Any]) -> tuple[int, str]:
    """``POST /models/risk/promote`` on an API over ``data_dir``: status and detail."""
    from fastapi.testclient import TestClient

    from wearwatch.api.app import create_app
    from wearwatch.api.platform import Platform, PlatformConfig

    config = PlatformConfig(
        bus_url=f"sqlite:///{data_dir / 'log.db'}",
        data_dir=data_dir,
        registry_dir=data_dir / "models",
        token="rollout-test-token",
        status_dir=data_dir / "status",
    )
    platform = Platform(config)
    try:
        with TestClient(create_app(platform, dashboard=False)) as client:
            response = client.post(
                "/models/risk/promote",
                json=body,
                headers={"Authorization": "Bearer rollout-test-token"},
            )
    finally:
        platform.close()
    return response.status_code, response.json().get("detail", "")


def _check_pairs(health: list[MachineHealth], scores: list[ModelScore], mode: str) -> None:
    """Every health window has exactly one score per version; the served one is the value
    and the version the health output carries."""
    by_window: dict[tuple[str, Any], list[ModelScore]] = {}
    for sc in scores:
        by_window.setdefault((sc.machine_id, sc.ts), []).append(sc)
    assert len(by_window) == len(health)
    for h in health:
        pair = by_window[(h.machine_id, h.ts)]
        assert sorted(sc.version for sc in pair) == [CURRENT, CANDIDATE]
        served = [sc for sc in pair if sc.served]
        assert len(served) == 1 and served[0].version == h.model_version
        assert served[0].value == h.risk
        assert all(sc.rollout == mode and sc.horizon_s == HORIZON_S for sc in pair)


def test_shadow_of_a_worse_model_never_serves_and_promote_refuses_it(
    setup: Setup, data_dir: Path
) -> None:
    reg = _registry(data_dir / "models", setup, setup.good, setup.worse)
    baseline = _stream(setup, reg.root)  # no rollout: the flow as before
    assert topics.MODEL_SCORES.name not in baseline
    assert _cli("models", "rollout", "risk", "2", "--shadow").exit_code == 0
    out = _stream(setup, reg.root)
    health, scores = out[topics.HEALTH.name], out[topics.MODEL_SCORES.name]
    assert len(health) == len(baseline[topics.HEALTH.name]) > 500
    assert Counter(h.model_version for h in health) == {CURRENT: len(health)}
    _check_pairs(health, scores, "shadow")
    # A shadow changes nothing that is served: every other topic as without the rollout.
    for topic in (topics.HEALTH, topics.SCORES, topics.ALARMS, topics.FEATURES):
        assert out.get(topic.name) == baseline.get(topic.name), topic.name
    # Replay: the same log gives the same model scores.
    assert _stream(setup, reg.root)[topics.MODEL_SCORES.name] == scores

    _to_log(data_dir, out, setup.truth)
    shown = _cli("models", "compare", "risk", "--json")
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    print(shown.stdout)  # the README quotes it: pytest tests/test_rollout.py -k shadow -s
    current, candidate = figures["current"], figures["candidate"]
    want = compare(scores, setup.truth, CURRENT, CANDIDATE)
    assert (current["brier"], candidate["brier"]) == (want.current.brier, want.candidate.brier)
    assert current["predictions"] == candidate["predictions"] == len(health)
    assert figures["pairs"] == current["scored"] == candidate["scored"] >= 300
    assert candidate["brier"] > current["brier"] * 1.01 and not figures["promote_ok"]

    refused = _cli("models", "promote", "risk", "2")
    assert refused.exit_code == 1
    line = refused.output.strip()
    assert "\n" not in line and "--force" in line
    assert f"Brier {candidate['brier']:.4f} vs {current['brier']:.4f}" in line
    assert reg.current_version("risk") == 1 and reg.rollout("risk") is not None
    # The API applies the same gate: 409 naming both figures, nothing changed.
    status, detail = _api_promote(data_dir, {"version": 2})
    assert status == 409, detail
    assert f"Brier {candidate['brier']:.4f} vs {current['brier']:.4f}" in detail
    assert '"force": true' in detail
    assert reg.current_version("risk") == 1 and reg.rollout("risk") is not None

    forced = _cli("models", "promote", "risk", "2", "--force")
    assert forced.exit_code == 0, forced.output
    last = reg.pointer("risk")["history"][-1]
    assert (last["action"], last["version"], last["forced"], last["rollout"]) == (
        "promote", 2, True, "shadow"
    )  # fmt: skip
    assert reg.current_version("risk") == 2 and reg.rollout("risk") is None


def test_canary_of_a_better_model_serves_exactly_its_cohort_and_is_promoted(
    setup: Setup, data_dir: Path
) -> None:
    reg = _registry(data_dir / "models", setup, setup.worse, setup.good)
    bad = _cli("models", "rollout", "risk", "2", "--canary", "1.5")
    assert bad.exit_code == 2 and "share: a canary serves a share" in bad.output
    assert _cli("models", "rollout", "risk", "2", "--canary", "0.5").exit_code == 0
    out = _stream(setup, reg.root)
    health, scores = out[topics.HEALTH.name], out[topics.MODEL_SCORES.name]

    def in_cohort(machine: str) -> bool:  # SHA-256, first 8 bytes, / 2**64 < share
        return int.from_bytes(hashlib.sha256(machine.encode()).digest()[:8], "big") < 2**63

    cohort = {h.machine_id for h in health if in_cohort(h.machine_id)}
    assert 0 < len(cohort) < len({h.machine_id for h in health})
    for h in health:  # every serving decision
        assert h.model_version == (CANDIDATE if h.machine_id in cohort else CURRENT)
    _check_pairs(health, scores, "canary")

    # The worker on the embedded log writes the same model scores (what compare reads;
    # fleet.model_scores is partitioned by machine, so compare in one order).
    def order(sc: ModelScore) -> tuple[str, Any, str]:
        return (sc.machine_id, sc.ts, sc.version)

    assert sorted(_worker_run(setup, data_dir), key=order) == sorted(scores, key=order)

    shown = _cli("models", "compare", "risk", "--json")
    figures = json.loads(shown.stdout)
    assert figures["candidate"]["brier"] < figures["current"]["brier"]
    assert figures["promote_ok"] and figures["pairs"] >= 300
    table = _cli("models", "compare", "risk")
    assert table.exit_code == 0 and "promote: ok" in table.output
    promoted = _cli("models", "promote", "risk", "2")
    assert promoted.exit_code == 0, promoted.output
    last = reg.pointer("risk")["history"][-1]
    assert (last["action"], last["rollout"], "forced" in last) == ("promote", "canary 50%", False)
    assert reg.current_version("risk") == 2 and reg.rollout("risk") is None


def test_rollout_cli_arguments(data_dir: Path) -> None:
    reg = ModelRegistry(data_dir / "models")
    reg.register("risk", {"w": 1}, promote=True)
    reg.register("risk", {"w": 2})
    both = _cli("models", "rollout", "risk", "2", "--shadow", "--canary", "0.5")
    assert (
        both.exit_code == 2 and "exactly one of --shadow, --canary SHARE or --abort" in both.output
    )
    assert "which version?" in _cli("models", "rollout", "risk", "--shadow").output
    anomaly = _cli("models", "rollout", "anomaly", "2", "--shadow")
    assert anomaly.exit_code == 2 and "rolls out risk models only" in anomaly.output
    assert "no rollout is running" in _cli("models", "rollout", "risk", "--abort").output
