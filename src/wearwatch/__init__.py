"""wearwatch: industrial predictive maintenance on event streams."""

__version__ = "0.1.0"
