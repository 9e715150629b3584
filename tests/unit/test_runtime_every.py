"""Runtime.every: the one way a service runs a periodic job (drift, alerts, the loop)."""

from __future__ import annotations

import asyncio

from llmops.core.service import Runtime
from llmops.monitoring.settings import Settings


async def test_first_run_after_one_interval_failures_do_not_stop_it_and_close_does(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    runtime = Runtime(Settings())
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def job() -> None:
        runs.append(loop.time() - started)
        if len(runs) == 2:
            raise RuntimeError("the store is away")

    task = runtime.every("job", 0.2, job)
    await asyncio.sleep(0.1)
    assert runs == []  # the bus connects after start: no run before one interval
    await asyncio.sleep(0.6)
    assert len(runs) >= 3 and runs[0] >= 0.2  # the failed second run did not end it
    await runtime.close()
    assert task.done()
    count = len(runs)
    await asyncio.sleep(0.3)
    assert len(runs) == count
