"""Mill endpoints: the safety router per product line, and the scored passes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from wearwatch.api import openapi as doc
from wearwatch.api.platform import Platform

_LINE = {
    "line": "S355",
    "passes": 1240,
    "router_state": "model",
    "source": "model",
    "reason": "model trusted: ewma APE 1.9% < physics 4.2%",
    "model_share": 0.93,
    "ewma_ape": {"physics": 4.2, "model": 1.9, "served": 2.0},
    "mean_ape_recent": {"physics": 4.4, "model": 2.1, "served": 2.2},
    "last_ts": "2026-01-01T06:00:00Z",
}
_OUTCOME = {
    "type": "pass_outcome",
    "v": 1,
    "ts": "2026-01-01T06:00:00Z",
    "slab_id": "S7-000001",
    "pass_no": 1,
    "line": "S355",
    "actual_force_kn": 21000.0,
    "baseline_force_kn": 20100.0,
    "served_force_kn": 20900.0,
    "source": "model",
    "physics_ape": 4.29,
    "served_ape": 0.48,
    "model_ape": {"arf": 0.48},
    "router_state": "model",
}


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/mill", tags=["mill"])
    view = platform.view

    @router.get(
        "/lines",
        summary="The safety router per product line",
        description="Per product line: passes scored, the router's state and the source it "
        "served last with its reason, the model's share of the last 100 passes, the EWMA APE "
        "(α 0.2, as the router keeps it) and the mean APE of the last 100 passes, of physics, "
        "the model and what was served.",
        response_class=Response,
        responses={200: doc.json_response("LineSummary", "The lines", [_LINE], many=True)},
    )
    async def lines() -> Response:
        return doc.json_bytes(view.mill_lines())

    @router.get(
        "/outcomes",
        summary="Scored passes",
        description="Pass outcomes (actual, physics and served force, APE of each) from the "
        "read model's bounded history, oldest first; filter by `since` (with a timezone) and "
        "`line`; at most `limit` (the latest ones).",
        response_class=Response,
        responses={
            200: doc.json_response("PassOutcome", "Outcomes, oldest first", [_OUTCOME], many=True),
            **doc.UNPROCESSABLE,
        },
    )
    async def outcomes(
        since: Annotated[AwareDatetime | None, Query(description="with a timezone")] = None,
        line: Annotated[str | None, Query(examples=["S355"])] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Response:
        return doc.json_bytes(view.mill_outcomes(since=since, line=line, limit=limit))

    return router
