"""Learners: Welford order, the uniform protocol, RLS tracking/drift, benchmark shape."""

from __future__ import annotations

import pickle

import pytest

from wearwatch.benchmarks.learners import run_learner_benchmark
from wearwatch.learn.online import LEARNER_NAMES, RLSRegressor, make_learner
from wearwatch.learn.standardise import WelfordScaler


def test_welford_scales_with_statistics_before_the_sample() -> None:
    s = WelfordScaler()
    for v in (1.0, 2.0, 3.0):
        s.learn({"a": v})
    # mean 2, population std sqrt(2/3); the new sample 10 is not part of its own scaling.
    assert s.transform({"a": 10.0})["a"] == pytest.approx(8 / (2 / 3) ** 0.5)
    assert s.transform_then_learn({"a": 10.0})["a"] == pytest.approx(8 / (2 / 3) ** 0.5)
    assert s.n == 4


@pytest.mark.parametrize("name", LEARNER_NAMES)
def test_protocol_and_pickle(name: str) -> None:
    m = make_learner(name)
    for i in range(60):
        x = {"lh": (i % 5) / 2.0, "flat": (i % 3) / 3.0}
        assert isinstance(m.predict_one(x), float)
        m.learn_one(x, 0.01 * i % 0.1)
    clone = pickle.loads(pickle.dumps(m))
    assert clone.predict_one({"lh": 1.0, "flat": 0.5}) == m.predict_one({"lh": 1.0, "flat": 0.5})


def test_rls_tracks_a_slope_change_and_counts_drift() -> None:
    m = RLSRegressor()
    for i in range(300):
        x = {"lh": (i % 7) / 3.0, "flat": 0.0}
        m.learn_one(x, 0.01 * x["lh"])
    for i in range(60):
        x = {"lh": (i % 7) / 3.0, "flat": 0.0}
        m.learn_one(x, 0.10 * x["lh"])
    assert m.drifts >= 1
    assert m.predict_one({"lh": 2.0, "flat": 0.0}) == pytest.approx(0.2, abs=0.005)


def test_benchmark_report_shape() -> None:
    r = run_learner_benchmark(seed=3, passes=400, learners=("rls", "mean"))
    assert r["default"] == "rls" and r["winner"] == "rls"
    assert r["moa"] == {
        "available": False,
        "reason": "no interpreter with capymoa given (--moa-python)",
    }
    rls = r["learners"]["rls"]
    assert rls["updates_per_s"] > 0 and set(rls["phases"]) == set(r["stream"]["phases"])
    assert rls["after_drift"]["ape"] < r["learners"]["mean"]["after_drift"]["ape"]
