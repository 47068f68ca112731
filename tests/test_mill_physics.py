"""Roll-force physics: magnitudes and monotonic effects (DESIGN §4)."""

from __future__ import annotations

import pytest

from wearwatch.physics import rolling as physics

PASS = dict(
    width_mm=1500.0,
    h_in_mm=220.0,
    h_out_mm=170.0,
    temp_c=1150.0,
    speed_mps=2.0,
    roll_radius_mm=550.0,
    carbon_pct=0.18,
)


def force(**kw: float) -> float:
    return physics.plant_force_kn(**{**PASS, **kw})


def test_roughing_forces_are_meganewtons() -> None:
    assert 10_000 < force() < 40_000
    # A light late pass on a narrow slab and a heavy wide first pass stay in range too.
    assert 8_000 < force(width_mm=900, h_in_mm=60, h_out_mm=48, temp_c=1060) < 40_000
    assert 10_000 < force(width_mm=2000, h_in_mm=250, h_out_mm=180) < 45_000


def test_more_draft_more_force() -> None:
    forces = [force(h_out_mm=h) for h in (195.0, 180.0, 165.0, 150.0)]
    assert forces == sorted(forces)


def test_colder_is_harder() -> None:
    forces = [force(temp_c=t) for t in (1200.0, 1150.0, 1100.0, 1050.0)]
    assert forces == sorted(forces)


def test_wear_raises_force_through_friction() -> None:
    forces = [force(wear=w) for w in (0.0, 0.2, 0.5, 0.9)]
    assert forces == sorted(forces)
    assert 1.08 < forces[-1] / forces[0] < 1.25


def test_flattening_raises_force_and_baseline_is_close_on_new_rolls() -> None:
    assert force() > force(flatten=False)
    base = physics.baseline_force_kn(**PASS)
    assert abs(base - force()) / force() < 0.01


def test_grades_differ_by_carbon_and_multiplier() -> None:
    g = physics.GRADES
    assert g["high_alloy"].flow_multiplier > g["microalloyed"].flow_multiplier > 1.0
    hard = force(carbon_pct=g["high_alloy"].carbon_pct, multiplier=1.5)
    assert hard > force()


def test_bad_geometry_is_rejected() -> None:
    with pytest.raises(ValueError, match="h_out_mm=230"):
        force(h_out_mm=230.0)
