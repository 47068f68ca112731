"""Checkpoints are authenticated before anything is unpickled, and bound to their place.

An attacker who can write the checkpoints (the embedded log's file, or the Kafka
``<group>.checkpoints`` topic with producer rights) but has no key forges a snapshot whose pickle
would create a file, tampers with a valid one, or moves a valid one to another partition or from
another group. Each is refused without unpickling (the file is never created); the worker falls
back to the previous valid snapshot and ends with exactly the outputs of an uninterrupted run,
or, when no snapshot verifies, stops with one line.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wearwatch.bus.base import Log, OutRecord, pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.checkpoint import (
    CheckpointKeyError,
    CheckpointSeal,
    CorruptCheckpoint,
    KafkaCheckpointStore,
    SnapshotBinding,
    SqliteCheckpointStore,
    embedded_key_path,
    resolve_checkpoint_key,
)
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

PARTITIONS = 4
N_EVENTS = 6000
TTL_S = 0.05
GROUP = "reading_totals"  # the CLI's default group for the pipeline
KAFKA_KEY = "kafka-test-secret-0123456789abcdef"
OPTIONS = WorkerOptions(
    watermark_delay_s=0.1, exit_when_idle=True, poll_timeout_s=0.0, checkpoint_interval_s=3600
)


class CreatesFile:
    """Unpickling this opens ``path`` for writing, i.e. creates it: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _payload(marker: Path) -> bytes:
    blob = pickle.dumps(CreatesFile(marker))
    assert not marker.exists()
    return blob


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Positive control: the attack pickle really creates its file when unpickled."""
    marker = tmp_path / "ran"
    pickle.loads(_payload(marker)).close()
    assert marker.exists()


def _chunks(topic: str = READINGS_TOPIC) -> list[list[OutRecord]]:
    records = pack_by_partition(
        topic,
        synthetic_readings(N_EVENTS, seed=11),
        lambda e: f"{e.machine_id}/{e.sensor}",
        PARTITIONS,
        encode,
        40,
    )
    third = len(records) // 3
    return [records[:third], records[third : 2 * third], records[2 * third :]]


def _per_key(log: Log, topic: str = TOTALS_TOPIC) -> tuple[dict[bytes, list[bytes]], int]:
    """Per output key, values in log order, first copy of each rid; and the duplicate count.

    A replayed output must be byte-identical to its first copy."""
    first: dict[str, bytes] = {}
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    duplicates = 0
    for record in read_all(log, topic):
        if record.rid in first:
            assert first[record.rid] == record.value, record.rid
            duplicates += 1
            continue
        first[record.rid] = record.value
        per_key[record.key or b""].append(record.value)
    return dict(per_key), duplicates


def _operator() -> ReadingTotalsOperator:
    return ReadingTotalsOperator(ttl_s=TTL_S)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """The same input through one uninterrupted worker: outputs per key and counters."""
    log = SqliteLog(tmp_path_factory.mktemp("reference") / "log.db")
    log.create_topic(READINGS_TOPIC, PARTITIONS)
    for chunk in _chunks():
        log.produce(chunk)
    counters = Worker(log, _operator(), GROUP, OPTIONS).run(install_signals=False)
    outputs, duplicates = _per_key(log)
    log.close()
    assert counters["in"] == N_EVENTS and duplicates == 0
    assert sum(len(v) for v in outputs.values()) > 200  # timers really fired
    return outputs, counters


# ---------------------------------------------------------------------------- embedded log


def _two_generations(path: Path) -> SqliteLog:
    """Chunks 1 and 2 processed in two runs: two snapshot generations per partition."""
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, PARTITIONS)
    chunks = _chunks()
    for chunk in chunks[:2]:
        log.produce(chunk)
        Worker(log, _operator(), GROUP, OPTIONS).run(install_signals=False)
    return log


def _rows(db: Path, group: str, partition: int) -> list[tuple[int, int, bytes, str]]:
    """(generation, position, state, tag), newest first, read as an attacker would."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT generation, position, state, tag FROM checkpoint_snapshots"
            " WHERE grp=? AND topic=? AND partition=? ORDER BY generation DESC",
            (group, READINGS_TOPIC, partition),
        ).fetchall()


def _overwrite(db: Path, partition: int, generation: int, position: int, state: bytes, tag: str):
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE checkpoint_snapshots SET position=?, state=?, tag=?"
            " WHERE grp=? AND topic=? AND partition=? AND generation=?",
            (position, state, tag, GROUP, READINGS_TOPIC, partition, generation),
        )


def _forged_tag(binding: SnapshotBinding, blob: bytes) -> str:
    """The best an attacker without the key can do: the signed scheme over an unkeyed hash."""
    return "hmac-sha256:" + hashlib.sha256(binding.header() + blob).hexdigest()


ATTACKS = [
    "forged",
    "tampered-state",
    "tampered-position",
    "moved-partition",
    "moved-group",
    "garbage-row",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_embedded_refuses_the_snapshot_and_falls_back_to_the_previous_one(
    attack: str, tmp_path: Path, reference, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "log.db"
    marker = tmp_path / f"ran-{attack}"
    log = _two_generations(db)
    (gen2, pos2, state2, tag2), (gen1, pos1, _, _) = _rows(db, GROUP, 2)
    assert (gen2, gen1) == (2, 1) and pos2 > pos1
    expected_position = pos1  # the fallback
    if attack == "forged":
        # A new newest row with a payload: the real newest becomes the fallback.
        binding = SnapshotBinding(GROUP, READINGS_TOPIC, 2, pos2 + 10)
        blob = _payload(marker)
        with sqlite3.connect(db) as conn:
            conn.execute(
                "INSERT INTO checkpoint_snapshots VALUES (?,?,?,?,?,?,?,?)",
                (GROUP, READINGS_TOPIC, 2, 3, pos2 + 10, blob, _forged_tag(binding, blob), 0),
            )
        expected_position = pos2
    elif attack == "tampered-state":
        _overwrite(db, 2, gen2, pos2, _payload(marker), tag2)
    elif attack == "tampered-position":
        _overwrite(db, 2, gen2, pos2 + 10, state2, tag2)  # would skip 10 records
    elif attack == "moved-partition":
        (_, pos_p1, state_p1, tag_p1), _ = _rows(db, GROUP, 1)
        assert pos_p1 != pos2
        _overwrite(db, 2, gen2, pos_p1, state_p1, tag_p1)
    elif attack == "garbage-row":  # SQLite does not enforce column types
        _overwrite(db, 2, gen2, "x", "not a pickle", 7)  # type: ignore[arg-type]
    else:  # another group on the same log (so the same key), after the same input
        Worker(log, ReadingTotalsOperator(ttl_s=9.0), "other", OPTIONS).run(install_signals=False)
        (_, pos_other, state_other, tag_other), *_ = _rows(db, "other", 2)
        assert pos_other == pos2 and state_other != state2  # same place, other state
        _overwrite(db, 2, gen2, pos_other, state_other, tag_other)

    key = resolve_checkpoint_key(log.url, "", False)
    with caplog.at_level(logging.WARNING, logger="wearwatch.runtime.checkpoint"):
        restored = SqliteCheckpointStore(log, GROUP, key).load(READINGS_TOPIC, [2])
    assert restored[2].position == expected_position
    assert not marker.exists()
    (warning,) = [r.getMessage() for r in caplog.records]
    assert f"{GROUP}/{READINGS_TOPIC}/2" in warning
    assert ("unreadable" if attack == "garbage-row" else "does not verify") in warning

    # The rest of the input arrives; the worker ends exactly where an uninterrupted one does.
    log.produce(_chunks()[2])
    counters = Worker(log, _operator(), GROUP, OPTIONS).run(install_signals=False)
    outputs, duplicates = _per_key(log)
    log.close()
    expected_outputs, expected_counters = reference
    assert not marker.exists()
    assert counters == expected_counters  # every event counted exactly once
    assert outputs == expected_outputs  # nothing skipped, nothing lost, same per-key order
    if attack == "forged":
        assert duplicates == 0  # fell back to the real newest snapshot: nothing replayed
    else:
        assert duplicates > 0  # the replayed span re-emitted the same outputs, same ids


def test_embedded_without_any_valid_snapshot_stops_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    marker = tmp_path / "ran"
    _two_generations(db).close()
    for generation, position, _, tag in _rows(db, GROUP, 2):
        _overwrite(db, 2, generation, position, _payload(marker), tag)
    env = dict(os.environ, WEARWATCH_WATERMARK_DELAY_S="0.1")
    env.pop("WEARWATCH_CHECKPOINT_KEY", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "reading_totals",
            "--bus",
            f"sqlite:///{db}",
            "--param",
            f"ttl_s={TTL_S}",
            "--exit-when-idle",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: checkpoint {GROUP}/{READINGS_TOPIC}/2@")
    assert "no older snapshot verifies" in lines[0] and "--group" in lines[0]
    assert not marker.exists()


def test_a_snapshot_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, PARTITIONS)
    log.produce(_chunks()[0])
    Worker(log, _operator(), GROUP, OPTIONS).run(install_signals=False)
    other = dataclasses.replace(OPTIONS, checkpoint_key="a-different-secret-key")
    with pytest.raises(CorruptCheckpoint, match="signed with another key"):
        Worker(log, _operator(), GROUP, other).run(install_signals=False)


def test_a_legacy_unauthenticated_checkpoint_is_neither_loaded_nor_ignored(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, PARTITIONS)
    with log.transaction() as conn:  # wearwatch 0.1's table: sha256 next to the pickle
        conn.execute(
            "CREATE TABLE checkpoints (grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER"
            " NOT NULL, state BLOB NOT NULL, sha256 TEXT NOT NULL, updated_ms INTEGER NOT NULL,"
            " PRIMARY KEY (grp, topic, partition))"
        )
        blob = _payload(marker)
        conn.execute(
            "INSERT INTO checkpoints VALUES (?,?,?,?,?,?)",
            (GROUP, READINGS_TOPIC, 1, blob, hashlib.sha256(blob).hexdigest(), 0),
        )
    with pytest.raises(CorruptCheckpoint, match="predates authenticated checkpoints"):
        Worker(log, _operator(), GROUP, OPTIONS).run(install_signals=False)
    assert not marker.exists()


# ---------------------------------------------------------------------------- key file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_embedded_key_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    db = tmp_path / "data" / "log.db"
    url = f"sqlite:///{db}"
    old_umask = os.umask(0)  # even a permissive umask must not widen the key file
    try:
        key = resolve_checkpoint_key(url, "", False)
    finally:
        os.umask(old_umask)
    path = embedded_key_path(url)
    assert path == tmp_path / "data" / "log.db.key"
    assert _mode(path) == 0o600 and path.stat().st_uid == os.geteuid()
    assert len(key) == 32 and path.read_text() == key.hex() + "\n"
    assert resolve_checkpoint_key(url, "", False) == key  # kept, not regenerated
    assert sorted(p.name for p in path.parent.iterdir()) == ["log.db.key"]  # no temp left


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    barrier = threading.Barrier(8)

    def start(_: int) -> bytes:
        barrier.wait()
        return resolve_checkpoint_key(url, "", False)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(start, range(8)))
    assert keys == {bytes.fromhex(embedded_key_path(url).read_text())}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.db.key"]


def test_a_worker_creates_the_key_file_beside_its_log(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, PARTITIONS)
    log.produce(_chunks()[0])
    Worker(log, _operator(), GROUP, OPTIONS).run(install_signals=False)
    assert _mode(tmp_path / "log.db.key") == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    resolve_checkpoint_key(url, "", False)
    path = embedded_key_path(url)
    path.chmod(mode)
    with pytest.raises(CheckpointKeyError, match=f"mode 0{mode:o}.*chmod 600 {path}"):
        resolve_checkpoint_key(url, "", False)
    assert _mode(path) == mode  # refused, not silently "fixed" or replaced


def test_a_symlinked_or_malformed_key_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    path = embedded_key_path(url)
    real = tmp_path / "elsewhere"
    real.write_text("00" * 32 + "\n")
    real.chmod(0o600)
    path.symlink_to(real)
    with pytest.raises(CheckpointKeyError, match="symbolic link"):
        resolve_checkpoint_key(url, "", False)
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"not a key\n")
    os.close(fd)
    with pytest.raises(CheckpointKeyError, match="64 hex digits"):
        resolve_checkpoint_key(url, "", False)


def test_the_configured_key_wins_and_no_file_is_made(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert resolve_checkpoint_key(url, "configured-secret", False) == b"configured-secret"
    assert not embedded_key_path(url).exists()


def test_the_worker_cli_refuses_a_world_readable_key_file_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    url = f"sqlite:///{db}"
    resolve_checkpoint_key(url, "", False)
    embedded_key_path(url).chmod(0o644)
    res = _cli(
        "worker",
        "reading_totals",
        "--bus",
        url,
        "--exit-when-idle",
        "--quiet",
        env={"WEARWATCH_CHECKPOINT_KEY": None},
    )
    assert res.exit_code == 2
    assert res.output.splitlines() == [
        f"error: checkpoint key file {db}.key is accessible to others (mode 0644): "
        f"run chmod 600 {db}.key"
    ]


# ---------------------------------------------------------------------------- Kafka


def _cli(*args: str, env: dict[str, str | None] | None = None):
    from wearwatch.cli import app
    from wearwatch.config import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        get_settings.cache_clear()


KAFKA_REFUSAL = (
    "error: the Kafka log needs WEARWATCH_CHECKPOINT_KEY (a secret shared by the group's "
    "workers); or pass --unsigned-checkpoints (WEARWATCH_CHECKPOINT_UNSIGNED=true) to run "
    "without authentication"
)


def test_kafka_without_a_key_refuses_to_start_in_one_line() -> None:
    # Port 9 (discard): the refusal comes before any connection is attempted.
    env = {"WEARWATCH_CHECKPOINT_KEY": None, "WEARWATCH_CHECKPOINT_UNSIGNED": None}
    res = _cli("worker", "reading_totals", "--bus", "kafka://127.0.0.1:9", env=env)
    assert res.exit_code == 2
    assert res.output.splitlines() == [KAFKA_REFUSAL]
    with pytest.raises(CheckpointKeyError) as info:
        resolve_checkpoint_key("kafka://127.0.0.1:9", "", False)
    assert f"error: {info.value}" == KAFKA_REFUSAL
    assert resolve_checkpoint_key("kafka://127.0.0.1:9", "", True) is None  # explicit opt-out
    assert resolve_checkpoint_key("kafka://127.0.0.1:9", "s3cret", False) == b"s3cret"


def _kafka_run(log: Log, operator: ReadingTotalsOperator, group: str, timeout_s: float = 180):
    """Run a worker in a thread until it owns every partition and has caught up."""
    target = log.end_offsets(operator.input_topic)
    done: list[object] = []

    def progress(worker: Worker) -> None:
        states = worker.states
        if sorted(states) == list(range(PARTITIONS)) and all(
            states[p].position >= target.get(p, 0) for p in states
        ):
            worker.stop()

    options = WorkerOptions(
        watermark_delay_s=0.1,
        poll_timeout_s=0.1,
        checkpoint_interval_s=0.2,
        checkpoint_key=KAFKA_KEY,
    )
    worker = Worker(log, operator, group, options, on_progress=progress)

    def run() -> None:
        try:
            done.append(worker.run(install_signals=False))
        except BaseException as exc:
            done.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        worker.stop()
        thread.join(30)
        pytest.fail("the Kafka worker did not catch up")
    (result,) = done
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_refuses_forged_tampered_and_moved_snapshots(
    kafka_url: str, tmp_path: Path, reference, caplog: pytest.LogCaptureFixture
) -> None:
    from wearwatch.bus.kafka import KafkaLog

    run = uuid.uuid4().hex[:8]
    topic, out_topic, group = f"readings-{run}", f"totals-{run}", f"totals-{run}"
    markers = [tmp_path / f"ran-{p}" for p in range(PARTITIONS)]

    def operator(ttl_s: float = TTL_S) -> ReadingTotalsOperator:
        return ReadingTotalsOperator(ttl_s=ttl_s, input_topic=topic, output_topic=out_topic)

    log = KafkaLog(kafka_url)
    log.create_topic(topic, PARTITIONS)
    chunks = _chunks(topic)
    log.produce(chunks[0])
    log.flush()
    _kafka_run(log, operator(), group)
    # Another group (same key) processes the same first chunk with another configuration.
    _kafka_run(log, operator(ttl_s=9.0), f"other-{run}")
    log.produce(chunks[1])
    log.flush()
    _kafka_run(log, operator(), group)

    seal = CheckpointSeal(KAFKA_KEY.encode())
    genuine = KafkaCheckpointStore(log, group, KAFKA_KEY.encode()).load(topic, range(PARTITIONS))
    positions = {p: s.position for p, s in genuine.items()}

    def newest(grp: str, partition: int) -> bytes:
        key = f"{topic}/{partition}".encode()
        return [r.value for r in read_all(log, f"{grp}.checkpoints") if r.key == key][-1]

    def publish(partition: int, value: bytes) -> None:
        log.produce([OutRecord(f"{group}.checkpoints", f"{topic}/{partition}".encode(), value)])
        log.flush()

    genuine_p1, other_p3 = newest(group, 1), newest(f"other-{run}", 3)
    # p0: forged by a producer without the key, at a position that would skip 10 records.
    blob = _payload(markers[0])
    binding = SnapshotBinding(group, topic, 0, positions[0] + 10)
    publish(0, KafkaCheckpointStore.envelope(_forged_tag(binding, blob), binding.position, blob))
    # p1: the genuine newest snapshot with its pickle replaced, tag and position kept.
    head, _, _ = genuine_p1.partition(b"\n")
    publish(1, head + b"\n" + _payload(markers[1]))
    # p2: partition 1's genuine newest snapshot, re-published under partition 2's key.
    publish(2, genuine_p1)
    # p3: the other group's genuine snapshot of partition 3.
    publish(3, other_p3)

    with caplog.at_level(logging.WARNING, logger="wearwatch.runtime.checkpoint"):
        restored = KafkaCheckpointStore(log, group, KAFKA_KEY.encode()).load(
            topic, range(PARTITIONS)
        )
    assert {p: s.position for p, s in restored.items()} == positions
    assert not any(m.exists() for m in markers)
    warnings = [r.getMessage() for r in caplog.records if "does not verify" in r.getMessage()]
    assert sorted(w.split(" ")[1].split("@")[0] for w in warnings) == [
        f"{group}/{topic}/{p}" for p in range(PARTITIONS)
    ]
    assert seal.scheme == "hmac-sha256"

    log.produce(chunks[2])
    log.flush()
    counters = _kafka_run(log, operator(), group)
    outputs, _ = _per_key(log, out_topic)
    log.close()
    expected_outputs, expected_counters = reference
    assert not any(m.exists() for m in markers)
    assert Counter(counters) == expected_counters
    assert outputs == expected_outputs
