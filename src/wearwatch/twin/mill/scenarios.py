"""Wear scenarios of the mill twin, scripted over the pass counter (wear accrues with tonnage).

A scenario is a list of segments; wear moves linearly from ``wear_start`` to ``wear_end``
within a segment, and a segment may begin with a shock or a maintenance (roll change).
Scenarios scale to a planned number of passes; past the plan the last state holds.

>>> s = make_scenario("abrupt", 1000)
>>> [seg.name for seg in s.segments]
['before_shock', 'after_shock']
>>> s.phase_at(399), s.phase_at(400), s.wear_at(0), s.wear_at(999)
('before_shock', 'after_shock', 0.0, 0.9)
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("none", "gradual", "abrupt", "cycle")

#: Wear after a shock (e.g. a spalled roll after a bearing failure): physics APE ≈ 12 %.
SHOCK_WEAR = 0.9
#: Peak wear of a gradual campaign before the roll change: physics APE ≈ 4 % on average.
GRADUAL_PEAK = 0.55
#: Wear left right after a roll change (bedding-in of the new rolls).
RESIDUAL_WEAR = 0.02


@dataclass(frozen=True)
class Segment:
    """A stretch of passes ``[start, next start)`` with linear wear; ``onset`` tags its start."""

    name: str
    start: int
    wear_start: float
    wear_end: float
    onset: str = ""  # "", "shock" or "maintenance"


@dataclass(frozen=True)
class Scenario:
    name: str
    planned_passes: int
    segments: tuple[Segment, ...]

    def segment_index(self, pass_index: int) -> int:
        idx = 0
        for i, seg in enumerate(self.segments):
            if pass_index >= seg.start:
                idx = i
        return idx

    def phase_at(self, pass_index: int) -> str:
        return self.segments[self.segment_index(pass_index)].name

    def wear_at(self, pass_index: int) -> float:
        i = self.segment_index(pass_index)
        seg = self.segments[i]
        end = self.segments[i + 1].start if i + 1 < len(self.segments) else self.planned_passes
        span = max(end - seg.start, 1)
        frac = min(max((pass_index - seg.start) / span, 0.0), 1.0)
        if i + 1 == len(self.segments) and pass_index >= end:
            frac = 1.0
        return round(seg.wear_start + (seg.wear_end - seg.wear_start) * frac, 12)


def make_scenario(name: str, planned_passes: int) -> Scenario:
    """Build a named scenario scaled to ``planned_passes`` (at least 20)."""
    if name not in SCENARIOS:
        raise ValueError(f"scenario={name!r}: expected one of {', '.join(SCENARIOS)}")
    if planned_passes < 20:
        raise ValueError(f"planned_passes={planned_passes}: expected at least 20")
    n = planned_passes
    if name == "none":
        segs = (Segment("new_rolls", 0, 0.0, 0.0),)
    elif name == "gradual":
        # Three roll campaigns: wear climbs, a roll change brings it back (bidirectional).
        third = n // 3
        segs = tuple(
            Segment(
                f"campaign_{k + 1}",
                k * third,
                RESIDUAL_WEAR,
                GRADUAL_PEAK,
                "maintenance" if k else "",
            )
            for k in range(3)
        )
    elif name == "abrupt":
        shock = int(0.4 * n)
        segs = (
            Segment("before_shock", 0, 0.0, 0.0),
            Segment("after_shock", shock, SHOCK_WEAR, SHOCK_WEAR, "shock"),
        )
    else:  # cycle: new rolls → gradual wear → shock → roll change
        segs = (
            Segment("new_rolls", 0, 0.0, 0.0),
            Segment("gradual", int(0.2 * n), 0.0, 0.4),
            Segment("shock", int(0.5 * n), 0.85, 0.85, "shock"),
            Segment("after_maintenance", int(0.7 * n), 0.0, 0.0, "maintenance"),
        )
    return Scenario(name, n, segs)
