"""``GET /health``: the log, every component (from its status file), the store and the models.

A component is *stale* when its status file has not been rewritten for :data:`STALE_S`
seconds (it writes about once a second): stuck or gone. The platform is ``ok`` when the log
answers, no component is stale, failing or in outage, and no model failed to load;
``degraded`` otherwise; ``down`` (HTTP 503) when the log does not answer.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from wearwatch.api import openapi as doc
from wearwatch.api.platform import Platform
from wearwatch.runtime.status import ComponentStatus

#: Seconds without a status report after which a component counts as stale.
STALE_S = 10.0

_EXAMPLE = {
    "status": "ok",
    "log": {"reachable": True, "topics": {"fleet.readings": 120000}, "error": ""},
    "components": [
        {
            "status": {
                "name": "worker-fleet",
                "kind": "worker",
                "pid": 4242,
                "updated_at": 1767225600.0,
                "state": "running",
                "counters": {"events_in": 120000},
                "lag": {"fleet.readings": 12},
            },
            "age_s": 0.4,
            "stale": False,
        }
    ],
    "store": {"registry_dir": "var/models", "families": ["anomaly", "risk"], "data_dir": "var"},
    "models": [{"family": "anomaly", "served": "anomaly@v0001", "error": ""}],
    "view": {"fleet.scores": 5120},
    "view_lag": {"fleet.scores": 0},
    "view_error": "",
}


def report(platform: Platform, now: float | None = None) -> doc.HealthReport:
    """The platform's health as :class:`~wearwatch.api.openapi.HealthReport`."""
    now = time.time() if now is None else now
    try:
        topics = {
            name: sum(platform.log.end_offsets(name).values())
            for name in sorted(platform.log.topics())
        }
        log = doc.LogHealth(reachable=True, topics=topics)
    except Exception as exc:  # any failure of the log is what this endpoint reports
        log = doc.LogHealth(reachable=False, error=f"{type(exc).__name__}: {exc}")
    components = [_component(s, now) for s in platform.statuses()]
    errors = platform.models.errors()
    models = [
        doc.ModelHealth(family=f, served=v, error=errors.get(f, ""))
        for f, v in sorted(platform.models.versions().items())
    ]
    store = doc.StoreHealth(
        registry_dir=str(platform.config.registry_dir),
        families=platform.registry.families(),
        data_dir=str(platform.config.data_dir),
    )
    view_error = platform.view.last_error
    if not log.reachable:
        status = "down"
    elif (
        errors
        or view_error
        or any(c.stale or c.status.state in ("outage", "failed") for c in components)
    ):
        status = "degraded"
    else:
        status = "ok"
    return doc.HealthReport(
        status=status,  # type: ignore[arg-type]
        log=log,
        components=components,
        store=store,
        models=models,
        view=platform.view.counts(),
        view_lag=platform.view.lag(),
        view_error=view_error,
    )


def _component(status: ComponentStatus, now: float) -> doc.ComponentReport:
    age = max(0.0, status.age_s(now))
    stale = status.state != "stopped" and age > STALE_S
    return doc.ComponentReport(status=status, age_s=round(age, 3), stale=stale)


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/health",
        summary="The platform's health, per component",
        description="The log (reachable, records per topic), every component from its status "
        "file (state, counters, lag per input topic, last checkpoint, age; stale after "
        f"{STALE_S:g} s without a report), the model store and the models this API serves, "
        "and what the API's read model applied, has yet to apply, and its last read error. "
        "`status`: ok, degraded or down (503).",
        response_class=Response,
        responses={
            200: doc.json_response("HealthReport", "ok or degraded", _EXAMPLE),
            503: doc.json_response(
                "HealthReport",
                "down: the log does not answer",
                {
                    **_EXAMPLE,
                    "status": "down",
                    "log": {"reachable": False, "topics": {}, "error": "LogError: …"},
                },
            ),
        },
    )
    def health() -> Response:
        result = report(platform)
        return doc.json_bytes(result, 503 if result.status == "down" else 200)

    return router
