"""Runtime.every: the one way a service runs a periodic job (drift, alerts, the loop)."""

from __future__ import annotations

import asyncio

import pytest

from llmops.core.service import Runtime
from llmops.monitoring.settings import Settings


async def test_jobs_start_with_delivery_survive_failures_and_stop_before_the_bus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    runtime = Runtime(Settings())
    order: list[str] = []
    runs = 0
    third = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        order.append("run")
        if runs == 3:
            third.set()
        if runs == 2:
            raise RuntimeError("the store is away")

    runtime.every("job", 0.05, job)
    await asyncio.sleep(0.2)
    assert runs == 0  # nothing runs before delivery starts (the bus is not connected yet)

    class Bus:
        def stop(self) -> None:
            order.append("bus stopped")

    # As serve() does: the bus is taken over, then delivery (and the jobs) start.
    runtime.own(Bus(), close=lambda bus: bus.stop())
    await runtime.start_delivery()
    await asyncio.wait_for(third.wait(), timeout=30)  # the failed second run did not end it
    await runtime.close()
    assert order[-1] == "bus stopped" and "bus stopped" not in order[:-1]
    count = runs
    await asyncio.sleep(0.2)
    assert runs == count  # stopped for good
