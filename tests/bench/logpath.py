"""The log path: inference.logged from Kafka into ClickHouse through monitoring, from a backlog and live.

Baseline, measured in the same run on a fresh broker each time: a raw aiokafka consumer in its own
process that parses each message as the event, builds monitoring's row and inserts into ClickHouse
(chdb, the same engine and migrations) in batches of up to 5,000, committing after each insert.
Monitoring runs as its own process (as ``make up`` starts it) with its guarantees on: commit after
the insert, dedup on event_id, retries, DLQ.

- backlog: ``LLMOPS_BENCH_LOGPATH_EVENTS`` events (default 100,000) are on the topic before the
  consumer starts; the rate is events over the time from the consumer being ready (monitoring:
  SERVING) to the last one stored.
- live: the consumer is ready first, then the same number of events is produced as fast as one
  producer can; the rate is events over the time from the first send to the last one stored.

Goal: at least 0.75x in both.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llmops.contracts import topics
from llmops.testing.platform import committed_offset, inference_message, make_platform, query_monitoring

EVENTS = int(os.environ.get("LLMOPS_BENCH_LOGPATH_EVENTS", "100000"))
BATCH = 5_000
GROUP = "llmops-monitoring.inference"


async def _produce(bootstrap: str) -> float:
    """Send EVENTS; returns the time of the first send."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    first = time.monotonic()
    try:
        for start in range(0, EVENTS, BATCH):
            futures = [
                await producer.send(topics.INFERENCE_LOGGED, inference_message(i))
                for i in range(start, start + BATCH)
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return first


def _raw_process(
    bootstrap: str, folder: str, ready: multiprocessing.Queue, done: multiprocessing.Queue
) -> None:
    asyncio.run(_raw_consumer(bootstrap, Path(folder), ready, done))


async def _raw_consumer(
    bootstrap: str, folder: Path, ready: multiprocessing.Queue, done: multiprocessing.Queue
) -> None:
    from llmops.contracts.events import InferenceLogged
    from llmops.core.clickhouse import apply_migrations, connect, migrations_dir
    from llmops.monitoring.store.analytics import INFERENCE_COLUMNS, inference_row

    client = connect(f"chdb://{folder}")
    apply_migrations(client, migrations_dir())
    consumer = AIOKafkaConsumer(
        topics.INFERENCE_LOGGED,
        bootstrap_servers=bootstrap,
        group_id="bench-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=BATCH,
    )
    await consumer.start()
    ready.put(time.monotonic())
    stored = 0
    try:
        while stored < EVENTS:
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            rows = [
                inference_row(InferenceLogged.model_validate_json(r.value))
                for part in batch.values()
                for r in part
            ]
            if rows:
                await asyncio.to_thread(client.insert, "inference_log", rows, column_names=INFERENCE_COLUMNS)
                await consumer.commit()
                stored += len(rows)
        done.put(time.monotonic())
    finally:
        await consumer.stop()
        client.close()


def _raw(root: Path, live: bool) -> float:
    platform = make_platform(root)
    platform.start_broker()
    context = multiprocessing.get_context("spawn")
    ready, done = context.Queue(), context.Queue()
    try:
        if not live:
            asyncio.run(_produce(platform.bootstrap_servers))
        process = context.Process(
            target=_raw_process, args=(platform.bootstrap_servers, str(root / "clickhouse"), ready, done)
        )
        process.start()
        started = ready.get(timeout=120)
        if live:
            started = asyncio.run(_produce(platform.bootstrap_servers))
        finished = done.get(timeout=1800)
        process.join(60)
        return EVENTS / (finished - started)
    finally:
        platform.down()


def _through_monitoring(root: Path, live: bool) -> tuple[float, float]:
    """Events per second, and monitoring's start-up time (process start to SERVING)."""
    platform = make_platform(root)
    platform.start_broker()
    try:
        if not live:
            asyncio.run(_produce(platform.bootstrap_servers))
        spawned = time.monotonic()
        platform.start_services(["monitoring"])
        started = ready = time.monotonic()
        if live:
            started = asyncio.run(_produce(platform.bootstrap_servers))
        # Done when monitoring has committed every event (it commits after the insert); asked of the
        # broker, so the polling adds no load to monitoring's ClickHouse thread.
        while (
            asyncio.run(committed_offset(platform.bootstrap_servers, GROUP, topics.INFERENCE_LOGGED)) < EVENTS
        ):
            time.sleep(0.1)
        finished = time.monotonic()
        stored = int(query_monitoring(platform, "SELECT count() FROM inference_log")[0][0])
        assert stored == EVENTS, f"monitoring stored {stored} of {EVENTS} events"
        return EVENTS / (finished - started), ready - spawned
    finally:
        platform.down()


def run() -> None:
    print(f"{EVENTS:,} inference.logged events, a fresh local broker each time, ClickHouse in process")
    with tempfile.TemporaryDirectory(prefix="llmops-bench-logpath-", ignore_cleanup_errors=True) as tmp:
        for live in (False, True):
            mode = "live" if live else "backlog"
            raw = _raw(Path(tmp) / f"raw-{mode}", live)
            print(f"  {mode:7}  raw aiokafka consumer + insert   {raw:9,.0f} events/s  baseline", flush=True)
            ours, startup = _through_monitoring(Path(tmp) / f"monitoring-{mode}", live)
            print(
                f"  {mode:7}  through monitoring (guarantees)  {ours:9,.0f} events/s  ratio {ours / raw:.2f}"
                f"  (start-up to SERVING {startup:.1f}s, not counted)",
                flush=True,
            )
