"""Start the real local platform (broker and service processes) on free ports in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llmops.cli.local import SERVICES, LocalPlatform, free_port
from llmops.core.convert import query_rows
from llmops.core.settings import PlatformSettings


def make_platform(root: Path, **extra_env: str) -> LocalPlatform:
    """A LocalPlatform under ``root`` with free ports, using the models that `make setup` prepared."""
    return LocalPlatform(
        run_dir=root / "run",
        data_dir=root / "data",
        models_dir=PlatformSettings().models_dir,
        kafka_port=free_port(),
        grpc_ports={name: free_port() for name in SERVICES},
        metrics_ports={name: free_port() for name in SERVICES},
        http_port=free_port(),
        extra_env=extra_env,
    )


@contextmanager
def running_platform(
    root: Path, services: Iterable[str] = SERVICES, **extra_env: str
) -> Iterator[LocalPlatform]:
    """Broker plus ``services`` as processes; everything is stopped by pid afterwards, even on failure."""
    platform = make_platform(root, **extra_env)
    try:
        platform.up(services)
        yield platform
    finally:
        platform.down()


def auth(platform: LocalPlatform) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", platform.api_key()),)


def query_monitoring(platform: LocalPlatform, sql: str, **parameters: str) -> list[list]:
    """Rows of a read-only query through monitoring's Query RPC, as plain Python values."""
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc

    with grpc.insecure_channel(platform.address("monitoring")) as channel:
        reply = monitoring_pb2_grpc.MonitoringServiceStub(channel).Query(
            monitoring_pb2.QueryRequest(sql=sql, parameters=parameters), metadata=auth(platform), timeout=30
        )
    return query_rows(reply)


async def publish_raw(
    bootstrap: str, topic: str, values: Iterable[bytes | None], key: bytes | None = None
) -> None:
    """Publish bytes (None: a tombstone) with a plain aiokafka producer, as an app would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list:
    """Read ``count`` records from the start of ``topic`` (fails after ``timeout`` seconds)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    if len(records) < count:
        raise AssertionError(f"expected {count} records on {topic} within {timeout}s, got {len(records)}")
    return records


async def end_offset(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` has ever had (the sum of its partitions' end offsets; 0 if absent)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return 0
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The offsets ``group`` has committed on ``topic``, summed over its partitions (0: none)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


async def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Whether ``group`` has committed everything ``topic`` holds now (so it handled it all)."""
    return await committed_offset(bootstrap, group, topic) >= await end_offset(bootstrap, topic) > 0


def inference_message(i: int) -> bytes:
    """The ``i``-th of a stream of distinct inference.logged messages, as serving publishes them."""
    from llmops.contracts.events import InferenceLogged

    return (
        InferenceLogged(
            request_id=f"req-{i}",
            model="smollm2",
            model_version="base",
            prompt=f"What is {i} plus one? Answer with the number only.",
            completion=f"{i + 1}",
            prompt_tokens=14,
            completion_tokens=3,
            latency_ms=120.0,
            time_to_first_token_ms=30.0,
            producer="serving",
        )
        .model_dump_json()
        .encode()
    )


def as_json(value: dict) -> bytes:
    return json.dumps(value).encode()


async def eventually(check, timeout: float = 30, interval: float = 0.5):  # noqa: ANN001, ANN201
    """Call ``check`` (sync or async) until it returns something truthy; fail with its last error."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (AssertionError, grpc.RpcError) as exc:
            last_error = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error})")
