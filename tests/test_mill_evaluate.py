"""Robust recovery metrics and the multi-seed mill evaluation.

The two new recovery figures (the model's EWMA recovery; served APE without the passes a
safety limit clamped, and their count) against brute-force references, over random outcome
sequences (Hypothesis) and over one real run; medians and checks over seeds; the CLI's
``--seeds``/``--ideal`` and its refusals."""

from __future__ import annotations

import json
import statistics
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import wearwatch.pipelines.mill.evaluate as ev
from wearwatch.events import PassOutcome, utc
from wearwatch.pipelines.mill.pipeline import MillPipelineConfig
from wearwatch.twin.mill.simulation import MillTwinConfig

LEARNERS = ("rls", "mean")
#: Every reason the router can give (router.REASONS, and a limit or fallback with the rating
#: clamp appended), with whether a safety limit overrode the value: written out by hand.
CLAMPED_BY_HAND = {
    "model": False,
    "warmup": False,
    "trust_deficit": False,
    "no_model": False,
    "limit_high": True,
    "limit_low": True,
    "over_rating": True,
    "warmup+over_rating": True,
    "trust_deficit+over_rating": True,
    "no_model+over_rating": True,
    "limit_high+over_rating": True,
    "limit_low+over_rating": True,
}


def _outcome(i: int, served: float, physics: float, model: float) -> PassOutcome:
    return PassOutcome(
        ts=utc(1_767_225_600.0 + i),
        slab_id=f"S{i // 7}",
        pass_no=i % 7,
        line="L1",
        actual_force_kn=20_000.0,
        baseline_force_kn=20_000.0,
        served_force_kn=20_000.0,
        source="model",
        physics_ape=physics,
        served_ape=served,
        model_ape={"rls": model, "mean": physics},
    )


# ------------------------------------------------------------------ recovery (pure function)
def _recovery_reference(
    series: list[tuple[int, float]], start: int, end: int | None, alpha: Fraction, level: int
) -> tuple[int, int | None] | None:
    """The definition, in exact arithmetic: the EWMA at each pass, then the last count after
    the shock at which it is ≥ level (0 if none) and the first below, by direct search."""
    kept = []
    for idx, ape in series:  # the phase ends at the first pass of the next one
        if end is not None and idx >= end:
            break
        kept.append((idx, Fraction(ape)))
    counted = []  # (count after the shock, EWMA there)
    ewma = kept[0][1] if kept else Fraction(0)
    for t, (idx, ape) in enumerate(kept):
        ewma = ape if t == 0 else alpha * ape + (1 - alpha) * ewma
        if idx >= start:
            counted.append((len(counted) + 1, ewma))
    if any(abs(e - level) < Fraction(1, 10**9) for _, e in counted):
        return None  # a float rounding could fall either side of the level: no verdict
    bad = [n for n, e in counted if e >= level]
    below = [n for n, e in counted if e < level]
    return (max(bad) if bad else 0), (min(below) if below else None)


@settings(max_examples=300, deadline=None)
@given(
    apes=st.lists(st.floats(0.0, 15.0, allow_nan=False), min_size=0, max_size=40),
    jitter=st.lists(st.integers(-2, 2), min_size=40, max_size=40),
    start=st.integers(0, 30),
    span=st.one_of(st.none(), st.integers(1, 30)),
    alpha=st.sampled_from([Fraction(1, 5), Fraction(1, 2), Fraction(1)]),
)
def test_recovery_matches_definition(apes, jitter, start, span, alpha) -> None:
    # Pass indices mostly rising, sometimes out of order (halves of different lines).
    series = [(max(0, i + jitter[i]), ape) for i, ape in enumerate(apes)]
    end = None if span is None else start + span
    expected = _recovery_reference(series, start, end, alpha, 2)
    assume(expected is not None)
    assert ev.recovery(series, start, end, alpha=float(alpha), level=2.0) == expected


def test_recovery_counts_passes_from_the_shock() -> None:
    # EWMA α=0.2 from 0: 10 → 2.0 (at the level: bad), 0 → 1.6 (below), 5 → 2.28 (bad).
    series = [(0, 0.0), (1, 10.0), (2, 0.0), (3, 5.0), (4, 0.0), (5, 0.0)]
    assert ev.recovery(series, start=1, end=None) == (3, 2)
    assert ev.recovery(series, start=1, end=3) == (1, 2)  # the phase ends before the spike
    assert ev.recovery([(0, 50.0)], start=1, end=None) == (0, None)  # nothing after it


# ---------------------------------------------------------- clamped / unclamped (pure function)
def test_clamped_by_limit_covers_every_reason() -> None:
    from wearwatch.pipelines.mill.router import REASONS

    assert set(REASONS) <= set(CLAMPED_BY_HAND)
    assert {r: ev.clamped_by_limit(r) for r in CLAMPED_BY_HAND} == CLAMPED_BY_HAND


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(0.0, 30.0, allow_nan=False),
            st.floats(0.0, 30.0, allow_nan=False),
            st.floats(0.0, 30.0, allow_nan=False),
            st.sampled_from(sorted(CLAMPED_BY_HAND)),
        ),
        max_size=30,
    )
)
def test_summarise_matches_brute_force(rows) -> None:
    outcomes = [_outcome(i, s, p, m) for i, (s, p, m, _) in enumerate(rows)]
    reason_of = {(o.slab_id, o.pass_no): r for o, (*_, r) in zip(outcomes, rows, strict=True)}
    got = ev.summarise(outcomes, reason_of, LEARNERS)
    free = [s for s, _, _, r in rows if not CLAMPED_BY_HAND[r]]
    assert got["clamped"] == len(rows) - len(free)
    assert got["served_ape_unclamped"] == (round(sum(free) / len(free), 4) if free else None)
    assert got["served_ape"] == (round(sum(r[0] for r in rows) / len(rows), 4) if rows else None)
    assert got["model_ape"]["rls"] == (
        round(sum(r[2] for r in rows) / len(rows), 4) if rows else None
    )


# ----------------------------------------------------------------------------- one real run
@pytest.fixture(scope="module")
def abrupt_run() -> tuple[ev.Run, dict[str, Any]]:
    """600 passes of the abrupt scenario, seed 2 (≈2 s)."""
    cfg = MillTwinConfig(
        seed=2,
        scenario="abrupt",
        planned_passes=600,
        loss_share=0.01,
        duplicate_share=0.01,
        late_share=0.005,
        record_truth=True,
    )
    run = ev.roll(cfg, MillPipelineConfig(seed=2))
    return run, ev.score(run)


def test_score_of_a_run_matches_brute_force(abrupt_run) -> None:
    run, report = abrupt_run
    reasons = {(d.slab_id, d.pass_no): d.reason for d in run.decisions}
    truth = run.twin.truth
    default = report["default_learner"]
    for phase in ("before_shock", "after_shock"):
        group = [o for o in run.outcomes if truth[(o.slab_id, o.pass_no)].phase == phase]
        free = [o.served_ape for o in group if not CLAMPED_BY_HAND[reasons[(o.slab_id, o.pass_no)]]]
        ph = report["phases"][phase]
        assert ph["clamped"] == len(group) - len(free)
        assert ph["served_ape_unclamped"] == round(sum(free) / len(free), 4)
    assert report["overall"]["clamped"] == sum(p["clamped"] for p in report["phases"].values())
    # Recovery: the exact-arithmetic definition over the run's own join order.
    shock = next(s.start for s in run.twin.scenario.segments if s.onset == "shock")
    index = [truth[(o.slab_id, o.pass_no)].pass_index for o in run.outcomes]
    served = list(zip(index, (o.served_ape for o in run.outcomes), strict=True))
    model = list(zip(index, (o.model_ape[default] for o in run.outcomes), strict=True))
    fifth = Fraction(1, 5)
    assert (report["recovery_passes"], report["recovery_first_below"]) == _recovery_reference(
        served, shock, None, fifth, 2
    )
    assert report["model_recovery_passes"] == _recovery_reference(model, shock, None, fifth, 2)[0]
    after = report["phases"]["after_shock"]
    peak = max(t.true_force_kn for t in truth.values())
    assert report["peak_true_force_kn"] == round(peak, 1)
    assert report["checks"] == {
        "no_limit_violations": report["limit_violations"] == 0,
        "true_force_within_rating": peak <= run.twin.config.rating_kn,
        "served_le_third_physics_after_shock": after["served_ape"] <= after["physics_ape"] / 3,
    }


def test_evaluate_passes_ideal_to_the_twin(monkeypatch, abrupt_run) -> None:
    seen: list[MillTwinConfig] = []

    def fake_roll(twin_config, config, watermark_delay_s=5.0):
        seen.append(twin_config)
        return abrupt_run[0]

    monkeypatch.setattr(ev, "roll", fake_roll)
    ev.evaluate("abrupt", 2, 600, ideal=True)
    ev.evaluate("abrupt", 2, 600)
    assert [c.ideal for c in seen] == [True, False]
    assert abrupt_run[1]["ideal"] is False  # the report says which twin it scored


# ------------------------------------------------------------------------- medians and checks
def _row(
    seed: int,
    served: float,
    physics: float,
    model_rec: int | None,
    violations: int,
    peak_kn: float = 40_000.0,
):
    ph = {"physics_ape": physics, "served_ape": served}
    report = {
        "scenario": "abrupt",
        "seed": seed,
        "default_learner": "rls",
        "phases": {
            "before_shock": {
                **ph,
                "served_ape_unclamped": served,
                "clamped": 0,
                "model_ape": {"rls": 0.3},
            },
            "after_shock": {
                **ph,
                "served_ape_unclamped": None,
                "clamped": seed,
                "model_ape": {"rls": served},
            },
        },
        "overall": {**ph, "served_ape_unclamped": 1.0, "clamped": seed, "model_ape": {"rls": 1}},
        "recovery_passes": 10 * seed,
        "model_recovery_passes": model_rec,
        "limit_violations": violations,
        "peak_true_force_kn": peak_kn,
        "rating_kn": 45_000.0,
    }
    report["checks"] = ev.checks(report)
    return ev.seed_row(report)


def test_medians_and_checks_over_seeds() -> None:
    rows = [_row(1, 3.0, 12.0, 40, 0), _row(2, 5.0, 12.0, 90, 0), _row(3, 3.5, 12.0, 400, 0)]
    med = ev.medians(rows)
    assert med["phases"]["after_shock"] == {
        "physics_ape": 12.0,
        "served_ape": 3.5,
        "served_ape_unclamped": None,  # no seed has one
        "clamped": 2,
        "model_ape": 3.5,
        "served_over_physics": round(3.5 / 12.0, 4),
    }
    assert (med["recovery_passes"], med["model_recovery_passes"]) == (20, 90)
    assert med["peak_true_force_kn"] == 40_000.0
    verdicts = ev.seed_checks("abrupt", rows)
    # Seed 2 serves 5/12 > 1/3 of physics; seed 3 recovers late but the median is 90.
    assert verdicts == {
        "no_limit_violations_every_seed": True,
        "true_force_within_rating_every_seed": True,
        "served_le_third_physics_after_shock_every_seed": False,
        "median_model_recovery_le_100": True,
        "all_passed": False,
    }
    late = [_row(s, 3.0, 12.0, 101 + s, 0) for s in (1, 2, 3)]
    assert ev.seed_checks("abrupt", late)["median_model_recovery_le_100"] is False
    good = [_row(s, 3.0, 12.0, 50, 0) for s in (1, 2)]
    assert ev.seed_checks("abrupt", good)["all_passed"] is True
    assert ev.seed_checks("abrupt", [*good, _row(3, 3.0, 12.0, 50, 1)]) == {
        **ev.seed_checks("abrupt", good),
        "no_limit_violations_every_seed": False,
        "all_passed": False,
    }
    # One seed's stand overloaded: the worst seed's peak is reported, and the check fails.
    overloaded = [*good, _row(3, 3.0, 12.0, 50, 0, peak_kn=45_100.0)]
    assert ev.medians(overloaded)["peak_true_force_kn"] == 45_100.0
    assert ev.seed_checks("abrupt", overloaded)["true_force_within_rating_every_seed"] is False
    assert statistics.median([40, 90, 400]) == med["model_recovery_passes"]


# ---------------------------------------------------------------------------------------- CLI
def _cli(*args: str):
    from typer.testing import CliRunner

    from wearwatch.cli import app

    return CliRunner().invoke(app, ["mill", "evaluate", *args])


def test_cli_seeds_rows_equal_single_seed_runs() -> None:
    """--seeds 1-2 on 200 gradual passes (≈3 s): each row is that seed's own run."""
    common = ("--scenario", "gradual", "--passes", "200", "--json")
    multi = _cli(*common, "--seeds", "1-2")
    assert multi.exit_code == 0, multi.output
    result = json.loads(multi.stdout)  # progress went to stderr
    assert result["seeds"] == [1, 2] and result["ideal"] is False
    assert result["focus"] == ["campaign_1", "campaign_2", "campaign_3", "overall"]
    for seed, row in zip((1, 2), result["runs"], strict=True):
        single = _cli(*common, "--seed", str(seed))
        assert single.exit_code == 0, single.output
        assert row == ev.seed_row(json.loads(single.stdout))
    assert result["median"] == ev.medians(result["runs"])
    assert result["checks"] == ev.seed_checks("gradual", result["runs"])
    assert set(result["checks"]) == {
        "no_limit_violations_every_seed",
        "true_force_within_rating_every_seed",
        "served_le_half_physics_every_seed",
        "all_passed",
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--seeds", "5-1"), "--seeds '5-1': the range 5-1 is descending"),
        (("--seeds", "x"), "--seeds 'x'"),
        (("--seeds", "1,1"), "--seeds '1,1': a seed is repeated"),
        (("--seeds", "1-2", "--seed", "3"), "give --seed or --seeds, not both"),
        (("--seeds", "1-99999999999"), "--seeds '1-99999999999': more than 1000 seeds"),
        (("--passes", "99999999999"), "--passes 99999999999: expected 50 to 1,000,000"),
    ],
)
def test_cli_refuses_bad_seeds(args, needle) -> None:
    res = _cli("--scenario", "abrupt", *args)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_cli_tables() -> None:
    """The text output of one seed and of several (100 passes each, ≈2 s): it names the new
    figures and the checks (one seed's table once read a counter the report does not have)."""
    one = _cli("--scenario", "abrupt", "--passes", "100", "--seed", "4")
    assert one.exit_code == 0, one.output
    assert "model_recovery_passes=" in one.stdout and "too_late=" in one.stdout
    assert "checks: no_limit_violations=PASS" in one.stdout
    many = _cli("--scenario", "abrupt", "--passes", "100", "--seeds", "4,6", "--ideal")
    assert many.exit_code == 0, many.output
    assert "ideal" in many.stdout and "median" in many.stdout
    assert "checks: no_limit_violations_every_seed=PASS" in many.stdout
