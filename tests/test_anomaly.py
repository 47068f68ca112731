"""Anomaly detection (issue 9, item 3): severity rules, baselines and fallback, hard-limit
overrides, persistence, sensor-fault evidence, PCA T²+Q, Half-Space Trees, purity of ``score``,
the registry round trip and ``wearwatch train anomaly``.

Feature windows are built from simulated readings (numpy): a healthy machine's readings are
its level plus Gaussian noise; faults are injected into the readings, and the window
statistics computed from them as the stream computes them.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from wearwatch.events import SEVERITIES, FeatureVector, MaintenanceEvent, encode, utc
from wearwatch.learn.anomaly.baseline import HardLimits
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.model import AnomalyModel
from wearwatch.learn.anomaly.online import HstScaling, OnlineDetector
from wearwatch.learn.anomaly.pca import PcaDetector
from wearwatch.learn.anomaly.rules import RANK, hard_limit_trigger, zscore_trigger
from wearwatch.store.registry import ModelRegistry

#: sensor → (level, reading noise std)
SENSORS = {
    "vibration": (2.0, 0.2),
    "bearing_temp": (65.0, 0.5),
    "pressure": (4.0, 0.05),
    "flow": (100.0, 1.0),
}
RULES_ONLY = AnomalyConfig(pca=False, hst=False)


def window_features(readings: dict[str, np.ndarray]) -> dict[str, float]:
    """count, mean, std, min, max, slope, latest per sensor, as the stream's windows give."""
    out: dict[str, float] = {}
    for sensor, v in readings.items():
        if len(v) == 0:
            continue
        t = np.arange(len(v), dtype=float)
        out[f"{sensor}.count"] = float(len(v))
        out[f"{sensor}.mean"] = float(v.mean())
        out[f"{sensor}.std"] = float(v.std())
        out[f"{sensor}.min"] = float(v.min())
        out[f"{sensor}.max"] = float(v.max())
        out[f"{sensor}.latest"] = float(v[-1])
        out[f"{sensor}.slope"] = float(np.polyfit(t, v, 1)[0]) if len(v) > 1 else 0.0
    return out


def healthy_readings(rng: np.random.Generator, machine: int, n: int) -> dict[str, np.ndarray]:
    offset = 1.0 + 0.05 * machine
    return {s: level * offset + sd * rng.normal(size=n) for s, (level, sd) in SENSORS.items()}


def feature_frame(seed: int = 0) -> pd.DataFrame:
    """pump-000..003 with 200 five-second and 60 thirty-second windows each; pump-004 with 10
    five-second windows only (too few for its own baseline)."""
    rng = np.random.default_rng(seed)
    rows = []
    for machine, (n5, n30) in enumerate([(200, 60)] * 4 + [(10, 0)]):
        for window_s, count in ((5.0, n5), (30.0, n30)):
            for w in range(count):
                rows.append(
                    {
                        "ts": pd.Timestamp((w + 1) * window_s, unit="s", tz="UTC"),
                        "machine_id": f"pump-{machine:03d}",
                        "window_s": window_s,
                        **window_features(healthy_readings(rng, machine, int(window_s))),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return feature_frame()


@pytest.fixture(scope="module")
def rules_model(frame: pd.DataFrame) -> AnomalyModel:
    return AnomalyModel.fit(frame, {"*": {"vibration": (None, 7.1)}}, RULES_ONLY)


@pytest.fixture(scope="module")
def full_model(frame: pd.DataFrame) -> AnomalyModel:
    return AnomalyModel.fit(frame, {"*": {"vibration": (None, 7.1)}})


def vector(features: dict[str, float], machine: str = "pump-001", window_s: float = 5.0,
           t: float = 0.0) -> FeatureVector:  # fmt: skip
    return FeatureVector(ts=utc(1000.0 + t), machine_id=machine, window_s=window_s,
                         features=features)  # fmt: skip


def shifted(model: AnomalyModel, sensor: str, z: float, machine: str = "pump-001") -> dict:
    """A window at the machine's healthy level with ``sensor`` moved by ``z`` of its scale."""
    rng = np.random.default_rng(11)
    readings = healthy_readings(rng, int(machine[-3:]), 5)
    for s in readings:  # centre each sensor exactly on its baseline mean
        b = model.baselines.lookup(machine, 5.0, SENSORS)
        readings[s] += b.stats[f"{s}.mean"].mean - readings[s].mean()
    b = model.baselines.lookup(machine, 5.0, SENSORS)
    cfg = model.config
    readings[sensor] += z * b.scale(f"{sensor}.mean", cfg.std_floor_rel, cfg.std_floor_abs)
    return window_features(readings)


# --- severity rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("z", "severity"),
    [
        (0.0, None),
        (3.999, None),
        (4.0, "watch"),
        (-4.5, "watch"),
        (5.999, "watch"),
        (6.0, "medium"),
        (-8.9, "medium"),
        (9.0, "high"),
        (-30.0, "high"),
    ],
)
def test_zscore_bands(z: float, severity: str | None) -> None:
    t = zscore_trigger("vibration.mean", z, mean=0.0, scale=1.0, config=AnomalyConfig())
    if severity is None:
        assert t is None
        return
    assert t is not None
    assert (t.severity, t.value, t.threshold, t.score) == (
        severity,
        z,
        4.0 if z > 0 else -4.0,
        abs(z) / 4.0,
    )


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (7.2, (None, 7.1), ("critical", 7.1)),
        (7.1, (None, 7.1), None),  # at the limit: not crossed
        (1.5, (2.0, None), ("critical", 2.0)),
        (3.0, (2.0, 5.0), None),
    ],
)
def test_hard_limit_table(value, limit, expected) -> None:
    t = hard_limit_trigger("vibration", "mean", value, limit)
    assert (None if t is None else (t.severity, t.threshold)) == expected


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(0.0, 40.0),
    b=st.floats(0.0, 40.0),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_larger_deviation_never_lowers_severity(rules_model, a, b, sign) -> None:
    small, large = sorted((a, b))
    severities = [
        rules_model.score(
            vector(shifted(rules_model, "vibration", sign * z)), rules_model.new_state("pump-001")
        ).severity
        for z in (small, large)
    ]
    assert RANK[severities[1]] >= RANK[severities[0]]
    # the rule layer alone, with any baseline
    t_small = zscore_trigger("f.mean", sign * small, 0.0, 1.0, AnomalyConfig())
    t_large = zscore_trigger("f.mean", sign * large, 0.0, 1.0, AnomalyConfig())
    rank = [RANK[t.severity] if t else 0 for t in (t_small, t_large)]
    assert rank[1] >= rank[0]


@settings(max_examples=40, deadline=None)
@given(
    excess=st.floats(1e-6, 50.0),
    other=st.floats(-50.0, 50.0),
    machine=st.sampled_from(["pump-000", "pump-003", "pump-004", "never-seen"]),
)
def test_hard_limit_is_always_critical(full_model, excess, other, machine) -> None:
    features = shifted(full_model, "bearing_temp", other, "pump-001")
    delta = 7.1 + excess - features["vibration.mean"]
    for aggregate in ("mean", "min", "max", "latest"):
        features[f"vibration.{aggregate}"] += delta
    score = full_model.score(vector(features, machine), full_model.new_state(machine))
    assert score.severity == "critical"
    assert score.reason.startswith("hard_limit vibration.mean")
    assert [t.detector for t in score.triggers if t.severity == "critical"] == ["hard_limit"]


def test_persistence_escalates_after_n_windows_and_resets(rules_model) -> None:
    state = rules_model.new_state("pump-001")
    seen = []
    for i, z in enumerate([5.0] * 8 + [0.0] + [5.0]):
        fv = vector(shifted(rules_model, "vibration", z), t=5.0 * i)
        score = rules_model.score(fv, state)
        rules_model.update(fv, state, score)
        seen.append((score.severity, [t.detector for t in score.triggers]))
    watch = ("watch", ["zscore"])
    medium = ("medium", ["zscore", "persistence"])
    assert seen == [watch] * 5 + [medium] * 3 + [("normal", [])] + [watch]
    assert state.windows[5.0].runs == {"machine": 1}


def test_update_without_the_score_gives_the_same_state(rules_model) -> None:
    a, b = rules_model.new_state("pump-001"), rules_model.new_state("pump-001")
    for i, z in enumerate([5.0, 5.0, 0.0, 7.0]):
        fv = vector(shifted(rules_model, "vibration", z), t=5.0 * i)
        rules_model.update(fv, a, rules_model.score(fv, a))
        rules_model.update(fv, b)
    assert a.snapshot() == b.snapshot()


# --- baselines, fallback, limits ------------------------------------------------------------


def test_unseen_machine_and_machine_with_few_windows_use_the_global_fallback(
    rules_model, frame
) -> None:
    own = rules_model.baselines.lookup("pump-001", 5.0, SENSORS)
    fallback = rules_model.baselines.lookup("never-seen", 5.0, SENSORS)
    assert (own.key, own.windows) == ("pump-001", 200)
    assert (fallback.key, fallback.windows) == ("*", 4 * 200 + 10)
    assert rules_model.baselines.lookup("pump-004", 5.0, SENSORS) is fallback
    pooled = frame[frame.window_s == 5.0]["vibration.mean"].to_numpy()
    assert fallback.stats["vibration.mean"].mean == pytest.approx(pooled.mean(), rel=1e-12)
    assert fallback.stats["vibration.mean"].std == pytest.approx(pooled.std(), rel=1e-12)
    # the unseen machine's z-score is against the pooled baseline: its trigger's threshold
    # is pooled mean + 4 pooled std
    features = shifted(rules_model, "vibration", 0.0)
    features["vibration.mean"] = pooled.mean() + 5.0 * pooled.std()
    score = rules_model.score(vector(features, "never-seen"), rules_model.new_state("x"))
    (t,) = [t for t in score.triggers if t.detector == "zscore"]
    assert t.threshold == pytest.approx(pooled.mean() + 4.0 * pooled.std(), rel=1e-9)
    assert t.score == pytest.approx(5.0 / 4.0, rel=1e-9)


def test_machine_overrides_beat_star(frame) -> None:
    limits = {
        "*": {"vibration": [None, 7.1], "bearing_temp": [None, 95.0]},
        "pump-001": {"vibration": [None, 2.5]},
    }
    assert HardLimits(limits).for_machine("pump-001") == {
        "vibration": (None, 2.5),
        "bearing_temp": (None, 95.0),
    }
    model = AnomalyModel.fit(frame, limits, RULES_ONLY)
    features = shifted(model, "vibration", 0.0)
    features["vibration.mean"] = 2.6
    on_1 = model.score(vector(features, "pump-001"), model.new_state("pump-001"))
    on_0 = model.score(vector(features, "pump-000"), model.new_state("pump-000"))
    assert [(t.detector, t.threshold) for t in on_1.triggers if t.severity == "critical"] == [
        ("hard_limit", 2.5)
    ]
    assert [t for t in on_0.triggers if t.detector == "hard_limit"] == []
    features["bearing_temp.mean"] = 96.0
    on_1 = model.score(vector(features, "pump-001"), model.new_state("pump-001"))
    assert sorted(t.feature for t in on_1.triggers if t.detector == "hard_limit") == [
        "bearing_temp.mean",
        "vibration.mean",
    ]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"p1": {"vibration": [5, 2]}}, "limits `p1.vibration`: low 5.0 must be below high 2.0"),
        ({"p1": {"vibration": [None, "hot"]}}, "limits `p1.vibration.high`: expected a number"),
        ({"p1": {"vibration": 3}}, "limits `p1.vibration`: expected [low, high], got 3"),
    ],
)
def test_bad_limits_name_the_key_and_value(limits, message) -> None:
    with pytest.raises(ValueError) as exc:
        HardLimits(limits)
    assert str(exc.value).startswith(message)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="field `stuck_severity`: 'loud'"):
        AnomalyConfig(stuck_severity="loud")


# --- sensor faults --------------------------------------------------------------------------


def _faulty(model: AnomalyModel, fault: str) -> dict[str, float]:
    rng = np.random.default_rng(3)
    readings = healthy_readings(rng, 1, 5)
    if fault == "stuck":
        readings["pressure"][:] = 9.0  # stuck far from its level: z ≈ 100
    elif fault == "dropout":
        readings["flow"] = readings["flow"][:1]
    elif fault == "absent":
        del readings["flow"]
    elif fault == "spike":
        readings["vibration"][2] += 6.0  # one reading: 30 noise stds
    features = window_features(readings)
    return features


@pytest.mark.parametrize(
    ("fault", "detector", "feature"),
    [
        ("stuck", "stuck", "pressure.std"),
        ("dropout", "dropout", "flow.count"),
        ("absent", "dropout", "flow.count"),
        ("spike", "spike", "vibration.max"),
    ],
)
@pytest.mark.parametrize("which", ["rules_model", "full_model"])
def test_sensor_faults_are_sensor_triggers_and_suppress_machine_ones(
    request, which, fault, detector, feature
) -> None:
    model = request.getfixturevalue(which)
    score = model.score(vector(_faulty(model, fault)), model.new_state("pump-001"))
    sensor = feature.partition(".")[0]
    assert [(t.detector, t.feature, t.category) for t in score.triggers] == [
        (detector, feature, "sensor")
    ]
    assert score.category == "sensor"
    assert not [t for t in score.triggers if t.category == "machine"]
    assert score.reason.startswith(f"{detector} {sensor}.")


def test_stuck_by_flat_windows_needs_history(rules_model) -> None:
    """Windows of one reading have no std: stuck shows as min == max == previous latest."""
    state = rules_model.new_state("pump-001")
    base = shifted(rules_model, "vibration", 0.0)
    flat = dict(base)
    for aggregate in ("mean", "min", "max", "latest"):
        flat[f"pressure.{aggregate}"] = 4.2
    flat["pressure.std"] = 0.0
    flat["pressure.count"] = 1.0  # too few readings for the std rule
    detectors = []
    for i in range(5):
        fv = vector(flat, t=5.0 * i)
        score = rules_model.score(fv, state)
        rules_model.update(fv, state, score)
        detectors.append(
            [(t.detector, t.feature) for t in score.triggers if t.feature[:8] == "pressure"]
        )
    # a 1-reading window is a dropout (count 1 ≤ 0.5 × 5) from the start; the flat run is
    # counted from the second window and is stuck once it reaches 3
    assert [("stuck", "pressure.latest") in d for d in detectors] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert state.windows[5.0].history["pressure"] == (4.2, 4)


def test_drift_only_when_the_coupled_sensor_stays_put(rules_model) -> None:
    def triggers(**z: float) -> list[tuple[str, str, str]]:
        features = shifted(rules_model, "vibration", 0.0)
        for sensor, by in z.items():
            moved = shifted(rules_model, sensor, by)
            features.update({k: v for k, v in moved.items() if k.startswith(f"{sensor}.")})
        score = rules_model.score(vector(features), rules_model.new_state("pump-001"))
        return [(t.detector, t.feature, t.category) for t in score.triggers]

    # a pressure transmitter drifting while the flow stays put: a sensor fault
    assert triggers(pressure=-7.0) == [("drift", "pressure.mean", "sensor")]
    # pressure and flow falling together: a leaking seal, the machine
    assert triggers(pressure=-7.0, flow=-7.0) == [
        ("zscore", "flow.mean", "machine"),
        ("zscore", "pressure.mean", "machine"),
    ]
    # bearing temperature alone: lubrication loss heats the bearing first, so never "drift"
    assert triggers(bearing_temp=7.0) == [("zscore", "bearing_temp.mean", "machine")]


def test_outliers_are_spikes_and_no_limit_or_level_of_the_machine(frame) -> None:
    model = AnomalyModel.fit(frame, {"*": {"bearing_temp": [None, 95.0]}}, RULES_ONLY)
    rng = np.random.default_rng(8)
    one = healthy_readings(rng, 1, 5)
    one["bearing_temp"][3] += 150.0  # one reading +150 °C: the mean +30, over 95 °C
    two = healthy_readings(rng, 1, 30)
    two["vibration"][[4, 17]] += 6.0  # two outliers in a 30 s window: its mean moves 0.4
    cases = [(window_features(one), 5.0), (window_features(two), 30.0)]
    got = []
    for features, window_s in cases:
        score = model.score(vector(features, window_s=window_s), model.new_state("pump-001"))
        got.append([(t.detector, t.feature, t.severity, t.category) for t in score.triggers])
    assert window_features(one)["bearing_temp.mean"] > 95.0
    assert got == [
        [("spike", "bearing_temp.max", "medium", "sensor")],  # 150 °C ≫ 4 × 8 noise stds
        [("spike", "vibration.std", "watch", "sensor")],
    ]
    # every reading over the limit is the machine's level, spike or not
    hot = healthy_readings(rng, 1, 5)
    hot["bearing_temp"] += 96.0 - hot["bearing_temp"].min()
    hot["bearing_temp"][3] += 130.0
    score = model.score(vector(window_features(hot)), model.new_state("pump-001"))
    assert [(t.detector, t.feature) for t in score.triggers if t.severity == "critical"] == [
        ("hard_limit", "bearing_temp.min")
    ]


@settings(max_examples=150, deadline=None)
@given(
    shifts=st.lists(st.floats(-8.0, 8.0), min_size=4, max_size=4),
    noise=st.lists(st.floats(0.0, 3.0), min_size=4, max_size=4),
    counts=st.lists(st.integers(1, 5), min_size=4, max_size=4),
    spike=st.floats(-60.0, 60.0),
    seed=st.integers(0, 2**16),
)
def test_quiet_fast_path_never_hides_a_rule(rules_model, shifts, noise, counts, spike, seed):
    """Healthy windows skip the full rules after a few float comparisons; whenever they do,
    the full rules (sensor faults and z-scores) would have fired nothing."""
    rng = np.random.default_rng(seed)
    readings = {}
    for (sensor, (level, sd)), shift, k, n in zip(
        SENSORS.items(), shifts, noise, counts, strict=True
    ):
        readings[sensor] = level * 1.05 + shift * sd / np.sqrt(5) + k * sd * rng.normal(size=n)
    readings["vibration"][0] += spike * 0.2
    features = window_features(readings)
    fv = vector(features)
    profile = rules_model._profile(fv)
    if profile.quiet(features):
        found: list = []
        rules_model._full_rules(profile, fv, None, found)
        assert [t for t in found if t.detector != "hard_limit"] == []


# --- PCA T² + Q -----------------------------------------------------------------------------


def test_pca_t2_and_q_match_a_numpy_brute_force() -> None:
    rng = np.random.default_rng(7)
    latent = rng.normal(size=(3000, 2))
    mixing = rng.normal(size=(2, 6))
    z = latent @ mixing + 0.1 * rng.normal(size=(3000, 6)) + rng.normal(size=6)
    names = tuple(f"s{i}.mean" for i in range(6))
    det = PcaDetector.fit(names, z, variance=0.95, quantile=0.99, margin=1.0)
    # brute force: eigen-decomposition of the sample covariance
    mean = z.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(z - mean, rowvar=False))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    k = int(np.searchsorted(np.cumsum(values) / values.sum(), 0.95) + 1)
    assert det.components.shape == (k, 6) == (2, 6)
    probe = rng.normal(size=(50, 6)) * 2.0 + mean
    scores = (probe - mean) @ vectors[:, :k]
    t2_ref = (scores**2 / values[:k]).sum(axis=1)
    q_ref = (((probe - mean) - scores @ vectors[:, :k].T) ** 2).sum(axis=1)
    t2, q = det.statistics(probe)
    np.testing.assert_allclose(t2, t2_ref, rtol=1e-8)
    np.testing.assert_allclose(q, q_ref, rtol=1e-8, atol=1e-10)
    for row, a, b in zip(probe, t2_ref, q_ref, strict=True):
        one = det.statistics_centred(row - det.mean)
        assert one == pytest.approx((a, b), rel=1e-8, abs=1e-10)
    train_scores = (z - mean) @ vectors[:, :k]
    t2_train = (train_scores**2 / values[:k]).sum(axis=1)
    assert det.t2_threshold == pytest.approx(np.quantile(t2_train, 0.99), rel=1e-8)
    assert PcaDetector.from_dict(json.loads(json.dumps(det.to_dict()))).statistics(
        probe[0]
    ) == det.statistics(probe[0])


def test_model_pca_trigger_is_t2_or_q_of_the_standardised_window(full_model) -> None:
    # every sensor 3.9 scales up: below the z bands (and no drift), but jointly far out
    features = shifted(full_model, "vibration", 3.9)
    for sensor in ("bearing_temp", "pressure", "flow"):
        features.update(
            {k: v for k, v in shifted(full_model, sensor, 3.9).items() if k.startswith(sensor)}
        )
    fv = vector(features)
    score = full_model.score(fv, full_model.new_state("pump-001"))
    (t,) = [t for t in score.triggers if t.detector.startswith("pca")]
    b = full_model.baselines.lookup("pump-001", 5.0, SENSORS)
    det = full_model.pca[(5.0, b.sensors)]
    cfg = full_model.config
    z = np.array(
        [
            (features[f] - b.stats[f].mean) / b.scale(f, cfg.std_floor_rel, cfg.std_floor_abs)
            for f in det.features
        ]
    )
    t2, q = det.statistics(z)
    expected = t2 if t.detector == "pca_t2" else q
    assert t.value == pytest.approx(expected, rel=1e-9)
    assert t.score == pytest.approx(max(t2 / det.t2_threshold, q / det.q_threshold), rel=1e-9)


# --- Half-Space Trees -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3))
def test_hst_scores_are_bounded_and_learning_happens_only_in_learn(xs) -> None:
    scaling = HstScaling.from_percentiles(
        {"a.mean": (0.0, 1.0, 0.5), "b.mean": (10.0, 20.0, 15.0), "c.mean": (-1.0, 1.0, 0.0)},
        0.5,
    )
    det = OnlineDetector(scaling, trees=3, height=4, window=20, quantile=0.9, seed=5)
    rng = np.random.default_rng(0)
    for _ in range(60):
        det.learn(scaling.transform({"a.mean": rng.uniform(0, 1), "b.mean": rng.uniform(10, 20),
                                     "c.mean": rng.uniform(-1, 1)}))  # fmt: skip
    x = scaling.transform(dict(zip(("a.mean", "b.mean", "c.mean"), xs, strict=True)))
    assert all(0.0 <= v <= 1.0 for v in x.values())
    before = json.dumps(det.snapshot())
    value, threshold = det.score(x)
    assert 0.0 <= value <= 1.0 and threshold is not None
    assert json.dumps(det.snapshot()) == before
    det.learn(x)
    assert json.dumps(det.snapshot()) != before


# --- purity, registry, CLI ------------------------------------------------------------------


def _stream(model: AnomalyModel, n: int = 140) -> list[FeatureVector]:
    """Both window sizes for pump-002, with a stuck, a spike and a rising vibration."""
    rng = np.random.default_rng(21)
    out = []
    for i in range(n):
        window_s = 30.0 if i % 7 == 6 else 5.0
        readings = healthy_readings(rng, 2, int(window_s))
        if 40 <= i < 50:
            readings["pressure"][:] = 4.5
        if i == 60:
            readings["flow"][1] += 40.0
        if i >= 100:
            readings["vibration"] += 0.05 * (i - 100)
        out.append(vector(window_features(readings), "pump-002", window_s, t=5.0 * i))
    return out


def test_score_is_pure_and_update_changes_state(full_model) -> None:
    config = AnomalyConfig(hst_window=10)  # HST warm within the test's 30 s windows
    model = AnomalyModel(config, full_model.baselines, full_model.limits, full_model.pca)
    state = model.new_state("pump-002")
    stream = _stream(model)
    for fv in stream[:120]:
        model.update(fv, state, model.score(fv, state))
    assert state.windows[30.0].online is not None
    assert state.windows[30.0].online.scored > 0  # the trees are past warm-up
    artifacts, info = model.to_artifacts(), json.dumps(model.info())
    snapshot, pickled = json.dumps(state.snapshot()), pickle.dumps(state)
    scores = [encode(model.score(fv, state)) for fv in stream]
    assert [encode(model.score(fv, state)) for fv in stream] == scores
    assert model.to_artifacts() == artifacts and json.dumps(model.info()) == info
    assert json.dumps(state.snapshot()) == snapshot and pickle.dumps(state) == pickled
    fv = stream[125]  # a 30 s window: persistence, history and the trees all move
    model.update(fv, state, model.score(fv, state))
    assert json.dumps(state.snapshot()) != snapshot


def test_registry_round_trip_gives_identical_scores(tmp_path: Path, full_model) -> None:
    registry = ModelRegistry(tmp_path / "models")
    mv = registry.register("anomaly", full_model, promote=True)
    assert mv.format == "anomaly-model/1" and list(mv.artifacts) == ["anomaly.json"]
    loaded = registry.load("anomaly")
    assert isinstance(loaded, AnomalyModel)
    assert loaded.to_artifacts() == full_model.to_artifacts()
    out = []
    for model in (full_model, loaded):
        state = model.new_state("pump-002")
        scores = []
        for fv in _stream(model):
            score = model.score(fv, state)
            model.update(fv, state, score)
            scores.append(encode(score))
        out.append(scores)
    assert out[0] == out[1]
    severities = {json.loads(s)["severity"] for s in out[0]}
    assert {"normal", "high"} <= severities <= set(SEVERITIES)


def test_train_anomaly_cli(tmp_path: Path, frame: pd.DataFrame, monkeypatch) -> None:
    from wearwatch.cli import app

    store = tmp_path / "features" / "date=1970-01-01" / "hour=00"
    store.mkdir(parents=True)
    frame.to_parquet(store / "part-0.parquet", index=False)
    # pump-000 is faulty from t=100 s to its failure at 300 s and down until its repair at 400 s
    log = [
        MaintenanceEvent(ts=utc(100.0), asset_id="pump-000", kind="fault_onset", mode="imbalance"),
        MaintenanceEvent(ts=utc(300.0), asset_id="pump-000", kind="failure"),
        MaintenanceEvent(ts=utc(400.0), asset_id="pump-000", kind="repair"),
    ]
    (tmp_path / "truth.jsonl").write_bytes(b"\n".join(encode(e) for e in log) + b"\n")
    (tmp_path / "limits.toml").write_text('["*"]\nvibration = [0.0, 7.1]\n')
    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp_path / "data"))
    args = ["train", "anomaly", "--features", str(tmp_path / "features"), "--limits",
            str(tmp_path / "limits.toml"), "--maintenance", str(tmp_path / "truth.jsonl"),
            "--registry", str(tmp_path / "models"), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    ts = frame["ts"].map(lambda t: t.timestamp()).to_numpy()
    start = ts - frame["window_s"].to_numpy()
    dropped = ((frame["machine_id"] == "pump-000") & (ts > 100.0) & (start < 400.0)).sum()
    assert dropped == 60 + 11  # ends in (100, 405) for 5 s windows, (100, 430) for 30 s
    assert (summary["rows"], summary["healthy_rows"]) == (len(frame), len(frame) - dropped)
    assert summary["machines_on_fallback"] == ["pump-004"]
    assert summary["registered"] == "anomaly v0001"
    model = ModelRegistry(tmp_path / "models").load("anomaly")
    assert model.baselines.own[("pump-000", 5.0)].windows == 200 - 60
    assert model.baselines.own[("pump-000", 30.0)].windows == 60 - 11
    assert model.limits.for_machine("pump-000") == {"vibration": (0.0, 7.1)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"maintenance"}\n')
    args[args.index("--maintenance") + 1] = str(bad)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: maintenance file {bad}, line 1:")


def test_stuck_is_not_told_on_sensors_flat_when_healthy() -> None:
    """A constant sensor (speed at its setpoint) or a coarsely quantised one (flat in ≥ 1 % of
    healthy windows) gives no stuck evidence: the rule cannot tell, so it stays silent; a
    noisy one that goes flat is stuck, at ``watch``, and ``medium`` once it persists."""
    rng = np.random.default_rng(4)
    rows = []
    for w in range(300):
        readings = {
            "speed": np.full(5, 1480.0),
            "pressure": np.round(4.0 + 0.04 * rng.normal(size=5), 1),  # 0.1 bar steps
            "vibration": 2.0 + 0.2 * rng.normal(size=5),
        }
        rows.append({"ts": pd.Timestamp(5 * w, unit="s", tz="UTC"), "machine_id": "m",
                     "window_s": 5.0, **window_features(readings)})  # fmt: skip
    frame = pd.DataFrame(rows)
    assert (frame["pressure.std"] == 0).mean() > 0.01
    model = AnomalyModel.fit(frame, None, RULES_ONLY)
    flat = window_features(
        {"speed": np.full(5, 1480.0), "pressure": np.full(5, 4.0), "vibration": np.full(5, 2.1)}
    )
    state = model.new_state("m")
    seen = []
    for i in range(7):
        fv = vector(flat, "m", t=5.0 * i)
        score = model.score(fv, state)
        model.update(fv, state, score)
        seen.append([(t.detector, t.feature, t.severity) for t in score.triggers])
    stuck = ("stuck", "vibration.std", "watch")
    assert seen[:5] == [[stuck]] * 5
    assert seen[5:] == [[stuck, ("persistence", "vibration.std", "medium")]] * 2


def test_pca_t2_is_evidence_that_persistence_does_not_escalate(rules_model) -> None:
    """T² (inside the healthy subspace: an operating point beyond the training range moves
    it as much as a fault) stays ``watch`` and escalates nothing; Q can be ``medium`` (when
    ``pca_medium`` is set; by default it stays ``watch`` too)."""
    config = AnomalyConfig(pca_aggregates=("mean",), hst=False, pca_medium=4.0)
    names = ("bearing_temp.mean", "flow.mean", "pressure.mean", "vibration.mean")
    load = PcaDetector(names, np.zeros(4), np.full((1, 4), 0.5), np.ones(1), 4.0, 4.0, 100)
    sensors = tuple(sorted(SENSORS))
    model = AnomalyModel(config, rules_model.baselines, rules_model.limits, {(5.0, sensors): load})

    def window(**z: float) -> dict[str, float]:
        features = shifted(model, "vibration", 0.0)
        for sensor, by in z.items():
            moved = shifted(model, sensor, by)
            features.update({k: v for k, v in moved.items() if k.startswith(f"{sensor}.")})
        return features

    state = model.new_state("pump-001")
    along = window(vibration=3.0, bearing_temp=3.0, pressure=3.0, flow=3.0)  # T² = 36
    seen = []
    for i in range(8):
        fv = vector(along, t=5.0 * i)
        score = model.score(fv, state)
        model.update(fv, state, score)
        seen.append([(t.detector, t.severity, round(t.score, 6)) for t in score.triggers])
    assert seen == [[("pca_t2", "watch", 9.0)]] * 8
    assert state.windows[5.0].runs == {}
    across = window(vibration=3.0, bearing_temp=-3.0)  # off the load direction: Q = 18
    score = model.score(vector(across), model.new_state("pump-001"))
    assert [(t.detector, t.severity, round(t.score, 6)) for t in score.triggers] == [
        ("pca_q", "medium", 4.5)
    ]
    default = AnomalyModel(
        AnomalyConfig(pca_aggregates=("mean",), hst=False), model.baselines, model.limits,
        model.pca,
    )  # fmt: skip
    score = default.score(vector(across), default.new_state("pump-001"))
    assert [(t.detector, t.severity) for t in score.triggers] == [("pca_q", "watch")]


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 400), seed=st.integers(0, 2**16), window=st.integers(2, 40))
def test_online_detector_restored_from_a_checkpoint_continues_bit_for_bit(
    cut: int, seed: int, window: int
) -> None:
    """The detector pickles its tree masses only and regrows the trees from the seed: a copy
    restored at any point (before the trees exist, in the first window, later) scores and
    learns exactly as the original from then on."""
    scaling = HstScaling(("a.mean", "b.mean", "c.mean"), (0.0,) * 3, (1.0,) * 3, (0.5,) * 3)
    rng = np.random.default_rng(seed)
    xs = [dict(zip(scaling.inputs, map(float, row), strict=True)) for row in rng.random((500, 3))]
    original = OnlineDetector(scaling, trees=4, height=4, window=window, quantile=0.9, seed=seed)
    for x in xs[:cut]:
        original.learn(x)
    restored = pickle.loads(pickle.dumps(original))
    for x in xs[cut:]:
        assert restored.score(x) == original.score(x)
        original.learn(x)
        restored.learn(x)
    assert pickle.dumps(restored) == pickle.dumps(original)
