"""Historian exports (CSV or Parquet) as one long frame of readings: ts, machine, sensor, value.

A plant's first data is usually a file from its historian, and no two look alike: commas or
semicolons (with decimal commas), tabs or pipes; a time column called ``Timestamp``, ``Zeit``
or nothing in particular; ISO times, local times or epoch milliseconds; one column per sensor
(*wide*) or one row per sample (*long*: machine, sensor, value). :func:`read_historian` works
out each of these from the file and says what it found (:class:`HistorianFile`); every guess
can be overridden.

Detection rules (in this order):

- **delimiter** (CSV): of ``,`` ``;`` tab ``|``, the one that splits the header into ≥ 2 columns
  and the most sample lines into as many fields as the header (then the most fields; ties go to
  that order); :class:`csv.Sniffer` decides when no candidate splits the header. Decimal
  commas are assumed when the delimiter is not ``,`` and the sample's numbers use ``1,5``
  and never ``1.5``.
- **time column**: the first column named ``time``, ``timestamp``, ``ts``, ``datetime`` or
  ``date`` (exactly, then as a prefix: ``Timestamp (UTC)``) whose values parse as times, else the
  first column whose values parse as date-times. Numbers in a named time column are epoch
  seconds, milliseconds, microseconds or nanoseconds by magnitude. Naive times are UTC unless
  ``tz`` names their zone; local times that a DST change makes ambiguous or impossible are
  rejected rows.
- **machine column**: named ``machine``, ``machine_id``, ``asset``, ``equipment``, ``device``
  or ``engine`` (with ``_id``/``_name`` variants); without one the file is one machine named
  after the file's stem.
- **label column**: named ``label``, ``anomaly`` or ``is_anomaly`` (numbers: non-zero is
  positive; ``true``/``yes``/``anomaly``/``fault`` and ``false``/``no``/``normal``; empty: 0).
- **layout**: *long* when a sensor-name column (``sensor``, ``tag``, ``signal``, ``variable``,
  ``channel``, ``point``, ``parameter``, ``name``) and a ``value`` column exist, else *wide*:
  every other column that is mostly numeric is a sensor; columns that are not (text) are
  listed in :attr:`HistorianFile.ignored`, never silently dropped.

Missing cells (empty, ``nan``, ``NA``, ``N/A``, ``null``, ``none``, ``-``) are missing samples
(counted). Any other cell that is not a finite number, and any row whose time does not parse
or whose fields do not match the header, is a :class:`Rejected` entry with its line number
(CSV: the physical line, the header being line 1; Parquet: the row, first row = 1), column,
original text and reason.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "pump-7.csv"
>>> _ = path.write_text("Zeit;Vibration;Temp\\n2026-01-01 00:00:00;1,5;60\\n"
...                     "2026-01-01 00:00:01;oops;61\\n")
>>> h = read_historian(path)
>>> h.delimiter, h.decimal, h.time_col, h.layout, h.machine_col, h.sensors
(';', ',', 'Zeit', 'wide', None, ['Vibration', 'Temp'])
>>> h.readings[["machine_id", "sensor", "value"]].values.tolist()
[['pump-7', 'Vibration', 1.5], ['pump-7', 'Temp', 60.0], ['pump-7', 'Temp', 61.0]]
>>> h.rejected
[Rejected(line=3, column='Vibration', value='oops', reason='not a number')]
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from wearwatch.events import EARLIEST, LATEST

#: Delimiters tried, in order of preference when two fit equally well.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
#: Bytes of the file read to detect its delimiter, decimal mark and encoding.
SAMPLE_BYTES = 1 << 16
#: Cell texts that mean "no sample" (compared case-insensitively, stripped).
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})
#: A column holds times / numbers when more than this share of its non-missing cells parse
#: (the rest are rejected cells); otherwise it holds something else.
PARSE_SHARE = 0.5
#: Machine, label and long-layout column names (compared lower-case, without ``_ -`` and spaces).
MACHINE_NAMES = tuple(
    f"{base}{suffix}"
    for base in ("machine", "asset", "equipment", "device", "engine")
    for suffix in ("", "id", "name")
)
LABEL_NAMES = ("label", "anomaly", "isanomaly")
SENSOR_NAMES = ("sensor", "tag", "tagname", "signal", "variable", "channel", "point", "parameter")
VALUE_NAMES = ("value", "val", "pv")
TIME_NAMES = ("time", "timestamp", "ts", "datetime", "date")
_POSITIVE = frozenset({"1", "true", "yes", "y", "anomaly", "fault", "attack", "abnormal"})
_NEGATIVE = frozenset({"0", "false", "no", "n", "normal", ""})
_COMMA_DECIMAL = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
_DOT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")

Layout = Literal["auto", "wide", "long"]
#: Longest machine id the event contract accepts.
MAX_ID = 200
#: The event contract's time range, as naive UTC datetime64.
_EARLIEST = np.datetime64(EARLIEST.replace(tzinfo=None), "us")
_LATEST = np.datetime64(LATEST.replace(tzinfo=None), "us")


class HistorianError(ValueError):
    """A file that cannot be read as a historian export; the message names file and column."""


@dataclass(frozen=True)
class Rejected:
    """One cell or row that could not be used, with where it was and why."""

    line: int
    column: str
    value: str
    reason: str


@dataclass
class HistorianFile:
    """A historian export read into long readings, with what was detected and rejected.

    ``readings``: columns ``ts`` (UTC), ``machine_id`` and ``sensor`` (categorical), ``value``
    (float64), ``line`` (source line, or row for Parquet) and, with a label column, ``label``
    (0.0/1.0); sorted by time (stable: a file's order breaks ties).
    """

    path: Path
    readings: pd.DataFrame
    layout: Literal["wide", "long"]
    time_col: str
    delimiter: str | None = None
    decimal: str = "."
    machine_col: str | None = None
    label_col: str | None = None
    sensors: list[str] = field(default_factory=list)
    #: Columns not used, and why (excluded, not numeric...).
    ignored: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    #: Data rows in the file (blank lines not counted).
    rows: int = 0
    #: Missing cells (empty or a missing marker): no sample, not an error.
    missing: int = 0

    @property
    def labelled(self) -> bool:
        return self.label_col is not None

    def summary(self) -> dict[str, object]:
        """What was detected and how much was read, as JSON values."""
        return {
            "file": str(self.path),
            "layout": self.layout,
            "delimiter": self.delimiter,
            "decimal": self.decimal,
            "time_col": self.time_col,
            "machine_col": self.machine_col,
            "label_col": self.label_col,
            "sensors": list(self.sensors),
            "ignored": dict(self.ignored),
            "rows": self.rows,
            "readings": len(self.readings),
            "missing": self.missing,
            "rejected": len(self.rejected),
        }


def read_historian(
    path: Path | str,
    *,
    time_col: str | None = None,
    machine_col: str | None = None,
    label_col: str | None = None,
    exclude_cols: Sequence[str] = (),
    tz: str | None = None,
    layout: Layout = "auto",
) -> HistorianFile:
    """Read a CSV (``.csv``, ``.txt``, ``.tsv``, optionally ``.gz``) or Parquet export."""
    path = Path(path)
    if not path.is_file():
        raise HistorianError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        table, lines, delimiter, decimal, bad_rows = _read_parquet(path)
    else:
        table, lines, delimiter, decimal, bad_rows = _read_csv(path)
    return _interpret(
        path,
        table,
        lines,
        delimiter=delimiter,
        decimal=decimal,
        rejected=bad_rows,
        time_col=time_col,
        machine_col=machine_col,
        label_col=label_col,
        exclude_cols=exclude_cols,
        tz=tz,
        layout=layout,
    )


# --- reading the file -----------------------------------------------------------------------


def _read_parquet(path: Path) -> tuple[pd.DataFrame, np.ndarray, None, str, list[Rejected]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise HistorianError(f"{path}: not a readable Parquet file: {exc}") from None
    frame = table.to_pandas()
    return frame, np.arange(1, len(frame) + 1, dtype=np.int64), None, ".", []


def _read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray, str, str, list[Rejected]]:
    with open(path, "rb") as fh:
        raw = fh.read(SAMPLE_BYTES)
    if path.suffix.lower() == ".gz":
        import gzip

        with gzip.open(path, "rb") as fh:
            raw = fh.read(SAMPLE_BYTES)
    encoding = _encoding(raw)
    text = raw.decode(encoding, errors="replace")
    if len(raw) == SAMPLE_BYTES and "\n" in text:  # drop a line cut short by the sample
        text = text[: text.rindex("\n")]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise HistorianError(f"{path}: empty file (no header line)")
    delimiter = detect_delimiter(lines[:200])
    if delimiter is None:
        raise HistorianError(
            f"{path}: cannot tell the delimiter: none of , ; tab | splits the header "
            f"{lines[0][:80]!r} into two or more columns (a time column and a sensor at least)"
        )
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    header = [name.strip() for name in header]
    for k, name in enumerate(header):
        if not name:
            raise HistorianError(f"{path}: header column {k + 1} has no name")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise HistorianError(f"{path}: header names column {duplicates[0]!r} more than once")
    decimal = detect_decimal(lines[1:200], delimiter)

    bad: list[Rejected] = []
    skipped: list[int] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        if not row.text.strip():
            skipped.append(row.number)
            return "skip"
        skipped.append(row.number)
        bad.append(
            Rejected(
                row.number,
                "",
                row.text,
                f"{row.actual_columns} fields, the header has {row.expected_columns}",
            )
        )
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                use_threads=False,  # row numbers of invalid rows are known only then
                encoding=encoding,
                column_names=header,
                skip_rows=1,
                block_size=1 << 24,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise HistorianError(f"{path}: cannot read as CSV ({delimiter!r}): {exc}") from None
    frame = pd.DataFrame(
        {name: np.asarray(table.column(name).to_numpy(zero_copy_only=False)) for name in header}
    )
    # Line numbers: every physical line after the header is a table row unless skipped.
    total = len(frame) + len(skipped)
    kept = np.ones(total, dtype=bool)
    kept[np.asarray(skipped, dtype=np.int64) - 2] = False
    line_numbers = np.flatnonzero(kept).astype(np.int64) + 2
    blank = (frame == "").all(axis=1).to_numpy()  # blank lines: not data
    return frame[~blank].reset_index(drop=True), line_numbers[~blank], delimiter, decimal, bad


def _encoding(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4:  # not just a character cut by the sample's end
            return "latin-1"
    return "utf-8"


def detect_delimiter(lines: Sequence[str]) -> str | None:
    """The delimiter of CSV ``lines`` (the header first), or None.

    >>> detect_delimiter(["time;a;b", "2026-01-01;1,5;2,5", "2026-01-02;1,0;3,0"])
    ';'
    >>> detect_delimiter(["time\\ta", "1\\t2"]), detect_delimiter(["time,a", "1,2"])
    ('\\t', ',')
    >>> detect_delimiter(["just one column", "1"]) is None
    True
    """
    best: tuple[float, int, int] | None = None
    chosen = None
    for rank, delimiter in enumerate(DELIMITERS):
        rows = list(csv.reader(lines, delimiter=delimiter))
        width = len(rows[0])
        if width < 2:
            continue
        data = rows[1:] or rows
        fit = sum(len(row) == width for row in data) / len(data)
        key = (fit, width, -rank)
        if best is None or key > best:
            best, chosen = key, delimiter
    if chosen is None:
        try:
            sniffed = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS))
        except csv.Error:
            return None
        chosen = sniffed.delimiter
    return chosen


def detect_decimal(lines: Sequence[str], delimiter: str) -> str:
    """``","`` when ``delimiter`` is not a comma and the numbers use decimal commas only.

    >>> detect_decimal(["2026-01-01;1,5"], ";"), detect_decimal(["2026-01-01;1.5"], ";")
    (',', '.')
    """
    if delimiter == ",":
        return "."
    comma = dot = False
    for row in csv.reader(lines, delimiter=delimiter):
        for cell in row:
            cell = cell.strip()
            comma = comma or bool(_COMMA_DECIMAL.match(cell))
            dot = dot or bool(_DOT_DECIMAL.match(cell))
    return "," if comma and not dot else "."


# --- interpreting the columns ---------------------------------------------------------------


def _key(name: str) -> str:
    return re.sub(r"[\s_\-./()\[\]]", "", name.lower())


def _named(columns: Sequence[str], names: Sequence[str]) -> str | None:
    keys = {column: _key(column) for column in columns}
    for wanted in names:
        for column in columns:
            if keys[column] == wanted:
                return column
    return None


def _require(path: Path, columns: Sequence[str], name: str | None, option: str) -> str | None:
    if name is not None and name not in columns:
        raise HistorianError(
            f"{path}: {option} {name!r}: no such column (columns: {', '.join(columns)})"
        )
    return name


def _interpret(
    path: Path,
    frame: pd.DataFrame,
    lines: np.ndarray,
    *,
    delimiter: str | None,
    decimal: str,
    rejected: list[Rejected],
    time_col: str | None,
    machine_col: str | None,
    label_col: str | None,
    exclude_cols: Sequence[str],
    tz: str | None,
    layout: Layout,
) -> HistorianFile:
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    for name in exclude_cols:
        _require(path, columns, name, "--exclude-col")
    excluded = set(exclude_cols)
    usable = [c for c in columns if c not in excluded]
    _require(path, columns, time_col, "--time-col")
    _require(path, columns, machine_col, "--machine-col")
    _require(path, columns, label_col, "--label-col")
    machine_col = machine_col or _named(usable, MACHINE_NAMES)
    label_col = label_col or _named(usable, LABEL_NAMES)
    taken = {machine_col, label_col}

    if time_col is None:
        time_col, times = _detect_time(path, frame, [c for c in usable if c not in taken], tz)
    else:
        times = parse_times(frame[time_col], tz=tz, named=True)
        if times is None:
            sample = _first_values(frame[time_col], 1)
            raise HistorianError(
                f"{path}: --time-col {time_col!r}: values such as {sample[0]!r} are not times"
                if sample
                else f"{path}: --time-col {time_col!r}: the column is empty"
            )
    taken.add(time_col)
    ts, reasons = times
    bad = np.zeros(len(frame), dtype=bool)
    _reject(rejected, bad, lines, frame[time_col], reasons, time_col)

    if machine_col is not None:
        names = frame[machine_col].astype(str).str.strip()
        machines = names.to_numpy(dtype=object)
        empty = (machines == "") | pd.isna(frame[machine_col]).to_numpy()
        long = (names.str.len() > MAX_ID).to_numpy()
        _reject_mask(rejected, bad, lines, frame[machine_col], empty, machine_col, "no machine")
        _reject_mask(
            rejected,
            bad,
            lines,
            frame[machine_col],
            long & ~empty,
            machine_col,
            f"id longer than {MAX_ID} characters",
        )
    else:
        machines = np.full(len(frame), file_stem(path), dtype=object)
    machine_codes, machine_names = pd.factorize(machines)

    labels = None
    if label_col is not None:
        labels, reasons = parse_labels(frame[label_col])
        _reject(rejected, bad, lines, frame[label_col], reasons, label_col)

    remaining = [c for c in usable if c not in taken]
    sensor_col = _named(remaining, (*SENSOR_NAMES, "name"))
    value_col = _named(remaining, VALUE_NAMES)
    if layout == "auto":
        layout = "long" if sensor_col is not None and value_col is not None else "wide"
    if layout == "long" and (sensor_col is None or value_col is None):
        raise HistorianError(
            f"{path}: a long layout needs a sensor-name column ({', '.join(SENSOR_NAMES)}) "
            f"and a value column ({', '.join(VALUE_NAMES)}); columns: {', '.join(columns)}"
        )
    ignored = {c: "excluded" for c in exclude_cols}
    missing = 0
    ok = ~bad
    parts: list[pd.DataFrame] = []
    if layout == "long":
        assert sensor_col is not None and value_col is not None
        for c in remaining:
            if c not in (sensor_col, value_col):
                ignored[c] = "not used by the long layout"
        values, is_missing, reasons = parse_numbers(frame[value_col], decimal)
        sensor_names = frame[sensor_col].astype(str).str.strip().to_numpy(dtype=object)
        no_sensor = sensor_names == ""
        _reject_mask(rejected, bad, lines, frame[sensor_col], no_sensor, sensor_col, "no sensor")
        _reject(rejected, bad, lines, frame[value_col], reasons, value_col)
        ok = ~bad & ~is_missing
        missing = int((is_missing & ~bad).sum())
        sensor_codes, sensor_names = pd.factorize(sensor_names)
        used = np.unique(sensor_codes[ok])
        sensors = [str(sensor_names[c]) for c in sorted(used, key=lambda c: c)]
        parts.append(_part(ts, machine_codes, sensor_codes, values, lines, labels, ok, 0))
    else:
        sensors = []
        for k, c in enumerate(remaining):
            values, is_missing, reasons = parse_numbers(frame[c], decimal)
            present = (~is_missing).sum()
            if present and (reasons != "").sum() > (1 - PARSE_SHARE) * present:
                ignored[c] = "not numeric"
                continue
            sensors.append(c)
            cell_bad = reasons != ""
            for i in np.flatnonzero(cell_bad & ~bad):
                rejected.append(Rejected(int(lines[i]), c, _text(frame[c].iloc[i]), reasons[i]))
            use = ~bad & ~is_missing & ~cell_bad
            missing += int((is_missing & ~bad).sum())
            codes = np.full(len(frame), len(sensors) - 1, dtype=np.int64)
            parts.append(_part(ts, machine_codes, codes, values, lines, labels, use, k))
        if not sensors:
            raise HistorianError(
                f"{path}: no sensor columns: every column besides time {time_col!r}"
                f"{'' if machine_col is None else f', machine {machine_col!r}'} is excluded or "
                f"not numeric ({', '.join(f'{c}: {why}' for c, why in ignored.items())})"
            )
    readings = pd.concat(parts, ignore_index=True) if parts else _part_empty(labels is not None)
    order = np.lexsort(
        (readings.pop("_order").to_numpy(), readings["line"].to_numpy(), readings["ts"].to_numpy())
    )
    readings = readings.iloc[order].reset_index(drop=True)
    readings["ts"] = readings["ts"].dt.tz_localize("UTC")
    sensor_categories = sensor_names if layout == "long" else sensors
    for name, categories in (("machine_id", machine_names), ("sensor", sensor_categories)):
        column = pd.Categorical.from_codes(readings[name].to_numpy(), categories=categories)
        readings[name] = column.remove_unused_categories()
    rejected.sort(key=lambda r: (r.line, r.column))
    return HistorianFile(
        path=path,
        readings=readings,
        layout=layout,
        time_col=time_col,
        delimiter=delimiter,
        decimal=decimal,
        machine_col=machine_col,
        label_col=label_col,
        sensors=sensors,
        ignored=ignored,
        rejected=rejected,
        rows=len(frame),
        missing=missing,
    )


def _part(
    ts: np.ndarray,
    machines: np.ndarray,
    sensors: np.ndarray,
    values: np.ndarray,
    lines: np.ndarray,
    labels: np.ndarray | None,
    use: np.ndarray,
    order: int,
) -> pd.DataFrame:
    """The readings of one column (wide) or of the value column (long); ``machines`` and
    ``sensors`` are codes into the file's machine and sensor names."""
    data = {
        "ts": ts[use],
        "machine_id": machines[use],
        "sensor": sensors[use],
        "value": values[use],
        "line": lines[use],
    }
    if labels is not None:
        data["label"] = labels[use]
    data["_order"] = np.full(int(use.sum()), order, dtype=np.int64)
    return pd.DataFrame(data)


def _part_empty(labelled: bool) -> pd.DataFrame:
    empty = np.zeros(0, dtype=bool)
    none = np.zeros(0)
    return _part(
        none.astype("datetime64[us]"),
        none.astype(np.int64),
        none.astype(np.int64),
        none,
        none.astype(np.int64),
        none if labelled else None,
        empty,
        0,
    )


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _reject(
    rejected: list[Rejected],
    bad: np.ndarray,
    lines: np.ndarray,
    column: pd.Series,
    reasons: np.ndarray,
    name: str,
) -> None:
    """Rows with a reason become rejected rows (once: a row already rejected is skipped)."""
    for i in np.flatnonzero((reasons != "") & ~bad):
        rejected.append(Rejected(int(lines[i]), name, _text(column.iloc[i]), str(reasons[i])))
        bad[i] = True


def _reject_mask(
    rejected: list[Rejected],
    bad: np.ndarray,
    lines: np.ndarray,
    column: pd.Series,
    mask: np.ndarray,
    name: str,
    reason: str,
) -> None:
    reasons = np.where(mask, reason, "")
    _reject(rejected, bad, lines, column, reasons, name)


def _first_values(column: pd.Series, n: int) -> list[str]:
    out = []
    for value in column:
        text = _text(value).strip()
        if text.lower() not in MISSING and not (isinstance(value, float) and np.isnan(value)):
            out.append(text)
            if len(out) == n:
                break
    return out


def _detect_time(
    path: Path, frame: pd.DataFrame, candidates: list[str], tz: str | None
) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    keys = {c: _key(c) for c in candidates}
    exact = [c for name in TIME_NAMES for c in candidates if keys[c] == name]
    prefixed = [
        c
        for c in candidates
        if c not in exact and any(keys[c].startswith(n) for n in TIME_NAMES if n != "ts")
    ]
    for column in [*exact, *prefixed]:
        parsed = parse_times(frame[column], tz=tz, named=True)
        if parsed is not None:
            return column, parsed
    for column in candidates:
        parsed = parse_times(frame[column], tz=tz, named=False)
        if parsed is not None:
            return column, parsed
    raise HistorianError(
        f"{path}: no time column: no column is named {', '.join(TIME_NAMES)} and none holds "
        f"date-times (columns: {', '.join(frame.columns)}); name it with --time-col"
    )


# --- values ----------------------------------------------------------------------------------


def parse_numbers(
    column: pd.Series, decimal: str = "."
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, missing, reasons)``: float64 values (NaN where not a number), the missing
    cells, and per cell ``""`` or why it is not a finite number.

    >>> values, missing, reasons = parse_numbers(pd.Series(["1,5", "", "x", "inf"]), ",")
    >>> values.tolist()[:1], missing.tolist(), reasons.tolist()
    ([1.5], [False, True, False, False], ['', '', 'not a number', 'not finite'])
    """
    if pd.api.types.is_bool_dtype(column.dtype):
        column = column.astype(np.float64)
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        reasons = np.where(np.isinf(values), "not finite", "")
        return values, missing, reasons.astype(object)
    strings = pc.utf8_trim_whitespace(pa.array(column.astype(object), pa.string()))
    marker = pc.is_in(pc.utf8_lower(strings), value_set=pa.array(sorted(MISSING)))
    missing = np.asarray(pc.fill_null(pc.or_(marker, pc.is_null(strings)), True))
    if decimal == ",":
        strings = pc.replace_substring(strings, ",", ".")
    try:  # Arrow's parser: fast, and all or nothing
        values = np.asarray(
            pc.cast(pc.if_else(missing, None, strings), pa.float64()).fill_null(np.nan)
        )
    except pa.ArrowInvalid:  # some cell is not a number: find which, cell by cell
        text = pd.Series(np.asarray(strings, dtype=object)).where(~missing, None)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    reasons = np.full(len(column), "", dtype=object)
    reasons[np.isnan(values) & ~missing] = "not a number"
    reasons[np.isinf(values)] = "not finite"
    return values, missing, reasons


def parse_labels(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, reasons)``: 1.0 for a positive label, 0.0 else; reasons for unreadable ones.

    >>> labels, reasons = parse_labels(pd.Series(["1", "0", "", "Fault", "Normal", "maybe"]))
    >>> labels.tolist(), reasons.tolist()[-1]
    ([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 'not a label (0/1, true/false, normal/anomaly)')
    """
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=0.0)
        reasons = np.where(np.isfinite(values), "", "not a label (0/1, true/false, normal/anomaly)")
        return np.where(np.nan_to_num(values) != 0.0, 1.0, 0.0), reasons.astype(object)
    text = column.fillna("").astype(str).str.strip().str.lower()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    positive = text.isin(_POSITIVE).to_numpy() | (np.isfinite(numbers) & (numbers != 0.0))
    negative = text.isin(_NEGATIVE).to_numpy() | (numbers == 0.0)
    reasons = np.where(
        positive | negative, "", "not a label (0/1, true/false, normal/anomaly)"
    ).astype(object)
    return positive.astype(np.float64), reasons


def parse_times(
    column: pd.Series, *, tz: str | None = None, named: bool = True
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(utc, reasons)``: naive UTC ``datetime64[us]`` per cell (NaT where it does not parse,
    with the reason), or None when the column does not hold times (fewer than
    :data:`PARSE_SHARE` of its non-missing cells parse). Numbers count as epoch times only if
    ``named`` (a time column by name): otherwise every sensor column would be a time column.

    >>> utc, reasons = parse_times(pd.Series(["1767225600000", "1767225600500", "x"]))
    >>> str(utc[1]), reasons.tolist()
    ('2026-01-01T00:00:00.500000', ['', '', 'not a time'])
    >>> local = pd.Series(["2026-01-01 01:00", "2026-03-29 02:30", "2026-10-25 02:30"])
    >>> utc, reasons = parse_times(local, tz="Europe/Berlin")
    >>> str(utc[0]), reasons.tolist()[1:]
    ('2026-01-01T00:00:00.000000', ['no such local time in Europe/Berlin (DST change)', \
'ambiguous local time in Europe/Berlin (DST change)'])
    """
    reasons = np.full(len(column), "", dtype=object)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        stamps = pd.DatetimeIndex(column)
        missing = np.asarray(stamps.isna())
    else:
        if pd.api.types.is_numeric_dtype(column.dtype):
            text = None
            missing = column.isna().to_numpy()
            numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            text = column.astype(str).str.strip()
            missing = text.str.lower().isin(MISSING).to_numpy() | column.isna().to_numpy()
            numbers = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        if not (~missing).any():
            return None
        if np.isfinite(numbers[~missing]).mean() > PARSE_SHARE:
            if not named:
                return None
            stamps = pd.DatetimeIndex(_epoch(numbers)).tz_localize("UTC")
        elif text is None:
            return None
        else:
            parsed = _parse_text(text, missing)
            if parsed is None:
                return None
            stamps = parsed
    unparsed = np.asarray(stamps.isna()) & ~missing
    if unparsed.sum() >= (1 - PARSE_SHARE) * max(int((~missing).sum()), 1):
        return None
    reasons[unparsed] = "not a time"
    reasons[missing] = "no time"
    utc = _to_utc(stamps, tz, reasons)
    outside = ~np.isnat(utc) & ((utc < _EARLIEST) | (utc >= _LATEST))
    reasons[outside] = f"time outside [{EARLIEST.date()}, {LATEST.date()}) UTC"
    utc[outside] = np.datetime64("NaT")
    return utc, reasons


def _epoch(numbers: np.ndarray) -> np.ndarray:
    """Epoch numbers → datetime64[us], the unit chosen by magnitude (s, ms, µs, ns)."""
    finite = numbers[np.isfinite(numbers)]
    scale = float(np.median(np.abs(finite))) if len(finite) else 0.0
    to_us = 1e6 if scale < 1e11 else 1e3 if scale < 1e14 else 1.0 if scale < 1e17 else 1e-3
    us = numbers * to_us
    out = np.full(len(numbers), np.datetime64("NaT"), dtype="datetime64[us]")
    ok = np.isfinite(us) & (np.abs(us) < 2**62)
    out[ok] = np.round(us[ok]).astype(np.int64).astype("datetime64[us]")
    return out


def _parse_text(text: pd.Series, missing: np.ndarray) -> pd.DatetimeIndex | None:
    """Times from text in one consistent format, guessed from the first values (day-first
    tried too: ``22.11.2026``); per-value parsing only when no single format fits."""
    from pandas.tseries.api import guess_datetime_format

    values = text[~missing]
    sample = values.iloc[:50].tolist()
    if not sample:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formats = []
        # Dotted dates (22.11.2026) are day-first by convention (DIN 5008, most of Europe).
        dotted = bool(re.match(r"^\d{1,2}\.\d{1,2}\.\d{2,4}", sample[0]))
        for dayfirst in (True, False) if dotted else (False, True):
            fmt = guess_datetime_format(sample[0], dayfirst=dayfirst)
            if fmt is not None and fmt not in formats:
                formats.append(fmt)
        for fmt in formats:
            parsed = pd.to_datetime(pd.Series(sample), format=fmt, errors="coerce")
            if not parsed.isna().any():
                return pd.DatetimeIndex(
                    pd.to_datetime(text.where(~missing, None), format=fmt, errors="coerce")
                )
        try:
            parsed = pd.to_datetime(pd.Series(sample), format="mixed", errors="coerce")
        except (ValueError, TypeError):
            return None
        if parsed.isna().mean() >= 1 - PARSE_SHARE:
            return None
        result = pd.to_datetime(text.where(~missing, None), format="mixed", errors="coerce")
    if not isinstance(result.dtype, pd.DatetimeTZDtype) and result.dtype == object:
        result = pd.to_datetime(result, utc=True, errors="coerce")  # mixed offsets
    return pd.DatetimeIndex(result)


def _to_utc(stamps: pd.DatetimeIndex, tz: str | None, reasons: np.ndarray) -> np.ndarray:
    """Naive UTC datetime64[us]; naive stamps are local times in ``tz`` (default UTC), and
    those a DST change makes impossible or ambiguous get their reason."""
    if stamps.tz is None:
        zone = tz or "UTC"
        localised = stamps.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        lost = np.flatnonzero(np.asarray(localised.isna() & ~stamps.isna()))
        if len(lost):
            shifted = stamps[lost].tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward")
            gone = np.asarray(shifted.isna())
            reasons[lost[~gone]] = f"no such local time in {zone} (DST change)"
            reasons[lost[gone]] = f"ambiguous local time in {zone} (DST change)"
        stamps = localised
    naive = stamps.tz_convert("UTC").tz_localize(None).as_unit("us")
    return np.asarray(naive, dtype="datetime64[us]")


def file_stem(path: Path) -> str:
    """A file's name without its extension (and ``.gz``): the machine of a file without a
    machine column, and the stem of the outputs written next to it.

    >>> file_stem(Path("/data/pump-7.csv")), file_stem(Path("line2.export.csv.gz"))
    ('pump-7', 'line2.export')
    """
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[0] if "." in name else name


def write_rejected(path: Path, rejected: Sequence[Rejected]) -> None:
    """The rejected cells and rows as CSV: line, column, value, reason (the dead letters)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "column", "value", "reason"])
    for r in rejected:
        writer.writerow([r.line, r.column, r.value, r.reason])
    path.write_text(buffer.getvalue(), encoding="utf-8")
