"""Issue 12, learners: RLS on plant features against brute-force weighted least squares, a
fairly configured AMRules that grows rules and fires, the MOA runner's protocol, CLI input."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearwatch.benchmarks.learners import MOA_CONFIGS, _score, mill_stream, run_moa
from wearwatch.learn.online import RLS_FEATURES, RLSRegressor, make_learner

ROOT = Path(__file__).resolve().parents[1]
MOA_PYTHON = ROOT / ".venv-moa" / "bin" / "python"

_value = st.floats(-3.0, 3.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.lists(_value, min_size=len(RLS_FEATURES), max_size=len(RLS_FEATURES)),
            st.floats(-0.3, 0.3),
        ),
        min_size=1,
        max_size=40,
    ),
    lam=st.sampled_from([0.9, 0.98, 1.0]),
    ridge=st.sampled_from([1e-2, 1e-1, 1.0]),
)
def test_rls_equals_forgetting_weighted_ridge_least_squares(
    data: list[tuple[list[float], float]], lam: float, ridge: float
) -> None:
    """With the drift reset out of reach, the weights after n samples are exactly the ridge
    solution of the λ^(n-1-k)-weighted least-squares problem on [1, features] (the intercept
    not penalised)."""
    m = RLSRegressor(forgetting=lam, ridge=ridge, drift_threshold=1e12)
    for values, y in data:
        m.learn_one(dict(zip(RLS_FEATURES, values, strict=True)), y)
    n = len(data)
    phi = np.array([[1.0, *values] for values, _ in data])
    y = np.array([y for _, y in data])
    sw = np.sqrt(lam ** np.arange(n - 1, -1, -1))
    # Ridge as extra rows: sqrt(ridge)·I on the features (not the intercept), target 0.
    penalty = np.sqrt(ridge) * np.eye(phi.shape[1])[1:]
    design = np.vstack([phi * sw[:, None], penalty])
    target = np.concatenate([y * sw, np.zeros(len(penalty))])
    w, *_ = np.linalg.lstsq(design, target, rcond=None)
    assert m.drifts == 0 and m.n == n
    np.testing.assert_allclose(m.w, w, rtol=1e-6, atol=1e-8)
    x = dict(zip(RLS_FEATURES, data[0][0], strict=True))
    assert m.predict_one(x) == pytest.approx(float(phi[0] @ w), rel=1e-6, abs=1e-8)


def _abrupt_stream(n: int = 3000, shift_at: int = 1500) -> list[tuple[dict[str, float], float]]:
    """A residual of mill scale: a step in ``a`` plus a slope in ``b``; +0.1 from shift_at."""
    rng = random.Random(3)
    out = []
    for i in range(n):
        x = {"a": rng.gauss(0.0, 1.0), "b": rng.gauss(0.0, 1.0)}
        y = 0.02 + 0.05 * (x["a"] > 0.0) + 0.01 * x["b"] + rng.gauss(0.0, 0.002)
        out.append((x, y + (0.1 if i >= shift_at else 0.0)))
    return out


def test_fair_amrules_grows_rules_and_fires_where_the_default_does_not() -> None:
    fair, default = make_learner("amrules"), make_learner("amrules_default")
    for x, y in _abrupt_stream():
        for m in (fair, default):
            m.predict_one(x)
            m.learn_one(x, y)
    # River's default Page-Hinkley (threshold 50) cannot fire on errors of this scale; its
    # rules, grown before the shift, keep predicting the old level.
    assert default.drifts == 0
    assert fair.rules >= 1 and fair.drifts >= 1


def _fake_interpreter(tmp_path: Path, body: str) -> Path:
    """An executable standing in for .venv-moa/bin/python: argv[1] is the runner's path."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_moa_protocol_round_trip_with_a_fake_interpreter(tmp_path: Path) -> None:
    """The stream file carries every sample (features sorted by name, lines as codes), and the
    result's predictions and figures come back per config: predicting the target itself gives
    zero error; rules / drifts echo the sample and line counts the fake saw."""
    fake = _fake_interpreter(
        tmp_path,
        """
        import json, sys
        import numpy as np
        runner, stream, result, *configs = sys.argv[1:]
        assert runner.endswith("moa_runner.py")
        d = np.load(stream)
        assert list(d["names"]) == sorted(d["names"]) and d["X"].shape[1] == len(d["names"])
        names = [c.removeprefix("--config=").partition("=")[0] for c in configs]
        meta = {"seconds": 0.5, "rules": len(d["y"]), "drifts": len(set(d["line"].tolist())),
                "options": "x", "updates_per_s": 1.0}
        report = {"capymoa": "fake", "java": "none", "configs": {n: meta for n in names}}
        np.savez(result, report=np.array(json.dumps(report)),
                 **{f"pred_{n}": d["y"] for n in names})
        """,
    )
    rows = mill_stream(seed=3, passes=300, ideal=True)
    out = run_moa(rows, fake)
    assert set(out) == set(MOA_CONFIGS)
    lines = {r[0] for r in rows}
    for row in out.values():
        assert row["rules"] == len(rows) and row["drifts"] == len(lines)
        assert row["overall"] == {"mae_kn": 0.0, "ape": 0.0}
        assert row["updates_per_s"] == round(len(rows) / 0.5, 1)
        assert row["learner"].endswith("(capymoa fake, Java none)")


def test_moa_unavailable_says_why(tmp_path: Path) -> None:
    rows = mill_stream(seed=3, passes=200, ideal=True)
    # The real runner under this project's interpreter: no capymoa here.
    missing = run_moa(rows, Path(sys.executable))
    assert missing["available"] is False
    assert "No module named 'capymoa'" in missing["reason"]
    failing = _fake_interpreter(tmp_path, "import sys\nsys.exit('error: no JVM found')\n")
    assert run_moa(rows, failing) == {
        "available": False,
        "reason": f"{failing} moa_runner.py: error: no JVM found",
    }
    gone = run_moa(rows, tmp_path / "nonexistent")
    assert gone["available"] is False and str(tmp_path / "nonexistent") in gone["reason"]


@pytest.mark.slow  # ≈ 10 s (the JVM's start and two MOA configs)
@pytest.mark.skipif(not MOA_PYTHON.is_file(), reason="no .venv-moa (make moa builds it)")
def test_moa_runner_real_run() -> None:
    """MOA's AMRulesRegressor through capymoa: one prediction per sample, scored like the
    Python learners (≈ 6 s here, most of it the JVM's start)."""
    rows = mill_stream(seed=3, passes=300, ideal=True)
    t0 = time.perf_counter()
    out = run_moa(rows, MOA_PYTHON)
    assert time.perf_counter() - t0 < 120
    assert set(out) == set(MOA_CONFIGS), out
    for name, row in out.items():  # scoring zips predictions with rows strictly: one each
        assert set(row["phases"]) == {r[5] for r in rows}, name
        assert row["options"] == MOA_CONFIGS[name]
        assert "AMRulesRegressor" in row["learner"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "wearwatch", "bench", "learners", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--moa-python", "/nonexistent"), "error: --moa-python /nonexistent: not an executable"),
        (("--seed", "-1"), "error: Invalid value for '--seed'"),
        (("--seed", "abc"), "error: Invalid value for '--seed'"),
    ],
)
def test_cli_garbage_is_one_line(args: tuple[str, ...], says: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith(says), done.stderr


def test_score_matches_a_hand_computation() -> None:
    rows = mill_stream(seed=3, passes=200, ideal=True)
    preds = [0.0] * len(rows)  # the physics baseline itself
    errs = [abs(base - actual) for _l, _x, _y, base, actual, _p in rows]
    out = _score(rows, preds, 1.0)
    assert out["overall"]["mae_kn"] == round(sum(errs) / len(errs), 2)
