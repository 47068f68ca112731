"""A model rollout: a candidate version run on the live stream beside the current one.

Two modes, stored in the family's registry pointer (:meth:`ModelRegistry.start_rollout
<wearwatch.store.registry.ModelRegistry.start_rollout>`):

- **shadow** — the candidate scores every event the current version scores, and never serves:
  its predictions only go to ``fleet.model_scores``, to be compared with the current one's.
- **canary** — the candidate *serves* a share of the machines (its cohort) and the current
  version the rest; both still score every machine, so the comparison stays on the same events.

**The cohort hash.** A machine's point is ``u = H / 2**64``, where ``H`` is the first 8 bytes
of SHA-256 of the machine id's UTF-8 bytes, read as a big-endian unsigned integer; the machine
is in a canary of share ``s`` iff ``u < s``. SHA-256 is the same in every process, run and
Python version (unlike :func:`hash`, which is salted per process), so the cohort is the same
machines every run, on every worker; and it is monotone in ``s``: raising the share only adds
machines, so a canary widened from 0.1 to 0.5 keeps its first machines. ``s = 1`` is every
machine.

>>> [round(cohort_point(m), 3) for m in ("pump-001", "compressor-003", "pump-005")]
[0.938, 0.07, 0.105]
>>> canary = Rollout(version=4, mode="canary", share=0.5)
>>> [canary.serves(m) for m in ("pump-001", "compressor-003", "pump-005")]
[False, True, True]
>>> Rollout(version=4, mode="shadow").serves("pump-001")
False
>>> Rollout(version=4, mode="canary", share=1.5)
Traceback (most recent call last):
...
ValueError: share: a canary serves a share of the machines in (0, 1], got 1.5
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

RolloutMode = Literal["shadow", "canary"]
MODES: tuple[str, ...] = ("shadow", "canary")


def cohort_point(machine_id: str) -> float:
    """The machine's fixed point in [0, 1): SHA-256 of its id, first 8 bytes / 2**64."""
    digest = hashlib.sha256(machine_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Rollout:
    """A family's running rollout: the candidate ``version``, its ``mode`` and (canary) the
    ``share`` of machines it serves."""

    version: int
    mode: RolloutMode
    share: float | None = None
    started_at: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"version: a version number ≥ 1 is required, got {self.version!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "shadow":
            if self.share is not None:
                raise ValueError(f"share: a shadow serves no machines, got share={self.share!r}")
            return
        share = self.share
        if (
            isinstance(share, bool)
            or not isinstance(share, int | float)
            or not math.isfinite(share)
            or not 0.0 < share <= 1.0
        ):
            raise ValueError(
                f"share: a canary serves a share of the machines in (0, 1], got {share!r}"
            )
        object.__setattr__(self, "share", float(share))

    def serves(self, machine_id: str) -> bool:
        """Whether the candidate serves this machine (a canary's cohort; never in shadow)."""
        return self.mode == "canary" and cohort_point(machine_id) < float(self.share or 0.0)

    def describe(self) -> str:
        """``shadow`` or ``canary 50%`` (for messages)."""
        return self.mode if self.share is None else f"{self.mode} {self.share:.0%}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "mode": self.mode,
            "share": self.share,
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rollout:
        return cls(
            version=int(data["version"]),
            mode=data["mode"],
            share=data.get("share"),
            started_at=str(data.get("started_at", "")),
        )
