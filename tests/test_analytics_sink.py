"""The idempotent sink: replays (at-least-once delivery) leave exactly one row per output."""

from __future__ import annotations

from pathlib import Path

from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import PassOutcome, Reading, encode, utc
from wearwatch.store.analytics import sink_topics
from wearwatch.store.analytics_duckdb import DuckDBStore


def _outcome(i: int) -> PassOutcome:
    return PassOutcome(
        ts=utc(1000.0 + i),
        slab_id=f"S-{i // 5}",
        pass_no=i % 5 + 1,
        line="structural",
        actual_force_kn=20000.0 + i,
        baseline_force_kn=19500.0,
        served_force_kn=19900.0,
        source="model",
        physics_ape=2.5,
        served_ape=0.5,
        model_ape={"amrules": 0.7},
        router_state="serving",
    )


def test_replayed_records_are_written_once(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic("mill.outcomes", 2)
    log.create_topic("fleet.readings", 2)
    log.produce(
        OutRecord("mill.outcomes", b"S", encode(_outcome(i)), f"w/0/{i}/0") for i in range(50)
    )
    log.produce(
        [
            OutRecord(
                "fleet.readings",
                b"m",
                encode(Reading(ts=utc(5.0), machine_id="m", sensor="s", value=1.0)),
                "r/1",
            )
        ]
    )
    store = DuckDBStore(tmp_path / "a.duckdb")
    assert sink_topics(log, store, ["mill.outcomes", "fleet.readings"], "sink") == 51
    # A replay of everything (as after a crash before the commit) adds nothing.
    assert store.write_records(read_all(log, "mill.outcomes")) == 0
    # A producer that retried after a timeout appends the same outputs again: still once.
    log.produce(
        OutRecord("mill.outcomes", b"S", encode(_outcome(i)), f"w/0/{i}/0") for i in range(10, 20)
    )
    assert sink_topics(log, store, ["mill.outcomes"], "sink") == 0
    assert store.count("pass_outcomes") == 50
    rows = store.query(
        "SELECT slab_id, pass_no, physics_ape, CAST(model_ape->>'amrules' AS DOUBLE)"
        " FROM pass_outcomes ORDER BY ts LIMIT 1"
    )
    assert rows == [("S-0", 1, 2.5, 0.7)]
