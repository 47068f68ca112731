"""The mill's join step: TTL timers in event time, duplicates, orphans, late and reordered
halves, bounded memory."""

from __future__ import annotations

from collections import Counter
from typing import Any

from wearwatch.events import JoinedPass, PassActual, PassRequest, utc
from wearwatch.pipelines.mill.join import PassJoin

T0 = 1_767_225_600.0


# -- a minimal stand-in for the runtime around one process step ------------------------------
# Per-key state, one timer per key fired once the watermark reaches it (in time, key order),
# counters and outputs: the step's contract, without a log.


class _StepContext:
    def __init__(self, driver: StepDriver, key: str) -> None:
        self._driver = driver
        self.key = key
        self.cleared = False

    @property
    def watermark(self) -> float:
        return self._driver.watermark

    def emit(self, value: Any) -> None:
        self._driver.out.append(value)

    def set_timer(self, when: float) -> None:
        self._driver.timers[self.key] = when

    def delete_timer(self) -> None:
        self._driver.timers.pop(self.key, None)

    def count(self, name: str, n: int = 1) -> None:
        self._driver.counters[name] += n

    def clear_state(self) -> None:
        self.cleared = True


class StepDriver:
    """Feed events with a watermark; due timers fire (in time, key order) before the event."""

    def __init__(self, step: Any, key_of: Any) -> None:
        self.step = step
        self.key_of = key_of
        self.states: dict[str, Any] = {}
        self.timers: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        self.out: list[Any] = []
        self.watermark = float("-inf")

    def advance(self, watermark: float) -> list[Any]:
        """Move the watermark (never back) and fire the timers it reaches."""
        start = len(self.out)
        self.watermark = max(self.watermark, watermark)
        while True:
            due = sorted((when, key) for key, when in self.timers.items() if when <= self.watermark)
            if not due:
                break
            when, key = due[0]
            del self.timers[key]
            self._call(key, self.step.on_timer, when)
        return self.out[start:]

    def feed(self, event: Any, watermark: float | None = None) -> list[Any]:
        """Advance to ``watermark`` (if given), then process ``event``; returns its outputs."""
        if watermark is not None:
            self.advance(watermark)
        start = len(self.out)
        self._call(str(self.key_of(event)), self.step.on_event, event)
        return self.out[start:]

    def _call(self, key: str, method: Any, arg: Any) -> None:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = self.step.init()
        ctx = _StepContext(self, key)
        replaced = method(arg, state, ctx)
        if ctx.cleared:
            del self.states[key]
        elif replaced is not None:
            self.states[key] = replaced


def req(slab: str = "S1-000001", n: int = 1, t: float = 0.0, line: str = "structural"):
    return PassRequest(
        ts=utc(T0 + t),
        slab_id=slab,
        pass_no=n,
        line=line,
        width_mm=1500.0,
        h_in_mm=220.0,
        h_out_mm=170.0,
        temp_c=1150.0,
        speed_mps=2.0,
        roll_radius_mm=550.0,
        baseline_force_kn=22_000.0,
        rating_force_kn=45_000.0,
    )


def act(slab: str = "S1-000001", n: int = 1, t: float = 10.0, f: float = 22_100.0):
    return PassActual(ts=utc(T0 + t), slab_id=slab, pass_no=n, force_kn=f)


def join() -> StepDriver:
    return StepDriver(PassJoin(ttl_s=60.0, memory_s=600.0), lambda e: e.slab_id)


def test_request_is_forwarded_at_once_and_joined_with_its_actual() -> None:
    j = join()
    assert j.feed(req(), T0) == [req()]
    (joined,) = j.feed(act(), T0 + 5)
    assert joined == JoinedPass(ts=act().ts, request=req(), actual=act())
    assert joined.line == "structural"
    assert j.counters == {"requests": 1, "actuals": 1, "joined": 1}


def test_reordered_actual_first_joins_on_request() -> None:
    j = join()
    assert j.feed(act(), T0) == []
    out = j.feed(req(), T0)
    assert out == [req(), JoinedPass(ts=act().ts, request=req(), actual=act())]
    assert j.counters["joined"] == 1


def test_duplicates_dropped_and_counted() -> None:
    j = join()
    j.feed(req(), T0)
    assert j.feed(req(), T0) == []
    j.feed(act(), T0 + 5)
    assert j.feed(act(), T0 + 6) == []
    assert j.counters == {"requests": 1, "actuals": 1, "joined": 1, "duplicates": 2}


def test_missing_actual_expires_as_orphan_when_the_watermark_reaches_its_ttl() -> None:
    j = join()
    j.feed(req(t=0.0), T0)
    assert j.timers == {"S1-000001": T0 + 60.0}  # one timer, at the pending half's TTL
    j.advance(T0 + 59.999)
    assert j.counters["orphans"] == 0 and j.states["S1-000001"].requests
    j.advance(T0 + 60.0)
    assert j.counters["orphans"] == 1 and not j.states["S1-000001"].requests
    assert j.timers == {"S1-000001": T0 + 600.0}  # now only the memory of the slab waits


def test_no_work_on_events_that_expire_nothing() -> None:
    """The timer fires once per expiry, not on every event (no purge scan per event)."""
    j = join()
    fired: list[float] = []
    on_timer = j.step.on_timer
    j.step.on_timer = lambda when, state, ctx: (fired.append(when), on_timer(when, state, ctx))[1]
    for i in range(50):  # 50 joined passes of one slab, 1 s apart
        j.feed(req(n=i + 1, t=float(i)), T0 + i - 5)
        j.feed(act(n=i + 1, t=i + 0.5), T0 + i - 5)
    assert fired == [] and j.counters["joined"] == 50


def test_late_actual_after_ttl_is_an_orphan_not_a_join() -> None:
    j = join()
    j.feed(req(t=0.0), T0)
    j.advance(T0 + 100.0)
    assert j.feed(act(t=10.0), T0 + 1000.0) == []
    assert j.counters == {"requests": 1, "actuals": 1, "orphans": 2, "too_late": 1}


def test_actual_older_than_ttl_without_request_is_too_late() -> None:
    j = join()
    assert j.feed(act(t=0.0), T0 + 500.0) == []
    assert j.counters["too_late"] == 1 and not j.states["S1-000001"].actuals


def test_lonely_actual_expires_and_its_late_request_is_still_served() -> None:
    j = join()
    j.feed(act(t=0.0), T0)
    j.advance(T0 + 100.0)
    assert j.counters["orphans"] == 1
    assert j.feed(req(t=-5.0), T0 + 100.0) == [req(t=-5.0)]  # forwarded: the pass is served
    assert j.counters["too_late"] == 1 and j.counters["orphans"] == 2


def test_keys_are_slab_and_pass() -> None:
    j = join()
    j.feed(req(n=1), T0)
    j.feed(req(n=2, t=20), T0)
    assert j.feed(act(n=2, t=25), T0) and j.feed(act(n=1, t=12), T0)
    assert j.counters["joined"] == 2


def test_a_quiet_slab_is_forgotten_after_memory_s() -> None:
    j = join()
    for i in range(50):
        slab = f"S1-{i:06d}"
        j.feed(req(slab=slab, t=i * 100.0), T0 + i * 100.0)
        j.feed(act(slab=slab, t=i * 100.0 + 5), T0 + i * 100.0)
    # A slab is kept for memory_s (600 s) after its last half: the last 6-7 slabs remain.
    assert len(j.states) <= 7 and len(j.timers) == len(j.states)
    assert j.counters["joined"] == 50
    # Within memory a copy is still recognised as a duplicate.
    j.feed(act(slab="S1-000049", t=4905.0), T0 + 4905.0)
    assert j.counters["duplicates"] == 1
