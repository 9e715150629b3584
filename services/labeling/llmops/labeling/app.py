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
from llmops.labeling.domain.feedback import Answer, RatedAnswer
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
                sql="SELECT model, model_version, arm, prompt, completion FROM inference_log_v "
                "WHERE request_id = {r:String} LIMIT 1",
                parameters={"r": request_id},
            ),
        )
        if not reply.rows:
            return None
        return {c.name: v.string_value for c, v in zip(reply.columns, reply.rows[0].values, strict=True)}


class MonitoringRatedAnswers:
    """Finds other rated answers to a prompt from the same registered model, in monitoring's log.

    Each answer comes with the mean of its feedback scores; answers older than ``lookback_days`` are
    not read, which keeps the scan of the log bounded.
    """

    SQL = (
        "SELECT i.request_id AS request_id, i.model AS model, i.model_version AS model_version, "
        "i.arm AS arm, i.prompt AS prompt, i.completion AS completion, f.score AS score "
        "FROM inference_log_v AS i "
        # Feedback of this prompt's answers only: not every rating ever stored, once per feedback event.
        "INNER JOIN (SELECT request_id, avg(score) AS score FROM feedback_v "
        "WHERE request_id IN (SELECT request_id FROM inference_log_v WHERE prompt = {prompt:String} "
        "AND occurred_at >= now64(3) - toIntervalDay({days:UInt32})) GROUP BY request_id) AS f "
        "ON i.request_id = f.request_id "
        # A failed request's partial text is no answer to prefer or reject.
        "WHERE i.prompt = {prompt:String} AND i.error = '' "
        "AND replaceRegexpOne(i.model, '(@.*|/[0-9]+)$', '') = {model:String} "
        "AND i.request_id != {request_id:String} "
        "AND i.occurred_at >= now64(3) - toIntervalDay({days:UInt32}) "
        "AND abs(f.score - {score:Float64}) >= {gap:Float64} "
        "ORDER BY abs(f.score - {score:Float64}) DESC, i.request_id "
        "LIMIT {limit:UInt32}"
    )

    def __init__(self, channel: grpc.aio.Channel, lookback_days: int) -> None:
        self._stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        self._lookback_days = lookback_days

    async def __call__(
        self, answer: Answer, *, score: float, min_score_gap: float, limit: int
    ) -> list[RatedAnswer]:
        reply = await self._stub.Query(
            monitoring_pb2.QueryRequest(
                sql=self.SQL,
                parameters={
                    "prompt": answer.prompt,
                    "model": answer.registered_model,
                    "request_id": answer.request_id,
                    "days": str(self._lookback_days),
                    "score": repr(float(score)),
                    "gap": repr(float(min_score_gap)),
                    # Some may share the answer's text and be passed over.
                    "limit": str(limit * 4),
                },
            ),
        )
        names = [c.name for c in reply.columns]
        found = []
        for row in reply.rows:
            cells = dict(zip(names, row.values, strict=True))
            text = {name: cell.string_value for name, cell in cells.items() if name != "score"}
            found.append(RatedAnswer(Answer.from_row(text), cells["score"].number_value))
        return found


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
        judge = lookup = rated = None
        if s.clients.api_key is not None:
            judge = ServingJudge(runtime.channel("serving"), s.judge_timeout_seconds, caller="labeling-judge")
            lookup = MonitoringLookup(runtime.channel("monitoring"))
            rated = MonitoringRatedAnswers(runtime.channel("monitoring"), s.pair_lookback_days)
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
                rated_answers=rated,
                pairs=PairSettings(s.feedback_pairs_queue, s.pair_min_score_gap, s.pairs_per_feedback),
            )
        )
        labeling.ensure_feedback_queues()
        runtime.deliver_with(store)
