"""The worker command: graceful stop with a final checkpoint, scale-out on the embedded log,
and the top-level help listing every command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from wearwatch.bus.base import pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.cli import app
from wearwatch.events import encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings


def _fill(path: Path, n: int = 20_000) -> SqliteLog:
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, 4)
    events = synthetic_readings(n, seed=4)
    log.produce(
        pack_by_partition(
            READINGS_TOPIC, events, lambda e: f"{e.machine_id}/{e.sensor}", 4, encode, 100
        )
    )
    return log


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("config", "worker", "demo", "bench", "twin", "mill", "train", "models"):
        assert command in result.output


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_sigterm_stops_after_a_final_checkpoint(tmp_path: Path) -> None:
    log = _fill(tmp_path / "log.db")
    total = sum(log.end_offsets(READINGS_TOPIC).values())
    env = dict(os.environ, WEARWATCH_CHECKPOINT_INTERVAL_S="3600")  # only the final one
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "reading_totals",
            "--bus",
            f"sqlite:///{tmp_path / 'log.db'}",
            "--param",
            "ttl_s=0.5",
            "--quiet",
        ],
        env=env,
    )
    partitions = [(READINGS_TOPIC, p) for p in range(4)]
    # Until the worker catches SIGTERM (its handler is installed just before it starts to
    # poll: on a loaded machine start-up alone can take seconds), then long enough to drain
    # 200 records; no periodic checkpoint runs.
    deadline = time.monotonic() + 60
    while not _catches(proc.pid, signal.SIGTERM):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(3.0)
    assert proc.poll() is None
    assert sum(log.committed("reading_totals", partitions).values()) == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert sum(log.committed("reading_totals", partitions).values()) == total
    assert len(read_all(log, TOTALS_TOPIC)) > 0


def test_two_workers_share_the_embedded_log_and_match_one(tmp_path: Path) -> None:
    one = _fill(tmp_path / "one.db")
    Worker(
        one,
        ReadingTotalsOperator(ttl_s=0.5),
        "totals",
        WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0),
    ).run(install_signals=False)
    two = _fill(tmp_path / "two.db")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wearwatch",
            "worker",
            "reading_totals",
            "--group",
            "totals",
            "--workers",
            "2",
            "--bus",
            f"sqlite:///{tmp_path / 'two.db'}",
            "--param",
            "ttl_s=0.5",
            "--exit-when-idle",
            "--quiet",
        ],
        timeout=120,
    )
    assert result.returncode == 0
    expected = Counter((r.rid, r.value) for r in read_all(one, TOTALS_TOPIC))
    assert Counter((r.rid, r.value) for r in read_all(two, TOTALS_TOPIC)) == expected
