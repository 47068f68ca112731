"""``POST /rul``: an engine's cycle history (NASA C-MAPSS columns) → RUL and horizon risk.

The body is one engine's cycles, each with the 3 operational settings and 21 sensors of the
C-MAPSS files; the served ``rul-<subset>`` model computes its past-only features over the
history and answers the remaining useful life (cycles, capped as in training) at the last
cycle and P(RUL ≤ horizon) — exactly :func:`~wearwatch.learn.rul.inference.predict_engine`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from wearwatch.api import openapi as doc
from wearwatch.api.platform import Platform
from wearwatch.learn.rul.data import OP_SETTINGS, SENSORS
from wearwatch.learn.rul.inference import predict_engine

#: C-MAPSS settings and sensors are physical values well inside ±1e6 (the largest, core
#: speed, is ~9,000 rpm); the bound keeps the features' sums and products finite.
_VALUE = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
#: One cycle: its number, the operational settings and the sensors, all required.
EngineCycle: type[BaseModel] = create_model(
    "EngineCycle",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    cycle=(int, Field(ge=1, le=100_000)),
    **{name: (_VALUE, ...) for name in [*OP_SETTINGS, *SENSORS]},  # type: ignore[call-overload]
)

_CYCLE_EXAMPLE: dict[str, Any] = {
    "cycle": 1,
    "op_setting_1": -0.0007,
    "op_setting_2": -0.0004,
    "op_setting_3": 100.0,
    **dict(
        zip(
            SENSORS,
            [
                518.67,
                641.82,
                1589.7,
                1400.6,
                14.62,
                21.61,
                554.36,
                2388.06,
                9046.19,
                1.3,
                47.47,
                521.66,
                2388.02,
                8138.62,
                8.4195,
                0.03,
                392.0,
                2388.0,
                100.0,
                39.06,
                23.419,
            ],
            strict=True,
        )
    ),
}


class EngineHistory(BaseModel):
    """One engine's cycles (any order; cycle numbers unique) and the C-MAPSS subset whose
    model scores it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"subset": "FD001", "cycles": [_CYCLE_EXAMPLE]}]},
    )

    subset: Literal["FD001", "FD002", "FD003", "FD004"] = "FD001"
    cycles: list[EngineCycle] = Field(min_length=1, max_length=5000)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _unique_cycles(self) -> EngineHistory:
        seen: set[int] = set()
        for cycle in self.cycles:
            number = cycle.cycle  # type: ignore[attr-defined]
            if number in seen:
                raise ValueError(f"cycles: cycle {number} appears twice")
            seen.add(number)
        return self


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["rul"])

    @router.post(
        "/rul",
        summary="Remaining useful life of an engine",
        description="The served `rul-<subset>` model's RUL (cycles) at the engine's last "
        "cycle and its P(RUL ≤ horizon cycles). 503 naming `wearwatch train cmapss` when the "
        "subset's model is not trained.",
        response_class=Response,
        responses={
            200: doc.json_response(
                "RulPrediction",
                "RUL and horizon probability",
                {
                    "model_version": "rul-FD001@v0001",
                    "cycles": 1,
                    "last_cycle": 1,
                    "rul": 118.3,
                    "horizon_cycles": 30,
                    "horizon_probability": 0.01,
                },
            ),
            **doc.UNPROCESSABLE,
            **doc.unavailable(
                "no rul-FD001 model is served; train it: wearwatch train cmapss --subset FD001"
            ),
        },
    )
    def rul(body: EngineHistory) -> Response:
        family = f"rul-{body.subset}"
        model = platform.models.get(family)
        frame = pd.DataFrame([c.model_dump() for c in body.cycles])
        frame["unit"] = 1
        result = predict_engine(frame, model)
        return doc.json_bytes(
            doc.RulPrediction(
                model_version=platform.models.versions().get(family, ""),
                cycles=len(frame),
                last_cycle=int(frame["cycle"].max()),
                rul=result["rul"],
                horizon_cycles=int(model.horizon),
                horizon_probability=result["horizon_probability"],
            )
        )

    return router
