"""Event-time timers: at most one per key, fired in (time, key) order as the watermark passes."""

from __future__ import annotations

import heapq


class TimerService:
    """A heap with lazy deletion; re-setting a key's timer replaces the old one.

    >>> timers = TimerService()
    >>> timers.set("b", 10.0); timers.set("a", 10.0); timers.set("c", 5.0); timers.set("c", 12.0)
    >>> timers.pop_due(11.0)
    [(10.0, 'a'), (10.0, 'b')]
    >>> timers.pop_due(20.0)
    [(12.0, 'c')]
    """

    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def set(self, key: str, when: float) -> None:
        if self._due.get(key) == when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))

    def delete(self, key: str) -> None:
        self._due.pop(key, None)

    def get(self, key: str) -> float | None:
        return self._due.get(key)

    def next_due(self) -> float | None:
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, watermark: float) -> list[tuple[float, str]]:
        """Remove and return the timers at or before ``watermark``, in (time, key) order."""
        fired: list[tuple[float, str]] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= watermark:
            when, key = heapq.heappop(heap)
            if due.get(key) == when:
                del due[key]
                fired.append((when, key))
        return fired

    def __len__(self) -> int:
        return len(self._due)

    def __getstate__(self) -> dict[str, float]:
        return dict(self._due)

    def __setstate__(self, due: dict[str, float]) -> None:
        self._due = dict(due)
        self._heap = [(when, key) for key, when in due.items()]
        heapq.heapify(self._heap)
