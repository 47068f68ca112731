"""Degradation: how a fault in progress shows in a machine's sensors, from onset to failure.

Damage grows exponentially from a random onset and reaches failure at onset + P-F (as
C-MAPSS's simulated degradation does); each symptom of a mode follows its own curve over the
fault's life, so the symptoms come in the right order (a worn bearing vibrates for days before
it heats up). A slow random roughness makes the progression uneven, as real wear is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wearwatch.twin.fleet.config import FleetConfig

#: Sinusoids in a fault's roughness (its progression noise), and their period range (s).
ROUGHNESS_TERMS = 3
ROUGHNESS_PERIOD_S = (3600.0, 12 * 3600.0)


def symptom_curve(
    life: np.ndarray, start: np.ndarray | float, growth: np.ndarray | float
) -> np.ndarray:
    """The share of a symptom's full size at life share ``life`` (0: onset, 1: failure).

    Nothing before ``start``; then ``(exp(growth·x) − 1) / (exp(growth) − 1)`` over the rest
    of the life ``x`` ∈ [0, 1]: slow at first, steep near failure.

    >>> symptom_curve(np.array([0.0, 0.5, 0.9, 1.0]), 0.0, 4.0).round(3).tolist()
    [0.0, 0.119, 0.664, 1.0]
    >>> symptom_curve(np.array([0.8, 0.9, 1.0]), 0.87, 2.0).round(3).tolist()
    [0.0, 0.092, 1.0]
    """
    x = np.clip((life - start) / (1.0 - np.asarray(start)), 0.0, 1.0)
    return np.expm1(growth * x) / np.expm1(growth)


@dataclass(frozen=True)
class SymptomTable:
    """Per mode (rows, in config order) and sensor (columns): rise at failure (× nominal),
    start (life share) and growth; a sensor a mode does not touch has rise 0."""

    modes: tuple[str, ...]
    rise: np.ndarray
    start: np.ndarray
    growth: np.ndarray

    @classmethod
    def of(cls, config: FleetConfig, sensors: tuple[str, ...]) -> SymptomTable:
        modes = tuple(config.modes)
        shape = (len(modes), len(sensors))
        rise, start, growth = np.zeros(shape), np.zeros(shape), np.ones(shape)
        for k, mode in enumerate(modes):
            for sensor, symptom in config.modes[mode].symptoms.items():
                j = sensors.index(sensor)
                rise[k, j], start[k, j], growth[k, j] = symptom.rise, symptom.start, symptom.growth
        return cls(modes, rise, start, growth)

    def effect(self, mode: np.ndarray, life: np.ndarray) -> np.ndarray:
        """Symptoms (× nominal) of faults of ``mode`` (F,) at ``life`` (n, F): (n, F, sensors)."""
        return self.rise[mode] * symptom_curve(
            life[:, :, None], self.start[mode], self.growth[mode]
        )


def draw_roughness(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Angular frequencies and phases of one fault's roughness."""
    periods = rng.uniform(*ROUGHNESS_PERIOD_S, size=ROUGHNESS_TERMS)
    return 2 * np.pi / periods, rng.uniform(0.0, 2 * np.pi, size=ROUGHNESS_TERMS)


def roughness(t: np.ndarray, omega: np.ndarray, phase: np.ndarray, size: float) -> np.ndarray:
    """The multiplicative progression noise at times ``t`` (n,) of faults with ``omega`` and
    ``phase`` (F, terms): 1 + ``size`` × a unit-variance sum of slow sinusoids, (n, F).

    >>> omega, phase = np.array([[2 * np.pi / 3600.0]]), np.array([[0.0]])
    >>> roughness(np.array([0.0, 900.0]), omega, phase, 0.1).round(3).tolist()
    [[1.0], [1.141]]
    """
    waves = np.sin(t[:, None, None] * omega[None] + phase[None]).sum(axis=2)
    return 1.0 + size * np.sqrt(2.0 / omega.shape[1]) * waves


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw spread evenly over the orders of magnitude of [low, high] (a P-F interval)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))
