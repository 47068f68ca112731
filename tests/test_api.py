"""The API per endpoint, against real twin and worker output: exact values checked against
the log itself (brute force: every record re-read and folded here), the registry and the
models; state-changing endpoints checked record by record on the log, and refused without the
token with nothing changed."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient

import api_platform as H  # tests/ is on sys.path (conftest.py)
from wearwatch import topics
from wearwatch.api.app import create_app
from wearwatch.api.platform import Platform, PlatformConfig
from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import decode_columns, encode_events, is_columnar
from wearwatch.events import (
    Alarm,
    AlarmCommand,
    AnomalyScore,
    FeatureVector,
    MachineHealth,
    PassOutcome,
    Reading,
    Trigger,
    TwinCommand,
    decode_record,
    encode,
    utc,
)
from wearwatch.learn.rul.inference import predict_engine
from wearwatch.pipelines.fleet.alarms import AlarmConfig
from wearwatch.pipelines.fleet.flow import fleet_alarms_flow
from wearwatch.runtime.flow_worker import FlowWorker
from wearwatch.runtime.status import ComponentStatus, write_status
from wearwatch.runtime.worker import WorkerOptions
from wearwatch.store.registry import ModelRegistry

TOKEN = H.TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _platform(root: Path, log_path: Path, registry_dir: Path, **extra: Any) -> Platform:
    config = PlatformConfig(
        bus_url=f"sqlite:///{log_path}",
        data_dir=root,
        registry_dir=registry_dir,
        token=TOKEN,
        status_dir=root / "status",
        **extra,
    )
    platform = Platform(config)
    while platform.view.poll() > 0:
        pass
    return platform


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, TestClient]]:
    """A read-only platform over the prepared data (tests here must not change it)."""
    data = H.prepared().copy(tmp_path_factory.mktemp("shared"))
    platform = _platform(data.root, data.log_path, data.registry_dir)
    with TestClient(create_app(platform, dashboard=False)) as client:
        yield platform, client
    platform.close()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[Platform, TestClient]]:
    """A private copy a test may change."""
    data = H.prepared().copy(tmp_path / "data")
    platform = _platform(data.root, data.log_path, data.registry_dir)
    with TestClient(create_app(platform, dashboard=False)) as client:
        yield platform, client
    platform.close()


def _events(platform: Platform, topic: str, kind: Any) -> list[Any]:
    """Every event of ``topic``, partition by partition, in log order (brute force)."""
    out: list[Any] = []
    for record in read_all(platform.log, topic):
        out.extend(decode_record(record.value, kind).events)
    return out


def _ends(platform: Platform) -> dict[str, dict[int, int]]:
    return {t: platform.log.end_offsets(t) for t in sorted(platform.log.topics())}


def _latest(events: list[Any], key: str) -> dict[str, Any]:
    """The last event per key in log order (per key, log order is one partition's order)."""
    out: dict[str, Any] = {}
    for e in events:
        out[getattr(e, key)] = e
    return out


# ------------------------------------------------------------------------------- fleet


def test_latest_health_and_score_are_the_last_ones_on_the_log(shared) -> None:
    platform, client = shared
    health = _latest(_events(platform, topics.HEALTH.name, MachineHealth), "machine_id")
    scores = _latest(_events(platform, topics.SCORES.name, AnomalyScore), "machine_id")
    assert sorted(health) == platform.machine_ids() and len(health) == H.MACHINES
    for machine, want in health.items():
        r = client.get(f"/predict/latest/{machine}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.content == encode(want)
        r = client.get(f"/anomaly/latest/{machine}")
        assert r.content == encode(scores[machine])
    machines = client.get("/machines").json()
    assert [m["machine_id"] for m in machines] == sorted(health)
    for m in machines:
        want = health[m["machine_id"]]
        assert (m["health"], m["risk"], m["risk_level"]) == (
            want.health,
            want.risk,
            want.risk_level,
        )
        assert m["time_to_maintenance_h"] == want.time_to_maintenance_h
        assert m["severity"] == scores[m["machine_id"]].severity
        assert client.get(f"/machines/{m['machine_id']}").json() == m


@pytest.mark.parametrize(
    "path",
    [
        "/predict/latest/pump-999",
        "/anomaly/latest/pump-999",
        "/machines/pump-999",
        "/machines/pump-999/features?window=10m",
    ],
)
def test_an_unknown_machine_is_a_404_naming_it(shared, path: str) -> None:
    _, client = shared
    r = client.get(path)
    assert r.status_code == 404
    assert r.json() == {"detail": "unknown machine 'pump-999'"}


def test_features_of_one_window_length_since_a_time(shared) -> None:
    platform, client = shared
    machine = platform.machine_ids()[1]
    every = [
        fv
        for fv in _events(platform, topics.FEATURES.name, FeatureVector)
        if fv.machine_id == machine and fv.window_s == 600.0
    ]
    since = every[len(every) // 2].ts
    r = client.get(
        f"/machines/{machine}/features", params={"window": "10m", "since": since.isoformat()}
    )
    assert r.status_code == 200
    got = [msgspec.convert(x, FeatureVector, strict=False) for x in r.json()]
    assert got == [fv for fv in every if fv.ts > since]
    assert len(got) == len(every) - len(every) // 2 - 1
    assert client.get(f"/machines/{machine}/features", params={"window": "600"}).json() == [
        json.loads(encode(fv)) for fv in every
    ]
    bad = client.get(f"/machines/{machine}/features", params={"window": "ten"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "window"]
    naive = client.get(f"/machines/{machine}/features", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["query", "since"]


def test_post_anomaly_scores_against_a_fresh_state_and_changes_nothing(shared) -> None:
    platform, client = shared
    model = ModelRegistry(platform.config.registry_dir).load("anomaly")
    model.model_version = "anomaly@v0001"
    windows = _events(platform, topics.FEATURES.name, FeatureVector)[-40:]
    served = platform.models.get("anomaly")
    before = (
        json.dumps(served.info(), sort_keys=True),
        _ends(platform),
        {m: platform.view.latest_score_json(m) for m in platform.machine_ids()},
    )
    severities = set()
    for fv in windows:
        r = client.post(
            "/anomaly", content=encode(fv), headers={"content-type": "application/json"}
        )
        assert r.status_code == 200
        want = model.score(fv, model.new_state(fv.machine_id))
        assert r.content == encode(want)
        severities.add(want.severity)
        assert client.post("/anomaly", content=encode(fv)).content == r.content  # no memory
    after = (
        json.dumps(served.info(), sort_keys=True),
        _ends(platform),
        {m: platform.view.latest_score_json(m) for m in platform.machine_ids()},
    )
    assert before == after
    assert severities == {"normal", "watch", "high"}  # the last 40 windows of the prepared day
    bad = json.loads(encode(windows[0]))
    bad["features"]["vibration.mean"] = "high"
    r = client.post("/anomaly", json=bad)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "features", "vibration.mean"]
    bad["features"]["vibration.mean"] = 1.0
    del bad["ts"]
    assert client.post("/anomaly", json=bad).json()["detail"][0]["loc"] == ["body", "ts"]


def test_post_predict_from_windows_equals_the_streams_risk(shared) -> None:
    """One machine's windows run through the trend features as the stream ran them: the risk
    is exactly the one the stream published for the last window."""
    platform, client = shared
    risk_model = ModelRegistry(platform.config.registry_dir).load("risk")
    health = _events(platform, topics.HEALTH.name, MachineHealth)
    for machine in platform.machine_ids()[:3]:
        windows = [
            fv
            for fv in _events(platform, topics.FEATURES.name, FeatureVector)
            if fv.machine_id == machine and fv.window_s == risk_model.window_s
        ]
        last = [h for h in health if h.machine_id == machine][-1]
        assert last.ts == windows[-1].ts
        r = client.post("/predict", content=msgspec.json.encode({"windows": windows}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["risk"] == last.risk and body["risk_level"] == last.risk_level
        assert body["machine_id"] == machine and body["model_version"] == "risk@v0001"
        # The same from the model's whole input vector by name.
        trend = risk_model.new_trend()
        for fv in windows:
            inputs = trend.update(fv)
        vector = {n: inputs.get(n, 0.0) for n in risk_model.feature_names}
        vector = {n: (v if math.isfinite(v) else 0.0) for n, v in vector.items()}
        r = client.post("/predict", json={"features": vector, "machine_id": machine})
        assert r.json()["risk"] == pytest.approx(
            min(1.0, max(0.0, risk_model.predict_proba(vector))), abs=0
        )
    name = risk_model.feature_names[3]
    missing = dict(vector)
    del missing[name]
    r = client.post("/predict", json={"features": missing})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "features", name]
    assert name in r.json()["detail"][0]["msg"]
    infinite = msgspec.json.encode({"features": vector}).replace(
        f'"{name}":'.encode(), f'"{name}":1e999,"x":'.encode(), 1
    )
    r = client.post("/predict", content=infinite.replace(b',"x":', b',"_x":', 1))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "features", name]
    both = client.post("/predict", json={"features": vector, "windows": []})
    assert both.status_code == 422 and both.json()["detail"][0]["loc"] == ["body", "features"]


def test_post_rul_equals_predict_engine(shared) -> None:
    platform, client = shared
    engines = H.synthetic_engines(units=2, seed=11)
    engine = engines[engines["unit"] == 2].drop(columns=["unit", "rul"])
    model = ModelRegistry(platform.config.registry_dir).load("rul-FD001")
    want = predict_engine(engine, model)
    cycles = engine.to_dict(orient="records")
    r = client.post("/rul", json={"subset": "FD001", "cycles": cycles})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rul"], body["horizon_probability"]) == (want["rul"], want["horizon_probability"])
    assert (body["cycles"], body["last_cycle"], body["horizon_cycles"]) == (
        len(engine),
        int(engine["cycle"].max()),
        30,
    )
    assert body["model_version"] == "rul-FD001@v0001"
    broken = [dict(c) for c in cycles]
    del broken[4]["sensor_7"]
    r = client.post("/rul", json={"cycles": broken})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "body",
        "cycles",
        4,
        "sensor_7",
    ]
    twice = [*cycles, cycles[0]]
    assert client.post("/rul", json={"cycles": twice}).status_code == 422
    r = client.post("/rul", json={"subset": "FD002", "cycles": cycles})
    assert r.status_code == 503
    assert r.json()["detail"].endswith("train it: wearwatch train cmapss --subset FD002")


def test_missing_models_are_503_naming_the_command(tmp_path: Path) -> None:
    data = H.prepared()
    platform = _platform(tmp_path, data.log_path, tmp_path / "no-models")
    fv = _events(platform, topics.FEATURES.name, FeatureVector)[-1]
    with TestClient(create_app(platform, dashboard=False)) as client:
        r = client.post("/anomaly", content=encode(fv))
        assert (r.status_code, r.json()["detail"]) == (
            503,
            "no anomaly model is served; train it: wearwatch train anomaly",
        )
        r = client.post("/predict", json={"windows": [json.loads(encode(fv))]})
        assert r.json()["detail"].endswith("train it: wearwatch train risk")
        assert client.get("/baseline/info").status_code == 503
        assert client.get("/models").json() == []
    platform.close()


def test_baseline_info_is_the_served_models_info(shared) -> None:
    platform, client = shared
    model = ModelRegistry(platform.config.registry_dir).load("anomaly")
    model.model_version = "anomaly@v0001"
    assert client.get("/baseline/info").json() == json.loads(json.dumps(model.info()))


# ------------------------------------------------------------------------------ alarms


def _latest_alarms(platform: Platform) -> dict[str, Alarm]:
    return _latest(_events(platform, topics.ALARMS.name, Alarm), "alarm_id")


def test_alarm_filters_equal_a_recount_of_the_log(shared) -> None:
    platform, client = shared
    alarms = _latest_alarms(platform)
    assert alarms, "the prepared day should raise alarms"
    order = sorted(alarms.values(), key=lambda a: (a.raised_at, a.alarm_id))
    every = client.get("/alarms").json()
    assert every == [json.loads(encode(a)) for a in order]
    for status in ("active", "recovering", "cleared"):
        want = [a.alarm_id for a in order if a.status == status]
        got = [a["alarm_id"] for a in client.get("/alarms", params={"status": status}).json()]
        assert got == want
    got = [a["alarm_id"] for a in client.get("/alarms", params={"status": "open"}).json()]
    assert got == [a.alarm_id for a in order if a.status != "cleared"]
    severity = order[0].severity
    got = [a["alarm_id"] for a in client.get("/alarms", params={"severity": severity}).json()]
    assert got == [a.alarm_id for a in order if a.severity == severity]
    machine = order[-1].machine_id
    got = client.get("/alarms", params={"machine": machine}).json()
    assert [a["alarm_id"] for a in got] == [a.alarm_id for a in order if a.machine_id == machine]
    alarm_id = next(iter(alarms))
    assert client.get(f"/alarms/{alarm_id}").content == encode(alarms[alarm_id])
    assert client.get("/alarms", params={"severity": "huge"}).status_code == 422


def test_alarm_actions_go_to_the_alarm_input_stamped_with_event_time(own) -> None:
    platform, client = own
    alarm = next(iter(_latest_alarms(platform).values()))
    machine = alarm.machine_id
    now = platform.view.event_time(machine)
    r = client.post(f"/alarms/{alarm.alarm_id}/ack", json={"by": "ann"}, headers=AUTH)
    assert r.status_code == 202, r.text
    ack = AlarmCommand(
        ts=now, machine_id=machine, action="acknowledge", alarm_id=alarm.alarm_id, by="ann"
    )
    assert r.content == encode(ack)
    r = client.put(f"/machines/{machine}/silence", json={"duration_s": 3600}, headers=AUTH)
    assert r.status_code == 202
    silence = AlarmCommand(
        ts=now, machine_id=machine, action="silence", until=now + timedelta(hours=1)
    )
    assert r.content == encode(silence)
    r = client.delete(f"/machines/{machine}/silence", headers=AUTH)
    unsilence = AlarmCommand(ts=now, machine_id=machine, action="unsilence")
    assert r.status_code == 202 and r.content == encode(unsilence)
    r = client.post(f"/alarms/{alarm.alarm_id}/clear", json={"by": "bob"}, headers=AUTH)
    clear = AlarmCommand(
        ts=now, machine_id=machine, action="clear", alarm_id=alarm.alarm_id, by="bob"
    )
    assert r.content == encode(clear)
    sent = _events(platform, topics.ALARM_INPUT.name, AlarmCommand)
    assert sent == [ack, silence, unsilence, clear]
    # Refusals name what is wrong and write nothing.
    ends = _ends(platform)
    r = client.post("/alarms/pump-001/machine/999/ack", json={"by": "ann"}, headers=AUTH)
    assert (r.status_code, r.json()["detail"]) == (404, "unknown alarm 'pump-001/machine/999'")
    r = client.post(f"/alarms/{alarm.alarm_id}/ack", json={}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "by"]
    both = {"duration_s": 60, "until": "2026-01-01T00:00:00Z"}
    r = client.put(f"/machines/{machine}/silence", json=both, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "until"]
    r = client.put("/machines/pump-999/silence", json={"duration_s": 60}, headers=AUTH)
    assert (r.status_code, r.json()["detail"]) == (404, "unknown machine 'pump-999'")
    assert _ends(platform) == ends


# ------------------------------------------------------------------------------- twins


def test_twin_commands_are_checked_and_put_on_the_control_topics(own) -> None:
    platform, client = own
    r = client.post("/twin/mill/shock", json={"wear": 0.8}, headers=AUTH)
    assert r.status_code == 202, r.text
    shock = msgspec.json.decode(r.content, type=TwinCommand)
    assert (shock.command, shock.args) == ("shock", {"wear": 0.8})
    r = client.post("/twin/mill/gradual", json={"step": 0.01, "every_s": 60}, headers=AUTH)
    assert r.status_code == 202
    assert client.post("/twin/mill/maintenance", headers=AUTH).status_code == 202
    r = client.post("/twin/mill/set-wear", json={"wear": 0.2}, headers=AUTH)
    assert msgspec.json.decode(r.content, type=TwinCommand).command == "set_wear"
    mill = _events(platform, topics.MILL_CONTROL.name, TwinCommand)
    assert [(c.command, c.args) for c in mill] == [
        ("shock", {"wear": 0.8}),
        ("gradual", {"step": 0.01, "every_s": 60.0}),
        ("maintenance", {}),
        ("set_wear", {"wear": 0.2}),
    ]
    machine = "motor-002"
    r = client.post(
        f"/twin/fleet/{machine}/inject-fault",
        json={"mode": "bearing_wear", "pf_h": 6},
        headers=AUTH,
    )
    assert r.status_code == 202, r.text
    r = client.post(f"/twin/fleet/{machine}/repair", headers=AUTH)
    assert r.status_code == 202
    fleet = _events(platform, topics.FLEET_CONTROL.name, TwinCommand)
    assert [(c.command, c.args) for c in fleet] == [
        ("inject_fault", {"mode": "bearing_wear", "pf_h": 6.0, "machine": machine}),
        ("repair", {"machine": machine}),
    ]
    ends = _ends(platform)
    r = client.post("/twin/mill/set-wear", json={"wear": 2.0}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "wear"]
    r = client.post(f"/twin/fleet/{machine}/inject-fault", json={"mode": "seal_leak"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "mode"]
    assert "seal_leak" in r.json()["detail"][0]["msg"]
    r = client.post("/twin/fleet/pump-999/repair", headers=AUTH)
    assert (r.status_code, r.json()["detail"]) == (404, "unknown machine 'pump-999'")
    assert _ends(platform) == ends


# ------------------------------------------------------------------------------ ingest


def _readings(n: int, machine: str = "pump-001") -> list[Reading]:
    return [
        Reading(
            ts=utc(1.767e9 + i),
            machine_id=f"{machine[:-1]}{i % 3 + 1}",
            sensor="vibration",
            value=1.0 + i,
        )
        for i in range(n)
    ]


def _ingested(platform: Platform, ends: dict[str, dict[int, int]]) -> list[Reading]:
    out: list[Reading] = []
    for partition, end in sorted(platform.log.end_offsets(topics.READINGS.name).items()):
        start = ends[topics.READINGS.name].get(partition, 0)
        for record in platform.log.read(topics.READINGS.name, partition, start, end - start):
            assert is_columnar(record.value)
            columns, bad = decode_columns(record.value, Reading)
            assert bad == [] and record.key == columns.fields["machine_id"][0].encode()
            out.extend(columns.events())
    return out


@pytest.mark.parametrize("encoding", ["json", "arrow"])
def test_ingest_writes_every_reading_keyed_by_machine(own, encoding: str) -> None:
    platform, client = own
    readings = _readings(30)
    ends = _ends(platform)
    if encoding == "json":
        body, ctype = msgspec.json.encode(readings), "application/json"
    else:
        body, ctype = encode_events(readings), "application/vnd.apache.arrow.stream"
    r = client.post("/ingest/readings", content=body, headers={**AUTH, "content-type": ctype})
    assert r.status_code == 202, r.text
    assert r.json() == {"topic": "fleet.readings", "readings": 30, "records": r.json()["records"]}
    got = _ingested(platform, ends)
    key = lambda e: (e.machine_id, e.ts)  # noqa: E731
    assert sorted(got, key=key) == sorted(readings, key=key)


def test_ingest_refuses_a_batch_with_one_bad_row_and_writes_nothing(own) -> None:
    platform, client = own
    ends = _ends(platform)
    rows = [json.loads(encode(r)) for r in _readings(5)]
    rows[3]["value"] = "loud"
    r = client.post("/ingest/readings", json=rows, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 3, "value"]
    rows[3]["value"] = 1.0
    rows[2]["machine_id"] = ""
    r = client.post("/ingest/readings", json=rows, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 2, "machine_id"]
    rows[2]["machine_id"] = "pump-002"
    rows[4]["ts"] = "1800-01-01T00:00:00Z"  # before the contract's earliest event time
    r = client.post("/ingest/readings", json=rows, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 4, "ts"]
    r = client.post(
        "/ingest/readings",
        content=b"not arrow",
        headers={**AUTH, "content-type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    r = client.post(
        "/ingest/readings", content=b"a,b", headers={**AUTH, "content-type": "text/csv"}
    )
    assert r.status_code == 415
    r = client.post(
        "/ingest/readings", content=b"[]", headers={**AUTH, "content-length": str(1 << 30)}
    )
    assert r.status_code == 413
    assert _ends(platform) == ends


# ------------------------------------------------------------------------------ models


def test_promote_rollback_and_reload(own) -> None:
    platform, client = own
    registry = ModelRegistry(platform.config.registry_dir)
    families = client.get("/models").json()
    assert [(f["family"], f["current"], f["served"]) for f in families] == [
        ("anomaly", 1, "anomaly@v0001"),
        ("risk", 1, "risk@v0001"),
        ("rul-FD001", 1, "rul-FD001@v0001"),
    ]
    registry.register("anomaly", H.prepared().anomaly)  # v0002, not current
    assert client.get("/models/anomaly").json()["current"] == 1
    r = client.post("/models/anomaly/promote", json={"version": "v2"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"served": {"anomaly": "anomaly@v0002"}, "current": 2}
    assert registry.current_version("anomaly") == 2
    fv = _events(platform, topics.FEATURES.name, FeatureVector)[-1]
    assert client.post("/anomaly", content=encode(fv)).json()["model_version"] == "anomaly@v0002"
    r = client.post("/models/anomaly/rollback", headers=AUTH)
    assert r.json() == {"served": {"anomaly": "anomaly@v0001"}, "current": 1}
    r = client.post("/models/anomaly/rollback", headers=AUTH)
    assert r.status_code == 409 and "nothing to roll back to" in r.json()["detail"]
    registry.promote("anomaly", 2)  # behind the API's back: reload picks it up
    assert client.post("/anomaly", content=encode(fv)).json()["model_version"] == "anomaly@v0001"
    r = client.post("/models/anomaly/reload", headers=AUTH)
    assert r.json() == {"served": {"anomaly": "anomaly@v0002"}, "current": 2}
    r = client.post("/models/nope/promote", json={"version": 1}, headers=AUTH)
    assert r.status_code == 404 and "unknown model family 'nope'" in r.json()["detail"]
    r = client.post("/models/anomaly/promote", json={"version": 9}, headers=AUTH)
    assert r.status_code == 404 and "v0009" in r.json()["detail"]
    r = client.post("/models/anomaly/promote", json={"version": "latest"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "version"]
    assert client.get("/models/nope").status_code == 404


# -------------------------------------------------------------------------------- auth

STATE_CHANGING = [
    ("post", "/models/anomaly/reload", None),
    ("post", "/models/anomaly/promote", {"version": 1}),
    ("post", "/models/anomaly/rollback", None),
    ("post", "/alarms/{alarm}/ack", {"by": "x"}),
    ("post", "/alarms/{alarm}/clear", {"by": "x"}),
    ("put", "/machines/pump-001/silence", {"duration_s": 60}),
    ("delete", "/machines/pump-001/silence", None),
    ("post", "/twin/mill/shock", {"wear": 0.9}),
    ("post", "/twin/mill/gradual", {"step": 0.1, "every_s": 1}),
    ("post", "/twin/mill/maintenance", None),
    ("post", "/twin/mill/set-wear", {"wear": 0.1}),
    ("post", "/twin/fleet/pump-001/inject-fault", {"mode": "bearing_wear"}),
    ("post", "/twin/fleet/pump-001/inject-sensor-fault", {"sensor": "vibration", "kind": "stuck"}),
    ("post", "/twin/fleet/pump-001/repair", None),
    (
        "post",
        "/ingest/readings",
        [
            {
                "type": "reading",
                "ts": "2026-01-01T00:00:00Z",
                "machine_id": "pump-001",
                "sensor": "vibration",
                "value": 1.0,
            }
        ],
    ),
]


def test_every_state_changing_endpoint_needs_the_token(own) -> None:
    platform, client = own
    alarm = next(iter(_latest_alarms(platform)))
    documented = {
        (method, path)
        for path, item in client.get("/openapi.json").json()["paths"].items()
        for method, op in item.items()
        if op.get("security")
    }
    assert documented == {
        (
            m,
            p.replace("{alarm}", "{alarm_id}")
            .replace("pump-001", "{machine_id}")
            .replace("anomaly", "{family}"),
        )
        for m, p, _ in STATE_CHANGING
    }
    ends, pointer = _ends(platform), platform.registry.pointer("anomaly")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path, body in STATE_CHANGING:
            r = client.request(method, path.replace("{alarm}", alarm), json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    assert _ends(platform) == ends
    assert platform.registry.pointer("anomaly") == pointer


# --------------------------------------------------------------------------------- mill


def test_mill_outcomes_and_lines_equal_a_recount(shared) -> None:
    platform, client = shared
    outcomes = _events(platform, topics.MILL_OUTCOMES.name, PassOutcome)
    lines = sorted({o.line for o in outcomes})
    line = lines[0]
    mine = [o for o in outcomes if o.line == line]
    got = client.get("/mill/outcomes", params={"line": line, "limit": 7}).json()
    assert got == [json.loads(encode(o)) for o in mine[-7:]]
    since = mine[10].ts
    got = client.get("/mill/outcomes", params={"line": line, "since": since.isoformat()}).json()
    assert got == [json.loads(encode(o)) for o in mine if o.ts > since]
    summaries = client.get("/mill/lines").json()
    assert [s["line"] for s in summaries] == lines
    first = summaries[0]
    assert first["passes"] == len(mine) and first["router_state"] == mine[-1].router_state
    recent = mine[-100:]
    assert first["mean_ape_recent"]["physics"] == pytest.approx(
        sum(o.physics_ape for o in recent) / len(recent), rel=1e-12
    )


# ---------------------------------------------------------------------- health, metrics


LATENCY = "wearwatch_http_request_duration_seconds"
MACHINE_ROUTE = 'method="GET",route="/machines/{machine_id}"'


def test_health_and_metrics_report_the_components_status_files(own) -> None:
    platform, client = own
    now = time.time()
    write_status(
        platform.config.status_dir,
        ComponentStatus(
            name="worker-fleet",
            kind="worker",
            pid=11,
            updated_at=now,
            counters={"in": 7, "out": 5, "dead_lettered": 2, "late": 1, "processed": 4},
            lag={"fleet.readings": 3},
            checkpoint_ms=12.5,
            checkpoints=4,
            event_time=1.767e9,
        ),
    )
    write_status(
        platform.config.status_dir,
        ComponentStatus(name="twin-mill", kind="twin", pid=12, updated_at=now - 60),
    )
    health = client.get("/health").json()
    assert health["status"] == "degraded"  # the mill twin has not reported for a minute
    reports = {c["status"]["name"]: c for c in health["components"]}
    assert reports["worker-fleet"]["stale"] is False and reports["twin-mill"]["stale"] is True
    assert reports["worker-fleet"]["status"]["lag"] == {"fleet.readings": 3}
    assert health["log"]["topics"]["fleet.health"] == len(
        _events(platform, topics.HEALTH.name, MachineHealth)
    )
    assert {m["family"]: m["served"] for m in health["models"]}["risk"] == "risk@v0001"
    assert health["view_error"] == "" and set(health["view_lag"].values()) == {0}
    assert health["view"]["fleet.health"] == health["log"]["topics"]["fleet.health"]
    machine = platform.machine_ids()[0]
    client.get(f"/machines/{machine}")
    client.get("/machines/pump-999")
    text = client.get("/metrics").text
    lines = set(text.splitlines())
    for line in (
        'wearwatch_events_in_total{component="worker-fleet",kind="worker"} 7.0',
        'wearwatch_dead_letters_total{component="worker-fleet",kind="worker"} 2.0',
        'wearwatch_events_out_total{component="worker-fleet",kind="worker"} 5.0',
        'wearwatch_late_events_total{component="worker-fleet",kind="worker"} 1.0',
        'wearwatch_processed_total{component="worker-fleet",kind="worker"} 4.0',
        'wearwatch_consumer_lag{component="worker-fleet",topic="fleet.readings"} 3.0',
        'wearwatch_checkpoint_duration_seconds{component="worker-fleet"} 0.0125',
        'wearwatch_checkpoints_total{component="worker-fleet"} 4.0',
        'wearwatch_component_up{component="worker-fleet",kind="worker",state="running"} 1.0',
        'wearwatch_component_up{component="twin-mill",kind="twin",state="running"} 0.0',
        'wearwatch_model_served{family="anomaly",version="v0001"} 1.0',
        'wearwatch_model_current_version{family="risk"} 1.0',
        'wearwatch_api_view_lag{topic="fleet.scores"} 0.0',
        f'{LATENCY}_count{{{MACHINE_ROUTE},status="200"}} 1.0',
        f'{LATENCY}_count{{{MACHINE_ROUTE},status="404"}} 1.0',
    ):
        assert line in lines, line
    assert machine not in text and "pump-999" not in text  # routes, never raw paths


def test_openapi_documents_every_route_with_examples(shared) -> None:
    _, client = shared
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def has_example(content: dict) -> bool:
        schema = content.get("schema", {})
        named = schemas.get(schema.get("$ref", "").rpartition("/")[2], {})
        return any("example" in c or "examples" in c for c in (content, schema, named))

    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = (method, path)
            assert op.get("summary") and op.get("description"), where
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, where
            for code, response in op["responses"].items():
                for media, content in response.get("content", {}).items():
                    assert has_example(content), (*where, code, media)
            if path not in ("/metrics", "/live", "/baseline/info"):
                content = op["responses"][ok[0]]["content"]["application/json"]
                assert "$ref" in json.dumps(content["schema"]), where
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                assert has_example(body), where
    severity = schemas["AnomalyScore"]["properties"]["severity"]["enum"]
    assert sorted(severity) == sorted(["normal", "watch", "medium", "high", "critical"])


# ------------------------------------------------------------ alarm actions end to end

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOT = Trigger(
    detector="zscore",
    feature="bearing_temp.mean",
    value=91.0,
    threshold=85.0,
    score=1.2,
    severity="medium",
)


def _score(t: float, hot: bool) -> AnomalyScore:
    return AnomalyScore(
        ts=utc(T0 + t),
        machine_id="fan-001",
        window_s=30.0,
        severity="medium" if hot else "normal",
        score=1.2 if hot else 0.0,
        triggers=[HOT] if hot else [],
    )


def test_an_acknowledgement_through_the_api_is_applied_by_the_alarm_stage(tmp_path: Path) -> None:
    """Scores on the alarm input raise an alarm (fleet-alarms worker); the API's ack lands on
    the same input stamped with the machine's latest score time; the worker applies it and the
    API shows the alarm acknowledged — every step through the log."""
    log_path = tmp_path / "log.db"
    log = SqliteLog(log_path)
    topics.ALARM_INPUT.create(log)
    scores = [_score(t, hot=t < 90) for t in (0, 30, 60, 90, 120)]
    log.produce(OutRecord(topics.ALARM_INPUT.name, b"fan-001", encode(s)) for s in scores)
    log.flush()
    options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, checkpoint_key="k" * 64)

    def run_alarm_stage() -> None:
        flow = fleet_alarms_flow(AlarmConfig(quiet_s=600.0))
        FlowWorker(lambda: SqliteLog(log_path), flow, "alarms", options).run(install_signals=False)

    run_alarm_stage()
    platform = _platform(tmp_path, log_path, tmp_path / "models")
    with TestClient(create_app(platform, dashboard=False)) as client:
        [raised] = client.get("/alarms", params={"machine": "fan-001"}).json()
        assert (raised["alarm_id"], raised["acknowledged"]) == ("fan-001/machine/1", False)
        r = client.post("/alarms/fan-001/machine/1/ack", json={"by": "ann"}, headers=AUTH)
        assert r.status_code == 202
        assert msgspec.json.decode(r.content, type=AlarmCommand).ts == utc(T0 + 120)
        run_alarm_stage()
        while platform.view.poll() > 0:
            pass
        alarm = client.get("/alarms/fan-001/machine/1").json()
        assert (alarm["transition"], alarm["acknowledged"], alarm["ack_by"]) == (
            "acknowledged",
            True,
            "ann",
        )
        assert alarm["ack_at"] == "2026-01-01T00:02:00Z"
    platform.close()
    log.close()


def test_a_configured_machine_not_seen_yet_is_known_but_has_no_data(tmp_path: Path) -> None:
    """``machines=8`` over a 6-machine log: the twin's ids 7 and 8 are the fleet's (commands
    go through, features are empty) but have no health yet; 9 is unknown."""
    data = H.prepared()
    platform = _platform(tmp_path, data.log_path, data.registry_dir, machines=8)
    ids = platform.machine_ids()
    assert len(ids) == 8 and {"compressor-007", "fan-008"} <= set(ids)
    with TestClient(create_app(platform, dashboard=False)) as client:
        r = client.get("/predict/latest/fan-008")
        assert (r.status_code, r.json()["detail"]) == (404, "machine 'fan-008' has no health yet")
        assert client.get("/machines/fan-008/features").json() == []
        r = client.get("/predict/latest/pump-009")
        assert (r.status_code, r.json()["detail"]) == (404, "unknown machine 'pump-009'")
    platform.close()
