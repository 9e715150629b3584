"""Soak: does the default platform hold up after a long run? Broker CPU and serving throughput after
``LLMOPS_BENCH_SOAK_EVENTS`` (default 1,000,000) inference logs went through the log path (producer
-> local broker -> monitoring -> ClickHouse), next to the same platform with a fresh broker.

One platform (broker, serving, monitoring) as `make up` runs it. First, fresh: the broker's CPU
while idle and while serving answers, and serving's output tokens/s at concurrency 1 and 8 (the
serving benchmark's workload). Then the events go through, monitoring stores them all, and the same
figures are measured again, with the broker's data folder size. Goal: within 10% of fresh.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import psutil
from aiokafka import AIOKafkaProducer

from llmops.cli.local import BROKER, LocalPlatform
from llmops.contracts import topics
from llmops.core.settings import KafkaSettings
from llmops.testing.platform import (
    auth,
    committed_offset,
    end_offset,
    eventually,
    inference_message,
    query_monitoring,
    running_platform,
)
from tests.bench.serving import CONCURRENCY, _service_run

EVENTS = int(os.environ.get("LLMOPS_BENCH_SOAK_EVENTS", "1000000"))
IDLE_S = 10.0
CHUNK = 5_000
GROUP = "llmops-monitoring.inference"


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children (the broker's wrapper starts the broker as a child)."""
    process = psutil.Process(pid)
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        times = p.cpu_times()
        total += times.user + times.system
    return total


async def _broker_cpu_while(platform: LocalPlatform, work) -> tuple[float, object]:  # noqa: ANN001
    """The broker's CPU (cores) while ``work`` runs, and what ``work`` returned."""
    pid = platform.pid(BROKER)
    assert pid is not None
    before, started = _cpu_seconds(pid), time.monotonic()
    result = await work()
    return (_cpu_seconds(pid) - before) / (time.monotonic() - started), result


async def _figures(platform: LocalPlatform) -> dict[str, float]:
    address, metadata = platform.address("serving"), auth(platform)
    await _service_run(address, metadata, 1)  # warm-up
    idle, _ = await _broker_cpu_while(platform, lambda: asyncio.sleep(IDLE_S))
    out = {"broker idle cores": idle}
    for c in CONCURRENCY:
        busy, figures = await _broker_cpu_while(platform, lambda c=c: _service_run(address, metadata, c))
        out[f"tokens/s at {c}"] = figures.tokens_per_s  # type: ignore[attr-defined]
        out[f"broker cores at {c}"] = busy
    return out


async def _through_the_log_path(platform: LocalPlatform) -> tuple[float, int]:
    """Send EVENTS, never far ahead of monitoring (as live traffic that monitoring
    keeps up with: a backlog past the topic's size bound would be deleted before it is read).
    Returns the time until monitoring committed the last one, and how many it stored."""
    bootstrap = platform.bootstrap_servers
    # A quarter of what the topic's size bound holds (the platform's setting), at most 50,000.
    bound = KafkaSettings().topic_retention_mb * 1024 * 1024
    max_lag = min(50_000, bound // len(inference_message(0)) // 4) if bound else 50_000
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    started = time.monotonic()
    try:
        for start in range(0, EVENTS, CHUNK):
            await eventually(lambda s=start: _caught_up_to(bootstrap, s - max_lag), timeout=600, interval=0.2)
            futures = [
                await producer.send(topics.INFERENCE_LOGGED, inference_message(i))
                for i in range(start, min(start + CHUNK, EVENTS))
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    sent = await end_offset(bootstrap, topics.INFERENCE_LOGGED)
    await eventually(lambda: _caught_up_to(bootstrap, sent), timeout=3600, interval=1)
    elapsed = time.monotonic() - started
    stored = int(query_monitoring(platform, "SELECT count() FROM inference_log")[0][0])
    return elapsed, stored


async def _caught_up_to(bootstrap: str, offset: int) -> bool:
    return await committed_offset(bootstrap, GROUP, topics.INFERENCE_LOGGED) >= offset


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def run() -> None:
    print(f"{EVENTS:,} inference logs through the log path; broker, serving and monitoring as processes")
    with tempfile.TemporaryDirectory(prefix="llmops-soak-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        with running_platform(root, ["serving", "monitoring"]) as platform:
            fresh = asyncio.run(_figures(platform))
            print(f"  fresh broker: {_line(fresh)}  (data {_folder_mb(platform.data_dir / 'kafka'):.0f} MB)")
            elapsed, stored = asyncio.run(_through_the_log_path(platform))
            print(
                f"  {EVENTS:,} events through monitoring in {elapsed:.0f}s ({EVENTS / elapsed:,.0f}/s);"
                f" {stored:,} stored"
            )
            after = asyncio.run(_figures(platform))
            print(f"  after:        {_line(after)}  (data {_folder_mb(platform.data_dir / 'kafka'):.0f} MB)")
    print("\n  figure                 fresh      after    ratio (after / fresh)")
    for name, value in fresh.items():
        ratio = f"{after[name] / value:8.2f}" if value >= 0.001 else "       -"
        print(f"  {name:<20} {value:>8.3f} {after[name]:>10.3f} {ratio}")
    print("  goal: tokens/s within 10% (ratio >= 0.90); broker CPU not growing with what it has carried")


def _line(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
