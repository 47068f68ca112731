"""The mill pipeline on the log: crash equivalence of learner state through the worker, the
router's limits checked over the decisions topic, outcomes in the analytics store."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from wearwatch.bus.base import read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import (
    DriftDetected,
    MaintenanceEvent,
    PassActual,
    PassRequest,
    Setpoint,
    TwinTelemetry,
)
from wearwatch.pipelines.mill.flow import mill_flow
from wearwatch.runtime.flow_worker import FlowWorker
from wearwatch.runtime.worker import WorkerOptions
from wearwatch.store.analytics import sink_topics
from wearwatch.store.analytics_duckdb import DuckDBStore
from wearwatch.topics import MILL_DECISIONS, MILL_DRIFT, MILL_OUTCOMES, MILL_PASSES, MILL_TWIN
from wearwatch.twin.mill.publish import publish
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

GROUP = "mill"
DECISIONS_TOPIC = MILL_DECISIONS.name
DRIFT_TOPIC = MILL_DRIFT.name
OUTCOMES_TOPIC = MILL_OUTCOMES.name
PASSES_TOPIC = MILL_PASSES.name
TWIN_TOPIC = MILL_TWIN.name


def _publish(path: Path, scenario: str, passes: int, batch: int = 200) -> SqliteLog:
    log = SqliteLog(path)
    twin = MillTwin(
        MillTwinConfig(
            seed=3,
            scenario=scenario,
            planned_passes=passes,
            loss_share=0.02,
            duplicate_share=0.02,
            late_share=0.01,
        )
    )
    publish(log, twin.events(max_passes=passes), batch=batch)
    return log


def _run(path: Path) -> dict[str, int]:
    """Both stages of the mill flow, as ``wearwatch worker mill`` runs them."""
    options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0)
    runner = FlowWorker(lambda: SqliteLog(path), mill_flow(), GROUP, options)
    return dict(runner.run(install_signals=False))


def _decisions(log: SqliteLog) -> list[tuple[str, bytes]]:
    return sorted((r.rid, r.value) for r in read_all(log, DECISIONS_TOPIC))


def test_the_twin_keys_passes_by_slab_on_the_one_partition_topics_declares(
    tmp_path: Path,
) -> None:
    log = _publish(tmp_path / "log.db", "none", 60, batch=5)
    assert log.partitions(PASSES_TOPIC) == MILL_PASSES.partitions == 1
    records = read_all(log, PASSES_TOPIC)
    slabs = set()
    for r in records:
        batch = msgspec.json.decode(r.value, type=list[PassRequest | PassActual])
        assert r.key == batch[0].slab_id.encode()  # a batch record is keyed by its first event
        slabs.update(e.slab_id for e in batch)
    assert len(records) > 1 and len(slabs) == 10  # 60 passes of 5-7 passes per slab


def test_a_mill_worker_refuses_a_passes_topic_with_several_partitions(tmp_path: Path) -> None:
    """Across partitions the order of lines would depend on timing: refused, in one line."""
    SqliteLog(tmp_path / "log.db").create_topic(PASSES_TOPIC, 4)
    with pytest.raises(ValueError) as error:
        _run(tmp_path / "log.db")
    assert str(error.value) == (
        "topic 'mill.passes' has 4 partitions: flow 'mill' needs 1 (recreate the topic)"
    )


@pytest.mark.parametrize("scenario", ["none", "gradual", "abrupt"])
def test_router_never_serves_outside_its_limits_and_explains_every_fallback(
    tmp_path: Path, scenario: str
) -> None:
    log = _publish(tmp_path / "log.db", scenario, 900)
    counters = _run(tmp_path / "log.db")
    requests = {
        (e.slab_id, e.pass_no): e
        for r in read_all(log, PASSES_TOPIC)
        for e in msgspec.json.decode(r.value, type=list[PassRequest | PassActual])
        if isinstance(e, PassRequest)
    }
    decisions = [
        msgspec.json.decode(r.value, type=Setpoint) for r in read_all(log, DECISIONS_TOPIC)
    ]
    assert len(decisions) == len(requests) == 900
    sources = {d.source for d in decisions}
    assert "model" in sources and "physics" in sources
    for d in decisions:
        rating = requests[(d.slab_id, d.pass_no)].rating_force_kn
        assert 0.8 * d.baseline_force_kn - 1e-6 <= d.served_force_kn
        assert d.served_force_kn <= min(1.25 * d.baseline_force_kn, rating) + 1e-6
        if d.source != "model":
            assert d.reason and d.reason != "model", d
    assert counters["duplicates"] > 0 and counters["orphans"] > 0
    drifts = [msgspec.json.decode(r.value, type=DriftDetected) for r in read_all(log, DRIFT_TOPIC)]
    assert counters.get("drifts", 0) == len(drifts)
    if scenario == "abrupt":
        truth = [
            e
            for r in read_all(log, TWIN_TOPIC)
            for e in msgspec.json.decode(r.value, type=list[MaintenanceEvent | TwinTelemetry])
        ]
        (shock,) = [
            e.ts for e in truth if isinstance(e, MaintenanceEvent) and e.kind == "fault_onset"
        ]
        assert any(d.learner == "rls" and d.ts >= shock for d in drifts)  # recorded as events
    store = DuckDBStore(tmp_path / "a.duckdb")
    sink_topics(log, store, [OUTCOMES_TOPIC], "sink")
    assert store.count("pass_outcomes") == counters["joined"]


@pytest.mark.slow
def test_killed_mill_worker_makes_the_same_decisions_as_an_uninterrupted_one(
    tmp_path: Path, kill_at_progress: Callable[..., int], sqlite_committed: Callable[..., int]
) -> None:
    reference = tmp_path / "reference.db"
    log = _publish(reference, "abrupt", 1500, batch=4)
    log.close()
    crashed = tmp_path / "crashed.db"
    shutil.copy(reference, crashed)
    log = SqliteLog(reference)
    _run(reference)
    expected = _decisions(log)
    expected_outcomes = sorted((r.rid, r.value) for r in read_all(log, OUTCOMES_TOPIC))
    total = sum(log.end_offsets(PASSES_TOPIC).values())
    log.close()

    env = dict(
        os.environ,
        WEARWATCH_CHECKPOINT_INTERVAL_S="0.02",
        WEARWATCH_POLL_MAX_RECORDS="2",
        WEARWATCH_LEASE_S="1",  # a restart waits for the killed worker's lease to expire
    )
    cmd = [
        sys.executable,
        "-m",
        "wearwatch",
        "worker",
        "mill",
        "--group",
        GROUP,
        "--bus",
        f"sqlite:///{crashed}",
        "--exit-when-idle",
        "--quiet",
    ]
    targets = [random.Random(9).uniform(0.05, 0.9) * total for _ in range(5)]
    kills = kill_at_progress(cmd, env, lambda: sqlite_committed(crashed, GROUP), targets)
    assert kills >= 3
    assert subprocess.run(cmd, env=env, timeout=300).returncode == 0

    log = SqliteLog(crashed)
    assert _decisions(log) == expected
    assert sorted((r.rid, r.value) for r in read_all(log, OUTCOMES_TOPIC)) == expected_outcomes
