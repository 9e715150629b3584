"""Monitoring: inference logs and feedback into ClickHouse; read-only SQL over gRPC."""

from __future__ import annotations

from llmops.contracts.events import FeedbackAccepted, InferenceLogged
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2_grpc
from llmops.core.service import Runtime
from llmops.monitoring.grpc_server import MonitoringServicer
from llmops.monitoring.settings import Settings
from llmops.monitoring.store.analytics import AnalyticsStore


class MonitoringService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Nothing connects until open() in start(); the consumers and servicer need the object now.
        self.store = AnalyticsStore(settings.clickhouse.resolved_dsn(settings.platform))

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server,
            MonitoringServicer(self.settings, self.store),
            "llmops.monitoring.v1.MonitoringService",
        )
        # One consumer group per topic: each subscriber is its own Kafka consumer. Both tables are
        # ReplacingMergeTree keyed on the entity, so a redelivered batch does no harm.
        s = self.settings
        batch = {"max_records": s.batch_max_records, "timeout_ms": s.batch_timeout_ms}
        runtime.bus.consume_batches(
            InferenceLogged, s.consumer_group("inference"), self.store.insert_inference, **batch
        )
        runtime.bus.consume_batches(
            FeedbackAccepted, s.consumer_group("feedback"), self.store.insert_feedback, **batch
        )

    async def start(self, runtime: Runtime) -> None:
        # Owned before it opens, so a failed open still shuts the store's worker thread down.
        runtime.own(self.store)
        await self.store.open()
