"""Restart the fleet worker when the models it serves change in the registry.

A worker loads its models when it starts (``--param registry=DIR``: the current versions), so
a promote or a rollback (``POST /models/{family}/promote`` / ``rollback``) takes effect in the
stream only after a restart: :class:`ModelWatch` polls the registry's pointers (a small JSON
file per family) every couple of seconds and asks the supervisor for a clean restart of the
worker when one moved — or when a rollout started or ended (it lives in the same pointer file,
and the worker loads the candidate at start-up too).

>>> import tempfile
>>> from pathlib import Path
>>> class Sup:
...     def restart(self, name, why): print(name, "|", why)
>>> root = Path(tempfile.mkdtemp())
>>> watch = ModelWatch(root, Sup(), "worker-fleet", every_s=0.0)
>>> _ = ModelRegistry(root).register("risk", {"weights": [1]}, promote=True)
>>> watch.check()
worker-fleet | models changed: risk v1
>>> watch.check()  # nothing new
>>> _ = ModelRegistry(root).register("risk", {"weights": [2]})
>>> _ = ModelRegistry(root).start_rollout("risk", 2, "canary", 0.25)
>>> watch.check()
worker-fleet | models changed: risk v1 + rollout v2 (canary 25%)
>>> _ = ModelRegistry(root).abort_rollout("risk")
>>> watch.check()
worker-fleet | models changed: risk v1
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from wearwatch.store.registry import ModelRegistry, RegistryError
from wearwatch.store.rollout import Rollout

#: The families the fleet worker serves.
FLEET_FAMILIES = ("anomaly", "risk")


class Restarts(Protocol):
    def restart(self, name: str, why: str) -> None: ...


class ModelWatch:
    """Watch ``families`` in the registry at ``registry_dir``; restart ``child`` on a change."""

    def __init__(
        self,
        registry_dir: Path,
        supervisor: Restarts,
        child: str,
        families: tuple[str, ...] = FLEET_FAMILIES,
        every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = ModelRegistry(registry_dir)
        self.supervisor = supervisor
        self.child = child
        self.families = families
        self.every_s = every_s
        self.clock = clock
        self.current = self._versions()
        self._next = 0.0

    def _versions(self) -> dict[str, tuple[int | None, Rollout | None]]:
        """Per family: the current version and the running rollout (what the worker loads)."""
        out: dict[str, tuple[int | None, Rollout | None]] = {}
        for family in self.families:
            try:
                out[family] = (
                    self.registry.current_version(family),
                    self.registry.rollout(family),
                )
            except (RegistryError, OSError):  # a pointer being replaced, or corrupt
                out[family] = (
                    self.current.get(family, (None, None))
                    if hasattr(self, "current")
                    else (None, None)
                )
        return out

    def check(self) -> None:
        """Poll (at most every ``every_s``); restart the child if a current version moved."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.every_s
        versions = self._versions()
        if versions == self.current:
            return
        changed = ", ".join(
            _describe(f, *versions[f]) for f in self.families if versions[f] != self.current[f]
        )
        self.current = versions
        self.supervisor.restart(self.child, f"models changed: {changed}")


def _describe(family: str, version: int | None, rollout: Rollout | None) -> str:
    """``risk v1``, or ``risk v1 + rollout v2 (canary 25%)``."""
    text = f"{family} v{version}"
    return (
        text if rollout is None else f"{text} + rollout v{rollout.version} ({rollout.describe()})"
    )
