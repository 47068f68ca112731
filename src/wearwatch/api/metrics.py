"""``GET /metrics``: the platform in Prometheus' text format (``prometheus-client``).

- Per component, read from its status file at scrape time by :class:`StatusCollector` (so the
  figures are the components' own, not a copy that could drift): every counter it reports
  (``wearwatch_<counter>_total``; the runtime's ``in``, ``out``, ``dead_lettered`` and
  ``late`` as ``events_in``, ``events_out``, ``dead_letters``, ``late_events``), consumer lag per
  input topic, the last checkpoint's duration and the number of checkpoints, latest event
  time, seconds since its last report, and ``wearwatch_component_up`` (running and fresh).
- This API process: request latency per route template (``/machines/{machine_id}``, never
  the raw path, so the label set stays bounded) from :class:`RequestMetrics`, a pure ASGI
  middleware (cheaper per request than ``BaseHTTPMiddleware``); the model versions it serves
  and the registry's current ones; the records its read model applied per topic.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so several apps in one
process (tests) never share series.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wearwatch.api.health import STALE_S
from wearwatch.api.platform import Platform
from wearwatch.store.registry import RegistryError

#: Latency buckets (seconds): fine below 10 ms, where the hot endpoints live.
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_]")


#: The runtime's own counter names (``Worker.counters``) → their metric names.
RUNTIME_COUNTERS = {
    "in": "events_in",
    "out": "events_out",
    "dead_lettered": "dead_letters",
    "late": "late_events",
}


def metric_name(counter: str) -> str:
    """A status counter's metric name (exposed with ``_total``).

    >>> metric_name("in"), metric_name("dead_lettered"), metric_name("alarm-command.rejected")
    ('wearwatch_events_in', 'wearwatch_dead_letters', 'wearwatch_alarm_command_rejected')
    """
    name = RUNTIME_COUNTERS.get(counter, counter)
    return "wearwatch_" + _METRIC_CHARS.sub("_", name).strip("_").lower()


class StatusCollector(Collector):
    """Series from the components' status files and the API's own state, at scrape time."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        statuses = self.platform.statuses()
        counters: dict[str, CounterMetricFamily] = {}
        lag = GaugeMetricFamily(
            "wearwatch_consumer_lag",
            "Records behind the end of an input topic",
            labels=["component", "topic"],
        )
        checkpoint = GaugeMetricFamily(
            "wearwatch_checkpoint_duration_seconds",
            "Duration of the last checkpoint",
            labels=["component"],
        )
        checkpoints = CounterMetricFamily(
            "wearwatch_checkpoints", "Checkpoints taken", labels=["component"]
        )
        up = GaugeMetricFamily(
            "wearwatch_component_up",
            f"1: running (or starting) and reported within {STALE_S:g} s",
            labels=["component", "kind", "state"],
        )
        age = GaugeMetricFamily(
            "wearwatch_component_report_age_seconds",
            "Seconds since the last status report",
            labels=["component"],
        )
        event_time = GaugeMetricFamily(
            "wearwatch_component_event_time_seconds",
            "Latest event time seen (epoch s)",
            labels=["component"],
        )
        for s in statuses:
            for key, value in sorted(s.counters.items()):
                name = metric_name(key)
                family = counters.get(name)
                if family is None:
                    family = counters[name] = CounterMetricFamily(
                        name, f"The components' {key} counter", labels=["component", "kind"]
                    )
                family.add_metric([s.name, s.kind], value)
            for topic, behind in sorted(s.lag.items()):
                lag.add_metric([s.name, topic], behind)
            if s.checkpoint_ms is not None:
                checkpoint.add_metric([s.name], s.checkpoint_ms / 1000.0)
            if s.kind == "worker":
                checkpoints.add_metric([s.name], s.checkpoints)
            seconds = max(0.0, s.age_s(now))
            fresh = s.state in ("running", "starting") and seconds <= STALE_S
            up.add_metric([s.name, s.kind, s.state], 1.0 if fresh else 0.0)
            age.add_metric([s.name], seconds)
            if s.event_time is not None:
                event_time.add_metric([s.name], s.event_time)
        yield from counters.values()
        yield from (lag, checkpoint, checkpoints, up, age, event_time)
        yield from self._models()
        view = CounterMetricFamily(
            "wearwatch_api_view_records",
            "Records the API's read model applied",
            labels=["topic"],
        )
        for topic, count in sorted(self.platform.view.counts().items()):
            view.add_metric([topic], count)
        yield view
        behind = GaugeMetricFamily(
            "wearwatch_api_view_lag",
            "Records the API's read model has yet to apply",
            labels=["topic"],
        )
        for topic, count in sorted(self.platform.view.lag().items()):
            behind.add_metric([topic], count)
        yield behind

    def _models(self) -> Iterator[Metric]:
        served = GaugeMetricFamily(
            "wearwatch_model_served",
            "1 per model version this API serves",
            labels=["family", "version"],
        )
        for family, tag in sorted(self.platform.models.versions().items()):
            if tag:
                served.add_metric([family, tag.partition("@")[2]], 1.0)
        current = GaugeMetricFamily(
            "wearwatch_model_current_version",
            "The registry's current version per family",
            labels=["family"],
        )
        registry = self.platform.registry
        try:
            for family in registry.families():
                number = registry.current_version(family)
                if number is not None:
                    current.add_metric([family], number)
        except (RegistryError, OSError):
            pass  # /health says why; a scrape still returns everything else
        yield served
        yield current


class RequestMetrics:
    """Pure ASGI middleware: request latency per method, route template and status."""

    def __init__(self, app: Any, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.histogram.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "wearwatch_http_request_duration_seconds",
        "API request latency by route template",
        ["method", "route", "status"],
        buckets=BUCKETS,
        registry=registry,
    )


def routes(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        description="Per component (status files): its counters (events in/out, dead "
        "letters, late…), consumer lag per topic, last checkpoint duration, checkpoints, "
        "event time, report age and up; this API's request latency per route, the model "
        "versions it serves and the registry's current ones, and its read model's counts.",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {
                    "text/plain": {
                        "schema": {"type": "string"},
                        "example": 'wearwatch_events_in_total{component="worker-fleet",'
                        'kind="worker"} 120000.0\n',
                    }
                },
            }
        },
    )
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
