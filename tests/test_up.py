"""``wearwatch up``: the warm-up registers the fleet's models; the platform's processes are
supervised (a SIGKILLed child is restarted and reported), one SIGINT stops them all cleanly,
and a second ``up`` resumes the run: no warm-up, the twins' event time continues with no gap and
no reading twice, the workers continue where they stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import decode_columns
from wearwatch.events import FeatureVector, PassRequest, Reading, decode_record
from wearwatch.launch.warmup import WarmupPlan, needs_warmup, warm_up
from wearwatch.runtime.status import ComponentStatus, read_statuses
from wearwatch.store.registry import ModelRegistry
from wearwatch.topics import MILL_PASSES
from wearwatch.twin.synthetic import EPOCH_S

TICK_S = 30.0
#: Tiny, yet with failures on both sides of the risk model's split (measured: ~10 s).
TINY = WarmupPlan(machines=8, days=8.0, seed=1007)
SUPERVISED = ("twin-mill", "twin-fleet", "worker-mill", "worker-fleet", "worker-fleet-alarms")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warmup") / "models"
    assert needs_warmup(root)
    stages: list[tuple[str, float]] = []
    result = warm_up(root, TINY, progress=_record(stages))
    assert result.registered == {"anomaly": "anomaly@v0001", "risk": "risk@v0001"}
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    return root


def _record(stages: list[tuple[str, float]]) -> Callable[[str, float], None]:
    return lambda stage, fraction: stages.append((stage, fraction))


@pytest.mark.slow
def test_warmup_registers_current_anomaly_and_risk_models(registry: Path) -> None:
    from wearwatch.learn.anomaly.model import AnomalyModel
    from wearwatch.learn.risk.model import RiskModel

    store = ModelRegistry(registry)
    assert not needs_warmup(registry)
    assert isinstance(store.load("anomaly"), AnomalyModel)
    risk = store.load("risk")
    assert isinstance(risk, RiskModel)
    # Every window of the run: 8 machines × 8 days of 5-minute and 30-minute windows.
    assert store.show("anomaly").metrics["rows"] == 8 * 8 * (288 + 48)
    assert store.show("anomaly").metrics["machines"] == TINY.machines
    # The risk model learnt from real failures (deterministic: same seed, same twin run).
    assert store.show("risk").metrics["split"]["train_positives"] == 125


def test_rul_plan(tmp_path: Path) -> None:
    """RUL: served when registered, trained when C-MAPSS is there, else off with the how-to."""
    from wearwatch.launch.warmup import RUL_FAMILY, rul_plan

    data = tmp_path / "cmapss"
    note = rul_plan(tmp_path / "models", data)
    assert note.startswith(f"RUL is off: C-MAPSS FD001 not found in {data};")
    assert "WEARWATCH_CMAPSS_DIR" in note and "wearwatch train cmapss" in note
    data.mkdir()
    for name in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt"):
        (data / name).write_text("")
    assert rul_plan(tmp_path / "models", data) == "train"
    ModelRegistry(tmp_path / "models").register(RUL_FAMILY, {"stand-in": 1}, promote=True)
    assert rul_plan(tmp_path / "models", data) == "served"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Up:
    """A ``wearwatch up`` process; its output is collected line by line."""

    def __init__(self, root: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
        env["WEARWATCH_DATA_DIR"] = str(root / "var")
        env["COLUMNS"] = "200"  # one line per message
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wearwatch", "up", *args],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout_s: float = 90.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout_s)
        self._reader.join(5.0)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _statuses(root: Path) -> dict[str, ComponentStatus]:
    return {s.name: s for s in read_statuses(root / "var" / "run" / "status")}


def _wait(what: str, condition: Callable[[], bool], up: _Up, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if up.proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached; up said:\n{up.output}")


def _running(root: Path, since: float) -> bool:
    st = _statuses(root)
    return all(
        name in st and st[name].state == "running" and st[name].started_at >= since
        for name in SUPERVISED
    ) and all(st[w].counters.get("in", 0) > 0 for w in ("worker-fleet", "worker-mill"))


def _position(root: Path) -> int:
    data = json.loads((root / "var" / "run" / "twin-fleet" / "position.json").read_text())
    return int(data["position"])


def _read_all(log: SqliteLog, topic: str) -> list[bytes]:
    out: list[bytes] = []
    for partition, end in log.end_offsets(topic).items():
        offset = 0
        while offset < end:
            records = log.read(topic, partition, offset, 1000)
            out.extend(r.value for r in records)
            offset = records[-1].offset + 1
    return out


@pytest.mark.slow
def test_up_supervises_stops_cleanly_and_resumes(tmp_path: Path, registry: Path) -> None:
    shutil.copytree(registry, tmp_path / "var" / "models")
    args = ["--headless", "--machines", "4", "--port", str(_free_port())]
    started = time.time()
    up = _Up(tmp_path, *args, "--speed", "3600", "--mill-speed", "600")
    try:
        _wait("every component running", lambda: _running(tmp_path, started), up)
        assert "warm-up" not in up.output  # the registry has its models
        victim = _statuses(tmp_path)["worker-mill"].pid
        os.kill(victim, signal.SIGKILL)
        _wait(
            "the restart reported",
            lambda: "worker-mill exited with -9; restarting (1)" in up.output,
            up,
        )
        _wait(
            "worker-mill back",
            lambda: (
                _statuses(tmp_path)["worker-mill"].pid != victim
                and _statuses(tmp_path)["worker-mill"].state == "running"
            ),
            up,
        )
        assert up.stop() == 0, up.output
    finally:
        up.kill()
    first = _statuses(tmp_path)
    assert {name: first[name].state for name in SUPERVISED} == dict.fromkeys(SUPERVISED, "stopped")
    first_position = _position(tmp_path)
    first_time = first["twin-fleet"].event_time
    assert first_time == EPOCH_S + first_position * TICK_S

    restarted = time.time()
    up = _Up(tmp_path, "--headless")  # the saved run: 4 machines, its speeds and port
    try:
        _wait("every component running again", lambda: _running(tmp_path, restarted), up)
        _wait("the fleet twin moving on", lambda: _position(tmp_path) > first_position + 60, up)
        assert up.stop() == 0, up.output
    finally:
        up.kill()
    assert "resuming the run" in up.output and "warm-up" not in up.output
    assert ModelRegistry(tmp_path / "var" / "models").current_version("anomaly") == 1
    assert "resumed at tick" in (tmp_path / "var/run/logs/twin-fleet.log").read_text()

    log = SqliteLog(tmp_path / "var" / "log.db")
    try:
        # Readings: every tick from the first to the last, none twice (machine, sensor, time).
        keys: list[np.ndarray] = []
        ticks: set[int] = set()
        for raw in _read_all(log, "fleet.readings"):
            cols, bad = decode_columns(raw, Reading)
            assert bad == []
            ts = cols.ts_us
            machine = cols.codes["machine_id"][1][cols.codes["machine_id"][0]]
            sensor = cols.codes["sensor"][1][cols.codes["sensor"][0]]
            keys.extend(zip(machine.tolist(), sensor.tolist(), ts.tolist(), strict=True))
            ticks.update(np.rint((ts / 1e6 - EPOCH_S) / TICK_S).astype(int).tolist())
        assert len(keys) == len(set(keys))
        last = _position(tmp_path) - 1
        assert ticks == set(range(last + 1)) and last > first_position
        # The fleet worker continued from its checkpoint: no window's features twice.
        vectors = [
            (fv.machine_id, fv.window_s, fv.ts)
            for raw in _read_all(log, "fleet.features")
            for fv in decode_record(raw, FeatureVector).events
        ]
        assert vectors and max(Counter(vectors).values()) == 1
        assert max(fv[2] for fv in vectors).timestamp() > first_time - 1800
        # The mill twin continued: no pass requested twice, slab ids never repeat.
        requests = [
            (ev.slab_id, ev.pass_no)
            for raw in _read_all(log, "mill.passes")
            for ev in decode_record(raw, MILL_PASSES.event_type).events
            if isinstance(ev, PassRequest)
        ]
        assert requests and len(requests) == len(set(requests))
    finally:
        log.close()
