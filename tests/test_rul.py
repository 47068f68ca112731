"""C-MAPSS RUL: PHM08 score, past-only features, CLI errors, a small end-to-end training."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from wearwatch.learn.rul.data import COLUMNS, SENSORS, default_data_dir, load_subset, read_table
from wearwatch.learn.rul.features import FeaturePipeline
from wearwatch.learn.rul.inference import predict_engine
from wearwatch.learn.rul.metrics import horizon_metrics, mae, phm08_score, rmse
from wearwatch.store.registry import ModelRegistry

DATA = default_data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "train_FD001.txt").is_file(), reason=f"C-MAPSS not found in {DATA}"
)
E1 = math.e - 1.0


# ---------------------------------------------------------------------------- metrics
def test_phm08_score_known_values() -> None:
    assert phm08_score([87.0], [100.0]) == pytest.approx(E1)  # d = -13 (early)
    assert phm08_score([110.0], [100.0]) == pytest.approx(E1)  # d = +10 (late)
    assert phm08_score([50.0], [50.0]) == 0.0
    assert phm08_score([74.0], [100.0]) == pytest.approx(math.exp(2) - 1)  # d = -26
    assert phm08_score([120.0], [100.0]) == pytest.approx(math.exp(2) - 1)  # d = +20
    # Asymmetry: being late costs more than being early by the same amount.
    late, early = phm08_score([110.0], [100.0]), phm08_score([90.0], [100.0])
    assert early == pytest.approx(math.exp(10 / 13) - 1)
    assert late > early
    # It is a sum over engines.
    assert phm08_score([87.0, 110.0, 5.0], [100.0, 100.0, 5.0]) == pytest.approx(2 * E1)
    assert phm08_score([], []) == 0.0


def test_rmse_mae_and_horizon_metrics() -> None:
    assert rmse([3.0, -3.0], [0.0, 0.0]) == pytest.approx(3.0)
    assert mae([1.0, -3.0], [0.0, 0.0]) == pytest.approx(2.0)
    h = horizon_metrics([0.9, 0.8, 0.2, 0.6], [True, False, False, True])
    assert h["precision"] == pytest.approx(2 / 3)
    assert h["recall"] == pytest.approx(1.0)
    assert h["f1"] == pytest.approx(0.8)
    assert h["roc_auc"] == pytest.approx(0.75)


# ---------------------------------------------------------------------------- features
def _units(frame: pd.DataFrame, units: list[int]) -> pd.DataFrame:
    return frame[frame["unit"].isin(units)].reset_index(drop=True)


@pytest.fixture(scope="module")
def fd002_small() -> tuple[FeaturePipeline, pd.DataFrame]:
    if not (DATA / "train_FD002.txt").is_file():
        pytest.skip(f"C-MAPSS not found in {DATA}")
    train = load_subset(DATA, "FD002").train
    small = _units(train, list(range(1, 31)))
    return FeaturePipeline(n_regimes=6, seed=7).fit(small), small


@pytest.fixture(scope="module")
def fd001_small() -> tuple[FeaturePipeline, pd.DataFrame]:
    if not (DATA / "train_FD001.txt").is_file():
        pytest.skip(f"C-MAPSS not found in {DATA}")
    train = load_subset(DATA, "FD001").train
    small = _units(train, list(range(1, 21)))
    return FeaturePipeline(n_regimes=1).fit(small), small


@pytest.mark.parametrize("which", ["fd001_small", "fd002_small"])
def test_features_of_a_cycle_ignore_later_cycles(which: str, request) -> None:
    pipeline, frame = request.getfixturevalue(which)
    full = pipeline.transform(frame)
    assert list(full.columns) == pipeline.feature_names
    assert len(full) == len(frame) and np.isfinite(full.to_numpy()).all()
    rng = np.random.default_rng(0)
    for unit in (1, 4, 9, 17):
        rows = np.flatnonzero(frame["unit"].to_numpy() == unit)
        # Cut points: the very start, inside the first windows, and random later ones.
        cuts = {1, 2, 7, 31, *rng.integers(3, len(rows), size=4).tolist()}
        for cut in sorted(cuts):
            keep = np.ones(len(frame), dtype=bool)
            keep[rows[cut:]] = False  # drop this engine's cycles after the cut
            truncated = pipeline.transform(frame[keep].reset_index(drop=True))
            expected = full[keep].reset_index(drop=True)
            np.testing.assert_allclose(
                truncated.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9
            )
            # Changing the future (instead of removing it) must not change the past either.
            wild = frame.astype({s: np.float64 for s in SENSORS})
            wild.loc[rows[cut:], SENSORS] *= 1.5
            wild.loc[rows[cut:], "op_setting_1"] += 10.0
            changed = pipeline.transform(wild)
            np.testing.assert_allclose(
                changed.to_numpy()[rows[:cut]], full.to_numpy()[rows[:cut]], rtol=1e-9, atol=1e-9
            )


def test_feature_pipeline_drops_constant_sensors_and_normalises_per_regime(fd002_small):
    pipeline, frame = fd002_small
    assert pipeline.regime_model is not None
    regimes = pipeline.regimes(frame)
    assert sorted(np.unique(regimes).tolist()) == list(range(6))
    # sensor_1 (fan inlet temperature) only moves with the operating regime: dropped.
    assert "sensor_1" not in pipeline.sensors and "sensor_11" in pipeline.sensors
    z = pipeline.transform(frame)[pipeline.sensors].to_numpy()
    for r in range(6):
        block = z[regimes == r]
        np.testing.assert_allclose(block.mean(axis=0), 0.0, atol=1e-6)
        np.testing.assert_allclose(block.std(axis=0), 1.0, atol=1e-6)


def test_read_table_parses_trailing_spaces(tmp_path: Path) -> None:
    row = " ".join(["2", "5", "0.1", "0.2", "100.0", *["1.5"] * 21]) + "  \n"
    first = " ".join(["2", "4", "0.1", "0.2", "100.0", *["1.0"] * 21]) + " \n"
    path = tmp_path / "train_FD009.txt"
    path.write_text(row + first)
    frame = read_table(path)
    assert list(frame.columns) == COLUMNS
    assert frame["cycle"].tolist() == [4, 5]  # sorted by unit, cycle
    assert frame["sensor_21"].tolist() == [1.0, 1.5]


# ---------------------------------------------------------------------------- CLI errors
def _run(*args: str):
    from wearwatch.cli import app

    return CliRunner().invoke(app, list(args))


def test_train_cmapss_without_data_is_one_line(tmp_path: Path) -> None:
    res = _run("train", "cmapss", "--data", "/nonexistent")
    assert res.exit_code != 0
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("error: ") and "/nonexistent" in line
    assert "NASA" in line and "Turbofan Engine Degradation Simulation" in line
    assert all(n in line for n in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt"))
    (tmp_path / "train_FD003.txt").write_text("")
    res = _run("train", "cmapss", "--subset", "all", "--data", str(tmp_path))
    assert res.exit_code != 0 and "RUL_FD004.txt" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


def test_train_cmapss_unknown_subset_is_one_line() -> None:
    res = _run("train", "cmapss", "--subset", "FD007", "--data", "/nonexistent")
    assert res.exit_code != 0
    assert [ln for ln in res.output.splitlines() if ln.strip()] == [
        "error: unknown subset 'FD007': choose one of FD001, FD002, FD003, FD004 or all"
    ]


# ---------------------------------------------------------------------------- end to end
SMALL = {"n_estimators": 80, "clf_n_estimators": 40, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def small_fd001(tmp_path_factory):
    """FD001 with few trees, registered in a temporary registry."""
    from wearwatch.learn.rul.train import TrainConfig, register_result, train_subset

    if not (DATA / "train_FD001.txt").is_file():
        pytest.skip(f"C-MAPSS not found in {DATA}")
    stages: list[str] = []
    result = train_subset(
        DATA, "FD001", TrainConfig(**SMALL), progress=lambda s, stage, f: stages.append(stage)
    )
    registry = ModelRegistry(tmp_path_factory.mktemp("registry"))
    mv = register_result(result, registry)
    return result, registry, mv, stages


@needs_data
def test_small_fd001_training_is_sane_and_registered(small_fd001) -> None:
    result, registry, mv, stages = small_fd001
    m = result.metrics
    assert m["n_test_engines"] == 100
    assert m["rmse"] < 25.0 and m["mae"] < m["rmse"]
    assert 0 < m["score"] < 5000
    assert m["horizon"]["roc_auc"] > 0.9
    assert set(result.summary()) == {"rmse", "score", "mae", "horizon", "train_seconds"}
    assert {"features", "RUL regressor", "horizon classifier", "done"} <= set(stages)
    assert (mv.family, mv.version) == ("rul-FD001", 1)
    assert registry.current_version("rul-FD001") == 1
    assert mv.metrics["rmse"] == m["rmse"] and mv.params["n_estimators"] == 80
    assert len(mv.data_hash) == 64
    loaded = registry.load("rul-FD001")
    test = load_subset(DATA, "FD001").test
    np.testing.assert_allclose(
        loaded.predict_last(test)["rul"], result.model.predict_last(test)["rul"]
    )


@needs_data
def test_predict_engine_on_one_history(small_fd001) -> None:
    result, registry, _, _ = small_fd001
    data = load_subset(DATA, "FD001")
    engine = data.test[data.test["unit"] == 3]
    out = predict_engine(engine, registry)  # current rul-FD001 from the registry
    assert set(out) == {"rul", "horizon_probability"}
    row = result.model.predict_last(engine)
    assert out["rul"] == pytest.approx(float(row["rul"].iloc[0]))
    assert out == predict_engine(engine.drop(columns="unit").iloc[::-1], result.model)
    # A training engine near its failure vs. early in life.
    run = data.train[data.train["unit"] == 5][COLUMNS]
    near_end = predict_engine(run, result.model)
    early = predict_engine(run.head(40), result.model)
    assert near_end["rul"] < 25 and near_end["horizon_probability"] > 0.5
    assert early["rul"] > 90 and early["horizon_probability"] < 0.1
    with pytest.raises(ValueError, match="ONE engine"):
        predict_engine(data.test[data.test["unit"].isin([1, 2])], result.model)
    with pytest.raises(ValueError, match="missing C-MAPSS columns"):
        predict_engine(engine.drop(columns="sensor_4"), result.model)


@needs_data
def test_train_cmapss_cli_json_registers_and_promotes(tmp_path, monkeypatch) -> None:
    import wearwatch.learn.rul.train as train_mod
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    monkeypatch.setattr(train_mod, "TrainConfig", functools.partial(train_mod.TrainConfig, **SMALL))
    try:
        first = _run("train", "cmapss", "--subset", "fd001", "--data", str(DATA), "--json")
        second = _run("train", "cmapss", "--subset", "FD001", "--data", str(DATA), "--json")
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)  # exactly one JSON object
    assert list(out) == ["FD001"]
    assert set(out["FD001"]) == {"rmse", "score", "mae", "horizon", "train_seconds"}
    assert set(out["FD001"]["horizon"]) == {"precision", "recall", "f1", "roc_auc"}
    assert out["FD001"]["rmse"] < 25
    assert json.loads(second.output)["FD001"]["rmse"] == out["FD001"]["rmse"]  # deterministic
    registry = ModelRegistry(tmp_path / "var" / "models")
    assert [v.version for v in registry.list("rul-FD001")] == [1, 2]
    assert registry.current_version("rul-FD001") == 2
    registry.rollback("rul-FD001")
    assert registry.current_version("rul-FD001") == 1
    assert registry.load("rul-FD001").subset == "FD001"


def test_cmapss_dir_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_CMAPSS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert default_data_dir(get_settings().cmapss_dir) == tmp_path
        res = _run("train", "cmapss")  # no --data: the setting is used, and it is empty
    finally:
        get_settings.cache_clear()
    assert res.exit_code != 0 and str(tmp_path) in res.output


def test_single_class_horizon_gives_null_auc_in_json() -> None:
    from wearwatch.store.registry import finite_json

    h = horizon_metrics([0.1, 0.2], [False, False])
    assert math.isnan(h["roc_auc"]) and h["precision"] == 0.0
    assert (
        json.loads(json.dumps(finite_json({"FD001": {"horizon": h}})))["FD001"]["horizon"][
            "roc_auc"
        ]
        is None
    )


# ---------------------------------------------------------------------------- window features
def _window_pipeline(frame: pd.DataFrame, n_regimes: int, window: int) -> FeaturePipeline:
    return FeaturePipeline(n_regimes=n_regimes, seed=7, features="window", window=window).fit(frame)


@pytest.fixture(scope="module")
def window_pipelines(fd001_small, fd002_small) -> dict[str, tuple]:
    """History and window (7 and 30 cycles) pipelines fitted on the same small subsets."""
    out = {}
    for name, (history, frame) in {"fd001": fd001_small, "fd002": fd002_small}.items():
        out[name] = (
            frame,
            history,
            {w: _window_pipeline(frame, history.n_regimes, w) for w in (7, 30)},
        )
    return out


@needs_data
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subset=st.sampled_from(["fd001", "fd002"]),
    window=st.sampled_from([7, 30]),
    unit=st.integers(1, 20),
    position=st.floats(0.0, 1.0),
    factor=st.floats(0.5, 2.0).filter(lambda f: abs(f - 1.0) > 0.01),
    regime_shift=st.booleans(),
)
def test_window_features_depend_only_on_the_trailing_window(
    window_pipelines, subset, window, unit, position, factor, regime_shift
) -> None:
    """Changing or dropping cycles before t-window+1 leaves every feature of cycles >= t exactly
    as it was; the default history features of cycle t do change."""
    frame, history, windowed = window_pipelines[subset]
    pipeline = windowed[window]
    rows = np.flatnonzero(frame["unit"].to_numpy() == unit)
    t = window + int(position * (len(rows) - window - 1))  # 0-based row in the engine, t >= window
    before = rows[: t - window + 1]  # the cycles the window of row t does not see
    seen = rows[t:]
    wild = frame.astype({s: np.float64 for s in SENSORS})
    wild.loc[before, SENSORS] *= factor
    if regime_shift:
        wild.loc[before, "op_setting_1"] += 10.0
    base = pipeline.transform(frame)
    changed = pipeline.transform(wild)
    np.testing.assert_array_equal(changed.to_numpy()[seen], base.to_numpy()[seen])
    # Dropping those cycles altogether (the engine's record starts later) changes nothing either.
    dropped = frame.drop(index=before).reset_index(drop=True)
    late = pipeline.transform(dropped)
    late_rows = np.flatnonzero(dropped["unit"].to_numpy() == unit)[window - 1 :]
    np.testing.assert_allclose(
        late.to_numpy()[late_rows], base.to_numpy()[seen], rtol=1e-12, atol=1e-12
    )
    # The whole-history features are not like that: their expanding means move.
    h_base, h_changed = history.transform(frame), history.transform(wild)
    sensor = history.sensors[0]
    assert h_changed[f"{sensor}_expmean"].iloc[rows[t]] != h_base[f"{sensor}_expmean"].iloc[rows[t]]


@needs_data
def test_window_features_match_a_brute_force_window(window_pipelines) -> None:
    frame, history, windowed = window_pipelines["fd002"]
    pipeline = windowed[7]
    names = list(pipeline.transform(frame.head(2)).columns)
    s = pipeline.sensors
    # Window-bounded families only: no cycle counter, expanding mean, drift or regime shares.
    assert names == [
        *s,
        "hi",
        *[f"{x}_mean{w}" for w in (5, 7) for x in [*s, "hi"]],
        *[f"{x}_std{w}" for w in (7,) for x in [*s, "hi"]],
        *[f"{x}_slope{w}" for w in (7,) for x in [*s, "hi"]],
        *[f"{x}_wewm{w}" for w in (10, 30) for x in [*s, "hi"]],
        "regime",
    ]
    assert "cycle" in history.feature_names and "regime_share_0" in history.feature_names
    feats = pipeline.transform(frame)
    regimes = pipeline.regimes(frame)
    raw = frame[s].to_numpy(dtype=np.float64)
    z = (raw - pipeline.means[regimes]) / pipeline.stds[regimes]
    rows = np.flatnonzero(frame["unit"].to_numpy() == 3)
    for i in (0, 2, 6, 40, len(rows) - 1):
        win = rows[max(0, i - 6) : i + 1]
        x, cyc = z[win, 0], frame["cycle"].to_numpy()[win].astype(float)
        got = feats.iloc[rows[i]]
        assert got[f"{s[0]}_mean5"] == pytest.approx(x[-5:].mean(), abs=1e-12)
        assert got[f"{s[0]}_mean7"] == pytest.approx(x.mean(), abs=1e-12)
        assert got[f"{s[0]}_std7"] == pytest.approx(x.std(), abs=1e-12)
        slope = np.polyfit(cyc, x, 1)[0] if len(x) > 1 else 0.0
        assert got[f"{s[0]}_slope7"] == pytest.approx(slope, abs=1e-9)
        weights = (1 - 2 / 11) ** np.arange(len(x) - 1, -1, -1)
        assert got[f"{s[0]}_wewm10"] == pytest.approx((weights * x).sum() / weights.sum())
        assert got["regime"] == regimes[rows[i]]


def test_feature_pipeline_refuses_unknown_kind_and_tiny_window() -> None:
    with pytest.raises(ValueError, match="features='windows'"):
        FeaturePipeline(features="windows")
    with pytest.raises(ValueError, match="window=1"):
        FeaturePipeline(features="window", window=1)


# ---------------------------------------------------------------------------- cross-validation
#: Fewer trees than SMALL: these tests check the bookkeeping of folds and seeds, not accuracy.
TINY = {"n_estimators": 30, "clf_n_estimators": 10, "learning_rate": 0.2}


def test_cut_engines_keeps_a_prefix_and_its_true_rul() -> None:
    from wearwatch.learn.rul.train import MIN_CUT_CYCLES, cut_engines

    lengths = {1: 200, 2: 31, 3: 12, 4: 90}
    frame = pd.DataFrame(
        [(u, c) for u, n in lengths.items() for c in range(1, n + 1)], columns=["unit", "cycle"]
    )
    frame["rul"] = frame.groupby("unit")["cycle"].transform("max") - frame["cycle"]
    shuffled = frame.sample(frac=1.0, random_state=1)  # row order does not matter
    for seed in range(20):
        cut, truth = cut_engines(shuffled, np.random.default_rng(seed))
        kept = cut.groupby("unit")["cycle"].agg(["min", "max", "size"])
        assert kept.index.tolist() == [1, 2, 3, 4]
        assert (kept["min"] == 1).all() and (kept["size"] == kept["max"]).all()  # prefixes
        for unit, n in lengths.items():
            assert min(MIN_CUT_CYCLES, n) <= kept.loc[unit, "max"] <= n
        np.testing.assert_array_equal(truth, [lengths[u] - kept.loc[u, "max"] for u in lengths])
        again = cut_engines(shuffled, np.random.default_rng(seed))
        assert again[0].equals(cut) and np.array_equal(again[1], truth)


@needs_data
def test_cross_validate_groups_engines_and_reports_fold_spread() -> None:
    from wearwatch.learn.rul.train import TrainConfig, cross_validate

    train = _units(load_subset(DATA, "FD001").train, list(range(1, 31)))
    config = TrainConfig(**TINY, features="window", window=30)
    stages: list[str] = []
    out = cross_validate(
        train, "FD001", config, folds=3, progress=lambda s, stage, f: stages.append(stage)
    )
    assert out["folds"] == 3 and len(out["per_fold"]) == 3
    assert [f["n_test_engines"] for f in out["per_fold"]] == [10, 10, 10]
    rmses = [f["rmse"] for f in out["per_fold"]]
    scores = [f["score"] for f in out["per_fold"]]
    assert out["rmse"] == {
        "mean": round(float(np.mean(rmses)), 3),
        "std": round(float(np.std(rmses, ddof=1)), 3),
    }
    assert out["score"]["mean"] == round(float(np.mean(scores)), 1)
    pooled = out["pooled"]
    assert pooled["n_test_engines"] == 30
    # The PHM08 score is a sum over engines; RMSE pools the folds' squared errors.
    assert pooled["score"] == pytest.approx(sum(scores), abs=0.2)
    expected = math.sqrt(sum(10 * r * r for r in rmses) / 30)
    assert pooled["rmse"] == pytest.approx(expected, abs=2e-3)
    assert all(5.0 < r < 40.0 for r in rmses)  # a model, not a constant (std of capped RUL ≈ 40)
    assert {"fold 1/3: RUL regressor", "fold 3/3: horizon classifier"} <= set(stages)


# ---------------------------------------------------------------------------- CLI: --seeds, --cv
@needs_data
def test_train_cmapss_cli_window_seeds_and_cv(tmp_path, monkeypatch) -> None:
    import wearwatch.learn.rul.train as train_mod
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    monkeypatch.setattr(train_mod, "TrainConfig", functools.partial(train_mod.TrainConfig, **TINY))
    common = ("train", "cmapss", "--subset", "FD001", "--data", str(DATA), "--json")
    try:
        seeds = _run(*common, "--features", "window", "--window", "30", "--seeds", "1-2")
        cv = _run(*common, "--cv", "2", "--seed", "3")
        bad = [
            _run(*common, "--seeds", "1-x"),
            _run(*common, "--features", "windows"),
            _run(*common, "--seeds", "1-2", "--cv", "5"),
            _run(*common, "--features", "window", "--window", "100000"),
            _run(*common, "--cv", "101"),
        ]
    finally:
        get_settings.cache_clear()
    assert seeds.exit_code == 0, seeds.output
    out = json.loads(seeds.output)["FD001"]
    assert out["seeds"] == [1, 2] and list(out["runs"]) == ["1", "2"]
    rmses = [out["runs"][k]["rmse"] for k in ("1", "2")]
    assert rmses[0] != rmses[1]  # the seed reaches the model
    assert out["rmse"]["mean"] == round(float(np.mean(rmses)), 3)
    assert out["rmse"]["std"] == round(float(np.std(rmses, ddof=1)), 3)
    registry = ModelRegistry(tmp_path / "var" / "models")
    assert [v.version for v in registry.list("rul-FD001")] == [1]  # the first seed's model
    mv = registry.list("rul-FD001")[0]
    assert mv.metrics["rmse"] == rmses[0] and mv.params["features"] == "window"
    model = registry.load("rul-FD001")
    assert (model.pipeline.features, model.pipeline.window) == ("window", 30)
    assert "cycle" not in model.pipeline.feature_names
    assert cv.exit_code == 0, cv.output
    folds = json.loads(cv.output)["FD001"]
    assert folds["folds"] == 2 and sum(f["n_test_engines"] for f in folds["per_fold"]) == 100
    assert len(registry.list("rul-FD001")) == 1  # cross-validation registers nothing
    needles = (
        "--seeds '1-x'",
        "--features 'windows'",
        "--cv",
        "--window 100000: expected 2 to 600 cycles",
        "folds=101: more folds than the 100 training engines",
    )
    for res, needle in zip(bad, needles, strict=True):
        assert res.exit_code != 0
        lines = [ln for ln in res.output.splitlines() if ln.strip() and "━" not in ln]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
