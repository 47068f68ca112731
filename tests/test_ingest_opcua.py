"""``wearwatch ingest opcua`` against a real asyncua server (tests/opcua_server.py, a subprocess).

The server writes a deterministic schedule (step k: every variable with SourceTimestamp
T0 + k·10 ms, a value derived from k; some Bad-status, NaN and string values), so the log can
be compared with the schedule exactly: each good change once, by id, with its source timestamp,
value and unit; each bad one a dead letter naming the reason.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import opcua_server as srv  # tests/ is on sys.path (conftest.py)
from wearwatch import topics
from wearwatch.bus.base import read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import decode_columns
from wearwatch.events import DeadLetter, Reading, decode_event
from wearwatch.ingest.opcua_nodes import NodesFileError, load_nodes, parse_nodes

HERE = Path(__file__).parent
EXAMPLE = HERE.parent / "examples" / "opcua-nodes.toml"
MACHINES = 10  # 21 variables: 10 × (vibration, bearing_temp) + pump-0's mode


# The nodes file of the tests: one explicit entry (a fixed unit and a scale) and a browse rule
# for the rest of the Plant folder (vibration's unit read from its EngineeringUnits property).
NODES = """
[[node]]
node = "ns=2;s=pump-0.bearing_temp"
machine_id = "pump-0"
sensor = "bearing_temp"
unit = "degF"
scale = 1.8
offset = 32.0

[[browse]]
folder = "ns=2;s=Plant"
"""


Write = tuple[int, str, object, str]  # step, NodeId, value, status


def writes(steps: Iterable[int]) -> list[Write]:
    """The schedule's writes in ``steps``."""
    return [(k, *w) for k in steps for w in srv.schedule(k, MACHINES)]


def current(step: int) -> list[Write]:
    """Every variable's last write up to ``step``: its value when a client (re)connects."""
    last: dict[str, Write] = {}
    for w in writes(range(step + 1)):
        last[w[1]] = w
    return list(last.values())


def is_bad(w: Write) -> bool:
    return w[3] != "Good" or isinstance(w[2], str) or math.isnan(w[2])  # type: ignore[arg-type]


def expected(ws: Iterable[Write]) -> tuple[dict[tuple, tuple[float, str]], dict[str, set[str]]]:
    """What writes ``ws`` should leave in the log: reading id → (value, unit), and per origin
    the (canonical) timestamps of its dead letters."""
    readings: dict[tuple, tuple[float, str]] = {}
    letters: dict[str, set[str]] = {}
    for k, node, value, status in ws:
        ts = srv.step_ts(k)
        if is_bad((k, node, value, status)):
            letters.setdefault(f"opcua:{node}", set()).add(ts.isoformat())
            continue
        name = node.removeprefix("ns=2;s=")
        machine, sensor = name.split(".")
        rid = (machine, sensor, round(ts.timestamp() * 1_000_000))
        if name == "pump-0.bearing_temp":
            readings[rid] = (value * 1.8 + 32.0, "degF")  # type: ignore[operator]
        else:
            readings[rid] = (value, "mm/s" if sensor == "vibration" else "")  # type: ignore[assignment]
    return readings, letters


def logged(path: Path) -> tuple[list[tuple], list[DeadLetter]]:
    """Every reading (id, value, unit) and every dead letter in the log, duplicates kept."""
    log = SqliteLog(path)
    try:
        rows: list[tuple] = []
        for record in read_all(log, topics.READINGS.name):
            columns, bad = decode_columns(record.value, Reading)
            assert bad == []
            rows += zip(
                columns.fields["machine_id"].tolist(),
                columns.fields["sensor"].tolist(),
                columns.ts_us.tolist(),
                columns.fields["value"].tolist(),
                columns.fields["unit"].tolist(),
                strict=True,
            )
        letters = [
            decode_event(r.value, DeadLetter) for r in read_all(log, topics.DEAD_LETTERS.name)
        ]
        return rows, letters
    finally:
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Ingest:
    """``python -m wearwatch ingest opcua`` as a subprocess; stderr kept in a file."""

    def __init__(self, tmp: Path, server: Any, nodes: Path, *extra: str) -> None:
        self.tmp, self.server, self.nodes, self.extra = tmp, server, nodes, extra
        self.runs = 0
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: Path = tmp / "ingest.err"

    def start(self) -> None:
        self.runs += 1
        self.stderr = self.tmp / f"ingest-{self.runs}.err"
        cmd = [
            sys.executable, "-m", "wearwatch", "ingest", "opcua",
            "--endpoint", self.server.url, "--nodes", str(self.nodes),
            "--bus", f"sqlite:///{self.tmp / 'log.db'}",
            "--interval-ms", "20", "--linger-s", "0.05", "--max-batch", "400",
            *self.extra,
        ]  # fmt: skip
        env = {**os.environ, "WEARWATCH_DATA_DIR": str(self.tmp / "data")}
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env
            )

    def subscriptions(self) -> int:
        return self.stderr.read_text().count("opcua: subscribed 21 nodes")

    def wait_subscribed(self, count: int = 1) -> None:
        wait_for(lambda: self.subscriptions() >= count, f"subscription #{count}: {self.stderr}")

    def stop(self) -> dict[str, Any]:
        """SIGTERM: a clean stop; returns the counters it prints."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, self.stderr.read_text()
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """One server for the module (its start-up takes seconds); each test continues its
    schedule from the step the previous one left it at."""
    s = srv.OpcServer(free_port(), MACHINES)
    yield s
    s.close()


@pytest.fixture
def nodes_file(tmp_path: Path) -> Path:
    path = tmp_path / "nodes.toml"
    path.write_text(NODES)
    return path


def has_readings(path: Path, ids: set[tuple]) -> Callable[[], bool]:
    def check() -> bool:
        if not path.exists():
            return False
        rows, _ = logged(path)
        return ids <= {r[:3] for r in rows}

    return check


def assert_exactly(rows: list[tuple], want: dict[tuple, tuple[float, str]]) -> None:
    """Each id once, with its value and unit, and nothing else."""
    counts = Counter(r[:3] for r in rows)
    assert [i for i, n in counts.items() if n > 1] == []
    got = {r[:3]: (r[3], r[4]) for r in rows}
    assert set(got) == set(want)
    for rid, (value, unit) in want.items():
        assert got[rid][1] == unit, rid
        assert got[rid][0] == pytest.approx(value, rel=1e-12), rid


def letters_by_origin(letters: list[DeadLetter]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for letter in letters:
        out.setdefault(letter.source_topic, []).append(json.loads(letter.raw)["ts"])
    return out


def test_every_change_once_with_source_timestamps(
    tmp_path: Path, server: Any, nodes_file: Path
) -> None:
    """The done-when test: 2,520 value changes (120 steps × 21 variables) plus the current
    values at the start; every good one in the log exactly once by id with its source
    timestamp, value and unit (EngineeringUnits, fixed, scaled); every Bad, NaN or string one
    a dead letter, once."""
    ingest = Ingest(tmp_path, server, nodes_file)
    start = current(server.step)
    ingest.start()
    try:
        ingest.wait_subscribed()
        steps = server.run(server.step + 120)
        changes = writes(steps)
        want, want_letters = expected(start + changes)
        wait_for(has_readings(tmp_path / "log.db", set(want)), "every good change in the log")
        counts = ingest.stop()
    finally:
        ingest.kill()
    assert len(changes) == 120 * 20 + 3  # + pump-0's mode every 40 steps
    rows, letters = logged(tmp_path / "log.db")
    assert_exactly(rows, want)
    assert {k: sorted(v) for k, v in letters_by_origin(letters).items()} == {
        k: sorted(v) for k, v in want_letters.items()
    }
    reasons = {(letter.source_topic, letter.field, letter.reason) for letter in letters}
    assert (
        "opcua:ns=2;s=pump-0.vibration",
        "status",
        "status BadSensorFailure (0x808C0000) is not Good",
    ) in reasons
    assert (
        "opcua:ns=2;s=pump-1.bearing_temp",
        "value",
        "value nan (scaled: nan) is not finite",
    ) in reasons
    last_mode = max(k for k, node, _, _ in changes if node.endswith("mode"))
    assert (
        "opcua:ns=2;s=pump-0.mode",
        "value",
        f"value 'running-{last_mode}' of type String is not a number",
    ) in reasons
    # Every change delivered once by the subscription; the start values read once and sent
    # once as the subscription's first notification (so they count twice).
    c = counts["opcua"]
    assert (c["connects"], c["reads"], c["data_changes"]) == (1, 21, 21 + len(changes))

    def twice_at_start(kind: Callable[[Write], bool]) -> int:
        return sum(map(kind, changes)) + 2 * sum(map(kind, start))

    assert c["bad_status"] == twice_at_start(lambda w: w[3] != "Good")
    assert c["not_finite"] == twice_at_start(lambda w: isinstance(w[2], float) and math.isnan(w[2]))
    assert c["not_numeric"] == twice_at_start(lambda w: isinstance(w[2], str))
    assert c["server_ts_fallback"] == c["overflows"] == c["missing_nodes"] == 0
    assert counts["gateway"]["written"] == len(want)
    assert counts["gateway"]["dead_letters"] == len(letters)


@pytest.mark.parametrize("history", [False, True], ids=["subscription", "history"])
def test_kill_and_restart(tmp_path: Path, server: Any, nodes_file: Path, history: bool) -> None:
    """SIGKILL mid-stream, 60 steps written while the ingest is down, restart.

    Without --history: nothing twice; everything changed while connected is there; the
    current value of every node at the restart is there (what changed while the client was
    down, before the last value, is lost: OPC UA queues are not durable). With --history
    (the server historizes every node): every change exactly once, as if never killed.
    """
    ingest = Ingest(tmp_path, server, nodes_file, *(["--history"] if history else []))
    log_path = tmp_path / "log.db"
    s0 = server.step
    ingest.start()
    try:
        ingest.wait_subscribed()
        connected = current(s0) + writes(server.run(s0 + 60))
        wait_for(has_readings(log_path, set(expected(connected)[0])), "the first 60 steps")
        down = server.run_soon(s0 + 120)
        time.sleep(0.05)
        ingest.kill()  # mid-stream
        down.result(60)
        at_restart = current(s0 + 120)
        ingest.start()
        ingest.wait_subscribed()
        after = writes(server.run(s0 + 180))
        want_ids = set(expected(at_restart + after)[0])
        wait_for(has_readings(log_path, want_ids), "the restart's values and 60 steps more")
        counts = ingest.stop()
    finally:
        ingest.kill()
    rows, letters = logged(log_path)
    everything, all_letters = expected(current(s0) + writes(range(s0 + 1, s0 + 181)))
    by_origin = letters_by_origin(letters)
    if history:
        assert_exactly(rows, everything)
        assert {k: sorted(v) for k, v in by_origin.items()} == {
            k: sorted(v) for k, v in all_letters.items()
        }
        assert counts["opcua"]["history_values"] > 0 == counts["opcua"]["history_errors"]
        return
    ids = Counter(r[:3] for r in rows)
    assert [i for i, n in ids.items() if n > 1] == []
    assert set(ids) <= set(everything)  # nothing invented
    guaranteed, guaranteed_letters = expected(connected + at_restart + after)
    assert set(guaranteed) <= set(ids)
    for rid, value, unit in ((r[:3], r[3], r[4]) for r in rows):
        assert (pytest.approx(value, rel=1e-12), unit) == everything[rid]
    assert all(len(v) == len(set(v)) for v in by_origin.values())  # no dead letter twice
    for origin, stamps in by_origin.items():
        assert set(stamps) <= all_letters[origin]
    for origin, stamps in guaranteed_letters.items():
        assert stamps <= set(by_origin[origin]), origin
    assert counts["opcua"]["history_values"] == 0


def test_reconnects_with_backoff_when_the_server_restarts(
    tmp_path: Path, server: Any, nodes_file: Path
) -> None:
    """The server drops every connection and session and comes back (same values): the
    client reconnects with backoff, re-subscribes and reads the current values; every change
    made while it was connected is written, nothing twice."""
    ingest = Ingest(tmp_path, server, nodes_file, "--backoff-max-s", "1")
    log_path = tmp_path / "log.db"
    s0 = server.step
    ingest.start()
    try:
        ingest.wait_subscribed()
        first = current(s0) + writes(server.run(s0 + 40))
        wait_for(has_readings(log_path, set(expected(first)[0])), "the first 40 steps")
        server.restart()
        ingest.wait_subscribed(2)
        want, _ = expected(first + writes(server.run(s0 + 80)))
        wait_for(has_readings(log_path, set(want)), "40 steps after the restart")
        counts = ingest.stop()
    finally:
        ingest.kill()
    rows, _ = logged(log_path)
    assert_exactly(rows, want)
    assert counts["opcua"]["connects"] == 2
    assert counts["opcua"]["reconnect_waits"] >= 1
    assert "connection lost" in ingest.stderr.read_text()


def test_example_nodes_file_loads() -> None:
    nodes = load_nodes(EXAMPLE)
    assert [(n.node, n.machine_id, n.sensor, n.unit) for n in nodes.nodes] == [
        ("ns=2;s=Pump7.Vibration", "pump-7", "vibration", None),
        ("ns=2;s=Pump7.BearingTemp", "pump-7", "bearing_temp", "degC"),
        ("ns=2;i=1042", "pump-7", "discharge_pressure", "bar"),
    ]
    assert nodes.nodes[2].scaled(1000.0) == pytest.approx(1.0)
    assert [b.folder for b in nodes.browse] == ["ns=2;s=Plant.Line2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[node]]\nnode = 'i=1'\nmachine_id = 'm'", "f.toml: node[0]: missing key 'sensor'"),
        (
            "[[node]]\nnode = 'i=1'\nmachine_id = 'm'\nsensor = 's'\ncolour = 1",
            "f.toml: node[0]: unknown key 'colour'",
        ),
        (
            "[[node]]\nnode = 'i=1'\nmachine_id = ''\nsensor = 's'",
            "f.toml: node[0].machine_id = '': expected `str` of length >= 1",
        ),
        (
            "[[node]]\nnode = 'i=1'\nmachine_id = 'm'\nsensor = 's'\nscale = nan",
            "f.toml: node[0].scale = nan: expected a finite number",
        ),
        (
            "[[browse]]\nfolder = 'Plant'",
            "f.toml: browse[0].folder = 'Plant': not an OPC UA NodeId",
        ),
        (
            "[[node]]\nnode = 'i=1'\nmachine_id = 'm'\nsensor = 's'\n"
            "[[node]]\nnode = 'ns=0;i=1'\nmachine_id = 'n'\nsensor = 's'",
            "f.toml: node[1].node = 'ns=0;i=1': already node[0]",
        ),
        ("[plant]\nx = 1", "f.toml: unknown table 'plant'; expected node or browse"),
        ("", "f.toml: no [[node]] or [[browse]] entry"),
        ("[[node]\n", "f.toml: not valid TOML"),
    ],
)
def test_nodes_file_errors_name_the_entry_and_key(text: str, message: str) -> None:
    with pytest.raises(NodesFileError) as info:
        parse_nodes(text, "f.toml")
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--endpoint", "http://x"], "--endpoint 'http://x': expected opc.tcp://host:port"),
        ([], "nodes.toml: node[0]: missing key 'sensor'"),
        (["--security", "Basic256Sha256,Sign"], "--security Basic256Sha256,Sign: needs --cert"),
        (["--password-file", "/nonexistent/pw"], "--password-file /nonexistent/pw: cannot read"),
        (["--interval-ms", "nan"], "Invalid value for '--interval-ms': nan: expected a finite"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    line: str,
) -> None:
    """``main()`` in this process (the subprocess's code path, without its start-up cost)."""
    from wearwatch.cli import main
    from wearwatch.config import get_settings

    bad = tmp_path / "nodes.toml"
    bad.write_text("[[node]]\nnode = 'ns=2;s=P'\nmachine_id = 'm'\n")
    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(tmp_path / "data"))
    argv = ["ingest", "opcua", "--endpoint", "opc.tcp://h:4840", "--nodes", str(bad), *args]
    monkeypatch.setattr(sys, "argv", ["wearwatch", *argv, "--bus", f"sqlite:///{tmp_path}/l.db"])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2
    assert len(err) == 1 and err[0].startswith(f"error: {line}"), err


def test_data_value_mapping_without_a_server() -> None:
    """Each rule of the DataValue → reading mapping, on a gateway over an in-memory log:
    source timestamp kept, server timestamp as fallback (counted), overflow bit counted,
    Uncertain, Boolean, missing timestamp and overflow after scaling dead-lettered."""
    from datetime import UTC, datetime, timedelta

    from asyncua import ua

    from wearwatch.bus.memory import MemoryLog
    from wearwatch.ingest.gateway import GatewayOptions, IngestGateway
    from wearwatch.ingest.opcua import MappedNode, OpcuaIngest, OpcuaOptions, canonical_bytes
    from wearwatch.ingest.opcua_nodes import NodeEntry, NodesFile

    log = MemoryLog()
    gateway = IngestGateway(log, GatewayOptions(linger_s=0.0))
    entry = NodeEntry(node="ns=2;s=P.T", machine_id="p", sensor="t", scale=1e299)
    ingest = OpcuaIngest(gateway, NodesFile(nodes=(entry,)), OpcuaOptions("opc.tcp://h:1"))
    node = ua.NodeId("P.T", 2)
    ingest.mapped = {node: MappedNode(entry, "opcua:ns=2;s=P.T", "K")}
    t = datetime(2026, 1, 1, tzinfo=UTC)

    def dv(value: object, kind: ua.VariantType, status: int = 0, **ts: datetime) -> ua.DataValue:
        return ua.DataValue(ua.Variant(value, kind), StatusCode=ua.StatusCode(status), **ts)

    double = ua.VariantType.Double
    cases = [
        (dv(1.0, double, SourceTimestamp=t, ServerTimestamp=t + timedelta(1)), "queued"),
        (dv(2.0, double, ServerTimestamp=t + timedelta(seconds=1)), "queued"),  # fallback
        (dv(3.0, double, 0x0480, SourceTimestamp=t + timedelta(seconds=2)), "queued"),  # overflow
        (dv(1.0, double, SourceTimestamp=t), "duplicate"),  # the same sample again
        (dv(4.0, double, ua.StatusCodes.UncertainLastUsableValue, SourceTimestamp=t), "rejected"),
        (dv(True, ua.VariantType.Boolean, SourceTimestamp=t), "rejected"),
        (dv(5.0, double), "rejected"),  # no timestamp at all
        (dv(1e10, double, SourceTimestamp=t), "rejected"),  # 1e309: overflows when scaled
    ]
    assert [ingest.offer(node, value) for value, _ in cases] == [want for _, want in cases]
    gateway.flush()
    assert {k: v for k, v in ingest.counts.items() if v} == {
        "server_ts_fallback": 1,
        "overflows": 1,
        "bad_status": 1,
        "not_numeric": 1,
        "no_timestamp": 1,
        "not_finite": 1,
    }
    readings = [
        (r.ts, r.value, r.unit)
        for rec in read_all(log, topics.READINGS.name)
        for r in decode_columns(rec.value, Reading)[0].events()
    ]
    assert readings == [
        (t, 1e299, "K"),
        (t + timedelta(seconds=1), 2e299, "K"),
        (t + timedelta(seconds=2), 3e299, "K"),
    ]
    letters = [decode_event(r.value, DeadLetter) for r in read_all(log, topics.DEAD_LETTERS.name)]
    assert [(x.field, x.reason) for x in letters] == [
        ("status", "status UncertainLastUsableValue (0x40900000) is not Good"),
        ("value", "value True of type Boolean is not a number"),
        ("ts", "no SourceTimestamp and no ServerTimestamp"),
        ("value", "value 10000000000.0 (scaled: inf) is not finite"),
    ]
    assert (
        letters[1].raw
        == canonical_bytes("ns=2;s=P.T", cases[5][0])
        == (
            b'{"node":"ns=2;s=P.T","status":"Good","ts":"2026-01-01T00:00:00+00:00",'
            b'"ts_from":"source","type":"Boolean","value":true}'
        )
    )
