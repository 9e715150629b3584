"""Monitoring: inference logs and feedback into ClickHouse; read-only SQL over gRPC."""

from __future__ import annotations

from llmops.contracts.events import FeedbackAccepted, InferenceLogged
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2_grpc
from llmops.core.service import Runtime
from llmops.monitoring.grpc_server import MonitoringServicer
from llmops.monitoring.settings import Settings
from llmops.monitoring.store.analytics import AnalyticsStore

# One consumer group per topic: each subscriber is its own Kafka consumer.
INFERENCE_GROUP = "llmops-monitoring.inference"
FEEDBACK_GROUP = "llmops-monitoring.feedback"


class MonitoringService:
    name = "monitoring"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = AnalyticsStore(settings.clickhouse.resolved_dsn(settings.platform))

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server,
            MonitoringServicer(self.settings, self.store),
            "llmops.monitoring.v1.MonitoringService",
        )
        # Both tables are ReplacingMergeTree keyed on the entity, so a redelivered batch does no harm.
        batch = {"max_records": self.settings.batch_max_records, "timeout_ms": self.settings.batch_timeout_ms}
        runtime.bus.consume_batches(InferenceLogged, INFERENCE_GROUP, self.store.insert_inference, **batch)
        runtime.bus.consume_batches(FeedbackAccepted, FEEDBACK_GROUP, self.store.insert_feedback, **batch)

    async def start(self, runtime: Runtime) -> None:
        await self.store.open()

    async def stop(self) -> None:
        await self.store.close()
