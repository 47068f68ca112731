"""Roll-force physics of a reversing roughing stand (DESIGN §4).

Two models share one set of formulas:

* :func:`plant_force_kn` — the *actual* plant: Hitchcock roll flattening (iterated), a
  wear-dependent friction coefficient and a worn (smaller) roll radius, the true temperature.
* :func:`baseline_force_kn` — the Level-2 model: nominal friction ``MU0``, the unflattened
  radius recorded at the last roll change, the (biased, noisy) measured temperature, times a
  constant calibration factor fitted on new rolls (``LEVEL2_GAIN``).

Formulas (units: mm, N, MPa = N/mm²):

* draft Δh = h_in − h_out, mean thickness h_m = (h_in + h_out)/2, arc L = √(R′·Δh)
* strain ε = (2/√3)·ln(h_in/h_out), mean strain rate ε̇ = (v/L)·ln(h_in/h_out)
* Misaka: σ[kgf/mm²] = exp(0.126 − 1.75C + 0.594C² + (2851 + 2968C − 1120C²)/T_K)
  · ε^0.21 · ε̇^0.13, × 9.80665 → MPa, × the grade multiplier; k = 1.155·σ
* Q = π/4 + L/(4·h_m), in the plant × (1 + A_FRICTION·(μ − μ₀)·L/h_m)
* F = w·L·k·Q; Hitchcock R′ = R·(1 + C_H·F/(w·Δh)), C_H = 16(1−ν²)/(πE)

>>> f = plant_force_kn(width_mm=1500, h_in_mm=220, h_out_mm=170, temp_c=1150,
...                    speed_mps=2.0, roll_radius_mm=550, carbon_pct=0.18)
>>> 15_000 < f < 35_000
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Hitchcock constant for steel rolls, E = 210 GPa, ν = 0.3: 16(1−ν²)/(πE) in mm²/N.
C_HITCHCOCK = 16 * (1 - 0.3**2) / (math.pi * 210_000.0)
#: Nominal (new-roll) friction coefficient of hot rolling with descaled strip.
MU0 = 0.30
#: Friction rise at wear = 1 (normalised wear; μ = μ₀ + MU_WEAR·wear).
MU_WEAR = 0.30
#: Sensitivity of the geometry factor to friction: Q·(1 + A_FRICTION·(μ − μ₀)·L/h_m).
A_FRICTION = 0.40
#: Radius lost to wear at wear = 1 (mm); the Level-2 model keeps the last measured radius.
RADIUS_LOSS_MM = 1.5
#: Level-2 calibration factor fitted on new rolls (absorbs the mean effect of flattening).
LEVEL2_GAIN = 1.0102
#: Pyrometer bias (K, measured − true) and noise (σ, K) of the Level-2 temperature.
TEMP_BIAS_K = 1.0
TEMP_NOISE_K = 0.7
#: Load-cell noise, relative σ.
LOAD_CELL_SIGMA = 0.003
#: Absolute force rating of the roughing stand (kN).
STAND_RATING_KN = 45_000.0


@dataclass(frozen=True)
class Grade:
    """A product line's steel grade: carbon content (%) and a flow-stress multiplier."""

    line: str
    grade: str
    carbon_pct: float
    flow_multiplier: float


#: Product lines. Multipliers: microalloyed Nb steel resists recrystallisation (× 1.15);
#: high-alloy (e.g. Cr-Mo / stainless-like) steel is much harder when hot (× 1.5).
GRADES: dict[str, Grade] = {
    "structural": Grade("structural", "S355", 0.18, 1.00),
    "microalloyed": Grade("microalloyed", "HSLA-Nb", 0.08, 1.15),
    "high_alloy": Grade("high_alloy", "HA-CrMo", 0.40, 1.50),
}


def friction(wear: float) -> float:
    """Friction coefficient of the plant at a normalised wear level (0 = new rolls)."""
    return MU0 + MU_WEAR * wear


def misaka_mpa(carbon_pct: float, temp_c: float, strain: float, strain_rate: float) -> float:
    """Misaka mean flow stress (MPa) of C–Mn steel."""
    c = carbon_pct
    t_k = temp_c + 273.15
    kgf = (
        math.exp(0.126 - 1.75 * c + 0.594 * c * c + (2851.0 + 2968.0 * c - 1120.0 * c * c) / t_k)
        * (strain**0.21)
        * (strain_rate**0.13)
    )
    return kgf * 9.80665


def _force_n(
    width_mm: float,
    h_in_mm: float,
    h_out_mm: float,
    temp_c: float,
    speed_mps: float,
    radius_mm: float,
    carbon_pct: float,
    multiplier: float,
    mu: float,
) -> tuple[float, float]:
    """Force (N) and contact arc (mm) for a given (possibly flattened) radius."""
    draft = h_in_mm - h_out_mm
    h_m = 0.5 * (h_in_mm + h_out_mm)
    arc = math.sqrt(radius_mm * draft)
    log_r = math.log(h_in_mm / h_out_mm)
    strain = (2.0 / math.sqrt(3.0)) * log_r
    strain_rate = (speed_mps * 1000.0 / arc) * log_r
    sigma = misaka_mpa(carbon_pct, temp_c, strain, strain_rate) * multiplier
    k = 1.155 * sigma
    q = math.pi / 4.0 + arc / (4.0 * h_m)
    q *= 1.0 + A_FRICTION * (mu - MU0) * arc / h_m
    return width_mm * arc * k * q, arc


def _check(width_mm: float, h_in_mm: float, h_out_mm: float, speed_mps: float) -> None:
    if not (width_mm > 0 and h_in_mm > h_out_mm > 0 and speed_mps > 0):
        raise ValueError(
            f"bad pass geometry: width_mm={width_mm}, h_in_mm={h_in_mm}, "
            f"h_out_mm={h_out_mm}, speed_mps={speed_mps}"
        )


def plant_force_kn(
    *,
    width_mm: float,
    h_in_mm: float,
    h_out_mm: float,
    temp_c: float,
    speed_mps: float,
    roll_radius_mm: float,
    carbon_pct: float,
    multiplier: float = 1.0,
    wear: float = 0.0,
    flatten: bool = True,
) -> float:
    """True (noise-free) roll force in kN: worn radius, wear friction, Hitchcock flattening."""
    _check(width_mm, h_in_mm, h_out_mm, speed_mps)
    radius = roll_radius_mm - RADIUS_LOSS_MM * max(wear, 0.0)
    mu = friction(wear)
    draft = h_in_mm - h_out_mm
    r_flat = radius
    force = 0.0
    for _ in range(6 if flatten else 1):
        force, _arc = _force_n(
            width_mm, h_in_mm, h_out_mm, temp_c, speed_mps, r_flat, carbon_pct, multiplier, mu
        )
        if not flatten:
            break
        r_flat = radius * (1.0 + C_HITCHCOCK * force / (width_mm * draft))
    return force / 1000.0


def baseline_force_kn(
    *,
    width_mm: float,
    h_in_mm: float,
    h_out_mm: float,
    temp_c: float,
    speed_mps: float,
    roll_radius_mm: float,
    carbon_pct: float,
    multiplier: float = 1.0,
) -> float:
    """Level-2 prediction in kN: nominal friction, unflattened radius, calibrated gain.

    ``temp_c`` is whatever the Level-2 system measured (the twin passes the biased, noisy one).
    """
    _check(width_mm, h_in_mm, h_out_mm, speed_mps)
    force, _arc = _force_n(
        width_mm, h_in_mm, h_out_mm, temp_c, speed_mps, roll_radius_mm, carbon_pct, multiplier, MU0
    )
    return LEVEL2_GAIN * force / 1000.0


def pass_features(
    *,
    width_mm: float,
    h_in_mm: float,
    h_out_mm: float,
    temp_c: float,
    speed_mps: float,
    roll_radius_mm: float,
    baseline_force_kn: float,
) -> dict[str, float]:
    """Physics features of a pass request (what the learners see; never the true wear).

    ``lh`` = L/h_m drives the friction effect, ``flat`` ≈ Hitchcock's relative flattening
    (%), the rest are the raw schedule variables on O(1) scales.

    >>> x = pass_features(width_mm=1500, h_in_mm=220, h_out_mm=170, temp_c=1150,
    ...                   speed_mps=2.0, roll_radius_mm=550, baseline_force_kn=22000)
    >>> sorted(x)
    ['draft', 'flat', 'lh', 'red', 'temp', 'width']
    >>> round(x['lh'], 3)
    0.85
    """
    draft = h_in_mm - h_out_mm
    h_m = 0.5 * (h_in_mm + h_out_mm)
    arc = math.sqrt(roll_radius_mm * draft)
    return {
        "lh": arc / h_m,
        "flat": 100.0 * C_HITCHCOCK * baseline_force_kn * 1000.0 / (width_mm * draft),
        "draft": draft / 100.0,
        "red": draft / h_in_mm,
        "temp": (temp_c - 1100.0) / 100.0,
        "width": width_mm / 1000.0,
    }
