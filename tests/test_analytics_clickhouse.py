"""The analytics store in ClickHouse: the fleet and mill pipelines' outputs land once per record,
equal row for row to DuckDB's, and a replay of the same input leaves the tables unchanged.

The engine is ClickHouse 26.9 embedded through ``chdb`` (``chdb:///path``): the current engine,
the same SQL, ``ReplacingMergeTree`` and ``FINAL`` as a server. Debian's ``clickhouse-server``
(18.16, 2018) installs and starts here in a second but is no faithful stand-in: it has no
``DateTime64`` (ClickHouse 20.1) and no Arrow format, and clickhouse-connect's handshake fails
against it (``Unknown identifier: readonly``). The ``clickhouse://`` transport (HTTP) is tested
against the same engine through :mod:`tests.clickhouse_http`, which serves ClickHouse's HTTP
interface in front of chdb and runs the client's statements and data unchanged. chdb hosts one
data path per process: every test shares one, each in its own database.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickhouse_http import ClickHouseHttp  # tests/ is on sys.path (conftest.py)
from wearwatch import topics
from wearwatch.bus.base import OutRecord, Record, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import pack_columns
from wearwatch.events import (
    Alarm,
    AnomalyScore,
    MachineHealth,
    PassOutcome,
    Reading,
    TwinCommand,
    encode,
    utc,
)
from wearwatch.pipelines.fleet.evaluate import fleet_config
from wearwatch.pipelines.fleet.flow import fleet_pipeline
from wearwatch.pipelines.mill.flow import mill_flow
from wearwatch.runtime.flow_worker import FlowWorker
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.store.analytics import (
    TABLES,
    AnalyticsError,
    open_analytics,
    sink_topics,
)
from wearwatch.store.analytics_clickhouse import ClickHouseStore
from wearwatch.twin.fleet.simulation import FleetTwin
from wearwatch.twin.mill.publish import publish
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

OUTPUTS = {  # topic → the table its records fill
    topics.MILL_OUTCOMES.name: "pass_outcomes",
    topics.SCORES.name: "anomaly_scores",
    topics.HEALTH.name: "machine_health",
    topics.ALARMS.name: "alarms",
}
OPTIONS = WorkerOptions(
    watermark_delay_s=1.0, poll_timeout_s=0.0, exit_when_idle=True, checkpoint_key="test"
)
_databases = itertools.count()


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The process's chdb data path, its engine kept up for the module by one open connection
    (the engine starts, ~0.1 s, whenever the first connection opens)."""
    import chdb

    path = Path(os.path.realpath(tmp_path_factory.mktemp("chdb")))
    anchor = chdb.connect(str(path))
    yield path
    anchor.close()


def _clickhouse(chdb_dir: Path) -> ClickHouseStore:
    """A store in a database of its own (chdb: one data path per process)."""
    store = open_analytics(f"chdb:///{chdb_dir}?database=t{next(_databases)}")
    assert isinstance(store, ClickHouseStore)
    return store


@pytest.fixture(scope="module")
def http_server(chdb_dir: Path) -> Iterator[Any]:
    server = ClickHouseHttp(str(chdb_dir))
    yield server
    server.close()


@pytest.fixture(scope="module")
def scratch(chdb_dir: Path) -> Iterator[ClickHouseStore]:
    """One store for the examples of a property test (emptied by each)."""
    store = _clickhouse(chdb_dir)
    yield store
    store.close()


@pytest.fixture(scope="module")
def plant_log(tmp_path_factory: pytest.TempPathFactory) -> SqliteLog:
    """A log with the outputs of both pipelines: 4 machines for 4 minutes at 1 Hz (a bearing
    failing within minutes, a stuck sensor), untrained fleet flow (rules on the plant's hard
    limits); 60 mill passes through the mill flow."""
    path = tmp_path_factory.mktemp("plant") / "log.db"
    log = SqliteLog(path)
    log.create_topic(topics.READINGS.name, 2)
    twin = FleetTwin(fleet_config(1.0), 4, 5)
    first, second = (str(m) for m in twin.machine_ids[:2])
    for command, args in (
        ("inject_fault", {"machine": first, "mode": "bearing_wear", "pf_h": 2 / 60}),
        ("inject_sensor_fault", {"machine": second, "sensor": "bearing_temp", "kind": "stuck"}),
    ):
        twin.apply(TwinCommand(ts=utc(twin.now_s), command=command, args=args))
    cols, _ = twin.step(240)
    log.produce(pack_columns(topics.READINGS.name, cols, "machine_id", 2, 200))
    flow = fleet_pipeline(None, None, None, (5.0, 30.0), 2.0, limits=twin.hard_limits())
    [stage] = flow.compile(2)
    Worker(log, stage, "fleet", OPTIONS).run(install_signals=False)
    mill = MillTwin(MillTwinConfig(seed=3, scenario="none", planned_passes=60))
    publish(log, mill.events(max_passes=60))
    FlowWorker(lambda: SqliteLog(path), mill_flow(), "mill", OPTIONS).run(install_signals=False)
    return log


def _rows(store: object, table: str) -> list[tuple]:
    return store.query(f"SELECT * FROM {table} ORDER BY rid")  # type: ignore[attr-defined]


def _raw_count(store: ClickHouseStore, table: str) -> int:
    """Rows as stored, before merges collapse duplicates (no FINAL)."""
    return store.client.query(f"SELECT count() FROM {table}").result_rows[0][0]


def test_pipeline_outputs_land_once_per_record_equal_to_duckdb_and_survive_a_replay(
    plant_log: SqliteLog, chdb_dir: Path, tmp_path: Path
) -> None:
    records = {t: len(read_all(plant_log, t)) for t in OUTPUTS}
    assert records == {
        "mill.outcomes": 60,
        "fleet.scores": 32,
        "fleet.health": 32,
        "fleet.alarms": 2,
    }
    total = sum(records.values())
    clickhouse = _clickhouse(chdb_dir)
    duck = open_analytics(f"duckdb:///{tmp_path / 'a.duckdb'}")
    assert sink_topics(plant_log, clickhouse, list(OUTPUTS), "ch") == total
    assert sink_topics(plant_log, duck, list(OUTPUTS), "duck") == total
    counts = {table: clickhouse.count(table) for table in OUTPUTS.values()}
    assert counts == {OUTPUTS[t]: n for t, n in records.items()}
    assert counts == {table: duck.count(table) for table in OUTPUTS.values()}
    assert clickhouse.count("events") == duck.count("events") == total
    # Row for row the same values (times, floats, JSON text, nulls) from one declaration.
    before = {t.name: _rows(clickhouse, t.name) for t in TABLES}
    assert before == {t.name: _rows(duck, t.name) for t in TABLES}
    # The demo's summary is plain SQL both backends run alike.
    from wearwatch.cli.demo import SUMMARY_SQL

    summary = clickhouse.query(SUMMARY_SQL)
    assert len(summary) == 8 and summary == duck.query(SUMMARY_SQL)

    # A replay: a fresh group reads every record again. Merges are held, so the duplicates
    # really are in the tables; FINAL reads one row per record all the same.
    for t in TABLES:
        clickhouse.client.command(f"SYSTEM STOP MERGES {t.name}")
    assert sink_topics(plant_log, clickhouse, list(OUTPUTS), "replay") == 0
    assert {t: _raw_count(clickhouse, t) for t in OUTPUTS.values()} == {
        t: 2 * n for t, n in counts.items()
    }
    assert {t: clickhouse.count(t) for t in OUTPUTS.values()} == counts
    assert {t.name: _rows(clickhouse, t.name) for t in TABLES} == before
    # Merged for good, the tables hold one row per record with no FINAL needed.
    for t in TABLES:
        clickhouse.client.command(f"SYSTEM START MERGES {t.name}")
        clickhouse.client.command(f"OPTIMIZE TABLE {t.name} FINAL")
    assert {t: _raw_count(clickhouse, t) for t in OUTPUTS.values()} == counts
    assert {t.name: _rows(clickhouse, t.name) for t in TABLES} == before
    clickhouse.close()
    duck.close()


def test_the_http_transport_writes_in_bulk_reads_with_final_and_replays_to_the_same_rows(
    plant_log: SqliteLog, http_server: Any, tmp_path: Path
) -> None:
    """``clickhouse://`` over HTTP: one Arrow insert per table for a batch of records, rows
    equal to DuckDB's, and a replay (merges held) that changes no count and no row."""
    records = [r for topic in OUTPUTS for r in read_all(plant_log, topic)]
    store = open_analytics(f"clickhouse://default@127.0.0.1:{http_server.port}/over_http")
    assert isinstance(store, ClickHouseStore)
    duck = open_analytics(f"duckdb:///{tmp_path / 'a.duckdb'}")
    assert duck.write_records(records) == len(records) == 126
    http_server.statements.clear()
    assert store.write_records(records) == 126
    inserts = [s.split()[2] for s in http_server.statements if s.startswith("INSERT")]
    assert inserts == [
        f"`over_http`.`{t}`"
        for t in ("pass_outcomes", "anomaly_scores", "machine_health", "alarms", "events")
    ]
    assert all(s.endswith("FORMAT Arrow") for s in http_server.statements if "INSERT" in s)
    rows = {t.name: _rows(store, t.name) for t in TABLES}
    assert rows == {t.name: _rows(duck, t.name) for t in TABLES}
    for t in TABLES:
        store.client.command(f"SYSTEM STOP MERGES {t.name}")
    assert store.write_records(records) == 0
    assert _raw_count(store, "events") == 2 * 126
    assert [store.count(t.name) for t in TABLES] == [126, 60, 32, 32, 2]
    assert {t.name: _rows(store, t.name) for t in TABLES} == rows  # the final setting travels
    store.close()
    duck.close()


def test_a_reopened_store_keeps_its_rows_and_ignores_a_replay(chdb_dir: Path) -> None:
    """A second store on the same database finds the tables and rows of the first, and counts
    nothing of a replay as new."""
    url = f"chdb:///{chdb_dir}?database=reopen"
    batch = [_record(i, kind) for i, kind in enumerate(_KINDS)]
    first = open_analytics(url)
    assert first.write_records(batch) == len(_KINDS)
    first.close()
    second = open_analytics(url)
    assert second.write_records(batch) == 0
    assert [second.count(t.name) for t in TABLES] == [5, 1, 1, 1, 1]
    second.close()


_KINDS = ("score", "health", "alarm", "outcome", "reading")


def _record(i: int, kind: str) -> Record:
    """Record ``i`` of ``kind``: the same ``i`` always gives the same rid and bytes."""
    ts = utc(1_000.0 + i)
    event = {
        "score": AnomalyScore(
            ts=ts, machine_id=f"m{i % 3}", window_s=30.0, severity="high", score=0.9,
            category="machine", reason="vibration.mean", model_version="anomaly@v0001",
        ),
        "health": MachineHealth(
            ts=ts, machine_id=f"m{i % 3}", risk=0.5, risk_level="medium", health=50.0,
            time_to_maintenance_h=None if i % 2 else 12.5, explanation={"risk": 0.5},
        ),
        "alarm": Alarm(
            ts=ts, alarm_id=f"m{i % 3}/machine/{i}", machine_id=f"m{i % 3}",
            alarm_type="machine", severity="high", status="active", transition="raised",
            raised_at=ts, ack_at=None if i % 2 else ts,
        ),
        "outcome": PassOutcome(
            ts=ts, slab_id=f"S{i}", pass_no=1 + i % 5, line="structural",
            actual_force_kn=2e4 + i, baseline_force_kn=2e4, served_force_kn=2e4,
            physics_ape=1.0, served_ape=0.5, model_ape={"amrules": 0.25},
        ),
    }.get(kind)  # fmt: skip
    if event is None:
        event = Reading(ts=ts, machine_id=f"m{i % 3}", sensor="vibration", value=float(i))
    value = encode(event)
    return Record(f"topic.{kind}", i % 2, i, kind.encode(), value, 0, f"{kind}/{i}")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 11), st.sampled_from(_KINDS)), max_size=12),
        min_size=1,
        max_size=5,
    ),
    merge_after=st.sets(st.integers(0, 4)),
)
def test_any_interleaving_of_duplicate_batches_leaves_exactly_the_distinct_rids(
    scratch: ClickHouseStore, batches: list[list[tuple[int, str]]], merge_after: set[int]
) -> None:
    """Batches repeating records in any order (replays, producer retries, overlapping
    consumers), with merges between some of them: one row per distinct rid in every table,
    and each record counted new exactly once."""
    store = scratch
    for t in TABLES:
        store.client.command(f"TRUNCATE TABLE {t.name}")
    new = 0
    for n, batch in enumerate(batches):
        new += store.write_records([_record(i, kind) for i, kind in batch])
        if n in merge_after:
            for t in TABLES:
                store.client.command(f"OPTIMIZE TABLE {t.name} FINAL")
    distinct = {(i, kind) for batch in batches for i, kind in batch}
    assert new == len(distinct)
    assert [r[0] for r in store.query("SELECT rid FROM events ORDER BY rid")] == sorted(
        f"{kind}/{i}" for i, kind in distinct
    )
    tables = {"score": "anomaly_scores", "health": "machine_health", "alarm": "alarms"}
    for kind, table in (tables | {"outcome": "pass_outcomes"}).items():
        assert store.count(table) == sum(1 for _, k in distinct if k == kind), kind


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("clickhouse://", "no host"),
        ("clickhouse://ana:pw@ch.plant:http/plant", "the port is not a number"),
        ("clickhouse://ana:pw@ch.plant:8123/plant-db", "not a plain identifier"),
        ("clickhouse://ch.plant:8123/plant?compress=1", "unknown option 'compress'"),
        ("chdb:///", "no path"),
        ("chdb:///var/ch?database=1x", "not a plain identifier"),
        ("duckdb:///", "no path"),
        ("mysql://ana:pw@db/plant", "expected duckdb:///path.duckdb"),
    ],
)
def test_bad_urls_are_refused_naming_the_url_without_its_password(url: str, why: str) -> None:
    with pytest.raises(ValueError) as error:
        open_analytics(url)
    message = str(error.value)
    assert message.startswith(f"analytics={url.replace(':pw@', ':***@')!r}: "), message
    assert why in message and ":pw@" not in message


def test_an_unreachable_server_is_an_error_naming_the_url_without_its_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"clickhouse://ana:s3cret@127.0.0.1:{sock.getsockname()[1]}/plant"
        with pytest.raises(AnalyticsError) as error:
            open_analytics(url)
    message = str(error.value)
    assert message.startswith(f"analytics {url.replace(':s3cret@', ':***@')}: cannot connect: ")
    assert "s3cret" not in message


def test_a_value_that_does_not_fit_its_column_names_table_column_and_value(
    chdb_dir: Path,
) -> None:
    """Rows are built once for both backends: a record whose field has the wrong type is
    refused before either is touched, naming what to fix."""
    store = _clickhouse(chdb_dir)
    good = _record(1, "outcome")
    bad = Record(
        "mill.outcomes", 0, 2, b"S", good.value.replace(b'"pass_no":2', b'"pass_no":"two"'), 0,
        "outcome/2",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"table pass_outcomes column pass_no: 'two' is not"):
        store.write_records([good, bad])
    assert store.count("events") == 0  # nothing of the batch was written
    store.close()


def test_the_sink_command_fills_clickhouse_from_the_setting_and_a_replay_adds_nothing(
    plant_log: SqliteLog, chdb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from wearwatch.cli import app
    from wearwatch.config import get_settings

    url = f"chdb:///{chdb_dir}?database=cli"
    monkeypatch.setenv("WEARWATCH_ANALYTICS", url)
    monkeypatch.setenv("WEARWATCH_BUS", plant_log.url)
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(app, ["sink", "analytics"])
        again = CliRunner().invoke(app, ["sink", "analytics", "--group", "again"])
        scores = CliRunner().invoke(
            app, ["sink", "analytics", "--topics", "fleet.scores,nope", "--group", "x"]
        )
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    topics_ = "mill.outcomes, fleet.scores, fleet.health, fleet.alarms"
    rows = "rows: events 126, pass_outcomes 60, anomaly_scores 32, machine_health 32, alarms 2"
    assert first.output.splitlines() == [f"analytics: 126 new records from {topics_} → {url}", rows]
    assert again.exit_code == 0, again.output
    assert again.output.splitlines() == [f"analytics: 0 new records from {topics_} → {url}", rows]
    assert scores.exit_code == 2
    assert "--topics 'nope': not on sqlite:///" in scores.output


def test_following_sinks_records_as_they_arrive_until_stopped(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic("fleet.scores", 2)
    store = open_analytics(f"duckdb:///{tmp_path / 'a.duckdb'}")
    stop = threading.Event()
    written: list[int] = []
    thread = threading.Thread(
        target=lambda: written.append(sink_topics(log, store, ["fleet.scores"], "f", stop=stop))
    )
    thread.start()
    reader = store.conn.cursor()  # type: ignore[attr-defined]  # DuckDB: a cursor per thread

    def stored() -> int:
        return reader.execute("SELECT count(*) FROM anomaly_scores").fetchall()[0][0]

    for part in range(3):  # appended while the sink runs, after it has caught up
        batch = [_record(10 * part + i, "score") for i in range(4)]
        log.produce(OutRecord("fleet.scores", r.key, r.value, r.rid) for r in batch)
        deadline = time.monotonic() + 30
        while stored() < 4 * (part + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored() == 4 * (part + 1)
        assert thread.is_alive()
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and written == [12]
    store.close()
    log.close()
