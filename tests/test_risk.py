"""Failure risk: labels from maintenance events, the leakage-free split, trend features (stream
== batch), the models on a fleet where risk is learnable, the registry round trip, health and
the time-to-maintenance forecast, and ``wearwatch train risk``."""

from __future__ import annotations

import json
import math
import pickle
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from wearwatch.bus import open_log
from wearwatch.bus.base import OutRecord
from wearwatch.events import (
    AnomalyScore,
    FeatureVector,
    MaintenanceEvent,
    Trigger,
    encode,
    utc,
)
from wearwatch.learn.risk.features import TREND_SUFFIXES, TrendConfig, TrendFeatures
from wearwatch.learn.risk.health import (
    RISK_WEIGHT,
    SEVERITY_PENALTY,
    MaintenanceForecast,
    health_score,
)
from wearwatch.learn.risk.labels import label_windows, split_by_machine_and_time
from wearwatch.learn.risk.model import RiskConfig, RiskModel, risk_level, train_risk
from wearwatch.learn.risk.truth import read_maintenance_file, read_maintenance_topic
from wearwatch.store.registry import ModelRegistry
from wearwatch.topics import MAINTENANCE

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KINDS = ("failure", "repair", "maintenance", "fault_onset", "sensor_fault")


def _frame(rows: list[tuple[str, float, float]], **columns: list[float]) -> pd.DataFrame:
    """A feature-store frame from (machine, ts seconds after T0, window_s) rows."""
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(
                np.round([(T0 + t) * 1e6 for _, t, _ in rows]).astype(np.int64), unit="us", utc=True
            ),
            "machine_id": [m for m, _, _ in rows],
            "window_s": [w for _, _, w in rows],
            **columns,
        }
    )


def _event(machine: str, t: float, kind: str) -> MaintenanceEvent:
    return MaintenanceEvent(ts=utc(T0 + t), asset_id=machine, kind=kind)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- labels
def _brute_force_labels(
    rows: list[tuple[str, float, float]],
    events: list[MaintenanceEvent],
    horizon: float,
    end: float,
) -> list[float]:
    out = []
    for machine, t, w in rows:
        mine = sorted((e.ts.timestamp() - T0, e.kind) for e in events if e.asset_id == machine)
        failures = [x for x, k in mine if k == "failure"]
        repairs = [x for x, k in mine if k == "repair"]
        down = any(
            f < t and min((r for r in repairs if r >= f), default=math.inf) > t - w
            for f in failures
        )
        if down:
            out.append(math.nan)
        elif any(t <= f < t + horizon for f in failures):
            out.append(1.0)
        elif t + horizon > end:
            out.append(math.nan)
        else:
            out.append(0.0)
    return out


machines_st = st.sampled_from(["a", "b", "c"])


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(machines_st, st.integers(0, 60), st.sampled_from([5, 30])), max_size=40
    ),
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b", "d"]), st.integers(-40, 100), st.sampled_from(KINDS)),
        max_size=12,
    ),
    horizon=st.integers(1, 50),
)
def test_labels_equal_a_brute_force_labeller(
    rows: list[tuple[str, int, int]], events: list[tuple[str, int, str]], horizon: int
) -> None:
    """Integer seconds in a small range: windows end on failures, repairs and each other."""
    truth = [_event(m, t, k) for m, t, k in events]
    frows = [(m, float(t), float(w)) for m, t, w in rows]
    labels = label_windows(_frame(frows), truth, horizon_s=float(horizon))
    end = max((t for _, t, _ in frows), default=0.0)
    expected = _brute_force_labels(frows, truth, horizon, end)
    np.testing.assert_array_equal(labels, np.asarray(expected, dtype=np.float64))


def test_labels_down_time_censoring_and_averted_failures() -> None:
    """Hours after T0, 1 h windows, horizon 4 h, the record ends at 30 h."""
    h = 3600.0
    rows = [("p", k * h, h) for k in range(1, 31)]
    truth = [
        _event("p", 6 * h, "failure"),
        _event("p", 9 * h, "repair"),  # down in (6 h, 9 h]: windows ending at 7, 8, 9 h
        _event("p", 14 * h, "maintenance"),  # preventive: nothing failed, labels stay 0
        _event("p", 22 * h, "failure"),  # never repaired: down to the end
    ]
    labels = label_windows(_frame(rows), truth, horizon_s=4 * h)
    expected = [0.0] * 2 + [1.0] * 4 + [math.nan] * 3 + [0.0] * 9 + [1.0] * 4 + [math.nan] * 8
    np.testing.assert_array_equal(labels, expected)
    # Censoring alone: no failure in the last 4 h of a record is not known to be a 0.
    quiet = label_windows(_frame(rows), [], horizon_s=4 * h)
    np.testing.assert_array_equal(quiet, [0.0] * 26 + [math.nan] * 4)


def test_labels_keep_row_order_and_reject_naive_times() -> None:
    rows = [("b", 100.0, 5.0), ("a", 10.0, 5.0), ("b", 10.0, 5.0), ("a", 100.0, 5.0)]
    truth = [_event("a", 50.0, "failure"), _event("a", 60.0, "repair")]
    labels = label_windows(_frame(rows), truth, horizon_s=45.0, end=utc(T0 + 1000))
    np.testing.assert_array_equal(labels, [0.0, 1.0, 0.0, 0.0])
    naive = _frame(rows).assign(ts=lambda f: f["ts"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="column `ts`: expected timezone-aware"):
        label_windows(naive, truth)
    with pytest.raises(ValueError, match="horizon_s: must be a positive"):
        label_windows(_frame(rows), truth, horizon_s=0.0)


# ---------------------------------------------------------------------------- split
@settings(max_examples=100, deadline=None)
@given(
    n_machines=st.integers(2, 12),
    share=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
    horizon=st.integers(10, 400),
    cut=st.floats(0.1, 0.9),
)
def test_split_holds_out_machines_and_a_gap_after_the_cut(
    n_machines: int, share: float, seed: int, horizon: int, cut: float
) -> None:
    rows = [
        (f"m{m}", float(t), w)
        for m in range(n_machines)
        for t, w in zip(range(0, 2000, 37), [5.0, 30.0] * 60, strict=False)
    ]
    frame = _frame(rows)
    split = split_by_machine_and_time(frame, share, seed, horizon_s=horizon, time_cut=cut)
    train, test = frame[split.train], frame[split.test]
    assert set(train["machine_id"]).isdisjoint(set(split.test_machines))
    assert set(test["machine_id"]) <= set(split.test_machines)
    assert 1 <= len(split.test_machines) <= n_machines - 1
    assert split.gap_s == horizon + 30.0
    # Every test window's readings start after every training label's horizon has ended.
    if len(train) and len(test):
        train_end = train["ts"].max() + timedelta(seconds=horizon)
        test_start = (test["ts"] - pd.to_timedelta(test["window_s"], unit="s")).min()
        assert test_start > train_end
    assert (train["ts"] <= split.cut).all()
    assert (test["ts"] > split.cut + timedelta(seconds=split.gap_s)).all()
    again = split_by_machine_and_time(frame, share, seed, horizon_s=horizon, time_cut=cut)
    assert again.test_machines == split.test_machines


def test_split_by_machine_only_covers_every_row() -> None:
    frame = _frame([(f"m{m}", float(t), 5.0) for m in range(10) for t in range(5)])
    split = split_by_machine_and_time(frame, 0.3, seed=4, time_cut=None)
    assert len(split.test_machines) == 3
    np.testing.assert_array_equal(split.train, ~split.test)
    with pytest.raises(ValueError, match="at least 2 machines"):
        split_by_machine_and_time(frame[frame["machine_id"] == "m0"])


# ---------------------------------------------------------------------------- trend features
def _stream(frame: pd.DataFrame, config: TrendConfig) -> list[dict[str, float]]:
    """Rows of ``frame`` (in its order) through one TrendFeatures per machine, in ts order."""
    states: dict[str, TrendFeatures] = {}
    out: dict[int, dict[str, float]] = {}
    keys = [c for c in frame.columns if c not in ("ts", "machine_id", "window_s")]
    for i in frame.sort_values(["machine_id", "ts"], kind="stable").index:
        row = frame.loc[i]
        features = {k: float(row[k]) for k in keys if not pd.isna(row[k])}
        fv = FeatureVector(
            ts=row["ts"].to_pydatetime(),
            machine_id=row["machine_id"],
            window_s=row["window_s"],
            features=features,
        )
        state = states.setdefault(row["machine_id"], TrendFeatures(config))
        out[i] = state.update(fv)
    return [out[i] for i in frame.index]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.floats(1.0, 20000.0),  # gap to the machine's previous window, seconds
            st.one_of(st.none(), st.floats(-50.0, 200.0)),
            st.one_of(st.none(), st.floats(0.01, 30.0)),
        ),
        min_size=1,
        max_size=60,
    ),
    baseline=st.integers(1, 5),
)
def test_trend_features_stream_equals_batch(
    data: list[tuple[str, float, float | None, float | None]], baseline: int
) -> None:
    clock = {"a": 0.0, "b": 0.0}
    rows, temp, vib, std = [], [], [], []
    for machine, gap, t_mean, v_mean in data:
        clock[machine] += gap
        rows.append((machine, clock[machine], 30.0))
        temp.append(math.nan if t_mean is None else t_mean)
        vib.append(math.nan if v_mean is None else v_mean)
        std.append(0.5)
    frame = _frame(rows, **{"temp.mean": temp, "vib.mean": vib, "vib.std": std})
    frame = frame.sample(frac=1.0, random_state=len(data))  # any row order, any index
    config = TrendConfig(window_s=30.0, short_h=1.0, long_h=6.0, baseline_windows=baseline)
    batch = TrendFeatures.transform(frame, config)
    assert list(batch.index) == list(frame.index)
    expected_columns = {f"{s}.{x}" for s in ("temp", "vib") for x in TREND_SUFFIXES}
    assert expected_columns <= set(batch.columns)
    for streamed, (_, row) in zip(_stream(frame, config), batch.iterrows(), strict=True):
        for column in batch.columns:
            if column in ("ts", "machine_id", "window_s"):
                continue
            got = streamed.get(column, math.nan)
            assert (math.isnan(got) and pd.isna(row[column])) or got == pytest.approx(
                row[column], rel=1e-9, abs=1e-9
            ), column


def test_trend_features_recover_a_linear_slope_and_a_rise() -> None:
    """After many half-lives of a line, trend_per_h is its slope; rise is ewm − baseline."""
    trend = TrendFeatures(TrendConfig(window_s=30.0, baseline_windows=10))
    hours = 120
    for k in range(1, hours * 120 + 1):  # 30 s windows of 50 + 0.5 °C/h
        t = 30.0 * k
        out = trend.update(
            FeatureVector(
                ts=utc(T0 + t),
                machine_id="p",
                window_s=30.0,
                features={"temp.mean": 50.0 + 0.5 * t / 3600},
            )
        )
    assert out["temp.trend_per_h"] == pytest.approx(0.5, rel=1e-4)
    # A 30 s-sampled EWMA lags a line by 30 s × d / (1 − d), d the decay per window (≈ τ − 15 s).
    d = 0.5 ** (30.0 / 3600)
    lag_h = 30.0 / 3600 * d / (1 - d)
    assert out["temp.ewm_short"] == pytest.approx(50.0 + 0.5 * (hours - lag_h), rel=1e-9)
    baseline = 50.0 + 0.5 * (30.0 * 5.5) / 3600  # mean of the first 10 windows
    assert out["temp.rise"] == pytest.approx(out["temp.ewm_short"] - baseline, rel=1e-12)
    assert out["temp.rise_rel"] == pytest.approx(out["temp.rise"] / baseline, rel=1e-12)


def test_trend_state_is_constant_size_picklable_and_refuses_bad_input() -> None:
    trend = TrendFeatures()

    def fv(k: int) -> FeatureVector:
        return FeatureVector(
            ts=utc(T0 + 30.0 * k),
            machine_id="p",
            window_s=30.0,
            features={"vib.mean": 1.0 + k % 7, "temp.mean": 60.0},
        )

    trend.update(fv(1))
    small = len(pickle.dumps(trend))
    for k in range(2, 500):
        trend.update(fv(k))
    assert len(pickle.dumps(trend)) == small  # state does not grow with the stream
    restored = pickle.loads(pickle.dumps(trend))
    assert restored.update(fv(500)) == trend.update(fv(500))
    with pytest.raises(ValueError, match="must come in event-time order"):
        trend.update(fv(3))
    with pytest.raises(ValueError, match=r"window_s: trend features are computed on 30\.0 s"):
        trend.update(FeatureVector(ts=utc(T0 + 1e5), machine_id="p", window_s=5.0))


# ---------------------------------------------------------------------------- models
def synthetic_fleet(
    machines: int = 14, days: float = 12.0, window_s: float = 300.0, seed: int = 0
) -> tuple[pd.DataFrame, list[MaintenanceEvent]]:
    """Machines whose vibration grows exponentially (×4 over a P-F interval of ~2 days) from
    a random onset to failure, with bearing temperature in the last 15 %, 6 h down for repair.
    Baselines differ by machine (0.5–3 mm/s), so the raw level alone predicts poorly."""
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / window_s)
    t = window_s * np.arange(1, n + 1)
    frames, truth = [], []
    for m in range(machines):
        machine = f"m{m:02d}"
        base, temp0 = rng.uniform(0.5, 3.0), rng.uniform(50.0, 70.0)
        vib, temp, up = np.full(n, base), np.full(n, temp0), np.ones(n, bool)
        clock = rng.uniform(0.0, 2.0) * 86400
        while True:
            onset = clock + rng.exponential(2.0 * 86400)
            life = 48 * 3600 * rng.uniform(0.6, 1.4)
            if onset + life > t[-1]:
                break
            growing = (t > onset) & (t <= onset + life)
            frac = (t[growing] - onset) / life
            vib[growing] = base * 4.0**frac
            temp[growing] += 25.0 * np.clip((frac - 0.85) / 0.15, 0.0, 1.0)
            repair = onset + life + 6 * 3600
            up[(t > onset + life) & (t <= repair)] = False
            truth += [_event(machine, onset + life, "failure"), _event(machine, repair, "repair")]
            clock = repair
        frames.append(
            _frame(
                [(machine, float(x), window_s) for x in t[up]],
                **{
                    "vibration.mean": (vib * (1 + rng.normal(0, 0.08, n)))[up],
                    "vibration.std": (vib * np.abs(rng.normal(0.1, 0.02, n)))[up],
                    "bearing_temp.mean": (temp + rng.normal(0, 1.0, n))[up],
                },
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["ts", "machine_id"], kind="stable").reset_index(drop=True), truth


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, list[MaintenanceEvent]]:
    return synthetic_fleet()


@pytest.fixture(scope="module")
def trained(fleet: tuple[pd.DataFrame, list[MaintenanceEvent]]) -> tuple[RiskModel, dict]:
    frame, truth = fleet
    return train_risk(frame, truth, horizon_s=86400.0, seed=3)


def test_risk_is_learned_beyond_the_raw_level(
    fleet: tuple[pd.DataFrame, list[MaintenanceEvent]], trained: tuple[RiskModel, dict]
) -> None:
    """On held-out machines and time, LightGBM ranks failing windows better than the window's
    own vibration level does, and its PR-AUC beats the prevalence (what no skill scores)."""
    frame, truth = fleet
    model, metrics = trained
    y = label_windows(frame, truth, 86400.0)
    split = split_by_machine_and_time(frame, 0.3, seed=3, horizon_s=86400.0)
    test = split.test & ~np.isnan(y)
    assert metrics["split"]["test_machines"] == list(split.test_machines)
    assert metrics["split"]["test_windows"] == int(test.sum())
    assert metrics["prevalence"] == pytest.approx(y[test].mean())
    assert 0 < metrics["split"]["test_positives"] < metrics["split"]["test_windows"]
    level_auc = roc_auc_score(y[test], frame.loc[test, "vibration.mean"])
    enriched = TrendFeatures.transform(frame, model.trend)  # the trend needs the history
    proba = model.predict_frame(enriched[test])
    assert metrics["lightgbm"]["roc_auc"] == pytest.approx(roc_auc_score(y[test], proba))
    assert metrics["lightgbm"]["pr_auc"] == pytest.approx(average_precision_score(y[test], proba))
    assert metrics["lightgbm"]["roc_auc"] > level_auc
    assert metrics["logistic"]["roc_auc"] > level_auc
    assert metrics["lightgbm"]["pr_auc"] > metrics["prevalence"]
    assert (
        set(metrics["logistic"])
        == set(metrics["lightgbm"])
        == {
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "pr_auc",
        }
    )


def test_training_is_deterministic_whatever_the_column_and_row_order(
    fleet: tuple[pd.DataFrame, list[MaintenanceEvent]], trained: tuple[RiskModel, dict]
) -> None:
    frame, truth = fleet
    shuffled = frame[list(reversed(frame.columns))].sample(frac=1.0, random_state=1)
    again, metrics = train_risk(shuffled, truth, horizon_s=86400.0, seed=3)
    assert again.booster.model_to_string() == trained[0].booster.model_to_string()
    assert again.baseline == trained[0].baseline
    assert metrics == trained[1]


def test_registry_round_trip_gives_identical_probabilities(
    tmp_path, fleet: tuple[pd.DataFrame, list[MaintenanceEvent]], trained: tuple[RiskModel, dict]
) -> None:
    frame, _ = fleet
    model, _ = trained
    registry = ModelRegistry(tmp_path / "models")
    mv = registry.register("risk", model, promote=True)
    assert mv.format == "risk-model/1"
    assert set(mv.artifacts) == {"risk.json", "lightgbm.txt"}
    loaded = registry.load("risk")
    assert isinstance(loaded, RiskModel)
    assert loaded.feature_names == model.feature_names and loaded.trend == model.trend
    enriched = TrendFeatures.transform(frame, model.trend)
    np.testing.assert_array_equal(loaded.predict_frame(enriched), model.predict_frame(enriched))
    np.testing.assert_array_equal(loaded.baseline_proba(enriched), model.baseline_proba(enriched))


def test_streamed_scores_equal_the_batch_scores(
    fleet: tuple[pd.DataFrame, list[MaintenanceEvent]], trained: tuple[RiskModel, dict]
) -> None:
    """What the stream serves (update → predict_proba, one window at a time) is what training
    scored (transform → predict_frame)."""
    frame, _ = fleet
    model, _ = trained
    one = frame[frame["machine_id"] == "m01"]
    batch = model.predict_frame(TrendFeatures.transform(one, model.trend))
    streamed = [model.predict_proba(d) for d in _stream(one, model.trend)]
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=1e-12)
    many = model.predict_many(_stream(one, model.trend))
    np.testing.assert_allclose(many, batch, rtol=0, atol=1e-12)
    rows = np.stack([model.vector(d) for d in _stream(one, model.trend)])
    np.testing.assert_allclose(
        model.baseline.predict(rows),
        model.baseline_proba(TrendFeatures.transform(one, model.trend)),
        rtol=1e-9,
    )


def test_training_without_failures_is_one_clear_error(
    fleet: tuple[pd.DataFrame, list[MaintenanceEvent]],
) -> None:
    frame, _ = fleet
    with pytest.raises(ValueError, match="hold 0 that fail within 86400 s; both classes"):
        train_risk(frame, [], horizon_s=86400.0, config=RiskConfig(n_estimators=5))


@pytest.mark.parametrize(
    ("p", "level"),
    [
        (0.0, "low"),
        (float(np.nextafter(0.4, 0.0)), "low"),
        (0.4, "medium"),
        (float(np.nextafter(0.7, 0.0)), "medium"),
        (0.7, "high"),
        (1.0, "high"),
    ],
)
def test_risk_levels_at_the_boundaries(p: float, level: str) -> None:
    assert risk_level(p) == level


def test_risk_level_refuses_a_non_probability() -> None:
    with pytest.raises(ValueError, match="p: a probability in"):
        risk_level(1.5)


# ---------------------------------------------------------------------------- health
def _score(severity: str, category: str, triggers: list[Trigger] | None = None) -> AnomalyScore:
    return AnomalyScore(
        ts=utc(T0),
        machine_id="p",
        window_s=30.0,
        severity=severity,  # type: ignore[arg-type]
        score=2.5,
        category=category,  # type: ignore[arg-type]
        triggers=triggers or [],
    )


def _trigger(severity: str, category: str) -> Trigger:
    return Trigger(
        detector="zscore",
        feature="vibration.mean",
        value=3.0,
        threshold=2.0,
        score=1.5,
        severity=severity,  # type: ignore[arg-type]
        category=category,  # type: ignore[arg-type]
    )


def test_health_score_weighs_risk_and_machine_anomalies_only() -> None:
    health, why = health_score(_score("high", "machine"), risk=0.5)
    assert health == 100.0 - RISK_WEIGHT * 0.5 - SEVERITY_PENALTY["high"]
    assert why["anomaly_penalty"] == SEVERITY_PENALTY["high"] and why["anomaly_severity"] == 3.0
    # A stuck sensor (sensor category) costs no health but is listed.
    stuck = _score("high", "sensor", [_trigger("high", "sensor"), _trigger("watch", "machine")])
    health, why = health_score(stuck, risk=0.0)
    assert health == 100.0 - SEVERITY_PENALTY["watch"]
    assert why["sensor_fault_severity"] == 3.0 and why["anomaly_severity"] == 1.0
    assert health_score(_score("critical", "machine"), risk=1.0)[0] == 0.0
    with pytest.raises(ValueError, match="risk: a probability"):
        health_score(_score("normal", "none"), risk=-0.1)


def _feed(forecast: MaintenanceForecast, values: np.ndarray, step_s: float = 30.0) -> None:
    for k, v in enumerate(values, start=1):
        forecast.update(
            FeatureVector(
                ts=utc(T0 + step_s * k),
                machine_id="p",
                window_s=step_s,
                features={f"{forecast.sensor}.mean": float(v)},
            )
        )


@pytest.mark.parametrize(("x0", "rate"), [(1.0, 0.1), (2.2, 0.02), (0.7, 0.2)])
def test_forecast_on_an_exact_exponential_recovers_the_crossing_time(
    x0: float, rate: float
) -> None:
    limit = 7.1  # ISO 10816 class II C/D, mm/s
    hours = np.arange(1, 8 * 120 + 1) * 30.0 / 3600  # 8 h of 30 s windows
    forecast = MaintenanceForecast(limit=limit)
    _feed(forecast, x0 * np.exp(rate * hours))
    crossing = math.log(limit / x0) / rate
    assert forecast.hours_to_limit() == pytest.approx(crossing - hours[-1], rel=1e-9)
    why = forecast.explain()
    assert why["vibration.growth_per_h"] == pytest.approx(rate, rel=1e-9)
    assert why["vibration.limit"] == limit
    assert why["vibration.value"] == pytest.approx(x0 * math.exp(rate * hours[-1]), rel=1e-12)


def test_forecast_is_robust_to_noise_and_spikes_and_none_without_a_rise() -> None:
    rng = np.random.default_rng(5)
    hours = np.arange(1, 10 * 120 + 1) * 30.0 / 3600
    noisy = np.exp(0.05 * hours) * rng.lognormal(0.0, 0.1, hours.size)
    noisy[rng.random(hours.size) < 0.02] *= 8.0  # spike windows
    forecast = MaintenanceForecast(limit=4.5)
    _feed(forecast, noisy)
    crossing = math.log(4.5) / 0.05
    assert forecast.hours_to_limit() == pytest.approx(crossing - hours[-1], rel=0.1)
    for series in (rng.lognormal(0.0, 0.1, hours.size), np.exp(-0.05 * hours)):
        flat = MaintenanceForecast(limit=4.5)
        _feed(flat, series)
        assert flat.hours_to_limit() is None
    over = MaintenanceForecast(limit=1.5)
    _feed(over, np.exp(0.1 * hours))
    assert over.hours_to_limit() == 0.0
    over.reset()
    assert over.hours_to_limit() is None and over.explain()["vibration.buckets"] == 0.0


# ---------------------------------------------------------------------------- ground truth, CLI
def test_maintenance_from_a_file_and_from_the_log(tmp_path) -> None:
    events = [_event("p1", 10.0, "failure"), _event("p1", 20.0, "repair")]
    path = tmp_path / "truth.jsonl"
    path.write_bytes(b"\n".join(encode(e) for e in events) + b"\n")
    assert read_maintenance_file(path) == events
    log = open_log(f"sqlite:///{tmp_path / 'log.db'}")
    MAINTENANCE.create(log)
    log.produce([OutRecord(MAINTENANCE.name, b"p1", encode(events), "", 0)])
    log.flush()
    assert read_maintenance_topic(log) == events
    log.produce([OutRecord(MAINTENANCE.name, b"p1", b'{"type":"maintenance"}', "", 0)])
    log.flush()
    with pytest.raises(ValueError, match=r"fleet.maintenance/0@1: .*`ts`"):
        read_maintenance_topic(log)
    log.close()


def test_train_risk_cli_refuses_bad_arguments(tmp_path) -> None:
    from wearwatch.cli import app

    runner = CliRunner()
    both = runner.invoke(app, ["train", "risk", "--features", str(tmp_path)])
    assert both.exit_code == 2
    assert "--maintenance FILE or --bus URL" in both.output
    bad = runner.invoke(
        app,
        ["train", "risk", "--features", str(tmp_path), "--maintenance", "x", "--horizon", "1d"],
    )
    assert bad.exit_code == 2 and "--horizon: duration '1d'" in bad.output


def test_train_risk_cli_trains_and_registers(
    tmp_path,
    fleet: tuple[pd.DataFrame, list[MaintenanceEvent]],
    trained: tuple[RiskModel, dict],
) -> None:
    store = pytest.importorskip("wearwatch.store.features")
    import pyarrow as pa

    from wearwatch.cli import app

    frame, truth = fleet
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    store.write_atomically(table, tmp_path / "fs" / "date=2026-01-01" / "hour=00" / "a.parquet")
    (tmp_path / "truth.jsonl").write_bytes(b"\n".join(encode(e) for e in truth))
    out = CliRunner().invoke(
        app,
        [
            "train",
            "risk",
            "--features",
            str(tmp_path / "fs"),
            "--maintenance",
            str(tmp_path / "truth.jsonl"),
            "--registry",
            str(tmp_path / "models"),
            "--seed",
            "3",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["registered"] == "risk@v0001"
    expected = trained[1]
    assert result["lightgbm"]["roc_auc"] == pytest.approx(expected["lightgbm"]["roc_auc"])
    mv = ModelRegistry(tmp_path / "models").show("risk")
    assert mv.metrics["logistic"]["pr_auc"] == pytest.approx(expected["logistic"]["pr_auc"])
