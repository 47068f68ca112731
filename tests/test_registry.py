"""Model registry: metadata, checksum refusal, atomic pointer, promote/rollback, CLI."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import wearwatch
from wearwatch.store import registry as registry_mod
from wearwatch.store.registry import (
    ChecksumMismatch,
    ModelRegistry,
    RegistryError,
    UnknownFamily,
    UnknownVersion,
    UnsupportedArtifact,
)


class _MkdirOnUnpickle:
    """Unpickling this object creates a directory: proof that bytes were (not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def _three_versions(reg: ModelRegistry) -> None:
    for i in (1, 2, 3):
        reg.register("risk", {"model": i}, params={"i": i}, metrics={"rmse": float(i)})


def test_register_records_metadata_and_checksum(reg: ModelRegistry) -> None:
    mv = reg.register(
        "rul-FD001",
        {"weights": [1, 2, 3]},
        params={"trees": 10},
        metrics={"rmse": 11.5},
        data_hash="ab" * 32,
    )
    assert (mv.family, mv.version, mv.tag) == ("rul-FD001", 1, "v0001")
    assert mv.path == reg.root / "rul-FD001" / "v0001"
    meta = json.loads((mv.path / "meta.json").read_text())
    assert meta["params"] == {"trees": 10}
    assert meta["metrics"] == {"rmse": 11.5}
    assert meta["data_hash"] == "ab" * 32
    assert meta["code_version"]["wearwatch"] == wearwatch.__version__
    assert "git_commit" in meta["code_version"]
    created = datetime.fromisoformat(meta["created_at"].replace("Z", "+00:00"))
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    digest = registry_mod.sha256_bytes((mv.path / "model.json").read_bytes())
    assert meta["artifacts"] == {"model.json": digest}
    assert meta["format"] == "json" and mv.format == "json"
    assert (mv.path / "model.json").read_bytes() == b'{"weights": [1, 2, 3]}'
    # Not promoted: no current version yet, so load() without a version refuses.
    assert reg.current_version("rul-FD001") is None
    with pytest.raises(RegistryError, match="no current version"):
        reg.load("rul-FD001")
    assert reg.load("rul-FD001", 1) == {"weights": [1, 2, 3]}
    mv2 = reg.register("rul-FD001", "second", promote=True)
    assert mv2.version == 2 and reg.current_version("rul-FD001") == 2
    assert reg.load("rul-FD001") == "second"
    assert [v.tag for v in reg.list()] == ["v0001", "v0002"]
    assert reg.families() == ["rul-FD001"]


def test_an_object_that_needs_pickle_is_not_registered(reg: ModelRegistry, tmp_path: Path):
    marker = tmp_path / "unpickled"
    for obj in (_MkdirOnUnpickle(marker), {1: "int key"}, (1, 2), float("nan"), {"x": {1, 2}}):
        with pytest.raises(UnsupportedArtifact, match="never pickles"):
            reg.register("anomaly-baselines", obj)
    assert reg.families() == [] and not marker.exists()
    assert not (reg.root / "anomaly-baselines").exists()  # refused before anything is written


def test_tampered_artifact_is_refused_before_decoding(reg: ModelRegistry, tmp_path: Path):
    reg.register("anomaly-baselines", {"threshold": 1111}, promote=True)
    assert reg.load("anomaly-baselines") == {"threshold": 1111}
    artifact = reg.root / "anomaly-baselines" / "v0001" / "model.json"
    original = artifact.read_bytes()
    # Same-length edit: still valid JSON, with another value.
    artifact.write_bytes(original.replace(b"1111", b"9999"))
    with pytest.raises(ChecksumMismatch) as info:
        reg.load("anomaly-baselines")
    err = info.value
    assert err.path == artifact
    assert err.expected == registry_mod.sha256_bytes(original)
    assert err.actual == registry_mod.sha256_bytes(artifact.read_bytes())
    assert str(artifact) in str(err) and err.expected in str(err) and err.actual in str(err)
    with pytest.raises(ChecksumMismatch):
        reg.verify("anomaly-baselines", 1)
    # Truncation is refused too.
    artifact.write_bytes(original[:-5])
    with pytest.raises(ChecksumMismatch):
        reg.load("anomaly-baselines", "v1")


def _rewrite(mv, fmt: str | None, files: dict[str, bytes]) -> None:
    """What an attacker with write access to the registry does: new artifact bytes AND their
    recorded checksums (and the format field) in meta.json."""
    meta_path = mv.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    for old in meta["artifacts"]:
        (mv.path / old).unlink()
    for name, data in files.items():
        (mv.path / name).write_bytes(data)
    meta["artifacts"] = {name: registry_mod.sha256_bytes(data) for name, data in files.items()}
    if fmt is None:
        meta.pop("format", None)
    else:
        meta["format"] = fmt
    meta_path.write_text(json.dumps(meta))


REWRITES = {
    # (format written to meta.json, artifact names that get the payload, expected error)
    "legacy-pickle": (None, ["model.pkl"], "is a pickle .wearwatch 0.1.; pickles are not loaded"),
    "pickle-format": ("pickle", ["model.pkl"], "unknown format 'pickle'"),
    "json-holds-pickle": ("json", ["model.json"], "json artifacts do not load"),
    "rul-holds-pickle": (
        "rul-model/1",
        ["rul.json", "regressor.txt", "classifier.txt", "regimes.skops"],
        "rul-model/1 artifacts do not load",
    ),
}


@pytest.mark.parametrize("attack", sorted(REWRITES))
def test_rewritten_artifact_and_checksum_run_nothing(
    reg: ModelRegistry, tmp_path: Path, attack: str
) -> None:
    import pickle

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_MkdirOnUnpickle(marker))
    pickle.loads(payload)  # positive control: the payload is live
    assert marker.is_dir()
    marker.rmdir()
    mv = reg.register("anomaly-baselines", {"threshold": 1.0}, promote=True)
    fmt, names, message = REWRITES[attack]
    _rewrite(mv, fmt, {name: payload for name in names})
    with pytest.raises(RegistryError, match=message) as info:
        reg.load("anomaly-baselines")
    assert len(str(info.value).splitlines()) == 1
    assert not marker.exists()


@pytest.fixture(scope="module")
def fd002_model():
    """A tiny FD002 model: six operating regimes, so the KMeans (skops) artifact is there."""
    from wearwatch.learn.rul.data import default_data_dir, load_subset
    from wearwatch.learn.rul.train import TrainConfig, fit_model

    data_dir = default_data_dir()
    if not (data_dir / "train_FD002.txt").is_file():
        pytest.skip(f"C-MAPSS not found in {data_dir}")
    data = load_subset(data_dir, "FD002")
    train = data.train[data.train["unit"] <= 40]
    config = TrainConfig(n_estimators=30, clf_n_estimators=20, learning_rate=0.1)
    return fit_model(train, "FD002", config), data.test


def test_a_rul_model_round_trips_without_pickle_with_identical_predictions(
    reg: ModelRegistry, fd002_model
) -> None:
    from wearwatch.learn.rul.inference import predict_engine

    model, test = fd002_model
    assert model.pipeline.regime_model is not None
    mv = reg.register("rul-FD002", model, params={"subset": "FD002"}, promote=True)
    assert mv.format == "rul-model/1"
    assert sorted(mv.artifacts) == ["classifier.txt", "regimes.skops", "regressor.txt", "rul.json"]
    assert (mv.path / "regressor.txt").read_bytes().startswith(b"tree\nversion=")
    loaded = reg.load("rul-FD002")
    assert loaded is not model and loaded.pipeline.regime_model is not None
    expected, actual = model.predict_last(test), loaded.predict_last(test)
    assert len(expected) == test["unit"].nunique()
    assert expected.equals(actual)  # bit for bit: RUL and horizon probability of every engine
    feats = model.features(test)
    for ours, theirs in zip(
        model.predict_features(feats), loaded.predict_features(feats), strict=True
    ):
        assert np.array_equal(ours, theirs)
    engine = test[test["unit"] == 7]
    assert predict_engine(engine, reg, family="rul-FD002") == predict_engine(engine, model)
    assert loaded.pipeline.to_dict() == model.pipeline.to_dict()


def test_a_rul_model_with_an_untrusted_skops_artifact_is_refused(
    reg: ModelRegistry, fd002_model, tmp_path: Path
) -> None:
    import skops.io

    model, _ = fd002_model
    mv = reg.register("rul-FD002", model, promote=True)
    files = {name: (mv.path / name).read_bytes() for name in mv.artifacts}
    marker = tmp_path / "unpickled"
    files["regimes.skops"] = skops.io.dumps(_MkdirOnUnpickle(marker))
    _rewrite(mv, "rul-model/1", files)
    with pytest.raises(RegistryError, match="UntrustedTypesFoundException"):
        reg.load("rul-FD002")
    assert not marker.exists()


def test_promote_rollback_and_history(reg: ModelRegistry) -> None:
    _three_versions(reg)
    for v in (1, 2, 3):
        reg.promote("risk", v)
    assert reg.load("risk") == {"model": 3}
    assert reg.rollback("risk").version == 2
    assert reg.current_version("risk") == 2
    assert reg.load("risk") == {"model": 2}
    assert reg.rollback("risk").version == 1
    assert reg.load("risk") == {"model": 1}
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback("risk")
    assert reg.load("risk") == {"model": 1}
    reg.promote("risk", "v0003")
    assert reg.load("risk") == {"model": 3}
    assert reg.rollback("risk").version == 1
    history = reg.pointer("risk")["history"]
    assert [(h["action"], h["version"]) for h in history] == [
        ("promote", 1),
        ("promote", 2),
        ("promote", 3),
        ("rollback", 2),
        ("rollback", 1),
        ("promote", 3),
        ("rollback", 1),
    ]


def test_unknown_family_version_and_bad_names(reg: ModelRegistry) -> None:
    _three_versions(reg)
    with pytest.raises(UnknownFamily, match="unknown model family 'nope'"):
        reg.load("nope")
    with pytest.raises(UnknownVersion, match="v0009"):
        reg.promote("risk", 9)
    with pytest.raises(UnknownVersion):
        reg.show("risk", "latest")
    with pytest.raises(UnknownFamily, match="bad model family name"):
        reg.register("../escape", object())
    assert not (reg.root.parent / "escape").exists()
    assert reg.current_version("risk") is None


def test_crash_between_temp_write_and_replace_keeps_old_pointer(
    reg: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _three_versions(reg)
    reg.promote("risk", 1)
    pointer = reg.root / "risk" / "current.json"
    before = pointer.read_bytes()

    def crash(src, dst):
        # The temp file is complete at this point; the "process dies" before the rename.
        assert json.loads(Path(src).read_text())["version"] == 2
        raise OSError("simulated crash before os.replace")

    monkeypatch.setattr(registry_mod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        reg.promote("risk", 2)
    monkeypatch.undo()
    assert pointer.read_bytes() == before
    assert reg.current_version("risk") == 1 and reg.load("risk") == {"model": 1}
    assert [p.name for p in (reg.root / "risk").iterdir() if p.name.endswith(".tmp")] == []
    # A hard crash can leave a stray temp file behind: it is ignored by readers and writers.
    (reg.root / "risk" / ".current.json.dead.tmp").write_text('{"versi')
    assert reg.load("risk") == {"model": 1}
    assert [v.version for v in reg.list("risk")] == [1, 2, 3]
    reg.promote("risk", 2)
    assert reg.load("risk") == {"model": 2}


def test_half_written_version_directory_is_invisible(reg: ModelRegistry) -> None:
    _three_versions(reg)
    staging = reg.root / "risk" / ".staging-crashed"
    staging.mkdir()
    (staging / "model.json").write_bytes(b"partial")
    (reg.root / "risk" / "v0004").mkdir()  # a version dir without meta.json
    assert [v.version for v in reg.list("risk")] == [1, 2, 3]


def test_concurrent_readers_never_see_a_partial_pointer(reg: ModelRegistry) -> None:
    reg.register("risk", "one", promote=True)
    reg.register("risk", "two", promote=True)
    pointer = reg.root / "risk" / "current.json"
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[int] = set()

    def reader() -> None:
        try:
            while not stop.is_set():
                data = json.loads(pointer.read_text())
                seen.add(data["version"])
                assert reg.load("risk") in ("one", "two")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(150):
            reg.promote("risk", 1 + i % 2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen <= {1, 2} and seen


def test_concurrent_registrations_get_distinct_versions(reg: ModelRegistry) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        mv = reg.register("isolation-forest", {"i": i})
        with lock:
            results.append(mv.version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))
    loaded = sorted(reg.load("isolation-forest", v)["i"] for v in results)
    assert loaded == list(range(8))


# ---------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield ModelRegistry(tmp_path / "var" / "models")
    get_settings.cache_clear()


def _run(*args: str):
    from wearwatch.cli import app

    return CliRunner().invoke(app, list(args))


def _lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_models_cli_list_promote_rollback(cli_registry: ModelRegistry) -> None:
    empty = _run("models", "list")
    assert empty.exit_code == 0 and "no models registered" in empty.output
    for i in (1, 2):
        cli_registry.register("rul-FD001", {"v": i}, metrics={"rmse": 10.0 + i})
    listed = _run("models", "list", "--json")
    assert listed.exit_code == 0
    rows = json.loads(listed.output)["versions"]
    assert [(r["tag"], r["current"]) for r in rows] == [("v0001", False), ("v0002", False)]

    assert _run("models", "promote", "rul-FD001", "1").exit_code == 0
    res = _run("models", "promote", "rul-FD001", "v0002")
    assert res.exit_code == 0 and "v0002" in res.output
    assert cli_registry.load("rul-FD001") == {"v": 2}
    table = _run("models", "list")
    assert table.exit_code == 0 and "rul-FD001" in table.output and "current" in table.output

    res = _run("models", "rollback", "rul-FD001")
    assert res.exit_code == 0 and "v0001" in res.output
    assert cli_registry.load("rul-FD001") == {"v": 1}
    shown = json.loads(_run("models", "show", "rul-FD001", "--json").output)
    assert shown["version"] == 1 and shown["current"] is True
    assert shown["metrics"] == {"rmse": 11.0}
    assert _run("models", "show", "rul-FD001", "2").exit_code == 0

    # Nothing left to roll back to: one-line error, pointer unchanged.
    res = _run("models", "rollback", "rul-FD001")
    assert res.exit_code != 0 and len(_lines(res)) == 1
    assert cli_registry.current_version("rul-FD001") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("models", "show", "nope"),
        ("models", "promote", "nope", "1"),
        ("models", "rollback", "nope"),
        ("models", "list", "nope"),
        ("models", "promote", "rul-FD001", "7"),
        ("models", "promote", "rul-FD001", "seven"),
    ],
)
def test_models_cli_unknown_family_or_version_is_one_line(cli_registry, args) -> None:
    cli_registry.register("rul-FD001", {"v": 1}, promote=True)
    res = _run(*args)
    assert res.exit_code != 0
    lines = _lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert cli_registry.current_version("rul-FD001") == 1


def test_models_cli_promote_refuses_a_tampered_version(cli_registry) -> None:
    cli_registry.register("risk", {"v": 1}, promote=True)
    mv = cli_registry.register("risk", {"v": 2})
    (mv.path / "model.json").write_bytes(b"not what was registered")
    res = _run("models", "promote", "risk", "2")
    assert res.exit_code != 0 and "checksum mismatch" in res.output
    assert cli_registry.current_version("risk") == 1


def test_models_cli_promote_refuses_a_pickled_version_in_one_line(cli_registry) -> None:
    cli_registry.register("risk", {"v": 1}, promote=True)
    mv = cli_registry.register("risk", {"v": 2})
    _rewrite(mv, None, {"model.pkl": b"\x80\x05K\x02."})  # a wearwatch 0.1 version
    res = _run("models", "promote", "risk", "2")
    assert res.exit_code != 0
    assert _lines(res) == [
        "error: model risk v0002 is a pickle (wearwatch 0.1); pickles are not loaded, as they "
        "can run code: train and register it again"
    ]
    assert cli_registry.current_version("risk") == 1
