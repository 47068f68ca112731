"""MillPipeline end to end: determinism, crash equivalence (pickle), evaluate targets, CLI."""

from __future__ import annotations

import json
import pickle

import pytest

from wearwatch.events import PassActual, PassRequest, encode
from wearwatch.pipelines.mill.evaluate import evaluate
from wearwatch.pipelines.mill.pipeline import MillPipeline, MillPipelineConfig
from wearwatch.pipelines.mill.router import REASONS
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

PASSES = 900


def stream(scenario: str = "cycle", passes: int = 600, seed: int = 5) -> list:
    cfg = MillTwinConfig(
        seed=seed,
        scenario=scenario,
        planned_passes=passes,
        loss_share=0.02,
        duplicate_share=0.02,
        late_share=0.01,
    )
    return [
        e
        for e in MillTwin(cfg).events(max_passes=passes)
        if isinstance(e, PassRequest | PassActual)
    ]


def drive(pipe: MillPipeline, events: list, max_ts: float = 0.0) -> tuple[list[bytes], float]:
    out: list[bytes] = []
    for e in events:
        max_ts = max(max_ts, e.ts.timestamp())
        wm = max_ts - 5.0
        out.extend(encode(o) for o in pipe.on_event(e, wm))
        out.extend(encode(o) for o in pipe.on_watermark(wm))
    return out, max_ts


def test_same_input_same_output() -> None:
    events = stream()
    a, _ = drive(MillPipeline(), events)
    b, _ = drive(MillPipeline(), events)
    assert a == b and len(a) > 1000


@pytest.mark.parametrize("cut", [150, 1100])  # before the shock, and inside it
def test_crash_equivalence_via_pickle_mid_stream(cut: int) -> None:
    events = stream()
    learners = ("rls", "amrules", "mean", "linear", "arf", "hatr")
    cfg = MillPipelineConfig(learners=learners)
    whole, _ = drive(MillPipeline(cfg), events)

    first = MillPipeline(cfg)
    head, max_ts = drive(first, events[:cut])
    blob = pickle.dumps(first)
    del first  # "crash"
    restored: MillPipeline = pickle.loads(blob)
    tail, _ = drive(restored, events[cut:], max_ts)
    assert head + tail == whole


def test_counters_and_drift_are_recorded() -> None:
    pipe = MillPipeline()
    drive(pipe, stream())
    s = pipe.stats()
    assert s["joined"] > 500 and s["orphans"] > 0 and s["duplicates"] > 0 and s["late"] > 0
    assert sum(v["rls"] for v in s["drifts"].values()) >= 1  # the shock is detected
    for reason in s["decisions_by_reason"]:  # e.g. "warmup+over_rating"
        assert set(reason.split("+")) <= set(REASONS), reason


def _safety(report: dict) -> None:
    assert report["limit_violations"] == 0
    assert report["fallbacks_without_reason"] == 0
    assert report["orphans"] > 0 and report["duplicates"] > 0


def test_evaluate_none() -> None:
    r = evaluate("none", seed=3, passes=PASSES)
    ph = r["phases"]["new_rolls"]
    assert ph["physics_ape"] < 0.5
    assert ph["served_ape"] <= ph["physics_ape"] + 0.1
    _safety(r)


def test_evaluate_gradual() -> None:
    r = evaluate("gradual", seed=3, passes=PASSES)
    o = r["overall"]
    assert 2.0 < o["physics_ape"] < 7.0
    assert o["served_ape"] <= o["physics_ape"] / 2
    _safety(r)


def test_evaluate_abrupt() -> None:
    r = evaluate("abrupt", seed=3, passes=PASSES)
    after = r["phases"]["after_shock"]
    assert after["physics_ape"] > 10.0
    assert after["served_ape"] <= after["physics_ape"] / 3
    assert r["recovery_passes"] is not None and r["recovery_first_below"] is not None
    assert r["phases"]["before_shock"]["physics_ape"] < 0.5
    _safety(r)


def test_cli_evaluate_json() -> None:
    from typer.testing import CliRunner

    from wearwatch.cli import app

    res = CliRunner().invoke(
        app,
        ["mill", "evaluate", "--scenario", "abrupt", "--seed", "2", "--passes", "300", "--json"],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert {
        "scenario",
        "passes",
        "phases",
        "recovery_passes",
        "decisions_by_reason",
        "orphans",
        "duplicates",
    } <= set(report)
    assert set(report["phases"]) == {"before_shock", "after_shock"}
    bad = CliRunner().invoke(app, ["mill", "evaluate", "--scenario", "sudden"])
    assert bad.exit_code == 2 and "--scenario" in bad.output
