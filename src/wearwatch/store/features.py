"""The offline feature store: feature vectors as Parquet, partitioned by date and hour.

Training (anomaly baselines, risk models) and replay read what the stream computed, so a model
is trained on exactly the features it will be scored on. One row per
:class:`~wearwatch.events.FeatureVector`:

- ``ts``: ``timestamp[us, tz=UTC]``, the window's end;
- ``machine_id``: ``string``; ``window_s``: ``float64``;
- one ``float64`` column per feature ``<sensor>.<aggregate>``, sorted by name, null where the
  window had no such feature (a sensor that dropped out).

Files live under ``<root>/date=YYYY-MM-DD/hour=HH/`` (the hour of ``ts``). The sink
(:func:`sink_features`) writes each file atomically — a temporary file in the same directory,
fsync, rename, fsync of the directory — so a reader never sees half a file, and names it after
the input positions it holds, ``part-<partition>-<first offset>-<last offset>.parquet``.
Positions are committed only after the write. After a crash between the write and the commit,
the records are read again from the committed position: files of that partition starting at
or after it are leftovers of the uncommitted attempt and are removed before the rewrite, so
every row is in the store exactly once whatever the poll boundaries were.

>>> from wearwatch.events import FeatureVector, utc
>>> table = features_to_table([
...     FeatureVector(ts=utc(0.0), machine_id="p1", window_s=5.0, features={"vib.mean": 1.5}),
...     FeatureVector(ts=utc(5.0), machine_id="p2", window_s=5.0, features={"temp.max": 60.0}),
... ])
>>> table.column_names
['ts', 'machine_id', 'window_s', 'temp.max', 'vib.mean']
>>> table.column("vib.mean").to_pylist()
[1.5, None]
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wearwatch.bus.base import Log, Record
from wearwatch.events import FeatureVector, decode_record

#: The columns every feature table starts with; feature columns follow, sorted by name.
KEY_COLUMNS: tuple[str, ...] = ("ts", "machine_id", "window_s")
TS_TYPE = pa.timestamp("us", tz="UTC")
_PART = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.parquet$")


def features_to_table(vectors: Sequence[FeatureVector]) -> pa.Table:
    """Feature vectors as one Arrow table in the feature store's schema (rows in input order)."""
    names = sorted({name for fv in vectors for name in fv.features})
    columns: dict[str, pa.Array] = {
        "ts": pa.array([fv.ts for fv in vectors], TS_TYPE),
        "machine_id": pa.array([fv.machine_id for fv in vectors], pa.string()),
        "window_s": pa.array([fv.window_s for fv in vectors], pa.float64()),
    }
    for name in names:
        columns[name] = pa.array([fv.features.get(name) for fv in vectors], pa.float64())
    return pa.table(columns)


def table_to_vectors(table: pa.Table) -> list[FeatureVector]:
    """The inverse of :func:`features_to_table` (nulls are absent features)."""
    names = [c for c in table.column_names if c not in KEY_COLUMNS]
    ts = table.column("ts").to_pylist()
    machines = table.column("machine_id").to_pylist()
    windows = table.column("window_s").to_pylist()
    values = [table.column(n).to_pylist() for n in names]
    out = []
    for i in range(table.num_rows):
        features = {n: col[i] for n, col in zip(names, values, strict=True) if col[i] is not None}
        out.append(
            FeatureVector(ts=ts[i], machine_id=machines[i], window_s=windows[i], features=features)
        )
    return out


def partition_dir(root: Path, hour_start_us: int) -> Path:
    """``<root>/date=YYYY-MM-DD/hour=HH`` of an hour (µs since the epoch).

    >>> partition_dir(Path("fs"), 1_767_229_200_000_000).as_posix()
    'fs/date=2026-01-01/hour=01'
    """
    stamp = np.datetime64(hour_start_us, "us").astype("datetime64[h]").item()
    return root / f"date={stamp:%Y-%m-%d}" / f"hour={stamp:%H}"


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that a reader sees the whole file or none of it.

    The temporary file starts with a dot (readers skip such files) and is removed if the write
    fails; a crash can leave one behind, which :func:`read_feature_store` ignores and the sink
    removes when it restarts.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def feature_files(root: Path) -> list[Path]:
    """The store's data files, sorted (temporary and hidden files excluded)."""
    if not root.exists():
        return []
    return sorted(p for p in root.glob("date=*/hour=*/*.parquet") if not p.name.startswith("."))


def read_feature_store(root: str | Path) -> pd.DataFrame:
    """Every feature vector in the store as a DataFrame in the store's schema, sorted by
    ``(ts, machine_id, window_s)`` (files may hold different feature sets: missing columns are
    null). An empty store gives an empty frame with the key columns."""
    files = feature_files(Path(root))
    if not files:
        empty = pa.table(
            {
                "ts": pa.array([], TS_TYPE),
                "machine_id": pa.array([], pa.string()),
                "window_s": pa.array([], pa.float64()),
            }
        )
        return empty.to_pandas()
    table = pa.concat_tables([pq.read_table(p) for p in files], promote_options="default")
    features = sorted(c for c in table.column_names if c not in KEY_COLUMNS)
    table = table.select([*KEY_COLUMNS, *features])
    order = pc.sort_indices(
        table, [("ts", "ascending"), ("machine_id", "ascending"), ("window_s", "ascending")]
    )
    return table.take(order).to_pandas()


# -- the sink ----------------------------------------------------------------------------------


@dataclass
class FeatureSink:
    """Writes polled feature-vector records into the store; one sink per store directory.

    ``after_write(paths)`` is called after a batch's files are written and before its
    positions are committed (tests crash there).
    """

    root: Path
    after_write: Callable[[list[Path]], None] | None = None
    #: Rows written and records that were not feature vectors (counted, not silently lost).
    rows: int = 0
    skipped: int = 0
    _files: dict[int, list[tuple[int, Path]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob("date=*/hour=*/.*.tmp"):
            tmp.unlink(missing_ok=True)  # a write a crash interrupted
        for path in feature_files(self.root):
            match = _PART.match(path.name)
            if match:
                partition, first = int(match.group(1)), int(match.group(2))
                self._files.setdefault(partition, []).append((first, path))

    def write(self, records: Sequence[Record]) -> list[Path]:
        """Write the records (one poll; each partition's in offset order) as Parquet files,
        one per (partition, hour); returns the files written."""
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        written: list[Path] = []
        for partition, recs in sorted(by_partition.items()):
            first, last = recs[0].offset, recs[-1].offset
            self._drop_uncommitted(partition, first)
            vectors: list[FeatureVector] = []
            for record in recs:
                decoded = decode_record(record.value, FeatureVector)
                self.skipped += len(decoded.rejected)
                vectors.extend(decoded.events)
            if not vectors:
                continue
            table = features_to_table(vectors)
            ts_us = table.column("ts").cast(pa.int64()).to_numpy()
            hours = ts_us - ts_us % 3_600_000_000
            for hour in np.unique(hours).tolist():
                rows = table.filter(pa.array(hours == hour))
                present = [
                    c
                    for c in rows.column_names
                    if c in KEY_COLUMNS or rows.column(c).null_count < rows.num_rows
                ]
                path = partition_dir(self.root, hour) / f"part-{partition}-{first}-{last}.parquet"
                write_atomically(rows.select(present), path)
                self._files.setdefault(partition, []).append((first, path))
                self.rows += rows.num_rows
                written.append(path)
        if self.after_write is not None:
            self.after_write(written)
        return written

    def _drop_uncommitted(self, partition: int, first: int) -> None:
        """Remove this partition's files starting at or after ``first``: a batch is written
        from the committed position, so such files are an uncommitted attempt's leftovers."""
        files = self._files.get(partition, [])
        keep = []
        for start, path in files:
            if start >= first:
                path.unlink(missing_ok=True)
            else:
                keep.append((start, path))
        self._files[partition] = keep


def sink_features(
    log: Log,
    root: str | Path,
    topic: str,
    group: str,
    max_records: int = 5000,
    idle_timeout_s: float = 10.0,
    after_write: Callable[[list[Path]], None] | None = None,
    lease_s: float | None = None,
) -> int:
    """Drain ``topic`` (feature vectors) into the store at ``root``; returns the rows written.

    The consumer loop of :func:`wearwatch.store.analytics.sink_topics`: it returns once every
    assigned partition is read to its end, or after ``idle_timeout_s`` without a record.
    Positions are committed only after the batch's files are written. ``lease_s`` (embedded
    log): how long a sink that died holds its partitions before a restart may take them.
    """
    sink = FeatureSink(Path(root), after_write)
    options = {} if lease_s is None else {"lease_s": lease_s}
    consumer = log.consumer(group, [topic], **options)
    idle_since = time.monotonic()
    try:
        while True:
            records = consumer.poll(max_records, 0.2)
            if records:
                idle_since = time.monotonic()
                sink.write(records)
                positions: dict[tuple[str, int], int] = {}
                for record in records:
                    positions[(record.topic, record.partition)] = record.offset + 1
                consumer.commit(positions)
                continue
            if time.monotonic() - idle_since >= idle_timeout_s:
                break
            assigned = consumer.assignment()
            ends = log.end_offsets(topic)
            if assigned and all(consumer.position(tp) >= ends.get(tp[1], 0) for tp in assigned):
                break
    finally:
        consumer.close()
    return sink.rows
