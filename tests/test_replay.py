"""Historian replay: reading exports (delimiters, time columns, layouts, overrides, bad rows,
Parquet), the detection metrics against brute force, a labelled replay end to end, C-MAPSS."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearwatch.ingest.detection import (
    LabelledEvent,
    alarm_active,
    detect_events,
    labelled_events,
    point_metrics,
    window_actual,
)
from wearwatch.ingest.historian import HistorianError, Rejected, read_historian

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _write(path: Path, rows: list[list[object]], delimiter: str = ",") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue())
    return path


def _triples(h) -> list[tuple[str, str, str, float]]:
    r = h.readings
    return list(
        zip(
            (t.isoformat() for t in r["ts"]),
            r["machine_id"],
            r["sensor"],
            r["value"].tolist(),
            strict=True,
        )
    )


# --- reading exports --------------------------------------------------------------------------

WIDE = [
    ["timestamp", "vibration", "bearing_temp"],
    ["2026-03-01 00:00:00", "1.5", "60"],
    ["2026-03-01 00:00:01", "1.75", "61.5"],
]
WIDE_READINGS = [
    ("2026-03-01T00:00:00+00:00", "pump-1", "vibration", 1.5),
    ("2026-03-01T00:00:00+00:00", "pump-1", "bearing_temp", 60.0),
    ("2026-03-01T00:00:01+00:00", "pump-1", "vibration", 1.75),
    ("2026-03-01T00:00:01+00:00", "pump-1", "bearing_temp", 61.5),
]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_every_delimiter_is_detected_and_gives_the_same_readings(tmp_path, delimiter):
    h = read_historian(_write(tmp_path / "pump-1.csv", WIDE, delimiter))
    assert (h.delimiter, h.layout, h.time_col, h.machine_col) == (
        delimiter,
        "wide",
        "timestamp",
        None,
    )
    assert _triples(h) == WIDE_READINGS
    assert h.rejected == [] and h.rows == 2


@pytest.mark.parametrize(
    ("header", "cells", "expected"),
    [
        ("Time", ["2026-03-01T00:00:00Z", "2026-03-01T00:00:01Z"], "Time"),
        ("ts", ["1772323200", "1772323201"], "ts"),  # epoch seconds
        ("Timestamp (UTC)", ["1772323200000", "1772323201000"], "Timestamp (UTC)"),  # epoch ms
        ("DATE", ["01.03.2026 00:00:00", "01.03.2026 00:00:01"], "DATE"),  # day first
        ("when", ["2026-03-01 00:00:00", "2026-03-01 00:00:01"], "when"),  # parses, unnamed
    ],
)
def test_time_column_by_name_or_by_content(tmp_path, header, cells, expected):
    rows = [["vibration", header], ["1.5", cells[0]], ["1.75", cells[1]]]
    h = read_historian(_write(tmp_path / "pump-1.csv", rows))
    assert h.time_col == expected
    assert [t.isoformat() for t in h.readings["ts"]] == [
        "2026-03-01T00:00:00+00:00",
        "2026-03-01T00:00:01+00:00",
    ]
    assert h.sensors == ["vibration"]


def test_semicolon_export_with_decimal_commas(tmp_path):
    rows = [["Zeit", "Vibration"], ["2026-03-01 00:00:00", "1,5"], ["2026-03-01 00:00:01", "2,25"]]
    h = read_historian(_write(tmp_path / "p.csv", rows, ";"))
    assert (h.delimiter, h.decimal) == (";", ",")
    assert h.readings["value"].tolist() == [1.5, 2.25]


def test_long_layout_with_machine_column_and_ignored_columns(tmp_path):
    rows = [
        ["asset_id", "time", "tag", "value", "unit"],
        ["fan-2", "2026-03-01 00:00:01", "speed", "1480", "rpm"],
        ["fan-1", "2026-03-01 00:00:00", "speed", "1500", "rpm"],
        ["fan-1", "2026-03-01 00:00:00", "current", "12.5", "A"],
    ]
    h = read_historian(_write(tmp_path / "plant.csv", rows))
    assert (h.layout, h.machine_col, h.time_col) == ("long", "asset_id", "time")
    assert h.ignored == {"unit": "not used by the long layout"}
    assert _triples(h) == [  # sorted by time, file order within an instant
        ("2026-03-01T00:00:00+00:00", "fan-1", "speed", 1500.0),
        ("2026-03-01T00:00:00+00:00", "fan-1", "current", 12.5),
        ("2026-03-01T00:00:01+00:00", "fan-2", "speed", 1480.0),
    ]


def test_overrides_pick_columns_the_rules_would_not(tmp_path):
    rows = [
        ["created", "logged_at", "unit_no", "flag", "vib", "comment", "temp"],
        ["2020-01-01 00:00:00", "2026-03-01 00:00:00", "u1", "1", "1.0", "ok", "50"],
        ["2020-01-01 00:00:00", "2026-03-01 00:00:05", "u2", "0", "2.0", "ok", "51"],
    ]
    path = _write(tmp_path / "x.csv", rows)
    auto = read_historian(path)
    assert auto.time_col == "created"  # the first column holding date-times
    assert auto.ignored == {"logged_at": "not numeric", "unit_no": "not numeric",
                            "comment": "not numeric"}  # fmt: skip
    h = read_historian(
        path,
        time_col="logged_at",
        machine_col="unit_no",
        label_col="flag",
        exclude_cols=["temp", "created"],
    )
    assert (h.time_col, h.machine_col, h.label_col, h.sensors) == (
        "logged_at",
        "unit_no",
        "flag",
        ["vib"],
    )
    assert h.ignored == {"temp": "excluded", "created": "excluded", "comment": "not numeric"}
    assert h.readings[["machine_id", "value", "label"]].values.tolist() == [
        ["u1", 1.0, 1.0],
        ["u2", 2.0, 0.0],
    ]
    with pytest.raises(HistorianError, match=r"x\.csv: --time-col 'nope': no such column"):
        read_historian(path, time_col="nope")
    with pytest.raises(HistorianError, match=r"--time-col 'comment': values such as 'ok'"):
        read_historian(path, time_col="comment")


def test_bad_rows_are_reported_with_line_numbers_and_reasons(tmp_path):
    text = (
        "time,vib,temp\n"  # line 1
        "2026-03-01 00:00:00,1.0,50\n"  # 2
        "\n"  # 3: blank, not data
        "2026-03-01 00:00:01,1.1,50,extra\n"  # 4: ragged
        "yesterday,1.2,50\n"  # 5: time does not parse
        "2026-03-01 00:00:03,n/a,51\n"  # 6: missing marker, not an error
        "2026-03-01 00:00:04,Bad Input,52\n"  # 7: a historian's status text
        "2026-03-01 00:00:05,inf,53\n"  # 8
        ",1.3,54\n"  # 9: no time
        "2026-03-01 00:00:06,1.4,55\n"  # 10
    )
    path = tmp_path / "p.csv"
    path.write_text(text)
    h = read_historian(path)
    assert h.rejected == [
        Rejected(4, "", "2026-03-01 00:00:01,1.1,50,extra", "4 fields, the header has 3"),
        Rejected(5, "time", "yesterday", "not a time"),
        Rejected(7, "vib", "Bad Input", "not a number"),
        Rejected(8, "vib", "inf", "not finite"),
        Rejected(9, "time", "", "no time"),
    ]
    assert h.missing == 1
    assert h.readings[["line", "sensor", "value"]].values.tolist() == [
        [2, "vib", 1.0],
        [2, "temp", 50.0],
        [6, "temp", 51.0],
        [7, "temp", 52.0],
        [8, "temp", 53.0],
        [10, "vib", 1.4],
        [10, "temp", 55.0],
    ]


def test_local_times_with_a_zone_and_dst_gaps(tmp_path):
    rows = [
        ["time", "vib"],
        ["2026-03-29 01:30:00", "1"],
        ["2026-03-29 02:30:00", "2"],  # does not exist in Berlin (clocks jump 02:00 → 03:00)
        ["2026-03-29 03:30:00", "3"],
    ]
    h = read_historian(_write(tmp_path / "p.csv", rows), tz="Europe/Berlin")
    assert [t.isoformat() for t in h.readings["ts"]] == [
        "2026-03-29T00:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
    ]
    assert h.rejected == [
        Rejected(
            3, "time", "2026-03-29 02:30:00", "no such local time in Europe/Berlin (DST change)"
        )
    ]


def test_parquet_wide_and_long(tmp_path):
    ts = pa.array([T0, T0 + timedelta(seconds=1)], pa.timestamp("ms", "UTC"))
    wide = pa.table({"ts": ts, "vib": [1.0, None], "temp": [50, 51], "label": [False, True]})
    pq.write_table(wide, tmp_path / "m1.parquet")
    h = read_historian(tmp_path / "m1.parquet")
    assert (h.delimiter, h.layout, h.label_col, h.missing) == (None, "wide", "label", 1)
    assert h.readings[["machine_id", "sensor", "value", "label", "line"]].values.tolist() == [
        ["m1", "vib", 1.0, 0.0, 1],
        ["m1", "temp", 50.0, 0.0, 1],
        ["m1", "temp", 51.0, 1.0, 2],
    ]
    long = pa.table(
        {
            "machine": ["a", "b"],
            "timestamp": ["2026-03-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00"],
            "sensor": ["vib", "vib"],
            "value": [1.0, 2.0],
        }
    )
    pq.write_table(long, tmp_path / "long.parquet")
    h = read_historian(tmp_path / "long.parquet")
    assert h.layout == "long"
    assert _triples(h) == [
        ("2026-02-28T23:00:00+00:00", "a", "vib", 1.0),
        ("2026-02-28T23:00:00+00:00", "b", "vib", 2.0),
    ]


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(HistorianError, match=r"nothing\.csv: no such file"):
        read_historian(tmp_path / "nothing.csv")
    (tmp_path / "one.csv").write_text("value\n1\n2\n")
    with pytest.raises(HistorianError, match=r"one\.csv: cannot tell the delimiter"):
        read_historian(tmp_path / "one.csv")
    (tmp_path / "notime.csv").write_text("a,b\n1,2\n")
    with pytest.raises(HistorianError, match=r"notime\.csv: no time column"):
        read_historian(tmp_path / "notime.csv")
    (tmp_path / "text.csv").write_text("time,comment\n2026-03-01,ok\n")
    with pytest.raises(HistorianError, match=r"text\.csv: no sensor columns.*comment: not numeric"):
        read_historian(tmp_path / "text.csv")


TIME_FORMATS = {
    "iso": lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),
    "iso_t_z": lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "epoch_s": lambda t: str(int(t.timestamp())),
    "epoch_ms": lambda t: str(int(t.timestamp() * 1000)),
    "day_first": lambda t: t.strftime("%d.%m.%Y %H:%M:%S"),
}


@st.composite
def exports(draw):
    """A wide or long export with its expected readings (brute force: row by row)."""
    n_sensors = draw(st.integers(1, 4))
    sensors = [f"s{k}" for k in range(n_sensors)]
    machines = draw(st.sampled_from([None, ["m1"], ["m1", "m2"]]))
    long = draw(st.booleans())
    rows = draw(st.integers(1, 12))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    decimal = "," if delimiter != "," and draw(st.booleans()) else "."
    fmt = draw(st.sampled_from(sorted(TIME_FORMATS)))
    value = st.integers(-10_000, 10_000).map(lambda v: v / 4)
    records = []  # (row, ts, machine, sensor, value)
    for i in range(rows):
        t = T0 + timedelta(seconds=draw(st.integers(0, 3600)))
        machine = None if machines is None else draw(st.sampled_from(machines))
        chosen = [s for s in sensors if draw(st.booleans())] if long else sensors
        for s in chosen:
            records.append((i, t, machine, s, draw(value)))
    if long and not records:
        records.append((0, T0, None if machines is None else machines[0], sensors[0], 1.0))
    columns = ["time"] + ([] if machines is None else ["machine"])
    columns += ["sensor", "value"] if long else sensors
    order = draw(st.permutations(columns))

    def number(v: float) -> str:
        return repr(v).replace(".", decimal)

    stem = "export"
    if long:  # one line per record; expected in time order, file order within an instant
        table = [
            {"time": TIME_FORMATS[fmt](t), "machine": m, "sensor": s, "value": number(v)}
            for _, t, m, s, v in records
        ]
        keyed = [(t, k, m or stem, s, v) for k, (_, t, m, s, v) in enumerate(records)]
    else:  # one line per row; within a row, sensors in header order
        rows: dict[int, dict[str, object]] = {}
        for i, t, m, s, v in records:
            rows.setdefault(i, {"time": TIME_FORMATS[fmt](t), "machine": m, "_t": t})[s] = v
        table = []
        keyed = []
        for k, i in enumerate(sorted(rows)):
            row = rows[i]
            table.append({c: (number(v) if c in sensors else v) for c, v in row.items()})
            for s in sorted(sensors, key=order.index):
                keyed.append((row["_t"], k, row["machine"] or stem, s, row[s]))
    lines = [[row[c] for c in order] for row in table]
    expected = [(t, m, s, v) for t, _, m, s, v in sorted(keyed, key=lambda e: (e[0], e[1]))]
    return list(order), lines, delimiter, decimal, long, machines, expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(export=exports())
def test_generated_exports_read_back_exactly(tmp_path, export):
    header, lines, delimiter, decimal, long, machines, expected = export
    path = _write(tmp_path / "export.csv", [header, *lines], delimiter)
    h = read_historian(path)
    assert (h.delimiter, h.decimal) == (delimiter, decimal)
    assert h.layout == ("long" if long else "wide")
    assert h.time_col == "time"
    assert h.machine_col == (None if machines is None else "machine")
    assert h.rejected == []
    frame = h.readings[["ts", "machine_id", "sensor", "value"]]
    got = [(t.to_pydatetime(), m, s, v) for t, m, s, v in frame.itertuples(index=False)]
    assert got == expected


# --- detection metrics against brute force ------------------------------------------------------


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=50))
def test_point_metrics_equal_a_recount(pairs):
    predicted = np.array([p for p, _ in pairs], dtype=bool)
    actual = np.array([a for _, a in pairs], dtype=bool)
    m = point_metrics(predicted, actual)
    tp = sum(p and a for p, a in pairs)
    fp = sum(p and not a for p, a in pairs)
    tn = sum(not p and not a for p, a in pairs)
    fn = sum(not p and a for p, a in pairs)
    assert (m.tp, m.fp, m.tn, m.fn) == (tp, fp, tn, fn)
    assert m.precision == (tp / (tp + fp) if tp + fp else None)
    assert m.recall == (tp / (tp + fn) if tp + fn else None)
    assert m.false_alarm_rate == (fp / (fp + tn) if fp + tn else None)
    assert m.missed_alarm_rate == (fn / (fn + tp) if fn + tp else None)
    f1 = None if not tp + fp + fn else 2 * tp / (2 * tp + fp + fn)
    assert m.f1 == f1


machines_st = st.sampled_from(["a", "b"])


@given(
    windows=st.lists(
        st.tuples(st.integers(1, 40), st.sampled_from([2, 5]), machines_st), max_size=20
    ),
    positives=st.lists(st.tuples(st.integers(0, 40), machines_st), max_size=20),
)
def test_window_actual_equals_a_scan(windows, positives):
    got = window_actual(
        np.array([w[0] for w in windows], dtype=np.int64),
        np.array([w[1] for w in windows], dtype=np.int64),
        np.array([w[2] for w in windows], dtype=object),
        np.array([p[0] for p in positives], dtype=np.int64),
        np.array([p[1] for p in positives], dtype=object),
    )
    want = [any(m == pm and e - w <= t < e for t, pm in positives) for e, w, m in windows]
    assert got.tolist() == want


@given(
    transitions=st.lists(
        st.tuples(
            st.integers(0, 20),
            machines_st,
            st.sampled_from(["machine", "sensor:vib"]),
            st.sampled_from(["active", "recovering", "cleared"]),
        ),
        max_size=25,
    ),
    ends=st.lists(st.tuples(st.integers(0, 22), machines_st), max_size=20),
)
def test_alarm_active_equals_a_replay_of_the_transitions(transitions, ends):
    got = alarm_active(
        np.array([e for e, _ in ends], dtype=np.int64),
        np.array([m for _, m in ends], dtype=object),
        transitions,
    )
    want = []
    for end, machine in ends:
        state: dict[str, str] = {}
        for ts, m, kind, status in sorted(transitions, key=lambda x: x[0]):
            if m == machine and ts <= end:
                state[kind] = status
        want.append(any(s == "active" for s in state.values()))
    assert got.tolist() == want


@given(
    readings=st.lists(st.tuples(st.integers(0, 30), machines_st, st.booleans()), max_size=30),
    windows=st.lists(st.tuples(st.integers(1, 35), machines_st, st.booleans()), max_size=20),
)
def test_events_and_delays_equal_a_scan(readings, windows):
    events = labelled_events(
        np.array([r[0] for r in readings], dtype=np.int64),
        np.array([r[1] for r in readings], dtype=object),
        np.array([r[2] for r in readings], dtype=np.int8),
    )
    want = []
    for machine in sorted({m for _, m, _ in readings}):
        mine = sorted([r for r in readings if r[1] == machine], key=lambda r: r[0])
        run: list[int] = []
        for t, _, positive in [*mine, (None, machine, False)]:
            if positive:
                run.append(t)
            elif run:
                want.append((machine, run[0], run[-1]))
                run = []
    assert [(e.machine_id, e.start_us, e.end_us) for e in events] == want
    width = 5
    detected = detect_events(
        events,
        np.array([w[0] for w in windows], dtype=np.int64),
        np.full(len(windows), width),
        np.array([w[1] for w in windows], dtype=object),
        np.array([w[2] for w in windows], dtype=bool),
    )
    for event, result in zip(events, detected, strict=True):
        hits = [
            e
            for e, m, p in windows
            if p and m == event.machine_id and e > event.start_us and e - width <= event.end_us
        ]
        assert result.detected_us == (min(hits) if hits else None)
        assert result == LabelledEvent(
            event.machine_id, event.start_us, event.end_us, min(hits) if hits else None
        )


# --- C-MAPSS as a fleet -----------------------------------------------------------------------


def _alarm(cycle: int, transition: str, status: str, kind: str = "machine"):
    from wearwatch.events import Alarm, utc
    from wearwatch.ingest.cmapss_fleet import START_US

    t = utc(START_US / 1e6 + cycle)
    return Alarm(
        ts=t,
        alarm_id=f"e/{kind}/1",
        machine_id="e",
        alarm_type=kind,
        severity="medium",
        status=status,
        transition=transition,
        raised_at=t,
    )


@pytest.mark.parametrize(
    ("alarms", "lead", "false_alarms"),
    [
        ([], None, 0),
        # raised in the healthy region, still active at T-125: a false alarm, lead from T-125
        ([(60, "raised", "active")], 125, 1),
        # raised and cleared in the healthy region, raised again 19 cycles before the failure
        (
            [(10, "raised", "active"), (20, "cleared", "cleared"), (181, "reraised", "active")],
            19,
            1,
        ),
        # recovering still counts as open; a sensor alarm neither leads nor escapes counting
        (
            [
                (100, "raised", "active", "sensor:s"),
                (150, "raised", "active"),
                (160, "recovering", "recovering"),
                (175, "cleared", "cleared"),
            ],
            50,
            0,
        ),
        # a span that ended exactly at T-125 does not lead
        ([(70, "raised", "active"), (75, "cleared", "cleared")], None, 1),
    ],
)
def test_engine_outcome_by_hand(alarms, lead, false_alarms):
    from wearwatch.ingest.cmapss_fleet import engine_outcome

    out = engine_outcome("e", 200, [_alarm(*a) for a in alarms])
    assert (out.lead_cycles, out.false_alarms) == (lead, false_alarms)
    assert out.early == (lead is not None and lead >= 20)


def _tiny_cmapss(tmp_path: Path, engines: int, subset: str = "FD001") -> Path:
    """The first ``engines`` engines of a C-MAPSS training set (and two test engines)."""
    from wearwatch.learn.rul.data import default_data_dir

    source = default_data_dir()
    if not (source / f"train_{subset}.txt").is_file():
        pytest.skip("C-MAPSS data not present")
    rows = (source / f"train_{subset}.txt").read_text().splitlines()
    keep = [r for r in rows if int(r.split()[0]) <= engines]
    (tmp_path / f"train_{subset}.txt").write_text("\n".join(keep) + "\n")
    test_rows = (source / f"test_{subset}.txt").read_text().splitlines()
    (tmp_path / f"test_{subset}.txt").write_text(
        "\n".join(r for r in test_rows if int(r.split()[0]) <= 2) + "\n"
    )
    rul = (source / f"RUL_{subset}.txt").read_text().splitlines()[:2]
    (tmp_path / f"RUL_{subset}.txt").write_text("\n".join(rul) + "\n")
    return tmp_path


def test_cmapss_subset_replayed_as_a_fleet(tmp_path):
    from wearwatch.ingest.cmapss_fleet import (
        EARLY_CYCLES,
        engine_id,
        fleet_readings,
        replay_cmapss,
    )

    directory = _tiny_cmapss(tmp_path, engines=8)
    result = replay_cmapss(directory, "FD001", seed=3)
    summary = result.summary()
    train = pd.read_csv(directory / "train_FD001.txt", sep=r"\s+", header=None)
    lengths = train.groupby(0)[1].max()
    assert [e.machine_id for e in result.engines] == [engine_id(u) for u in range(1, 9)]
    assert [e.failure_cycle for e in result.engines] == lengths.tolist()
    assert summary["failures"] == 8
    assert summary["dropped_constant_sensors"] == [
        "sensor_1", "sensor_5", "sensor_6", "sensor_10", "sensor_16", "sensor_18", "sensor_19",
    ]  # fmt: skip
    early = [
        e for e in result.engines if e.lead_cycles is not None and e.lead_cycles >= EARLY_CYCLES
    ]
    assert summary["failures_alarmed_early"] == len(early)
    assert summary["false_alarms"] == sum(e.false_alarms for e in result.engines)
    assert [f["replayed_engines"] for f in summary["folds"]] == [4, 4]
    assert replay_cmapss(directory, "FD001", seed=3).summary() == summary  # deterministic
    # Cycle c of every engine at START + c seconds, engines interleaved in time order.
    frame = fleet_readings(train.rename(columns={0: "unit", 1: "cycle", 6: "s"}), ["s"])
    assert frame["ts"].is_monotonic_increasing


# --- a labelled export replayed end to end ----------------------------------------------------


def _labelled_export(path: Path) -> Path:
    """One pump, 1 Hz for an hour, semicolon-separated with decimal commas and a German header;
    vibration steps up by 2 mm/s (40 σ) for the minute 2700–2759 s, labelled ``Stoerung``."""
    rng = np.random.default_rng(11)
    n = 3600
    t = pd.date_range("2026-03-01", periods=n, freq="1s")
    vibration = 2.0 + 0.05 * rng.standard_normal(n)
    temperature = 60.0 + 0.3 * rng.standard_normal(n)
    label = np.zeros(n, dtype=int)
    vibration[2700:2760] += 2.0
    label[2700:2760] = 1
    frame = pd.DataFrame(
        {
            "Zeitstempel": t.strftime("%d.%m.%Y %H:%M:%S"),
            "Schwingung": vibration.round(4),
            "Lagertemperatur": temperature.round(3),
            "Stoerung": label,
        }
    )
    frame.to_csv(path, sep=";", decimal=",", index=False)
    return path


def test_labelled_semicolon_export_replayed_and_scored_by_hand(tmp_path):
    from wearwatch.ingest.replay import ReplayOptions, replay
    from wearwatch.learn.anomaly.config import AnomalyConfig
    from wearwatch.pipelines.fleet.alarms import AlarmConfig

    path = _labelled_export(tmp_path / "pump-7.csv")
    # The rules only (z-scores of window means against the fitted baseline), so every window's
    # severity follows by hand from the injected step; the learned detectors' thresholds on 60
    # healthy windows are the anomaly model's business (tests/test_anomaly*.py).
    options = ReplayOptions(
        train_fraction=0.5,
        anomaly=AnomalyConfig(pca=False, hst=False),
        alarms=AlarmConfig(quiet_s=60.0),
    )
    result = replay([path], options=options, label_col="Stoerung")
    [item] = result.files
    assert (item.source.delimiter, item.source.decimal, item.source.time_col) == (
        ";",
        ",",
        "Zeitstempel",
    )
    assert item.source.sensors == ["Schwingung", "Lagertemperatur"]
    # Fitted on 0–1800 s (the cut 1799.5 s rounded up to the 30 s grid), replayed from 1800 s.
    assert item.cut_us == (pd.Timestamp("2026-03-01T00:30:00Z").value // 1000)
    # Points: the 5 s windows ending 1805…3590 s (the watermark, 5 s behind the last reading
    # at 3599 s, closes windows whose end + 2 s grace it has passed: the last ends at 3590 s).
    # Actual: the 12 windows ending 2705…2760 hold labelled readings. Predicted: the machine
    # alarm (driven by the 30 s windows) is raised at 2730 s, when [2700, 2730) closes, stays
    # active through [2730, 2760) and turns recovering at 2790 s, when [2760, 2790) is the
    # first quiet window: active at the ends 2730…2785 (12 points). So TP = 2730…2760 (7),
    # FN = 2705…2725 (5), FP = 2765…2785 (5), TN = 358 − 17 = 341.
    m = result.metrics
    assert (m.tp, m.fn, m.fp, m.tn) == (7, 5, 5, 341)
    assert (m.precision, m.recall, m.f1) == (7 / 12, 7 / 12, 14 / 24)
    assert (m.false_alarm_rate, m.missed_alarm_rate) == (5 / 346, 5 / 12)
    assert [(e.start_us, e.delay_s) for e in result.events] == [
        (pd.Timestamp("2026-03-01T00:45:00Z").value // 1000, 30.0)
    ]
    assert item.unscored == 20  # the readings 3590–3599 s of both sensors: never closed
    assert (item.late, item.dead_letters) == (0, [])
    # Outputs next to the input.
    scored = pd.read_csv(tmp_path / "pump-7.scored.csv")
    assert len(scored) == 358 + 59  # plus the 30 s windows ending 1830…3570 s
    assert int(scored["label"].sum()) == 12 + 2  # and the 30 s windows ending 2730 and 2760
    alarms = pd.read_csv(tmp_path / "pump-7.alarms.csv")
    assert alarms[["ts", "transition"]].values.tolist()[0] == [
        "2026-03-01T00:45:30+00:00",
        "raised",
    ]  # alarms follow the 30 s windows: [2700, 2730) is the first to close
    assert alarms["transition"].tolist()[-2:] == ["recovering", "cleared"]
    assert alarms["ts"].tolist()[-2:] == ["2026-03-01T00:46:30+00:00", "2026-03-01T00:47:30+00:00"]
    assert not (tmp_path / "pump-7.rejected.csv").exists()


def _wearwatch(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("wearwatch")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_replay_command_writes_outputs_and_prints_metrics(tmp_path):
    path = _labelled_export(tmp_path / "pump-7.csv")
    done = _wearwatch(
        "replay", str(path), "--label-col", "Stoerung", "--train-fraction", "0.5", "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    [item] = summary["files"]
    assert (item["delimiter"], item["time_col"], item["label_col"]) == (
        ";",
        "Zeitstempel",
        "Stoerung",
    )
    assert item["outputs"] == {
        "scored": str(tmp_path / "pump-7.scored.csv"),
        "alarms": str(tmp_path / "pump-7.alarms.csv"),
    }
    m = summary["metrics"]
    assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == 358
    assert m["tp"] + m["fn"] == 12
    assert summary["events"]["events"] == 1
    failed = _wearwatch("replay", str(path), "--time-col", "nope")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"error: {path}: --time-col 'nope': no such column (columns: Zeitstempel, Schwingung, "
        "Lagertemperatur, Stoerung)"
    ]


def test_cmapss_multi_condition_subset_is_replayed_regime_normalised(tmp_path):
    """FD002's six operating conditions: sensors are replayed as deviations from their
    condition's healthy level, so a healthy engine's values centre on 0 in every condition."""
    from wearwatch.ingest.cmapss_fleet import HEALTHY_RUL, RegimeNormaliser, replay_cmapss
    from wearwatch.learn.rul.data import SENSORS, load_subset

    directory = _tiny_cmapss(tmp_path, engines=10, subset="FD002")
    train = load_subset(directory, "FD002").train
    healthy = train[train["rul"] > HEALTHY_RUL]
    norm = RegimeNormaliser.fit(train, healthy, ["sensor_2", "sensor_7"], regimes=6, seed=0)
    z = norm.apply(healthy)
    per_condition = z.groupby(norm.regimes(healthy))[["sensor_2", "sensor_7"]]
    assert np.allclose(per_condition.mean().to_numpy(), 0.0, atol=1e-9)
    assert np.allclose(per_condition.std(ddof=0).to_numpy(), 1.0, atol=1e-9)
    raw_spread = healthy.groupby(norm.regimes(healthy))["sensor_2"].mean()
    assert raw_spread.max() - raw_spread.min() > 10  # the conditions differ by far more
    summary = replay_cmapss(directory, "FD002", seed=1).summary()
    assert summary["failures"] == 10
    assert summary["sensor_values"] == "normalised per operating condition (6 clusters)"
    assert set(summary["dropped_constant_sensors"]) < set(SENSORS)
