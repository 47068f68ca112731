"""The FastAPI application: one router per domain over one :class:`Platform`.

:func:`create_app` wires the routers, the request-latency middleware, the error mapping, the
OpenAPI document (FastAPI's, with the contract's msgspec schemas merged in) and — unless
``dashboard=False`` — the NiceGUI dashboard on the same app. It does not start the platform:
whoever owns the platform (``wearwatch serve``, a test) starts and closes it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry

from wearwatch import __version__
from wearwatch.api import (
    alarms,
    errors,
    fleet,
    health,
    ingest,
    live,
    metrics,
    mill,
    models,
    rul,
    twins,
)
from wearwatch.api.openapi import add_components
from wearwatch.api.platform import Platform

log = logging.getLogger(__name__)

DESCRIPTION = """\
The wearwatch platform over HTTP: the fleet's machines, scores and alarms, the mill's safety
router, the model registry, twin controls, ingest, live events and Prometheus metrics.

Reading endpoints are open. Endpoints that change state (twin commands, alarm actions, model
promotion, ingest) need `Authorization: Bearer <token>`: `wearwatch up` prints the token, and
it is kept in `<data_dir>/api-token`. Every command goes through the log, where the twins and
pipelines apply it in order.
"""

TAGS = [
    {"name": "health", "description": "Per component: log, workers and their lag, store, models"},
    {"name": "models", "description": "The model registry: versions, promote, rollback"},
    {"name": "fleet", "description": "Machines, features, risk and anomaly scores"},
    {"name": "alarms", "description": "Alarms and operators' actions on them"},
    {"name": "rul", "description": "Remaining useful life (NASA C-MAPSS engines)"},
    {"name": "mill", "description": "The hot strip mill's safety router and scored passes"},
    {"name": "twins", "description": "Commands to the running twins"},
    {"name": "ingest", "description": "Readings pushed over HTTP"},
    {"name": "live", "description": "Server-sent events"},
    {"name": "metrics", "description": "Prometheus"},
]


def create_app(platform: Platform, *, dashboard: bool = True) -> FastAPI:
    """The API (and the dashboard) over ``platform``."""
    app = FastAPI(
        title="wearwatch",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.platform = platform
    app.state.token = platform.config.token
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics.StatusCollector(platform))
    app.add_middleware(metrics.RequestMetrics, histogram=metrics.request_histogram(registry))
    errors.install(app)
    for module in (health, models, fleet, alarms, rul, mill, twins, ingest, live):
        app.include_router(module.routes(platform))
    app.include_router(metrics.routes(registry))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = add_components(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if dashboard:
        _mount_dashboard(app, platform)
    return app


def _mount_dashboard(app: FastAPI, platform: Platform) -> None:
    try:
        from wearwatch.ui.dashboard import mount
    except ImportError as exc:  # a build without the dashboard still serves the API
        log.warning("dashboard not available (%s): serving the API only", exc)
        return
    mount(app, platform)
