"""An OPC UA test server (asyncua) that plays a deterministic schedule of data changes.

:class:`OpcServer` serves ``opc.tcp://127.0.0.1:PORT/`` with a folder ``ns=2;s=Plant`` holding
objects ``pump-0…pump-{MACHINES-1}``, each with Double variables ``vibration``
(EngineeringUnits ``mm/s``) and ``bearing_temp`` (no unit property); ``pump-0`` also has a
String variable ``mode``. Every variable starts at its value of step 0. :func:`schedule` is the
ground truth the tests compare the log with: step ``k`` is written with SourceTimestamp
``T0 + k·10 ms``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Server, ua

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NS = "urn:wearwatch:test"


def step_ts(k: int) -> datetime:
    """When step ``k`` was measured (its SourceTimestamp)."""
    return T0 + timedelta(milliseconds=10 * k)


def schedule(k: int, machines: int) -> list[tuple[str, object, str]]:
    """Step ``k``'s writes: (variable NodeId string, value, status name).

    Bad status on pump-0 vibration at k ≡ 7 (mod 50), NaN on pump-1 bearing_temp at k ≡ 23
    (mod 50), pump-0's mode (a string) every 40 steps; every other value differs from the
    previous one of its variable.
    """
    writes: list[tuple[str, object, str]] = []
    for m in range(machines):
        vib = round(1.0 + m + (k % 997) / 1000, 6)
        temp = round(50.0 + m + (k % 997) / 100, 6)
        status = "BadSensorFailure" if (m == 0 and k % 50 == 7) else "Good"
        writes.append((f"ns=2;s=pump-{m}.vibration", vib, status))
        if m == 1 and k % 50 == 23:
            temp = math.nan
        writes.append((f"ns=2;s=pump-{m}.bearing_temp", temp, "Good"))
    if k % 40 == 0:
        writes.append(("ns=2;s=pump-0.mode", f"running-{k}", "Good"))
    return writes


def datavalue(value: object, status: str, k: int) -> ua.DataValue:
    kind = ua.VariantType.String if isinstance(value, str) else ua.VariantType.Double
    return ua.DataValue(
        ua.Variant(value, kind),
        StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)),
        SourceTimestamp=step_ts(k),
        ServerTimestamp=step_ts(k),
    )


class OpcServer:
    """The server in a thread of the test process (its own event loop), so its start-up cost
    (asyncua builds the standard address space: seconds on a loaded machine) is paid once per
    test module. :meth:`restart` drops the listener and every session, keeping the values."""

    def __init__(self, port: int, machines: int) -> None:
        self.port, self.machines = port, machines
        self.url = f"opc.tcp://127.0.0.1:{port}/"
        self.step = 0  # the last step written
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nodes: dict[str, ua.NodeId] = {}
        self.server = Server()
        self.call(self._build())

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def run(self, last: int) -> range:
        """Write steps ``step+1..last`` (paced like a PLC); returns them."""
        return self.call(self._run(last))

    def run_soon(self, last: int) -> concurrent.futures.Future[range]:
        """:meth:`run` without waiting for it."""
        return asyncio.run_coroutine_threadsafe(self._run(last), self._loop)

    def restart(self, down_s: float = 0.5) -> None:
        self.call(self.server.stop())
        time.sleep(down_s)
        self.call(self.server.start())

    def close(self) -> None:
        self.call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        """Stop the server and end the tasks it leaves behind (session timeouts...)."""
        await self.server.stop()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _run(self, last: int) -> range:
        steps = range(self.step + 1, last + 1)
        for k in steps:
            for node, value, status in schedule(k, self.machines):
                await self.server.write_attribute_value(
                    self._nodes[node], datavalue(value, status, k)
                )
            self.step = k
            await asyncio.sleep(0.002)
        return steps

    async def _build(self) -> None:
        server = self.server
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NS)
        assert idx == 2, idx
        plant = await server.nodes.objects.add_folder(
            ua.NodeId("Plant", idx), ua.QualifiedName("Plant", idx)
        )
        for m in range(self.machines):
            obj = await plant.add_object(
                ua.NodeId(f"pump-{m}", idx), ua.QualifiedName(f"pump-{m}", idx)
            )
            for name in ["vibration", "bearing_temp"] + (["mode"] if m == 0 else []):
                node_id = ua.NodeId(f"pump-{m}.{name}", idx)
                kind = ua.VariantType.String if name == "mode" else ua.VariantType.Double
                initial = "" if name == "mode" else 0.0
                var = await obj.add_variable(node_id, ua.QualifiedName(name, idx), initial, kind)
                if name == "vibration":
                    eu = ua.EUInformation(DisplayName=ua.LocalizedText("mm/s"), UnitId=4534832)
                    await var.add_property(
                        ua.NodeId(f"pump-{m}.{name}.EU", idx),
                        ua.QualifiedName("EngineeringUnits", 0),
                        eu,
                    )
                self._nodes[node_id.to_string()] = node_id
        for node, value, status in schedule(0, self.machines):
            await server.write_attribute_value(self._nodes[node], datavalue(value, status, 0))
        # History of every change from step 0 on (period None: the schedule's times are past).
        await server.historize_node_data_change(
            [server.get_node(n) for n in self._nodes.values()], period=None
        )
        await server.start()
