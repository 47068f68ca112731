"""Remaining useful life on NASA C-MAPSS: data, past-only features, training, inference."""

from wearwatch.learn.rul.inference import predict_engine
from wearwatch.learn.rul.metrics import phm08_score
from wearwatch.learn.rul.model import RulModel

__all__ = ["RulModel", "phm08_score", "predict_engine"]
