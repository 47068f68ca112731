"""A stand-in platform for dashboard tests: plan10's ``Platform`` surface over a scripted
in-memory view whose values move every ``--tick`` seconds, served by uvicorn.

Run: ``python tests/dashboard_fake.py --port P --machines N --token T``. Commands the
dashboard sends are appended (one JSON line each) to ``--commands FILE`` so a test can assert
exactly what was sent.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from wearwatch.events import (
    Alarm,
    AlarmCommand,
    AnomalyScore,
    FeatureVector,
    MachineHealth,
    MaintenanceEvent,
    PassOutcome,
    Trigger,
    TwinCommand,
    encode,
)
from wearwatch.store.live import LineSummary, MachineSummary

TYPES = ("pump", "motor", "compressor", "fan")
SEVERITIES = ("normal", "watch", "medium", "high", "critical")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeView:
    """Scripted data: every step moves time by 30 s and every machine's values a little."""

    def __init__(self, machines: int) -> None:
        self.ids = [f"{TYPES[(i - 1) % 4]}-{i:03d}" for i in range(1, machines + 1)]
        self.step = 0
        self.lock = threading.Lock()
        self.alarms_: dict[str, Alarm] = {}
        self.history: dict[str, list[Alarm]] = {}
        self.features_: dict[str, list[FeatureVector]] = {m: [] for m in self.ids}
        self.scores_: dict[str, list[AnomalyScore]] = {m: [] for m in self.ids}
        self.health_: dict[str, MachineHealth] = {}
        self.outcomes: list[PassOutcome] = []
        self.wear: list[tuple[datetime, float]] = []
        self.subscribers: list[Callable[[str, bytes], None]] = []
        self.raise_alarm(self.ids[0], "high")
        for _ in range(20):
            self.advance()

    def now(self) -> datetime:
        return T0 + timedelta(seconds=30 * self.step)

    def raise_alarm(self, machine_id: str, severity: str) -> None:
        a = Alarm(
            ts=self.now(),
            alarm_id=f"{machine_id}/machine/1",
            machine_id=machine_id,
            alarm_type="machine",
            severity=severity,  # type: ignore[arg-type]
            status="active",
            transition="raised",
            reason="vibration.mean",
            raised_at=self.now(),
        )
        self.alarms_[a.alarm_id] = a
        self.history.setdefault(machine_id, []).append(a)

    def acknowledge(self, alarm_id: str, by: str) -> None:
        with self.lock:
            a = self.alarms_[alarm_id]
            a = msgspec.structs.replace(
                a, acknowledged=True, ack_by=by, ack_at=self.now(), transition="acknowledged"
            )
            self.alarms_[alarm_id] = a
            self.history[a.machine_id].append(a)

    def advance(self) -> None:
        with self.lock:
            self.step += 1
            ts = self.now()
            k = self.step
            for i, m in enumerate(self.ids):
                vib = 1.0 + 0.3 * ((k + i) % 7) / 7
                fv = FeatureVector(
                    ts=ts,
                    machine_id=m,
                    window_s=30.0,
                    features={
                        "vibration.mean": vib,
                        "vibration.min": vib - 0.2,
                        "vibration.max": vib + 0.3,
                        "vibration.count": 30.0,
                        "bearing_temp.mean": 60.0 + (k % 5),
                        "bearing_temp.min": 59.0 + (k % 5),
                        "bearing_temp.max": 61.0 + (k % 5),
                    },
                )
                self.features_[m] = (self.features_[m] + [fv])[-120:]
                sev = SEVERITIES[(k + i) % 5] if i % 10 == 0 else "normal"
                score = AnomalyScore(
                    ts=ts,
                    machine_id=m,
                    window_s=30.0,
                    severity=sev,  # type: ignore[arg-type]
                    score=0.2 + (k % 10) / 10,
                    reason="vibration.mean" if sev != "normal" else "",
                    triggers=[
                        Trigger(
                            detector="zscore",
                            feature="vibration.mean",
                            value=vib,
                            threshold=1.2,
                            score=vib / 1.2,
                            severity="watch",
                        )
                    ],
                )
                self.scores_[m] = (self.scores_[m] + [score])[-120:]
                h = MachineHealth(
                    ts=ts,
                    machine_id=m,
                    risk=round(((k + i) % 20) / 20, 3),
                    risk_level="low",
                    health=100.0 - ((k + i) % 40),
                    time_to_maintenance_h=100.0 + i,
                )
                self.health_[m] = h
                for cb in self.subscribers:
                    cb("health", encode(h))
            for line in ("structural", "microalloyed"):
                base = 20_000.0 + 100 * (k % 9)
                self.outcomes.append(
                    PassOutcome(
                        ts=ts,
                        slab_id=f"S-{k:06d}",
                        pass_no=1,
                        line=line,
                        actual_force_kn=base * 1.03,
                        baseline_force_kn=base,
                        served_force_kn=base * 1.02,
                        source="model",
                        physics_ape=2.9,
                        served_ape=1.0,
                        model_ape={"amrules": 1.0},
                        router_state="serving",
                    )
                )
            self.outcomes = self.outcomes[-600:]
            self.wear.append((ts, 0.1 + 0.001 * k))

    # --- plan10's LiveView surface ---------------------------------------------------------
    def subscribe(self, callback: Callable[[str, bytes], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def machine_ids(self) -> list[str]:
        return sorted(self.ids)

    def machine(self, machine_id: str) -> MachineSummary | None:
        with self.lock:
            if machine_id not in self.health_:
                return None
            h = self.health_[machine_id]
            s = self.scores_[machine_id][-1]
            open_ = [
                a
                for a in self.alarms_.values()
                if a.machine_id == machine_id and a.status != "cleared"
            ]
            return MachineSummary(
                machine_id=machine_id,
                health=h.health,
                risk=h.risk,
                risk_level=h.risk_level,
                time_to_maintenance_h=h.time_to_maintenance_h,
                severity=s.severity,
                reason=s.reason,
                open_alarms=len(open_),
                worst_alarm=max((a.severity for a in open_), key=SEVERITIES.index, default=""),
                event_time=h.ts,
            )

    def machines(self) -> list[MachineSummary]:
        return [s for m in self.machine_ids() if (s := self.machine(m)) is not None]

    def features(
        self, machine_id: str, window_s: float, since: datetime | None = None
    ) -> list[FeatureVector]:
        with self.lock:
            return [f for f in self.features_.get(machine_id, []) if f.window_s == window_s]

    def scores(self, machine_id: str, since: datetime | None = None) -> list[AnomalyScore]:
        with self.lock:
            return list(self.scores_.get(machine_id, []))

    def alarms(
        self, status: str | None = None, severity: str | None = None, machine_id: str | None = None
    ) -> list[Alarm]:
        with self.lock:
            return [
                a
                for a in self.alarms_.values()
                if status in (None, a.status) or (status == "open" and a.status != "cleared")
            ]

    def alarm(self, alarm_id: str) -> Alarm | None:
        return self.alarms_.get(alarm_id)

    def alarm_history(self, machine_id: str) -> list[Alarm]:
        with self.lock:
            return list(self.history.get(machine_id, []))

    def truth(self, machine_id: str) -> list[MaintenanceEvent]:
        return [
            MaintenanceEvent(
                ts=T0, asset_id=machine_id, kind="fault_onset", mode="bearing_wear", detail="x"
            )
        ]

    def event_time(self, machine_id: str) -> datetime | None:
        return self.now()

    def mill_lines(self) -> list[LineSummary]:
        with self.lock:
            lines = sorted({o.line for o in self.outcomes})
            return [
                LineSummary(
                    line=line,
                    passes=self.step,
                    router_state="serving",
                    source="model",
                    reason="model",
                    model_share=0.9,
                    ewma_ape={"physics": 2.9, "model": 1.0, "served": 1.0},
                    mean_ape_recent={"physics": 2.9, "model": 1.0, "served": 1.0},
                    last_ts=self.now(),
                )
                for line in lines
            ]

    def mill_outcomes(
        self, since: datetime | None = None, line: str | None = None, limit: int = 1000
    ) -> list[PassOutcome]:
        with self.lock:
            return [o for o in self.outcomes if line is None or o.line == line][-limit:]

    def mill_wear(self, since: datetime | None = None) -> list[tuple[datetime, float]]:
        with self.lock:
            return list(self.wear)

    def counts(self) -> dict[str, int]:
        return {}


@dataclass
class Config:
    token: str
    fleet_config: Path | None = None


@dataclass
class FakePlatform:
    """plan10's Platform surface: ``view``, ``config`` and the ``*_command`` methods."""

    view: FakeView
    config: Config
    commands: Path | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)

    def _record(self, entry: dict[str, Any]) -> None:
        self.sent.append(entry)
        if self.commands is not None:
            with self.commands.open("a") as out:
                out.write(json.dumps(entry) + "\n")

    def machine_ids(self) -> list[str]:
        return self.view.machine_ids()

    def mill_command(self, command: str, args: dict[str, Any]) -> TwinCommand:
        if command not in ("shock", "gradual", "maintenance", "set-wear"):
            raise ValueError(f"command={command!r}: unknown")
        self._record({"twin": "mill", "command": command, "args": args})
        return TwinCommand(ts=self.view.now(), command=command, args=args)

    def fleet_command(self, machine_id: str, command: str, args: dict[str, Any]) -> TwinCommand:
        if machine_id not in self.view.ids:
            raise LookupError(f"machine {machine_id!r}: unknown")
        self._record({"twin": "fleet", "machine": machine_id, "command": command, "args": args})
        return TwinCommand(ts=self.view.now(), command=command, args=args)

    def alarm_command(
        self, alarm_id: str, action: str, by: str = "", until: datetime | None = None
    ) -> AlarmCommand:
        alarm = self.view.alarm(alarm_id)
        if alarm is None:
            raise LookupError(f"alarm {alarm_id!r}: unknown")
        self._record({"alarm": alarm_id, "action": action, "by": by})
        if action == "acknowledge":
            self.view.acknowledge(alarm_id, by)
        return AlarmCommand(
            ts=self.view.now(), machine_id=alarm.machine_id, action=action, alarm_id=alarm_id, by=by
        )


def main() -> None:
    import uvicorn
    from fastapi import FastAPI

    from wearwatch.ui.dashboard import mount

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--machines", type=int, default=8)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--commands", type=Path, default=None)
    ns = parser.parse_args()
    view = FakeView(ns.machines)
    platform = FakePlatform(view, Config(ns.token), ns.commands)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    mount(app, platform)

    def tick() -> None:
        while True:
            time.sleep(ns.tick)
            view.advance()

    threading.Thread(target=tick, daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
