"""The log path: inference.logged from Kafka into ClickHouse through monitoring, from a backlog.

Baseline, measured in the same run on the same broker and the same backlog: a raw aiokafka
consumer that parses each message as the event, builds monitoring's row and inserts into ClickHouse
(chdb, the same engine and migrations) in batches of 5,000. Monitoring runs as its own process (as
``make up`` starts it) with its guarantees on: commit after the insert, dedup on event_id, DLQ. Its
rate is events in ``inference_log`` over the time from its start to the last one stored.
``LLMOPS_BENCH_LOGPATH_EVENTS`` sets the backlog (default 100,000). Goal: at least 0.75x.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llmops.contracts import topics
from llmops.contracts.events import InferenceLogged
from llmops.core.clickhouse import apply_migrations, connect, migrations_dir
from llmops.monitoring.store.analytics import INFERENCE_COLUMNS, inference_row
from llmops.testing.platform import inference_message, make_platform, query_monitoring

EVENTS = int(os.environ.get("LLMOPS_BENCH_LOGPATH_EVENTS", "100000"))
BATCH = 5_000


async def _backlog(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        for start in range(0, EVENTS, BATCH):
            futures = [
                await producer.send(topics.INFERENCE_LOGGED, inference_message(i))
                for i in range(start, start + BATCH)
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _raw_consumer(bootstrap: str, folder: Path) -> float:
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
    started = time.monotonic()
    await consumer.start()
    stored = 0
    try:
        while stored < EVENTS:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            rows = [
                inference_row(InferenceLogged.model_validate_json(r.value))
                for part in batch.values()
                for r in part
            ]
            if rows:
                await asyncio.to_thread(client.insert, "inference_log", rows, column_names=INFERENCE_COLUMNS)
                await consumer.commit()
                stored += len(rows)
        return EVENTS / (time.monotonic() - started)
    finally:
        await consumer.stop()
        client.close()


def _through_monitoring(root: Path) -> float:
    platform = make_platform(root)
    platform.start_broker()
    try:
        asyncio.run(_backlog(platform.bootstrap_servers))
        started = time.monotonic()
        platform.start_services(["monitoring"])
        while int(query_monitoring(platform, "SELECT count() FROM inference_log")[0][0]) < EVENTS:
            time.sleep(0.2)
        return EVENTS / (time.monotonic() - started)
    finally:
        platform.down()


def _raw(root: Path) -> float:
    platform = make_platform(root)
    platform.start_broker()
    try:
        asyncio.run(_backlog(platform.bootstrap_servers))
        return asyncio.run(_raw_consumer(platform.bootstrap_servers, root / "clickhouse"))
    finally:
        platform.down()


def run() -> None:
    print(f"backlog: {EVENTS:,} inference.logged events on a fresh local broker, ClickHouse in process")
    with tempfile.TemporaryDirectory(prefix="llmops-bench-logpath-", ignore_cleanup_errors=True) as tmp:
        raw = _raw(Path(tmp) / "raw")
        print(f"  raw aiokafka consumer + ClickHouse insert  {raw:9,.0f} events/s  baseline", flush=True)
        ours = _through_monitoring(Path(tmp) / "monitoring")
        print(f"  through monitoring (process, guarantees)   {ours:9,.0f} events/s  ratio {ours / raw:.2f}")
        print("  (monitoring's time includes its start-up: migrations, consumers joining)")
