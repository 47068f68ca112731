"""The offline feature store: schema, partitioning, and atomicity (a crash mid-write leaves no
partial file, and after a restart every row is in the store exactly once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wearwatch.bus.base import OutRecord
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import FeatureVector, encode, utc
from wearwatch.store import features as store
from wearwatch.store.features import (
    FeatureSink,
    feature_files,
    features_to_table,
    read_feature_store,
    sink_features,
    table_to_vectors,
)

TOPIC = "fleet.features"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _vectors(n: int) -> list[FeatureVector]:
    """``n`` vectors, two machines, spanning several hours; machine b has no temperature."""
    out = []
    for i in range(n):
        machine = "pump-001" if i % 2 == 0 else "fan-002"
        features = {"vibration.mean": 1.0 + i, "vibration.count": 10.0}
        if machine == "pump-001":
            features["bearing_temp.max"] = 60.0 + i / 10
        out.append(
            FeatureVector(
                ts=utc(T0 + 600.0 * i), machine_id=machine, window_s=30.0, features=features
            )
        )
    return out


def _log(path: Path, vectors: list[FeatureVector], partitions: int = 2) -> SqliteLog:
    log = SqliteLog(path, default_partitions=partitions)
    log.create_topic(TOPIC, partitions)
    log.produce(
        OutRecord(TOPIC, fv.machine_id.encode(), encode(fv), f"fleet/{i}")
        for i, fv in enumerate(vectors)
    )
    return log


def _expected(vectors: list[FeatureVector]) -> pd.DataFrame:
    frame = features_to_table(vectors).to_pandas()
    return frame.sort_values(["ts", "machine_id", "window_s"]).reset_index(drop=True)


def test_table_schema_nulls_and_round_trip() -> None:
    vectors = _vectors(3)
    table = features_to_table(vectors)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column_names == [
        "ts",
        "machine_id",
        "window_s",
        "bearing_temp.max",
        "vibration.count",
        "vibration.mean",
    ]
    assert table.column("bearing_temp.max").to_pylist() == [60.0, None, 60.2]
    assert table_to_vectors(table) == vectors


def test_sink_partitions_by_date_and_hour_and_names_files_by_positions(tmp_path: Path) -> None:
    vectors = _vectors(20)  # 20 windows 10 min apart: 00:00 … 03:10
    log = _log(tmp_path / "log.db", vectors)
    root = tmp_path / "fs"
    assert sink_features(log, root, TOPIC, "fs", max_records=4) == 20
    files = feature_files(root)
    hours = sorted({p.parent.relative_to(root).as_posix() for p in files})
    assert hours == [f"date=2026-01-01/hour=0{h}" for h in range(4)]
    for path in files:
        partition, first, last = (int(x) for x in path.stem.split("-")[1:])
        assert last - first < 4 and partition in (0, 1)
    frame = read_feature_store(root)
    pd.testing.assert_frame_equal(frame, _expected(vectors))
    # Nothing new: a second run writes nothing and duplicates nothing.
    assert sink_features(log, root, TOPIC, "fs", idle_timeout_s=1.0) == 0
    assert len(read_feature_store(root)) == 20


def test_a_failure_inside_the_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = _vectors(30)
    log = _log(tmp_path / "log.db", vectors)
    root = tmp_path / "fs"
    real_write = pq.write_table
    calls = {"n": 0}

    def failing(table: pa.Table, where: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # half a file on disk, then the disk fills up
            where.write(b"PAR1 partial")  # type: ignore[attr-defined]
            raise OSError(28, "No space left on device")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(store.pq, "write_table", failing)
    with pytest.raises(OSError, match="No space left"):
        sink_features(log, root, TOPIC, "fs", max_records=6)
    # Every visible file is complete and readable; no temporary file is left behind.
    assert list(root.rglob("*.tmp")) == []
    before = read_feature_store(root)
    assert 0 < len(before) < 30
    monkeypatch.setattr(store.pq, "write_table", real_write)
    sink_features(log, root, TOPIC, "fs", max_records=6)
    pd.testing.assert_frame_equal(read_feature_store(root), _expected(vectors))


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from wearwatch.bus.sqlite import SqliteLog
    from wearwatch.store.features import sink_features

    written = []

    def crash(paths):
        written.append(paths)
        if len(written) == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # after the write, before the commit

    log = SqliteLog(Path(sys.argv[1]))
    sink_features(log, Path(sys.argv[2]), "fleet.features", "fs", max_records=int(sys.argv[4]),
                  after_write=crash, lease_s=1.0)
    """
)


@pytest.mark.parametrize(("kill_after", "child_batch", "restart_batch"), [(3, 5, 5), (2, 7, 50)])
def test_sigkill_between_write_and_commit_then_restart_gives_every_row_once(
    tmp_path: Path, kill_after: int, child_batch: int, restart_batch: int
) -> None:
    """A real SIGKILL after a batch's files are renamed into place but before its positions
    are committed: the restart reads the batch again (possibly cut differently by its polls)
    and the store holds every row exactly once."""
    vectors = _vectors(60)
    log = _log(tmp_path / "log.db", vectors)
    log.close()
    root = tmp_path / "fs"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "log.db"), str(root), str(kill_after),
         str(child_batch)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    crashed = len(read_feature_store(root))
    # The killed batch's files are on disk, complete, but its positions were never committed:
    # the restart writes more rows than the crash left missing (it rewrites that batch).
    assert 0 < crashed < 60
    log = SqliteLog(tmp_path / "log.db")
    rewritten = sink_features(log, root, TOPIC, "fs", max_records=restart_batch, lease_s=1.0)
    assert rewritten > 60 - crashed
    pd.testing.assert_frame_equal(read_feature_store(root), _expected(vectors))


def test_a_leftover_temporary_file_is_ignored_and_removed(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    hour = root / "date=2026-01-01" / "hour=00"
    hour.mkdir(parents=True)
    (hour / ".part-0-0-9.parquet.tmp").write_bytes(b"PAR1 half")
    assert len(read_feature_store(root)) == 0
    FeatureSink(root)
    assert list(hour.iterdir()) == []
