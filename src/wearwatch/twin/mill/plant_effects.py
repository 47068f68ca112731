"""What the real stand does that the Level-2 model does not know (the realistic twin).

The Level-2 force model (:func:`wearwatch.physics.rolling.baseline_force_kn`) is a good
textbook model, and a real mill's force still differs from it for reasons nobody has a term
for. The realistic twin (``MillTwinConfig(ideal=False)``, the default) adds four of them; each
is small, has a physical cause, and none is visible to the pipeline except through the force:

1. **Pyrometer lens fouling** (:func:`pyrometer_fouling_k`). Scale dust and water vapour on the
   pyrometer's window absorb radiation, so it reads *low*, by up to ``FOULING_MAX_K`` = 10 K just
   before the window is cleaned every ``CLEANING_INTERVAL_S`` (8 h). Level-2 sees a colder slab
   and predicts a harder one: the baseline is up to ≈ 1.6 % too high, a sawtooth in time.
2. **Chemistry within a grade** (:func:`heat_flow_factor`). Each heat's C, Mn and Nb sit
   somewhere inside the grade's specification; Level-2 uses the nominal analysis. A slab's true
   flow stress differs from its grade's by a factor drawn once per slab (σ ``HEAT_FLOW_SIGMA`` =
   0.6 %): noise no learner can remove, shared by the passes of a slab.
3. **Roll thermal growth** (:class:`RollThermal`). Work rolls heat up while rolling (towards
   ``ROLL_HEAT_MAX_K`` above ambient, time constant ``ROLL_HEAT_TAU_S`` of contact) and cool
   between slabs (``ROLL_COOL_TAU_S``). At the twin's ≈ 50 % utilisation they settle at ≈ 18 K,
   the radius grows by R·α·ΔT ≈ 0.13 mm and the roll pair closes the gap by ≈ 0.27 mm. Level-2
   sets the gap cold, so every pass takes a deeper bite than planned (the stand's gauge meter
   reports the real entry thickness; the later, thinner passes feel it most). New rolls after a
   change start cold.
4. **Flow-stress law off for one grade** (:func:`flow_stress_mismatch`). Misaka's law is fitted
   to C–Mn steel; a Cr–Mo grade's flow stress rises faster as it cools (higher activation
   energy). For ``high_alloy`` the true flow stress is the model's × exp(Q·(1/T − 1/T_ref)),
   ≈ +4 % at 1050 °C and −3 % at 1230 °C against the constant multiplier of 1.5.

Each alone, on new rolls (seed 1, 1,500 passes; the ideal twin: 0.45 % physics APE), raises the
physics APE to ≈ 0.9 % (fouling), 0.7 % (chemistry), 1.2 % (thermal growth) and, for
``high_alloy`` only, 1.8 % (mismatch); together ≈ 1.3 % (``high_alloy`` ≈ 2.3 %), partly
cancelling (a low reading and a deeper bite push the error opposite ways). The README's mill
section has the bands per scenario over seeds 1–5, measured by ``wearwatch mill evaluate``.

>>> pyrometer_fouling_k(4 * 3600.0), round(pyrometer_fouling_k(CLEANING_INTERVAL_S - 1), 2)
(-5.0, -10.0)
>>> round(flow_stress_mismatch("high_alloy", 1050.0), 3), flow_stress_mismatch("structural", 1050.0)
(1.039, 1.0)
>>> rolls = RollThermal()
>>> rolls.roll(600.0)  # ten minutes of steel in the bite: +12 K, the gap closes by 0.17 mm
>>> round(rolls.rise_k, 1), round(rolls.gap_closure_mm(570.0), 2)
(11.8, 0.17)
>>> rolls.idle(1800.0)  # half an hour without steel
>>> round(rolls.rise_k, 1)
4.3
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

#: Pyrometer: the window is cleaned every 8 h; just before cleaning it reads 10 K low.
CLEANING_INTERVAL_S = 8 * 3600.0
FOULING_MAX_K = 10.0
#: Heat-to-heat spread of the true flow stress within a grade (relative σ).
HEAT_FLOW_SIGMA = 0.006
#: Roll thermal growth: linear expansion coefficient of a forged steel roll (1/K), heating
#: towards ROLL_HEAT_MAX_K with time constant ROLL_HEAT_TAU_S of rolling, cooling with
#: ROLL_COOL_TAU_S of idle time.
ROLL_EXPANSION_PER_K = 1.3e-5
ROLL_HEAT_MAX_K = 30.0
ROLL_HEAT_TAU_S = 1200.0
ROLL_COOL_TAU_S = 1800.0
#: The grade whose flow-stress law Level-2 gets wrong, the extra activation term (K) and the
#: temperature at which the Level-2 multiplier is right.
MISMATCHED_LINE = "high_alloy"
MISMATCH_Q_K = 800.0
MISMATCH_T_REF_C = 1140.0


def pyrometer_fouling_k(t_s: float) -> float:
    """Reading error (K, ≤ 0) of the fouled pyrometer at virtual time ``t_s``: a sawtooth."""
    phase = (t_s % CLEANING_INTERVAL_S) / CLEANING_INTERVAL_S
    return -FOULING_MAX_K * phase


def heat_flow_factor(rng: random.Random) -> float:
    """A slab's true flow stress relative to its grade's nominal (one draw per slab)."""
    return 1.0 + rng.gauss(0.0, HEAT_FLOW_SIGMA)


def flow_stress_mismatch(line: str, temp_c: float) -> float:
    """True / Level-2 flow-stress multiplier of a product line at the true temperature."""
    if line != MISMATCHED_LINE:
        return 1.0
    inv = 1.0 / (temp_c + 273.15) - 1.0 / (MISMATCH_T_REF_C + 273.15)
    return math.exp(MISMATCH_Q_K * inv)


@dataclass
class RollThermal:
    """The work rolls' mean temperature rise above ambient (K): heats rolling, cools idle."""

    rise_k: float = 0.0

    def roll(self, seconds: float) -> None:
        """``seconds`` of contact with hot steel: first-order heating towards the maximum."""
        self.rise_k += (ROLL_HEAT_MAX_K - self.rise_k) * -math.expm1(-seconds / ROLL_HEAT_TAU_S)

    def idle(self, seconds: float) -> None:
        """``seconds`` without steel: first-order cooling by the water sprays and air."""
        self.rise_k *= math.exp(-seconds / ROLL_COOL_TAU_S)

    def gap_closure_mm(self, radius_mm: float) -> float:
        """How much the two rolls' thermal growth closes the set gap (mm)."""
        return 2.0 * radius_mm * ROLL_EXPANSION_PER_K * self.rise_k
