"""``wearwatch bench api``: one API process under a real load generator (Debian's ``wrk``).

What is measured, per endpoint (``GET /predict/latest/{id}``, ``GET /anomaly/latest/{id}``,
``POST /anomaly``), with ``connections`` concurrent connections (32 by default):

* **capacity** — closed loop: every connection sends its next request as soon as the last
  answer arrives, so the process runs flat out; the latency is then mostly queueing
  (Little's law: latency ≈ connections / throughput).
* **at rate** — open-ish loop at a fixed offered rate (2,000 requests/s by default): each
  connection waits a random delay (uniform, mean ``connections / rate``) before each request,
  so arrivals do not come in synchronised bursts; this is the latency a client sees at that
  load, and what the issue's target (p99 ≤ 10 ms at ≥ 2,000 requests/s) is about.

Beside them, in the same run, the same load against a **reference**: a bare ASGI app on the
same server stack (uvicorn, same options) that answers constant bytes — the ceiling of the
HTTP stack on this machine; each endpoint's capacity is reported as a share of it.

The API runs as a separate process (``wearwatch serve --headless``) on a prepared data
directory: a fleet run scored by the fleet flow (so every machine has a latest score and
health) and registered anomaly and risk models. No twin or worker runs during the
measurement: the figures are the API's own.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The endpoints measured: name → (method, path template with {machine}).
ENDPOINTS: dict[str, tuple[str, str]] = {
    "GET /predict/latest/{id}": ("GET", "/predict/latest/{machine}"),
    "GET /anomaly/latest/{id}": ("GET", "/anomaly/latest/{machine}"),
    "POST /anomaly": ("POST", "/anomaly"),
}

#: The issue's target.
TARGET_P99_MS = 10.0
TARGET_RATE = 2000.0

_REFERENCE_BODY = b'{"machine_id":"pump-001","severity":"normal","score":0.0}'


async def reference_app(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
    """The reference: constant JSON bytes for any request (the HTTP stack's ceiling)."""
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body, as the API must
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": _REFERENCE_BODY})


# --- wrk -------------------------------------------------------------------------------------

_LUA = r"""
-- Requests rotate over the machines; POST bodies are prepared per machine.
local paths = {%(paths)s}
local bodies = {%(bodies)s}
local method = "%(method)s"
local mean_delay = %(mean_delay)s
local counter = 0
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local i = (counter %% #paths) + 1
  if method == "POST" then
    return wrk.format("POST", paths[i], nil, bodies[i])
  end
  return wrk.format("GET", paths[i])
end
if mean_delay > 0 then
  delay = function() return math.random(0, math.floor(2 * mean_delay + 0.5)) end
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def wrk_script(method: str, paths: list[str], bodies: list[str], mean_delay_ms: float) -> str:
    """A wrk Lua script rotating over ``paths`` (and ``bodies`` for POST), with a random
    delay of mean ``mean_delay_ms`` before each request (0: closed loop)."""
    return _LUA % {
        "paths": ", ".join(_lua_string(p) for p in paths),
        "bodies": ", ".join(_lua_string(b) for b in bodies) if bodies else "",
        "method": method,
        "mean_delay": f"{mean_delay_ms:.3f}",
    }


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"wrk latency {text!r}: expected a number with us, ms, s or m")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s, p50/p90/p99 (ms), requests, errors from ``wrk --latency`` output.

    >>> out = '''Running 5s test @ http://127.0.0.1:1/x
    ...     Latency     1.16ms    2.10ms  50.00ms   90.50%
    ...   Latency Distribution
    ...      50%  510.00us
    ...      75%    1.10ms
    ...      90%    2.00ms
    ...      99%   12.34ms
    ...   10000 requests in 5.00s, 1.00MB read
    ...   Non-2xx or 3xx responses: 3
    ... Requests/sec:   2000.50
    ... '''
    >>> r = parse_wrk(out)
    >>> r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["requests"], r["errors"]
    (2000.5, 0.51, 12.34, 10000, 3)
    """

    def grab(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
        return match.group(1)

    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)",):
        match = re.search(pattern, output)
        if match:
            errors += int(match.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {
        "requests_per_s": float(grab(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": _ms(grab(r"^\s+50%\s+(\S+)$")),
        "p90_ms": _ms(grab(r"^\s+90%\s+(\S+)$")),
        "p99_ms": _ms(grab(r"^\s+99%\s+(\S+)$")),
        "requests": int(grab(r"(\d+) requests in")),
        "errors": errors,
    }


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    wrk: str = "wrk",
) -> dict[str, Any]:
    """One wrk run against ``url`` with the Lua ``script``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = handle.name
    try:
        done = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--latency",
                "-s",
                path,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
        )
    finally:
        os.unlink(path)
    if done.returncode != 0 or "Requests/sec" not in done.stdout:
        raise RuntimeError(
            f"wrk failed ({done.returncode}) against {url}: {done.stderr.strip()[:500]}"
            f"{done.stdout.strip()[:500]}"
        )
    return parse_wrk(done.stdout)


def at_rate(
    measure: Callable[[float, float], dict[str, Any]],
    rate: float,
    connections: int,
    duration_s: float,
) -> dict[str, Any]:
    """Latency at an offered ``rate``: a short calibration run sets the mean delay so that
    connections / (delay + latency) ≈ rate, then the measured run. ``measure(mean_delay_ms,
    seconds)`` runs wrk."""
    mean_ms = 1000.0 * connections / rate
    probe = measure(mean_ms, 3.0)
    cycle_ms = 1000.0 * connections / max(probe["requests_per_s"], 1e-9)
    latency_ms = max(0.0, cycle_ms - mean_ms)
    mean_ms = max(0.0, 1000.0 * connections / rate - latency_ms)
    result = measure(mean_ms, duration_s)
    result["offered_per_s"] = rate
    result["mean_delay_ms"] = round(mean_ms, 3)
    return result


# --- the processes under test ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers 200 (or the process dies / time runs out)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:g} s ({last})")


def start_reference(port: int) -> subprocess.Popen:
    """The reference app on uvicorn with the options ``wearwatch serve`` uses."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "wearwatch.benchmarks.api:reference_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_endpoint(
    base: str,
    method: str,
    paths: list[str],
    bodies: list[str],
    *,
    connections: int,
    duration_s: float,
    rate: float,
    route: str | None = None,
) -> dict[str, Any]:
    """Capacity (closed loop) and latency at ``rate`` for one endpoint; with ``route`` (its
    template), also the time the API itself spent on the at-rate requests, from its own
    Prometheus histogram (bucket bounds: an upper limit, not an estimate)."""

    def measure(mean_delay_ms: float, seconds: float) -> dict[str, Any]:
        script = wrk_script(method, paths, bodies, mean_delay_ms)
        return run_wrk(base, script, connections=connections, duration_s=seconds)

    measure(0.0, 2.0)  # warm-up: connections, caches, the interpreter's specialisations
    capacity = measure(0.0, duration_s)
    if route is None:
        return {"capacity": capacity, "at_rate": at_rate(measure, rate, connections, duration_s)}
    before = scrape_histogram(base, method, route)
    rated = at_rate(measure, rate, connections, duration_s)
    after = scrape_histogram(base, method, route)
    inside = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    rated["server_p50_ms_at_most"] = bucket_quantile(inside, 0.50)
    rated["server_p99_ms_at_most"] = bucket_quantile(inside, 0.99)
    return {"capacity": capacity, "at_rate": rated}


_BUCKET = re.compile(
    # Greedy up to the last "} ": a route template's own braces sit inside the labels.
    r"^wearwatch_http_request_duration_seconds_bucket\{(?P<labels>.*)\} (?P<count>\S+)$",
    re.MULTILINE,
)


def scrape_histogram(base: str, method: str, route: str) -> dict[float, float]:
    """The API's own request-latency histogram for one route (``GET /metrics``): cumulative
    count per upper bound (seconds), summed over statuses."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[float, float] = {}
    for match in _BUCKET.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("method") == method and labels.get("route") == route:
            le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            out[le] = out.get(le, 0.0) + float(match.group("count"))
    return out


def bucket_quantile(cumulative: dict[float, float], q: float) -> float | None:
    """The smallest bucket bound (ms) under which at least ``q`` of the requests fell.

    >>> bucket_quantile({0.0005: 90, 0.001: 99, 0.002: 100, math.inf: 100}, 0.99)
    1.0
    """
    total = cumulative.get(math.inf, 0.0)
    if total <= 0:
        return None
    for le in sorted(cumulative):
        if cumulative[le] >= q * total:
            return le * 1000.0 if math.isfinite(le) else None
    return None


def run_api_benchmark(
    serve: Callable[[int], subprocess.Popen],
    machine_ids: list[str],
    anomaly_bodies: list[str],
    *,
    connections: int = 32,
    duration_s: float = 10.0,
    rate: float = TARGET_RATE,
    repeats: int = 1,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the reference and every endpoint (medians over ``repeats``). ``serve(port)``
    starts the API process on ``port``."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: install Debian's wrk (apt-get install wrk)")
    step = on_step or (lambda _: None)
    result: dict[str, Any] = {
        "connections": connections,
        "duration_s": duration_s,
        "offered_per_s": rate,
        "repeats": repeats,
        "machines": len(machine_ids),
        "target": {"p99_ms": TARGET_P99_MS, "requests_per_s": TARGET_RATE},
        "cpus": os.cpu_count(),
        "endpoints": {},
    }
    ref_port = free_port()
    ref = start_reference(ref_port)
    try:
        wait_http(f"http://127.0.0.1:{ref_port}/", proc=ref)
        step("reference: bare ASGI app on the same server stack")
        runs = [
            measure_endpoint(
                f"http://127.0.0.1:{ref_port}",
                "GET",
                ["/reference"],
                [],
                connections=connections,
                duration_s=duration_s,
                rate=rate,
            )
            for _ in range(repeats)
        ]
        result["reference"] = _median_runs(runs)
    finally:
        stop(ref)
    port = free_port()
    api = serve(port)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout_s=120, proc=api)
        base = f"http://127.0.0.1:{port}"
        for name, (method, template) in ENDPOINTS.items():
            step(name)
            if method == "POST":
                paths, bodies = [template] * len(anomaly_bodies), anomaly_bodies
            else:
                paths, bodies = [template.format(machine=m) for m in machine_ids], []
            _check_answers(base, method, paths[0], bodies[0] if bodies else None)
            runs = [
                measure_endpoint(
                    base,
                    method,
                    paths,
                    bodies,
                    connections=connections,
                    duration_s=duration_s,
                    rate=rate,
                    route=template.replace("{machine}", "{machine_id}"),
                )
                for _ in range(repeats)
            ]
            entry = _median_runs(runs)
            ref_rps = result["reference"]["capacity"]["requests_per_s"]
            entry["capacity_vs_reference"] = round(entry["capacity"]["requests_per_s"] / ref_rps, 3)
            rated = entry["at_rate"]
            entry["meets_target"] = bool(
                rated["requests_per_s"] >= 0.97 * rate  # the offered rate, within wrk's pacing
                and rated["p99_ms"] <= TARGET_P99_MS
                and rated["errors"] == 0
            )
            ref_p99 = result["reference"]["at_rate"]["p99_ms"]
            entry["p99_vs_reference"] = round(rated["p99_ms"] / ref_p99, 2) if ref_p99 else None
            # The table: per endpoint.
            entry["requests_per_s"] = entry["capacity"]["requests_per_s"]
            entry["p50_ms"] = rated["p50_ms"]
            entry["p99_ms"] = rated["p99_ms"]
            result["endpoints"][name] = entry
    finally:
        stop(api)
    return result


def _check_answers(base: str, method: str, path: str, body: str | None) -> None:
    """The endpoint answers 200 before it is measured (a 404 flood measures nothing)."""
    data = body.encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode, the median of every figure over the runs."""
    out: dict[str, Any] = {}
    for mode in runs[0]:
        keys = runs[0][mode].keys()
        out[mode] = {}
        for key in keys:
            values = [run[mode][key] for run in runs if run[mode][key] is not None]
            out[mode][key] = _round(statistics.median(values)) if values else None
    return out


def _round(value: float) -> float | int:
    if isinstance(value, int):
        return value
    return round(value, 3) if math.isfinite(value) else value


# --- the data the API serves -----------------------------------------------------------------


def prepare_data_dir(
    data_dir: Path, machines: int, seed: int, minutes: float = 10.0
) -> tuple[list[str], list[str]]:
    """A data directory as ``wearwatch up`` leaves it: ``minutes`` of the fleet (1 Hz) on the
    log, scored by the fleet flow with fitted anomaly and risk models, both registered and
    current. Returns the machine ids and, per machine, a ``POST /anomaly`` body (its last 30 s
    feature vector)."""
    from wearwatch.benchmarks.fleet import GRACE_S, WINDOWS_S, fit_models
    from wearwatch.bus.sqlite import SqliteLog
    from wearwatch.pipelines.fleet.flow import fleet_pipeline
    from wearwatch.runtime.flow_worker import FlowWorker
    from wearwatch.runtime.worker import WorkerOptions
    from wearwatch.store.registry import ModelRegistry
    from wearwatch.twin.fleet.config import load_fleet_config
    from wearwatch.twin.fleet.publish import publish_fleet
    from wearwatch.twin.fleet.simulation import FleetTwin

    data_dir.mkdir(parents=True, exist_ok=True)
    anomaly, risk = fit_models(machines, 1.0, seed)
    registry = ModelRegistry(data_dir / "models")
    registry.register("anomaly", anomaly, promote=True)
    registry.register("risk", risk, promote=True)
    path = data_dir / "log.db"
    log = SqliteLog(path)
    twin = FleetTwin(load_fleet_config(), machines, seed)
    publish_fleet(log, twin, round(minutes * 60 / twin.tick_s))
    flow = fleet_pipeline(anomaly, risk, None, WINDOWS_S, GRACE_S, limits=twin.hard_limits())
    options = WorkerOptions(watermark_delay_s=1.0, exit_when_idle=True, poll_timeout_s=0.0)
    FlowWorker(lambda: SqliteLog(path), flow, "fleet", options).run(install_signals=False)
    log.close()
    ids, bodies = anomaly_bodies(path)
    missing = sorted(set(twin.machine_ids) - set(ids))
    if missing:
        raise RuntimeError(f"no feature vector for {missing[:3]}…: run longer")
    return ids, bodies


def anomaly_bodies(log_path: Path) -> tuple[list[str], list[str]]:
    """Per machine on the log's ``fleet.features`` (sorted), a ``POST /anomaly`` body: its
    last feature vector of the longest window."""
    from wearwatch import topics
    from wearwatch.bus.base import read_all
    from wearwatch.bus.sqlite import SqliteLog
    from wearwatch.events import FeatureVector, decode_event, encode

    log = SqliteLog(log_path)
    last: dict[str, tuple[float, bytes]] = {}
    try:
        for record in read_all(log, topics.FEATURES.name):
            fv = decode_event(record.value, FeatureVector)
            if fv.window_s >= last.get(fv.machine_id, (0.0, b""))[0]:
                last[fv.machine_id] = (fv.window_s, encode(fv))
    finally:
        log.close()
    ids = sorted(last)
    return ids, [last[m][1].decode() for m in ids]
