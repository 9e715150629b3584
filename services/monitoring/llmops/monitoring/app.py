"""Monitoring: every event the platform emits into ClickHouse; read-only SQL over gRPC."""

from __future__ import annotations

from llmops.contracts.events import (
    AlertRaised,
    AnswerJudged,
    DatasetVersionCreated,
    DocumentCleaned,
    DocumentRaw,
    DriftDetected,
    Event,
    FeedbackAccepted,
    FeedbackRejected,
    InferenceLogged,
    IngestionBatchCompleted,
    LabelCreated,
    LoopStepped,
    ModelAliasChanged,
    ModelCanaryChanged,
    ModelVersionRegistered,
    RetrievalLogged,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2_grpc
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.judge import ServingJudge
from llmops.core.service import Runtime
from llmops.monitoring.alerts import AlertJob
from llmops.monitoring.drift import EMBEDDING_SIGNAL
from llmops.monitoring.drift_job import DriftJob, DriftReporter, PromptEmbedder
from llmops.monitoring.grpc_server import MonitoringServicer
from llmops.monitoring.loop.controller import LoopController
from llmops.monitoring.loop.judge import LiveJudge
from llmops.monitoring.settings import Settings
from llmops.monitoring.store.analytics import AnalyticsStore

# What monitoring stores, each with the purpose that names its consumer group (llmops-monitoring.<it>).
# The groups of the first two predate the others; a renamed group would read its topic from the start.
CONSUMED: dict[type[Event], str] = {
    InferenceLogged: "inference",
    FeedbackAccepted: "feedback",
    FeedbackRejected: "feedback-rejected",
    RetrievalLogged: "retrieval",
    TrainingRequested: "training-requested",
    TrainingProgress: "training-progress",
    TrainingCompleted: "training-completed",
    TrainingFailed: "training-failed",
    ModelVersionRegistered: "model-versions",
    ModelAliasChanged: "model-aliases",
    ModelCanaryChanged: "model-canaries",
    DocumentRaw: "documents-raw",
    DocumentCleaned: "documents-cleaned",
    IngestionBatchCompleted: "ingestion-batches",
    LabelCreated: "labels",
    DatasetVersionCreated: "dataset-versions",
    DriftDetected: "drift",
    AlertRaised: "alerts",
    LoopStepped: "loop-steps",
    AnswerJudged: "judge-scores",
}


class MonitoringService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Nothing connects until open() in start(); the consumers and servicer need the object now.
        self.store = AnalyticsStore(
            settings.clickhouse.resolved_dsn(settings.platform),
            limits=settings.query_limits(),
            readers=settings.query_concurrency,
        )
        # Loaded on first need (a prompt_embedding comparison), then shared by DriftReport and the job.
        self.embedder = PromptEmbedder(
            cache_size=settings.drift.embedding_cache, nice=settings.drift.embedding_nice
        )
        self.drift: DriftReporter | None = None  # set in register: it publishes through the bus
        self.loop: LoopController | None = None  # set in register: it needs the bus and channels

    def register(self, runtime: Runtime) -> None:
        self.drift = DriftReporter(self.store, self.settings.drift, runtime.bus.publish, self.embedder)
        runtime.bus.publishes(DriftDetected)
        judge = ServingJudge(
            runtime.channel("serving"), self.settings.loop.judge_timeout_seconds, "monitoring-judge"
        )
        self.loop = LoopController(
            self.settings.loop, self.store, runtime.bus.publish,
            registry=registry_pb2_grpc.RegistryServiceStub(runtime.channel("registry")),
            labeling=labeling_pb2_grpc.LabelingServiceStub(runtime.channel("labeling")),
            training=training_pb2_grpc.TrainingServiceStub(runtime.channel("training")),
            judge=LiveJudge(self.store, judge, runtime.bus.publish),
        )  # fmt: skip
        runtime.bus.publishes(LoopStepped, TrainingRequested, AlertRaised, AnswerJudged)
        runtime.grpc.add(
            monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server,
            MonitoringServicer(self.settings, self.store, drift=self.drift, loop=self.loop),
            "llmops.monitoring.v1.MonitoringService",
        )
        # One consumer group per topic: each subscriber is its own Kafka consumer. Every table is a
        # ReplacingMergeTree keyed on the event, so a redelivered batch does no harm; a batch is
        # committed only once its insert returned (a store that is away is retried, losing nothing).
        s = self.settings
        batch = {"max_records": s.batch_max_records, "timeout_ms": s.batch_timeout_ms}
        for event_type, purpose in CONSUMED.items():
            runtime.bus.consume_batches(
                event_type, s.consumer_group(purpose), self.store.writer(event_type), **batch
            )

    async def start(self, runtime: Runtime) -> None:
        # Owned before it opens, so a failed open still shuts the store's worker thread down.
        runtime.own(self.store)
        runtime.own(self.embedder)
        await self.store.open()
        drift = self.settings.drift
        if drift.enabled and drift.preload and EMBEDDING_SIGNAL in drift.signals:
            await self.embedder.get()  # before the bus starts: the consumers do not wait on it later
        if self.settings.drift.enabled and self.drift is not None:
            runtime.every("drift", self.settings.drift.interval_seconds, DriftJob(self.drift).scheduled)
        if self.settings.alert.enabled:
            alerts = AlertJob(self.settings.alert, self.store, runtime.bus)
            runtime.every("alerts", self.settings.alert.interval_seconds, alerts.run_once)
        loop = self.settings.loop
        if loop.enabled and loop.policies and self.loop is not None:
            runtime.every("loop", loop.interval_seconds, self.loop.tick)
