"""The supervisor: restarts a crashed child and says so, gives up on one that keeps crashing,
stops every child on request (SIGTERM, then SIGKILL after the timeout)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from wearwatch.launch.supervisor import ChildSpec, Supervisor

#: Runs until SIGTERM, then writes "<name> stopped" to the marker file and exits 0.
SLEEPER = """
import signal, sys, time
def stop(*_):
    open(sys.argv[1], "a").write("stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1], "a").write("started\\n")
while True:
    time.sleep(0.05)
"""
#: Ignores SIGTERM.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ig" + "noring", flush=True)  # not in the command line the log file starts with
while True:
    time.sleep(0.05)
"""


def _wait(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _sleeper(name: str, marker: Path) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", SLEEPER, str(marker)])


def test_restarts_a_killed_child_and_stops_all(tmp_path: Path) -> None:
    lines: list[str] = []
    markers = {name: tmp_path / f"{name}.txt" for name in ("a", "b")}
    sup = Supervisor(
        [_sleeper(name, path) for name, path in markers.items()],
        log_dir=tmp_path / "logs",
        report=lines.append,
        backoff_s=0.1,
    )
    sup.start()
    _wait(lambda: all(p.exists() for p in markers.values()))
    first = sup.pid("a")
    assert first is not None
    os.kill(first, signal.SIGKILL)
    _wait(lambda: (sup.poll(), sup.pid("a") not in (None, first))[1])
    assert lines == ["a exited with -9; restarting (1) in 0.1 s"]
    assert sup.starts("a") == 2 and sup.starts("b") == 1
    _wait(lambda: markers["a"].read_text().count("started") == 2)
    sup.stop()
    # Every child got SIGTERM and ran its handler (the killed one could not); none runs.
    assert markers["a"].read_text() == "started\nstarted\nstopped\n"
    assert markers["b"].read_text() == "started\nstopped\n"
    assert sup.pid("a") is None and sup.pid("b") is None
    assert lines == ["a exited with -9; restarting (1) in 0.1 s"]  # a stop is not a crash


def test_gives_up_on_a_child_that_keeps_crashing(tmp_path: Path) -> None:
    lines: list[str] = []
    crash = ChildSpec("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    sup = Supervisor([crash], log_dir=tmp_path, report=lines.append, backoff_s=0.01, max_crashes=3)
    sup.start()
    assert sup.wait_idle(30.0)
    sup.stop()
    assert lines[:2] == [
        "crasher exited with 3; restarting (1) in 0.01 s",
        "crasher exited with 3; restarting (2) in 0.02 s",
    ]
    assert lines[2].startswith("crasher exited with 3; it crashed 3 times within 60 s: giving up")
    assert len(lines) == 3 and sup.starts("crasher") == 3


def test_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    lines: list[str] = []
    spec = ChildSpec("stubborn", [sys.executable, "-c", STUBBORN])
    sup = Supervisor([spec], log_dir=tmp_path, report=lines.append, stop_timeout_s=0.5)
    sup.start()
    _wait(lambda: b"ignoring" in sup.log_path("stubborn").read_bytes())
    pid = sup.pid("stubborn")
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 10.0
    assert lines == ["stubborn did not stop within 0.5 s; killing it"]
    assert pid is not None and not Path(f"/proc/{pid}").exists()


def test_restart_on_request_is_not_a_crash(tmp_path: Path) -> None:
    lines: list[str] = []
    marker = tmp_path / "m.txt"
    sup = Supervisor([_sleeper("w", marker)], log_dir=tmp_path / "logs", report=lines.append)
    sup.start()
    _wait(marker.exists)
    sup.restart("w", "models changed: anomaly v2")
    _wait(lambda: marker.read_text().count("started") == 2)
    sup.poll()
    sup.stop()
    assert marker.read_text() == "started\nstopped\nstarted\nstopped\n"
    assert lines == ["w: restarting (models changed: anomaly v2)"]


def test_duration_stops_the_run(tmp_path: Path) -> None:
    lines: list[str] = []
    marker = tmp_path / "m.txt"
    sup = Supervisor([_sleeper("w", marker)], log_dir=tmp_path / "logs", report=lines.append)
    sup.start()
    _wait(marker.exists)
    started = time.monotonic()
    sup.run(duration_s=1.0)
    assert 1.0 <= time.monotonic() - started < 15.0
    assert lines == ["duration reached (1 s); stopping"]
    assert marker.read_text() == "started\nstopped\n"
