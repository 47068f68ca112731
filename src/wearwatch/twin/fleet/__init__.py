"""The machine fleet twin: machines from a config file that degrade, fail and are repaired.

``config`` (the TOML format and the shipped default), ``degradation`` (symptom curves),
``sensors`` (sensor faults), ``simulation`` (:class:`FleetTwin`), ``commands`` (live commands)
and ``publish`` (onto the log).
"""

from wearwatch.twin.fleet.config import (
    ISO_10816_ZONES,
    FleetConfig,
    FleetConfigError,
    load_fleet_config,
)
from wearwatch.twin.fleet.simulation import FleetTwin

__all__ = ["ISO_10816_ZONES", "FleetConfig", "FleetConfigError", "FleetTwin", "load_fleet_config"]
