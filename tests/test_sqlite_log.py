"""Embedded-log specifics: several processes at once, retention (group leases:
test_sqlite_leases.py)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog


def _append(path: str, writer: int, n: int) -> None:
    log = SqliteLog(path)
    for i in range(0, n, 50):
        log.produce(
            OutRecord("t", f"k{j % 7}".encode(), f"{writer}:{j}".encode())
            for j in range(i, min(n, i + 50))
        )
    log.close()


def test_concurrent_writers_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    log = SqliteLog(path)
    log.create_topic("t", 3)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(path, w, 2000)) for w in range(3)]
    for p in procs:
        p.start()
    # Read while they write: a consumer never sees gaps or repeats.
    consumer = log.consumer("g", ["t"])
    seen: list[bytes] = []
    while any(p.is_alive() for p in procs) or len(seen) < 6000:
        seen.extend(r.value for r in consumer.poll(500, 0.05))
        if len(seen) >= 6000:
            break
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert sorted(seen) == sorted(f"{w}:{j}".encode() for w in range(3) for j in range(2000))
    for partition, end in log.end_offsets("t").items():
        offsets = [r.offset for r in log.read("t", partition, 0, 10_000)]
        assert offsets == list(range(end))
    # Per writer, per key, order is kept (same key → same partition, appends are ordered).
    per_key: dict[tuple[str, bytes], list[int]] = {}
    for record in read_all(log, "t"):
        writer, j = record.value.decode().split(":")
        per_key.setdefault((writer, record.key or b""), []).append(int(j))
    assert all(v == sorted(v) for v in per_key.values())


def test_retention_deletes_a_prefix_and_consumers_continue(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", retention_s=60.0)
    log.create_topic("t", 1)
    log.produce(OutRecord("t", None, b"old%d" % i) for i in range(10))
    consumer = log.consumer("g", ["t"])
    assert len(consumer.poll(4, 0)) == 4
    consumer.commit()
    consumer.close()  # hands partition 0 over to the next member of "g"
    import time

    deleted = log.apply_retention(now_s=time.time() + 120)
    assert deleted == 10
    assert log.low_offsets("t") == {0: 10}
    log.produce([OutRecord("t", None, b"new")])
    rest = log.consumer("g", ["t"]).poll(100, 0)
    assert [(r.offset, r.value) for r in rest] == [(10, b"new")]
    assert log.end_offsets("t") == {0: 11}
