"""Historian replay: a plant's export streamed through the fleet pipeline, scored, and — when it
is labelled — measured against its labels.

No second implementation of anything: the readings of each file go as columnar records through
the fleet flow itself (:func:`~wearwatch.pipelines.fleet.flow.fleet_pipeline`: windows →
feature vectors → anomaly scores → the alarm policy), in event time, in process
(:class:`~wearwatch.runtime.harness.StreamRunner`); the detectors are fitted
(:meth:`AnomalyModel.fit <wearwatch.learn.anomaly.model.AnomalyModel.fit>`) on the very feature
vectors the stream computes (:func:`~wearwatch.pipelines.fleet.features.features_from_readings`).

Training share: the leading ``train_fraction`` of each file's time span (the cut rounded up to
the largest window's boundary, so no window straddles it), or separate training files. Windows
of the training share that hold a positively labelled reading are left out of the fit (the
detectors learn what normal looks like). Only the rest of each file is replayed and scored, so
the metrics never grade a window the detectors were fitted on.

Next to each input ``<stem>.<ext>`` it writes ``<stem>.scored.csv`` (``.parquet`` for Parquet
input: one row per scored window: window end, machine, window length, severity, score, category,
reason, whether an alarm was active, and the label when there is one), ``<stem>.alarms.csv`` (every
alarm transition) and, when cells or rows were rejected, ``<stem>.rejected.csv`` (line, column,
value, reason). Metrics follow :mod:`wearwatch.ingest.detection`: points are the windows of the
shortest length; predicted = an alarm of the machine is active at the window's end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wearwatch import topics
from wearwatch.columnar import Columns, FieldArrays, encode_columns
from wearwatch.events import Alarm, AnomalyScore, DeadLetter, Reading
from wearwatch.ingest.detection import (
    LabelledEvent,
    PointMetrics,
    alarm_active,
    delay_summary,
    detect_events,
    labelled_events,
    point_metrics,
    window_actual,
)
from wearwatch.ingest.historian import HistorianFile, file_stem, read_historian, write_rejected

if TYPE_CHECKING:
    from wearwatch.learn.anomaly.config import AnomalyConfig
    from wearwatch.learn.anomaly.model import AnomalyModel
    from wearwatch.pipelines.fleet.alarms import AlarmConfig

#: Readings per columnar record fed to the pipeline.
ROWS_PER_RECORD = 100_000
_US = 1_000_000

#: ``progress(stage, done, total)``: what a CLI shows while a replay runs.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ReplayOptions:
    """How readings become windows and how the detectors are fitted."""

    windows_s: tuple[float, ...] = (5.0, 30.0)
    grace_s: float = 2.0
    watermark_delay_s: float = 5.0
    #: Leading share of each file's time span fitted on (ignored with training files).
    train_fraction: float = 0.3
    #: Hard limits, machine → sensor → (low, high); ``"*"``: every machine.
    limits: dict[str, dict[str, tuple[float | None, float | None]]] | None = None
    anomaly: AnomalyConfig | None = None
    alarms: AlarmConfig | None = None
    #: Write scored rows, alarms and rejected rows next to each input.
    write: bool = True

    def __post_init__(self) -> None:
        if not self.windows_s or any(not (w > 0 and math.isfinite(w)) for w in self.windows_s):
            raise ValueError(f"windows_s={self.windows_s!r}: expected positive window lengths")
        if not 0.0 <= self.train_fraction < 1.0:
            raise ValueError(f"train_fraction={self.train_fraction}: expected a value in [0, 1)")


@dataclass
class FileReplay:
    """One replayed file: its readings, the scored windows, the alarm transitions, outputs."""

    source: HistorianFile
    #: Start of the replayed share (µs since the epoch; None: the whole file).
    cut_us: int | None
    #: One row per scored window (columns as written to ``<stem>.scored.*``).
    scored: pd.DataFrame
    alarms: list[Alarm]
    #: Replayed readings in no scored window: the last windows never close (the stream ends
    #: before the watermark passes them).
    unscored: int = 0
    late: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: PointMetrics | None = None
    events: list[LabelledEvent] = field(default_factory=list)
    #: Per point (window of the shortest length): an alarm active / a labelled reading in it.
    predicted: np.ndarray | None = None
    actual: np.ndarray | None = None


@dataclass
class ReplayResult:
    files: list[FileReplay]
    model: AnomalyModel
    options: ReplayOptions
    #: Feature vectors the detectors were fitted on.
    train_windows: int
    metrics: PointMetrics | None = None
    events: list[LabelledEvent] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON values: per file what was read and scored; pooled metrics with labels."""
        out: dict[str, Any] = {
            "windows_s": list(self.options.windows_s),
            "train_fraction": self.options.train_fraction,
            "train_windows": self.train_windows,
            "point": f"a {min(self.options.windows_s):g} s window of a machine",
            "predicted": "an alarm of the machine is active at the window's end",
            "actual": "a reading in the window is labelled positive",
            "files": [],
        }
        for f in self.files:
            item = f.source.summary()
            item.update(
                replayed_from=None if f.cut_us is None else _iso(f.cut_us),
                scored_windows=len(f.scored),
                unscored_readings=f.unscored,
                late_readings=f.late,
                dead_letters=len(f.dead_letters),
                dead_letter_reasons=sorted({d.reason for d in f.dead_letters})[:5],
                alarm_transitions=len(f.alarms),
                alarms_raised=sum(a.transition in ("raised", "reraised") for a in f.alarms),
                outputs={k: str(v) for k, v in f.outputs.items()},
            )
            if f.metrics is not None:
                item["metrics"] = f.metrics.as_dict()
                item["events"] = delay_summary(f.events)
            out["files"].append(item)
        if self.metrics is not None:
            out["metrics"] = self.metrics.as_dict()
            out["events"] = delay_summary(self.events)
        return out


def replay(
    files: Sequence[Path | str],
    train_files: Sequence[Path | str] = (),
    options: ReplayOptions | None = None,
    *,
    progress: Progress | None = None,
    **read: Any,
) -> ReplayResult:
    """Fit the detectors, replay every file through the fleet pipeline, score against labels.

    ``read``: :func:`~wearwatch.ingest.historian.read_historian` overrides (``time_col``,
    ``machine_col``, ``label_col``, ``exclude_cols``, ``tz``, ``layout``) for every file.
    """
    options = options or ReplayOptions()
    if not files:
        raise ValueError("replay: no files given")
    if not train_files and options.train_fraction <= 0.0:
        raise ValueError(
            "replay: train_fraction=0 and no training files: nothing to fit the detectors on"
        )
    note = progress or (lambda stage, done, total: None)
    sources = []
    for k, path in enumerate(files):
        note("reading", k, len(files))
        sources.append(read_historian(path, **read))
    trainers = [read_historian(path, **read) for path in train_files]
    note("reading", len(files), len(files))

    largest_us = round(max(options.windows_s) * _US)
    cuts: list[int | None] = []
    train_parts: list[pd.DataFrame] = []
    if trainers:
        cuts = [None] * len(sources)
        train_parts = [t.readings for t in trainers]
    else:
        for source in sources:
            cut = _cut_us(source.readings, options.train_fraction, largest_us)
            cuts.append(cut)
            train_parts.append(source.readings[times_us(source.readings) < cut])

    note("fitting", 0, 1)
    model, train_windows = fit_detectors(train_parts, options)
    note("fitting", 1, 1)

    total = sum(len(s.readings) for s in sources)
    done = 0
    replays: list[FileReplay] = []
    for source, cut in zip(sources, cuts, strict=True):
        readings = source.readings
        if cut is not None:
            readings = readings[times_us(readings) >= cut]

        def step(rows: int, base: int = done) -> None:
            note("replaying", base + rows, total)

        run = run_pipeline(readings, model, options, step)
        done += len(source.readings)
        item = _score_file(source, cut, readings, run, options)
        if options.write:
            item.outputs = _write(item)
        replays.append(item)
    note("replaying", total, total)

    result = ReplayResult(replays, model, options, train_windows)
    labelled = [r for r in replays if r.predicted is not None and r.actual is not None]
    if labelled:
        result.metrics = point_metrics(
            np.concatenate([r.predicted for r in labelled]),
            np.concatenate([r.actual for r in labelled]),
        )
        result.events = [e for r in labelled for e in r.events]
    return result


# --- steps -----------------------------------------------------------------------------------


def times_us(readings: pd.DataFrame) -> np.ndarray:
    return readings["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)


def _iso(us: int) -> str:
    return pd.Timestamp(us, unit="us", tz="UTC").isoformat()


def _cut_us(readings: pd.DataFrame, fraction: float, largest_us: int) -> int:
    """Start of the replayed share: ``fraction`` of the file's time span, rounded up to the
    largest window's boundary (windows are aligned to the epoch)."""
    ts = times_us(readings)
    if len(ts) == 0:
        return 0
    raw = int(ts.min()) + math.ceil(fraction * (int(ts.max()) - int(ts.min())))
    return -(-raw // largest_us) * largest_us


def to_columns(readings: pd.DataFrame) -> Columns:
    """A long readings frame (ts, machine_id, sensor, value) as :class:`Columns` of Reading."""
    ts_us = times_us(readings)
    codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ("machine_id", "sensor"):
        index, categories = pd.factorize(readings[name], sort=False)
        codes[name] = (index.astype(np.int32), np.asarray(categories, dtype=object))
    values = readings["value"].to_numpy(dtype=np.float64)
    fields = FieldArrays(("machine_id", "sensor", "value"), {"value": values}, codes)
    return Columns(Reading, ts_us, fields, np.arange(len(ts_us), dtype=np.int64))


def _records(readings: pd.DataFrame) -> list[bytes]:
    columns = to_columns(readings)
    out = []
    for start in range(0, len(columns), ROWS_PER_RECORD):
        chunk = columns.take(np.arange(start, min(start + ROWS_PER_RECORD, len(columns))))
        fields = {name: chunk.codes.get(name, values) for name, values in chunk.fields.items()}
        out.append(encode_columns(Reading, chunk.ts_us, fields))
    return out


def fit_detectors(
    parts: Sequence[pd.DataFrame], options: ReplayOptions
) -> tuple[AnomalyModel, int]:
    """Fit the detectors on the stream's feature vectors of the training readings (each file's
    readings a stream of its own: files need not follow one another in time), leaving out the
    windows that hold a positively labelled reading."""
    from wearwatch.learn.anomaly.model import AnomalyModel
    from wearwatch.pipelines.fleet.features import features_from_readings
    from wearwatch.store.features import features_to_table

    vectors = []
    for part in parts:
        if part.empty:
            continue
        found = features_from_readings(
            to_columns(part), options.windows_s, options.grace_s, options.watermark_delay_s
        )
        if "label" in part and len(found):
            positive = part[part["label"] > 0]
            end_us = np.array([_dt_us(fv.ts) for fv in found], dtype=np.int64)
            window_us = np.array([round(fv.window_s * _US) for fv in found], dtype=np.int64)
            machines = np.array([fv.machine_id for fv in found], dtype=object)
            anomalous = window_actual(
                end_us, window_us, machines, times_us(positive), positive["machine_id"].to_numpy()
            )
            found = [fv for fv, bad in zip(found, anomalous, strict=True) if not bad]
        vectors.extend(found)
    if not vectors:
        raise ValueError(
            "replay: the training share holds no complete window: give a larger "
            "--train-fraction, shorter --windows or --train files"
        )
    frame = features_to_table(vectors).to_pandas()
    return AnomalyModel.fit(frame, limits=options.limits, config=options.anomaly), len(vectors)


def _dt_us(ts: Any) -> int:
    return round(ts.timestamp() * _US)


@dataclass
class PipelineRun:
    """What the fleet flow emitted for a file's readings."""

    scores: list[AnomalyScore] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    #: Readings behind the watermark when they came (none in a sorted file), counted.
    late: int = 0
    #: Anything the flow could not process, with its reason and bytes.
    dead_letters: list[DeadLetter] = field(default_factory=list)


def run_pipeline(
    readings: pd.DataFrame,
    model: AnomalyModel,
    options: ReplayOptions,
    step: Callable[[int], None],
) -> PipelineRun:
    """The readings through the fleet flow in process, as columnar records in time order."""
    from wearwatch.pipelines.fleet.flow import fleet_pipeline
    from wearwatch.runtime.harness import StreamRunner

    flow = fleet_pipeline(
        model,
        None,
        options.alarms,
        windows_s=options.windows_s,
        grace_s=options.grace_s,
        limits=options.limits,
        # Every window is scored: the scored rows and the metrics' points (the shortest
        # windows) need them, not only the windows that drive alarms.
        score_windows_s=options.windows_s,
    )
    runner = StreamRunner(flow, watermark_delay_s=options.watermark_delay_s)
    run = PipelineRun()
    fed = 0
    for record in _records(readings):
        out = runner.feed([record])
        run.scores.extend(out.get(topics.SCORES.name, []))
        run.alarms.extend(out.get(topics.ALARMS.name, []))
        run.dead_letters.extend(out.get(topics.DEAD_LETTERS.name, []))
        fed += ROWS_PER_RECORD
        step(min(fed, len(readings)))
    run.late = int(runner.counters.get("late", 0))
    return run


def _score_file(
    source: HistorianFile,
    cut: int | None,
    readings: pd.DataFrame,
    run: PipelineRun,
    options: ReplayOptions,
) -> FileReplay:
    """The scored windows as a frame, which alarms were active, and — with labels — the
    point metrics and the labelled events with their detection times."""
    scores, alarms = run.scores, run.alarms
    end_us = np.array([_dt_us(s.ts) for s in scores], dtype=np.int64)
    window_us = np.array([round(s.window_s * _US) for s in scores], dtype=np.int64)
    machines = np.array([s.machine_id for s in scores], dtype=object)
    transitions = [(_dt_us(a.ts), a.machine_id, a.alarm_type, a.status) for a in alarms]
    active = alarm_active(end_us, machines, transitions)
    scored = pd.DataFrame(
        {
            "window_end": pd.to_datetime(end_us, unit="us", utc=True),
            "machine_id": machines.astype(str),
            "window_s": window_us / _US,
            "severity": [s.severity for s in scores],
            "score": [s.score for s in scores],
            "category": [s.category for s in scores],
            "reason": [s.reason for s in scores],
            "alarm_active": active,
        }
    )
    shortest = round(min(options.windows_s) * _US)
    points = window_us == shortest
    unscored = _unscored(readings, end_us[points], machines[points], shortest)
    item = FileReplay(
        source, cut, scored, alarms, unscored, late=run.late, dead_letters=run.dead_letters
    )
    if source.labelled:
        positive = readings[readings["label"] > 0]
        actual = window_actual(
            end_us, window_us, machines, times_us(positive), positive["machine_id"].to_numpy()
        )
        scored["label"] = actual.astype(np.int8)
        item.predicted, item.actual = active[points], actual[points]
        item.metrics = point_metrics(item.predicted, item.actual)
        events = labelled_events(
            times_us(readings), readings["machine_id"].to_numpy(), readings["label"].to_numpy()
        )
        item.events = detect_events(
            events, end_us[points], window_us[points], machines[points], active[points]
        )
    return item


def _unscored(
    readings: pd.DataFrame, end_us: np.ndarray, machines: np.ndarray, window_us: int
) -> int:
    """Readings whose shortest window was never scored (still open when the stream ended)."""
    ends = (times_us(readings) // window_us + 1) * window_us
    wanted = pd.MultiIndex.from_arrays([readings["machine_id"].to_numpy(), ends])
    scored = pd.MultiIndex.from_arrays([machines.astype(str), end_us])
    return int((~wanted.isin(scored)).sum())


def _write(item: FileReplay) -> dict[str, Path]:
    """Scored windows, alarm transitions and rejected rows next to the input file."""
    path = item.source.path
    stem = file_stem(path)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    out = {
        "scored": path.with_name(f"{stem}.scored.{'parquet' if parquet else 'csv'}"),
        "alarms": path.with_name(f"{stem}.alarms.csv"),
    }
    scored = item.scored.copy()
    if parquet:
        scored.to_parquet(out["scored"], index=False)
    else:
        scored["window_end"] = scored["window_end"].map(lambda t: t.isoformat())
        scored.to_csv(out["scored"], index=False)
    alarms = pd.DataFrame(
        {
            "ts": [a.ts.isoformat() for a in item.alarms],
            "alarm_id": [a.alarm_id for a in item.alarms],
            "machine_id": [a.machine_id for a in item.alarms],
            "alarm_type": [a.alarm_type for a in item.alarms],
            "transition": [a.transition for a in item.alarms],
            "status": [a.status for a in item.alarms],
            "severity": [a.severity for a in item.alarms],
            "acknowledged": [a.acknowledged for a in item.alarms],
            "raised_at": [a.raised_at.isoformat() for a in item.alarms],
            "reason": [a.reason for a in item.alarms],
        },
        columns=[
            "ts",
            "alarm_id",
            "machine_id",
            "alarm_type",
            "transition",
            "status",
            "severity",
            "acknowledged",
            "raised_at",
            "reason",
        ],
    )
    alarms.to_csv(out["alarms"], index=False)
    rejected = path.with_name(f"{stem}.rejected.csv")
    if item.source.rejected:
        write_rejected(rejected, item.source.rejected)
        out["rejected"] = rejected
    else:
        rejected.unlink(missing_ok=True)  # a previous run's, no longer true
    return out
