"""Model registry endpoints: list, show, promote, roll back, and reload what the API serves.

Promote and rollback move the registry's ``current`` pointer (the one every process loads
from) and reload the family in this API process. Workers load their models when they start:
they pick a promoted version up on restart (``wearwatch up`` restarts them).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from wearwatch.api import openapi as doc
from wearwatch.api.auth import require_token
from wearwatch.api.errors import invalid
from wearwatch.api.platform import Platform
from wearwatch.pipelines.fleet.live_metrics import promotion_verdict
from wearwatch.store.registry import (
    ModelVersion,
    RegistryError,
    RolloutError,
    UnknownFamily,
    UnknownVersion,
    parse_version,
)

_FAMILY_EXAMPLE = {
    "family": "anomaly",
    "current": 2,
    "served": "anomaly@v0002",
    "versions": [
        {
            "version": 1,
            "tag": "v0001",
            "created_at": "2026-01-01T00:00:00Z",
            "format": "anomaly-model/1",
            "data_hash": "3f2a…",
            "params": {},
            "metrics": {},
        }
    ],
    "history": [{"action": "promote", "version": 2, "from": 1, "at": "2026-01-02T00:00:00Z"}],
}
_SERVED_EXAMPLE = {"served": {"anomaly": "anomaly@v0002"}, "current": 2}


class PromoteRequest(BaseModel):
    """The version to make current: ``3``, ``"3"``, ``"v3"`` or ``"v0003"``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"version": 2}, {"version": "v0004", "force": True}]},
    )

    version: int | str = Field(description='the version: 3, "3", "v3" or "v0003"')
    force: bool = Field(
        False, description="promote even if the candidate's live metrics are worse (recorded)"
    )


def _version(mv: ModelVersion) -> doc.VersionInfo:
    return doc.VersionInfo(
        version=mv.version,
        tag=mv.tag,
        created_at=mv.created_at,
        format=mv.format,
        data_hash=mv.data_hash,
        params=mv.params,
        metrics=mv.metrics,
    )


def family_document(platform: Platform, family: str) -> doc.ModelFamily:
    """A family's versions, pointer and served version (UnknownFamily → 404)."""
    registry = platform.registry
    versions = registry.list(family)
    pointer = registry.pointer(family)
    return doc.ModelFamily(
        family=family,
        current=registry.current_version(family),
        served=platform.models.versions().get(family, ""),
        versions=[_version(v) for v in versions],
        history=list(pointer.get("history", [])),
    )


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/models", tags=["models"])
    registry = platform.registry
    unknown_family = doc.not_found("model family", "unknown model family 'nope' (known: anomaly)")
    family_path = {"family": "anomaly"}

    @router.get(
        "",
        summary="Every model family in the registry",
        description="Per family: its versions (with parameters and metrics), the registry's "
        "current version and the version this API serves.",
        response_class=Response,
        responses={
            200: doc.json_response("ModelFamily", "The families", [_FAMILY_EXAMPLE], many=True)
        },
    )
    def list_models() -> Response:
        return doc.json_bytes([family_document(platform, f) for f in registry.families()])

    @router.get(
        "/{family}",
        summary="One model family",
        description=f"As one item of `GET /models`. Path example: {family_path}.",
        response_class=Response,
        responses={
            200: doc.json_response("ModelFamily", "The family", _FAMILY_EXAMPLE),
            **unknown_family,
        },
    )
    def show(family: str) -> Response:
        return doc.json_bytes(family_document(platform, family))

    @router.post(
        "/{family}/reload",
        summary="Reload the family's current version into this API",
        description="The API loads the registry's current version of `family` for its scoring "
        "endpoints (`POST /anomaly`, `POST /predict`, `POST /rul`). Workers load models when "
        "they start: they pick a new current version up on restart.",
        status_code=200,
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={
            200: doc.json_response("ServedVersions", "What the API serves now", _SERVED_EXAMPLE),
            **doc.UNAUTHORIZED,
            **unknown_family,
        },
    )
    def reload(family: str) -> Response:
        registry.list(family)  # UnknownFamily: 404
        served = platform.models.reload(family)
        return doc.json_bytes(
            doc.ServedVersions(
                served={family: served.get(family, "")}, current=registry.current_version(family)
            )
        )

    @router.post(
        "/{family}/promote",
        summary="Make a version current",
        description="Pushes `version` on the family's pointer (rollback pops it) and reloads "
        "the family in this API. Workers pick the new version up on restart (`wearwatch up` "
        "restarts them). A candidate with live predictions (or the running rollout's) must not "
        "be worse than the current version on the same events (Brier ≤ current × 1.01 on ≥ 100 "
        "scored predictions): otherwise 409, unless `force` (recorded in the history).",
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={
            200: doc.json_response("ServedVersions", "The new current version", _SERVED_EXAMPLE),
            **doc.UNAUTHORIZED,
            **doc.not_found("family or version", "model 'anomaly' has no version v0009"),
            **doc.UNPROCESSABLE,
            409: doc.problem(
                "A rollout of another version is running, or the candidate is worse live",
                "risk@v0004 is worse live than risk@v0003: Brier 0.6410 vs 0.1564 on 812 "
                'predictions (allowed ≤ 0.1580); force it to promote anyway ("force": true)',
            ),
        },
    )
    def promote(family: str, body: PromoteRequest) -> Response:
        try:
            number = parse_version(body.version)
        except UnknownVersion as exc:
            raise invalid("body", "version", str(exc), body.version) from None
        try:
            registry.show(family, number)  # UnknownFamily / UnknownVersion: 404
            verdict = promotion_verdict(platform.log, registry, family, number)
            forced = verdict is not None and not verdict.ok
            if forced and not body.force:
                raise HTTPException(409, detail=f'{verdict.reason} ("force": true)')
            mv = registry.promote(family, number, forced=forced)
        except UnknownVersion as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except RolloutError as exc:
            raise HTTPException(409, detail=str(exc)) from None
        served = platform.models.reload(family)
        return doc.json_bytes(
            doc.ServedVersions(served={family: served.get(family, "")}, current=mv.version)
        )

    @router.post(
        "/{family}/rollback",
        summary="Make the previous version current again",
        description="Pops the family's pointer (409 when there is nothing to roll back to) and "
        "reloads the family in this API. Workers pick it up on restart.",
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={
            200: doc.json_response("ServedVersions", "The current version now", _SERVED_EXAMPLE),
            **doc.UNAUTHORIZED,
            **unknown_family,
            409: doc.problem(
                "Nothing to roll back to",
                "model 'anomaly': nothing to roll back to (current: v0001)",
            ),
        },
    )
    def rollback(family: str) -> Response:
        try:
            mv = registry.rollback(family)
        except UnknownFamily:
            raise
        except RegistryError as exc:
            raise HTTPException(409, detail=str(exc)) from None
        served = platform.models.reload(family)
        return doc.json_bytes(
            doc.ServedVersions(served={family: served.get(family, "")}, current=mv.version)
        )

    return router
