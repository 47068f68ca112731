"""MQTT ingest: the mapping file, MQTT's topic-filter rules, and the subscriber against a real
broker (Debian's mosquitto) with the ingest SIGKILLed and restarted mid-stream."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wearwatch import topics
from wearwatch.bus.base import read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import decode_columns
from wearwatch.events import DeadLetter, Reading, decode_event
from wearwatch.ingest.mqtt import Broker, SubscriberOptions
from wearwatch.ingest.mqtt_map import (
    MapFileError,
    PayloadError,
    TopicMap,
    check_filter,
    check_topic,
    matches,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MAP = ROOT / "examples" / "mqtt-map.toml"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# -- topic filters: MQTT §4.7 against a brute-force reference ------------------------------------


def reference_match(topic_filter: str, topic: str) -> bool:
    """MQTT's matching as a regular expression built from the filter (another construction)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if topic_filter == "#":
        return True
    pattern = ""
    for index, level in enumerate(topic_filter.split("/")):
        sep = "/" if index else ""
        if level == "#":
            pattern += "(/.*)?"  # the parent level, and any number below it
        elif level == "+":
            pattern += sep + "[^/]*"
        else:
            pattern += sep + re.escape(level)
    return re.fullmatch(pattern, topic, re.DOTALL) is not None


def reference_valid_filter(text: str) -> bool:
    levels = text.split("/")
    return bool(text) and all(
        ("+" not in lv or lv == "+") and ("#" not in lv or (lv == "#" and i == len(levels) - 1))
        for i, lv in enumerate(levels)
    )


names = st.sampled_from(["a", "b", "", "$SYS", "ab"])
topic_names = st.lists(names, min_size=1, max_size=5).map("/".join).filter(bool)
filters = (
    st.tuples(
        st.lists(st.sampled_from(["a", "b", "", "+", "$SYS"]), min_size=0, max_size=5),
        st.booleans(),
    )
    .map(lambda parts: "/".join(parts[0] + (["#"] if parts[1] else [])))
    .filter(bool)
)


@given(filters, topic_names)
def test_filter_matching_equals_the_reference(topic_filter: str, topic: str) -> None:
    check_filter(topic_filter)
    check_topic(topic)
    assert matches(topic_filter, topic) == reference_match(topic_filter, topic)


@given(st.text(alphabet="ab+#/", max_size=8))
def test_filter_validity_equals_the_reference(text: str) -> None:
    try:
        check_filter(text)
        valid = True
    except ValueError:
        valid = False
    assert valid == reference_valid_filter(text)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),  # § 4.7.1.2: the parent
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking/wimbledon", True),
        ("sport/+", "sport", False),  # § 4.7.1.3
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("#", "$SYS/broker", False),  # § 4.7.2
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/broker", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ],
)
def test_filter_matching_examples_of_the_standard(
    topic_filter: str, topic: str, expected: bool
) -> None:
    assert matches(topic_filter, topic) is expected


# -- the mapping file ---------------------------------------------------------------------------


def one_route(**keys: str) -> TopicMap:
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    return TopicMap.parse(f"[[route]]\n{body}\n", "m.toml")


JSON_ROUTE = {
    "topic": "plant/+/+/reading",
    "machine_id": "{1}",
    "sensor": "{2}",
    "value": "$.v",
    "ts": "$.t",
}


def test_the_example_map_reads_each_of_its_routes() -> None:
    topic_map = TopicMap.load(EXAMPLE_MAP)
    assert topic_map.filters == (
        "plant/+/+/reading",
        "site/+/line/+/temperature",
        "legacy/+/pressure",
    )
    assert topic_map.map(
        "plant/p7/vibration/reading", b'{"v": 2.31, "t": 1767225600.5, "u": "mm/s"}', 0.0
    ) == {
        "machine_id": "p7",
        "sensor": "vibration",
        "value": 2.31,
        "unit": "mm/s",
        "ts": at(T0 + 0.5),
    }
    assert topic_map.map(
        "site/s1/line/4/temperature",
        b'{"data": {"value": 71.5}, "time": "2026-01-01T00:00:00.250Z"}',
        0.0,
    ) == {
        "machine_id": "lines1-4",
        "sensor": "bearing_temp",
        "value": 71.5,
        "unit": "degC",
        "ts": "2026-01-01T00:00:00.250Z",
    }
    assert topic_map.map("legacy/c3/pressure", b" 4.2\n", 1767225601.25) == {
        "machine_id": "c3",
        "sensor": "pressure",
        "value": 4.2,
        "unit": "bar",
        "ts": 1767225601.25,  # the gateway's clock, as given
    }


@pytest.mark.parametrize(
    ("unit", "t", "expected"),
    [
        ("s", "1767225600", at(T0)),
        ("s", "1767225600.000001", datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        ("ms", "1767225600123", datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        ("us", "1767225600123456", datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("ns", "1767225600123456789", datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("iso", '"2026-01-01T00:00:00+01:00"', "2026-01-01T00:00:00+01:00"),
    ],
)
def test_time_units(unit: str, t: str, expected: object) -> None:
    topic_map = one_route(**JSON_ROUTE, ts_unit=unit)
    fields = topic_map.map("plant/p1/vib/reading", f'{{"v": 1, "t": {t}}}'.encode(), 0.0)
    assert fields["ts"] == expected


def test_paths_reach_into_objects_and_arrays_and_units_come_from_the_payload() -> None:
    topic_map = one_route(
        topic="gw/#",
        machine_id="$.dev",
        sensor="s-{1}",
        value="$.samples[1].v",
        ts="$.meta.t",
        unit="$.samples[1].u",
    )
    payload = (
        b'{"dev": "fan-3", "meta": {"t": 1767225600}, "samples": [{"v": 1}, {"v": -7.5, "u": "A"}]}'
    )
    assert topic_map.map("gw/x", payload, 0.0) == {
        "machine_id": "fan-3",
        "sensor": "s-x",
        "value": -7.5,
        "unit": "A",
        "ts": at(T0),
    }


def test_routes_are_tried_in_order_and_the_first_match_wins() -> None:
    topic_map = TopicMap.parse(
        """
        [[route]]
        topic = "plant/special/+/reading"
        machine_id = "special"
        sensor = "{2}"
        value = "$.v"
        ts = "$.t"
        [[route]]
        topic = "plant/+/+/reading"
        machine_id = "{1}"
        sensor = "{2}"
        value = "$.v"
        ts = "$.t"
        """
    )
    payload = b'{"v": 1, "t": 1767225600}'
    assert topic_map.map("plant/special/vib/reading", payload, 0)["machine_id"] == "special"
    assert topic_map.map("plant/p2/vib/reading", payload, 0)["machine_id"] == "p2"


@pytest.mark.parametrize(
    ("topic", "payload", "field", "message"),
    [
        ("plant/p1/vib/status", b"{}", "topic", "no route matches topic 'plant/p1/vib/status'"),
        ("plant/p1/vib/reading", b"not json", "payload", "payload: not JSON: Expecting value"),
        ("plant/p1/vib/reading", b'{"v": NaN, "t": 1}', "payload", "NaN is not JSON"),
        ("plant/p1/vib/reading", b'{"v": 1, "t": 1, "v": 2}', "payload", "duplicate key 'v'"),
        ("plant/p1/vib/reading", b'{"v": "\xff"}', "payload", "invalid UTF-8 at byte 7"),
        ("plant/p1/vib/reading", b"[" * 100_000, "payload", "JSON nested too deeply"),
        ("plant/p1/vib/reading", b'{"t": 1}', "$.v", "field `$.v`: missing from the payload"),
        ("plant/p1/vib/reading", b'{"v": "high", "t": 1}', "$.v", "expected a number, got 'high'"),
        ("plant/p1/vib/reading", b'{"v": true, "t": 1}', "$.v", "expected a number, got True"),
        ("plant/p1/vib/reading", b'{"v": 1, "t": "x"}', "$.t", "expected epoch s (a number)"),
        ("plant/p1/vib/reading", b'{"v": 1, "t": 1e300}', "$.t", "epoch s out of range"),
    ],
)
def test_unreadable_messages_name_the_field(
    topic: str, payload: bytes, field: str, message: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        one_route(**JSON_ROUTE).map(topic, payload, 0.0)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_number_payloads_are_json_numbers_only() -> None:
    topic_map = one_route(
        topic="n/+", machine_id="{1}", sensor="p", payload="number", ts="received"
    )
    assert topic_map.map("n/a", b"-1.5e2", 9.0)["value"] == -150.0
    for bad in (b"nan", b"1_000", b"0x10", b"", b"1 2"):
        with pytest.raises(PayloadError, match="expected a plain number") as caught:
            topic_map.map("n/a", bad, 9.0)
        assert caught.value.field == "payload"


def test_a_level_past_a_hash_filters_topic_is_a_payload_error() -> None:
    topic_map = one_route(topic="a/#", machine_id="{3}", sensor="s", value="$", ts="received")
    assert topic_map.map("a/b/c/d", b"1", 0.0)["machine_id"] == "d"
    with pytest.raises(PayloadError, match=r"topic has 2 levels, the route names level \{3\}"):
        topic_map.map("a/b", b"1", 0.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"ts_unit": "sec"},
            "--map m.toml: route 2: ts_unit='sec': expected s|ms|us|ns|iso",
        ),
        ({"payload": "xml"}, "--map m.toml: route 2: payload='xml': expected json|number"),
        ({"colour": "red"}, "--map m.toml: route 2: unknown key 'colour': expected one of"),
        ({"topic": "a/b#"}, "route 2: topic='a/b#': '#' must stand alone in the last level"),
        ({"machine_id": "{4}"}, "route 2: machine_id='{4}': level {4} is past the filter's"),
        ({"sensor": "x{y}"}, "route 2: sensor='x{y}': braces only as {N}"),
        ({"value": "v"}, "route 2: value='v': expected a JSON path like $.v"),
        ({"payload": "number"}, "route 2: value='$.v': a number payload is the value: use '$'"),
        ({"ts": 5}, "route 2: ts=5: expected text"),
    ],
)
def test_bad_map_files_name_the_file_route_and_key(extra: dict, message: str) -> None:
    good = "\n".join(f"{k} = {json.dumps(v)}" for k, v in JSON_ROUTE.items())
    bad = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {**JSON_ROUTE, **extra}.items())
    with pytest.raises(MapFileError) as caught:
        TopicMap.parse(f"[[route]]\n{good}\n[[route]]\n{bad}\n", "m.toml")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--map m.toml: no [[route]] tables: expected at least one"),
        ("[[route]\n", "--map m.toml: not valid TOML"),
        ("[routes]\n", "--map m.toml: unknown table 'routes': expected [[route]]"),
        ('[[route]]\ntopic = "a"\n', "--map m.toml: route 1: machine_id: missing"),
    ],
)
def test_unusable_map_files(text: str, message: str) -> None:
    with pytest.raises(MapFileError) as caught:
        TopicMap.parse(text, "m.toml")
    assert str(caught.value).startswith(message)


def test_broker_urls_and_options_are_checked() -> None:
    assert Broker.parse("mqtts://10.0.0.5") == Broker("10.0.0.5", 8883, True)
    for bad in ("mqtt://", "mqtt://h:99999", "mqtt://h/x", "mqtt://u:p@h", "h:1883"):
        with pytest.raises(ValueError, match=re.escape(f"--broker {bad!r}")):
            Broker.parse(bad)
    with pytest.raises(ValueError, match="--tls-ca: the broker URL must be mqtts://"):
        SubscriberOptions(Broker("h", 1883, False), ("a/#",), "id", tls_ca=Path("/etc/ssl/ca.pem"))
    with pytest.raises(ValueError, match="'#' must stand alone"):
        SubscriberOptions(Broker("h", 1883, False), ("a/#/b",), "id")


def test_the_command_fails_in_one_line_naming_what_to_fix(tmp_path: Path) -> None:
    bad_map = tmp_path / "map.toml"
    bad_map.write_text('[[route]]\ntopic = "a/+"\nmachine_id = "{1}"\nsensor = "s"\n')
    for args, expected in (
        (["--broker", "tcp://plant:1883", "--map", str(EXAMPLE_MAP)], "--broker 'tcp://plant"),
        (["--broker", "mqtt://plant", "--map", str(bad_map)], f"--map {bad_map}: route 1: ts"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "wearwatch", "ingest", "mqtt", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "WEARWATCH_DATA_DIR": str(tmp_path)},
        )
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), done.stderr


# -- against a real broker ----------------------------------------------------------------------


MOSQUITTO = "/usr/sbin/mosquitto"


def mosquitto_binary() -> str | None:
    """The broker's path, or None when it is not installed."""
    return MOSQUITTO if Path(MOSQUITTO).exists() else shutil.which("mosquitto")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.contextmanager
def mosquitto_broker(
    startup_timeout_s: float = 20.0, port: int | None = None
) -> Iterator[tuple[str, int]]:
    """Run Debian's mosquitto on a free loopback port — anonymous, in memory, queues deep
    enough for every QoS 1 message published while the ingest is down — until the block ends."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="wearwatch-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"  # the broker itself is never killed in these tests
            "max_queued_messages 1000000\n"  # per client, beyond those in flight (default 1000)
            "max_queued_bytes 0\n"
            "max_inflight_messages 100\n"  # to MQTT 3 clients; v5 ones set Receive Maximum
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        log_path = Path(tmp) / "mosquitto.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            deadline = time.monotonic() + startup_timeout_s
            while not _accepts(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not start on port {port}: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.05)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[tuple[str, int]]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (.ci/run installs Debian's mosquitto)")
    with mosquitto_broker() as address:
        yield address


MACHINES, SENSORS, SECONDS = 50, ("vib", "temp"), 100


def valid_messages() -> list[tuple[str, bytes, tuple[str, str, int], float]]:
    """(topic, payload, reading id, value): 50 machines × 2 sensors × 100 s."""
    out = []
    for second in range(SECONDS):
        for m in range(MACHINES):
            for k, sensor in enumerate(SENSORS):
                value = round(((m * 31 + second * 7 + k * 13) % 1000) / 10.0, 1)
                unit = "mm/s" if sensor == "vib" else "degC"
                payload = json.dumps({"v": value, "t": T0 + second, "u": unit}).encode()
                ident = (f"m{m}", sensor, (T0 + second) * 1_000_000)
                out.append((f"plant/m{m}/{sensor}/reading", payload, ident, value))
    return out


def malformed_messages() -> list[tuple[str, bytes]]:
    """(topic, payload) that must each become one dead letter (distinct by topic and bytes)."""
    out = []
    for i in range(64):
        topic = f"plant/m{i % MACHINES}/vib/reading"
        kind = i % 8
        if kind == 0:
            out.append((topic, f"not json {i}".encode()))
        elif kind == 1:
            out.append((topic, json.dumps({"t": T0 + i, "u": "mm/s"}).encode()))  # no value
        elif kind == 2:
            out.append((topic, f'{{"v": NaN, "t": {T0 + i}, "u": "x"}}'.encode()))
        elif kind == 3:
            out.append((topic, b"\xff\xfe" + str(i).encode()))  # not UTF-8
        elif kind == 4:
            out.append((topic, json.dumps({"v": "high", "t": T0 + i, "u": "x"}).encode()))
        elif kind == 5:
            out.append((topic, json.dumps({"v": 1.0, "t": 1e12 + i, "u": "x"}).encode()))
        elif kind == 6:  # no route for this topic (the subscription is plant/#)
            out.append((f"plant/m{i}/vib/status", json.dumps({"v": 1.0, "t": T0}).encode()))
        else:  # an empty machine level: the contract refuses machine_id ''
            payload = json.dumps({"v": i, "t": T0 + i, "u": "mm/s"}).encode()
            out.append(("plant//vib/reading", payload))
    return out


def logged(db: Path) -> tuple[list[tuple[tuple[str, str, int], float]], list[tuple[str, bytes]]]:
    """Every reading (id, value) and dead letter (origin, raw) in the log, duplicates kept."""
    log = SqliteLog(db)
    try:
        readings = []
        for record in read_all(log, topics.READINGS.name):
            columns, bad = decode_columns(record.value, Reading)
            assert bad == []
            readings += zip(
                zip(
                    columns.fields["machine_id"].tolist(),
                    columns.fields["sensor"].tolist(),
                    columns.ts_us.tolist(),
                    strict=True,
                ),
                columns.fields["value"].tolist(),
                strict=True,
            )
        letters = [
            (letter.source_topic, letter.raw)
            for letter in (
                decode_event(r.value, DeadLetter) for r in read_all(log, topics.DEAD_LETTERS.name)
            )
        ]
    finally:
        log.close()
    return readings, letters


class Ingest:
    """``wearwatch ingest mqtt`` as a real subprocess, its stderr in a file."""

    def __init__(self, tmp: Path, host: str, port: int) -> None:
        self.tmp, self.host, self.port = tmp, host, port
        self.db = tmp / "log.db"
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        self.stderr = self.tmp / f"ingest-{self.runs}.stderr"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "WEARWATCH_DATA_DIR": str(self.tmp)},
            )
        self.wait_for(lambda text: "subscribed to plant/#" in text, "to subscribe")

    def command(self) -> list[str]:
        flags = {
            "--broker": f"mqtt://{self.host}:{self.port}",
            "--topic": "plant/#",
            "--map": str(EXAMPLE_MAP),
            "--bus": f"sqlite:///{self.db}",
            "--max-batch": "300",
            "--linger-s": "0.05",
            "--client-id": "wearwatch-test-ingest",
            "--status-every-s": "0.2",
        }
        args = [part for pair in flags.items() for part in pair]
        return [sys.executable, "-m", "wearwatch", "ingest", "mqtt", *args]

    def text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def written(self) -> int:
        """Readings this run has written, from its latest status line."""
        found = re.findall(r"readings ([\d,]+)", self.text())
        return int(found[-1].replace(",", "")) if found else 0

    def wait_for(self, condition: object, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self.text()):  # type: ignore[operator]
            assert self.proc is not None and self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"ingest run {self.runs} did not {what}"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def publish(host: str, port: int, messages: list[tuple[str, bytes]], done: list[int]) -> None:
    """Publish at QoS 1 in paced chunks, so the ingest is killed while messages still flow."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wearwatch-test-plant")
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = []
        for index, (topic, payload) in enumerate(messages):
            infos.append(client.publish(topic, payload, qos=1))
            if index % 500 == 499:
                infos[-1].wait_for_publish(60)
                done.append(index + 1)
                time.sleep(0.05)
        for info in infos:
            info.wait_for_publish(60)
        done.append(len(messages))
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.slow  # 25-50 s on a loaded 2-core machine: three process starts, 10,064 messages
def test_every_reading_once_and_every_bad_payload_a_dead_letter_across_two_sigkills(
    tmp_path: Path, mosquitto: tuple[str, int]
) -> None:
    host, port = mosquitto
    valid = valid_messages()
    bad = malformed_messages()
    assert len(valid) == 10_000 and len(set(bad)) == len(bad) == 64
    # The malformed payloads are spread through the stream.
    stream = [(t, p) for t, p, _, _ in valid]
    for n, message in enumerate(bad):
        stream.insert(n * (len(stream) // len(bad)), message)

    ingest = Ingest(tmp_path, host, port)
    ingest.start()  # the first start creates the persistent session on the broker
    published: list[int] = []
    publisher = threading.Thread(target=publish, args=(host, port, stream, published))
    publisher.start()
    try:
        # Kill 1 once this run has written 2,500 readings; kill 2 once the next has written
        # 3,000 more. Between kill and restart the broker queues what is published.
        for threshold in (2_500, 3_000):
            ingest.wait_for(lambda _text, n=threshold: ingest.written() >= n, f"write {threshold}")
            ingest.kill()
            time.sleep(0.3)
            ingest.start()
        publisher.join(120)
        assert not publisher.is_alive() and published[-1] == len(stream)

        deadline = time.monotonic() + 60
        while True:
            readings, letters = logged(ingest.db)
            if len(readings) >= len(valid) and len(letters) >= len(bad):
                break
            assert time.monotonic() < deadline, (len(readings), len(letters), ingest.text())
            time.sleep(0.25)
        time.sleep(1.0)  # anything still arriving would be a duplicate: let it show
        assert ingest.terminate() == 0, ingest.text()  # SIGTERM: flush, ack, disconnect
    finally:
        if ingest.proc is not None and ingest.proc.poll() is None:
            ingest.proc.kill()
        publisher.join(60)

    readings, letters = logged(ingest.db)
    ids = [rid for rid, _ in readings]
    assert len(ids) == len(set(ids)) == len(valid)  # exactly once by id
    assert sorted(readings) == sorted((rid, value) for _, _, rid, value in valid)
    assert Counter(letters) == Counter((f"mqtt:{t}", p) for t, p in bad)
    assert ingest.runs == 3
    assert "Traceback" not in ingest.text()
    assert "stopped: mqtt disconnected" in ingest.text()


def test_the_subscriber_reconnects_with_backoff_when_the_broker_restarts(tmp_path: Path) -> None:
    """In process: the broker goes away and comes back on the same port (empty: no
    persistence), the subscriber retries with backoff, subscribes again and goes on."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (.ci/run installs Debian's mosquitto)")
    import asyncio

    from wearwatch.ingest.gateway import GatewayOptions, IngestGateway
    from wearwatch.ingest.mqtt import MqttSubscriber

    db = tmp_path / "log.db"
    log = SqliteLog(db)
    lines: list[str] = []
    subscriber: MqttSubscriber | None = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def published(host: str, port: int, first: int) -> None:
        messages = [(t, p) for t, p, _, _ in valid_messages()[first : first + 100]]
        publish(host, port, messages, [])

    def written(n: int) -> None:
        deadline = time.monotonic() + 30
        while subscriber is None or subscriber.gateway.counts["written"] < n:
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)

    with mosquitto_broker() as (host, port):
        options = SubscriberOptions(
            Broker(host, port, False), ("plant/#",), "reconnect-test", backoff_s=0.1
        )
        gateway = IngestGateway(log, GatewayOptions(max_batch=50, linger_s=0.02))
        subscriber = MqttSubscriber(
            gateway, TopicMap.load(EXAMPLE_MAP), options, status=lines.append
        )
        runner = threading.Thread(target=loop.run_until_complete, args=(subscriber.run(stop),))
        runner.start()
        deadline = time.monotonic() + 30
        while not any("subscribed" in line for line in lines):
            assert time.monotonic() < deadline and runner.is_alive(), lines
            time.sleep(0.05)
        published(host, port, 0)
        written(100)
    try:
        deadline = time.monotonic() + 30
        while not any("retrying in" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        with mosquitto_broker(port=port):
            deadline = time.monotonic() + 30
            while sum("subscribed" in line for line in lines) < 2:
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
            published(host, port, 100)
            written(200)
            loop.call_soon_threadsafe(stop.set)
            runner.join(30)
            # The stop acknowledged everything before disconnecting: the same session,
            # resumed, has nothing to deliver again.
            again = MqttSubscriber(
                IngestGateway(log, GatewayOptions()), TopicMap.load(EXAMPLE_MAP), options
            )
            later = asyncio.Event()
            loop.call_later(1.5, later.set)
            loop.run_until_complete(again.run(later))
            assert again.counts.connects == 1 and again.counts.messages == 0
    finally:
        if runner.is_alive():
            loop.call_soon_threadsafe(stop.set)
            runner.join(30)
        log.close()
    assert not runner.is_alive()
    assert subscriber.counts.connects == 2 and subscriber.counts.disconnects == 1
    retries = [line for line in lines if "retrying in" in line]
    waits = [float(re.search(r"retrying in ([\d.]+) s", line).group(1)) for line in retries]
    assert waits == [0.1 * 2**i for i in range(len(waits))]  # doubling from the first wait
    readings, letters = logged(db)
    ids = [rid for rid, _ in readings]
    assert len(ids) == len(set(ids)) == 200 and letters == []
    assert sorted(ids) == sorted(rid for _, _, rid, _ in valid_messages()[:200])


def test_a_stop_writes_and_acknowledges_the_pending_batch_before_disconnecting(
    tmp_path: Path, mosquitto: tuple[str, int]
) -> None:
    """Messages wait in a batch that only a stop can flush (linger 60 s): the stop writes
    them, acknowledges them, and the resumed session has nothing to deliver again."""
    import asyncio

    from wearwatch.ingest.gateway import GatewayOptions, IngestGateway
    from wearwatch.ingest.mqtt import MqttSubscriber

    host, port = mosquitto
    log = SqliteLog(tmp_path / "log.db")
    options = SubscriberOptions(Broker(host, port, False), ("plant/#",), "stop-test")
    topic_map = TopicMap.load(EXAMPLE_MAP)
    lines: list[str] = []
    gateway = IngestGateway(log, GatewayOptions(max_batch=1000, linger_s=60.0))
    subscriber = MqttSubscriber(gateway, topic_map, options, status=lines.append)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=loop.run_until_complete, args=(subscriber.run(stop),))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not any("subscribed" in line for line in lines):
            assert time.monotonic() < deadline and runner.is_alive(), lines
            time.sleep(0.05)
        publish(host, port, [(t, p) for t, p, _, _ in valid_messages()[:50]], [])
        while gateway.pending < 50:
            assert time.monotonic() < deadline, gateway.pending
            time.sleep(0.05)
        assert gateway.counts["written"] == 0 and subscriber.counts.acked == 0
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(30)
    assert gateway.counts["written"] == 50 and subscriber.counts.acked == 50

    again = MqttSubscriber(IngestGateway(log, GatewayOptions()), topic_map, options)
    later = asyncio.Event()
    loop.call_later(1.5, later.set)
    loop.run_until_complete(again.run(later))
    log.close()
    assert again.counts.connects == 1 and again.counts.messages == 0
