"""Restart the fleet worker when the models it serves change in the registry.

A worker loads its models when it starts (``--param registry=DIR``: the current versions), so
a promote or a rollback (``POST /models/{family}/promote`` / ``rollback``) takes effect in the
stream only after a restart: :class:`ModelWatch` polls the registry's pointers (a small JSON
file per family) every couple of seconds and asks the supervisor for a clean restart of the
worker when one moved.

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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from wearwatch.store.registry import ModelRegistry, RegistryError

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

    def _versions(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for family in self.families:
            try:
                out[family] = self.registry.current_version(family)
            except (RegistryError, OSError):  # a pointer being replaced, or corrupt
                out[family] = self.current.get(family) if hasattr(self, "current") else None
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
            f"{f} v{versions[f]}" for f in self.families if versions[f] != self.current[f]
        )
        self.current = versions
        self.supervisor.restart(self.child, f"models changed: {changed}")
