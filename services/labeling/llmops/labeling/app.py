"""Labeling service: label queues fed by documents and feedback, human and programmatic labels,
agreement, and immutable dataset versions."""

from __future__ import annotations

import logging

import grpc

from llmops.contracts.events import DatasetVersionCreated, DocumentCleaned, FeedbackAccepted, LabelCreated
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.judge import ServingJudge
from llmops.core.service import Deferred, Runtime
from llmops.labeling import functions
from llmops.labeling.grpc_server import LabelingServicer
from llmops.labeling.settings import Settings
from llmops.labeling.store import LabelingStore
from llmops.labeling.workflows import Labeling, PairSettings

log = logging.getLogger(__name__)


class MonitoringLookup:
    """Finds the answer a piece of feedback is about, in monitoring's inference log."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)

    async def __call__(self, request_id: str) -> dict[str, str] | None:
        reply = await self._stub.Query(
            monitoring_pb2.QueryRequest(
                sql="SELECT model, model_version, arm, prompt, completion, error FROM inference_log_v "
                "WHERE request_id = {r:String} LIMIT 1",
                parameters={"r": request_id},
            ),
        )
        if not reply.rows:
            return None
        return {c.name: v.string_value for c, v in zip(reply.columns, reply.rows[0].values, strict=True)}


class LabelingService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        functions.load_modules(settings.function_modules)
        self.labeling: Deferred[Labeling] = Deferred("labeling")

    def register(self, runtime: Runtime) -> None:
        runtime.bus.publishes(LabelCreated, DatasetVersionCreated)
        runtime.grpc.add(
            labeling_pb2_grpc.add_LabelingServiceServicer_to_server,
            LabelingServicer(self.labeling),
            "llmops.labeling.v1.LabelingService",
        )
        runtime.bus.consume(
            DocumentCleaned,
            self.settings.consumer_group("documents"),
            lambda e: self.labeling().on_document(e),
        )
        runtime.bus.consume(
            FeedbackAccepted,
            self.settings.consumer_group("feedback"),
            lambda e: self.labeling().on_feedback(e),
        )

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        judge = lookup = None
        if s.clients.api_key is not None:
            judge = ServingJudge(runtime.channel("serving"), s.judge_timeout_seconds, caller="labeling-judge")
            lookup = MonitoringLookup(runtime.channel("monitoring"))
        else:
            log.warning(
                "LLMOPS_API_KEY is not set: the judge, the feedback-to-answer lookup and preference "
                "pairs from feedback are off"
            )
        store = runtime.own(LabelingStore(s.resolved_database_url()))
        labeling = self.labeling.set(
            Labeling(
                store,
                ArtifactStore(s.platform.resolved_artifacts_url()),
                judge_client=judge,
                inference_lookup=lookup,
                review_queue=s.feedback_review_queue,
                review_max_score=s.review_max_score,
                inference_lookup_seconds=s.inference_lookup_seconds,
                pairs=PairSettings(
                    s.feedback_pairs_queue, s.pair_min_score_gap, s.pairs_per_feedback, s.pair_lookback_days
                ),
            )
        )
        labeling.ensure_feedback_queues()
        runtime.deliver_with(store)
