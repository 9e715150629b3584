"""LabelingService over gRPC: queues, tasks, labels, agreement, rules, judge and dataset versions."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.labeling.domain import errors
from llmops.labeling.domain.agreement import AgreementMetric
from llmops.labeling.domain.models import (
    DatasetVersion,
    Label,
    LabelSource,
    Preference,
    Queue,
    QueueSpec,
    Task,
    TaskInput,
    TaskSource,
    TaskState,
    TaskType,
)
from llmops.labeling.workflows import Labeling

TASK_TYPES = {
    pb.TASK_TYPE_CLASSIFICATION: TaskType.CLASSIFICATION,
    pb.TASK_TYPE_RATING: TaskType.RATING,
    pb.TASK_TYPE_CORRECTION: TaskType.CORRECTION,
    pb.TASK_TYPE_PAIRWISE_PREFERENCE: TaskType.PAIRWISE_PREFERENCE,
}
TASK_TYPES_PB = {v: k for k, v in TASK_TYPES.items()}
SOURCES = {
    pb.LABEL_SOURCE_HUMAN: LabelSource.HUMAN,
    pb.LABEL_SOURCE_RULE: LabelSource.RULE,
    pb.LABEL_SOURCE_JUDGE: LabelSource.JUDGE,
}
SOURCES_PB = {v: k for k, v in SOURCES.items()}
PREFS = {pb.PREFERENCE_A: Preference.A, pb.PREFERENCE_B: Preference.B, pb.PREFERENCE_TIE: Preference.TIE}
PREFS_PB = {v: k for k, v in PREFS.items()}
STATES_PB = {
    TaskState.OPEN: pb.TASK_STATE_OPEN,
    TaskState.LEASED: pb.TASK_STATE_LEASED,
    TaskState.COMPLETED: pb.TASK_STATE_COMPLETED,
    TaskState.SKIPPED: pb.TASK_STATE_SKIPPED,
}
METRICS = {
    pb.AGREEMENT_METRIC_COHEN_KAPPA: AgreementMetric.COHEN_KAPPA,
    pb.AGREEMENT_METRIC_FLEISS_KAPPA: AgreementMetric.FLEISS_KAPPA,
    pb.AGREEMENT_METRIC_KRIPPENDORFF_ALPHA: AgreementMetric.KRIPPENDORFF_ALPHA,
}
METRICS_PB = {v: k for k, v in METRICS.items()}


def _ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def queue_pb(q: Queue) -> pb.Queue:
    return pb.Queue(
        name=q.name,
        task_type=TASK_TYPES_PB[q.task_type],
        label_set=list(q.label_set),
        rating_min=q.rating_min,
        rating_max=q.rating_max,
        labelers_per_task=q.labelers_per_task,
        lease_seconds=q.lease_seconds,
        instructions=q.instructions,
        created_at=_ts(q.created_at),
        open_tasks=q.open_tasks,
        leased_tasks=q.leased_tasks,
        completed_tasks=q.completed_tasks,
        total_tasks=q.total_tasks,
        labeling_functions=list(q.labeling_functions),
        metadata=q.metadata,
    )


def task_input_pb(t: TaskInput) -> pb.TaskInput:
    return pb.TaskInput(
        document_id=t.document_id,
        text=t.text,
        prompt=t.prompt,
        response=t.response,
        candidate_a=t.candidate_a,
        candidate_b=t.candidate_b,
        metadata=t.metadata,
    )


def task_pb(t: Task) -> pb.Task:
    out = pb.Task(
        task_id=t.task_id,
        queue=t.queue,
        task_type=TASK_TYPES_PB[t.task_type],
        input=task_input_pb(t.input),
        state=STATES_PB[t.state],
        lease_id=t.lease_id,
        created_at=_ts(t.created_at),
        label_count=t.label_count,
    )
    if t.lease_expires_at is not None:
        out.lease_expires_at.CopyFrom(_ts(t.lease_expires_at))
    return out


def label_pb(label: Label, task_type: TaskType) -> pb.Label:
    out = pb.Label(
        label_id=label.label_id,
        task_id=label.task_id,
        queue=label.queue,
        source=SOURCES_PB[label.source],
        labeler_id=label.labeler_id,
        comment=label.comment,
        created_at=_ts(label.created_at),
        confidence=label.confidence,
        metadata=label.metadata,
    )
    value = label.value
    if isinstance(value, Preference):
        out.preference = PREFS_PB[value]
    elif isinstance(value, float):
        out.rating = value
    elif task_type == TaskType.CORRECTION:
        out.corrected_text = str(value)
    else:
        out.class_label = str(value)
    return out


def version_pb(v: DatasetVersion) -> pb.DatasetVersion:
    return pb.DatasetVersion(
        version_id=v.version_id,
        dataset=v.dataset,
        train_count=v.train_count,
        eval_count=v.eval_count,
        uri=v.uri,
        created_at=_ts(v.created_at),
        lineage=pb.DatasetLineage(
            snapshot_ids=list(v.lineage.snapshot_ids),
            label_ids_count=v.lineage.label_ids_count,
            labeler_ids=list(v.lineage.labeler_ids),
            queues=list(v.lineage.queues),
        ),
        eval_fraction=v.eval_fraction,
        seed=v.seed,
        task_type=TASK_TYPES_PB[v.task_type],
        description=v.description,
    )


class LabelingServicer(labeling_pb2_grpc.LabelingServiceServicer):
    """Thin transport: requests to domain values, the workflows or the store, replies to messages.

    Errors are domain errors raised below; the server's interceptor gives each its status code.
    """

    def __init__(self, labeling: Callable[[], Labeling]) -> None:
        # The service opens its store in start(); the readiness gate keeps calls out until then.
        self._labeling = labeling

    async def CreateQueue(
        self, request: pb.CreateQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.Queue:
        if request.task_type not in TASK_TYPES:
            raise errors.InvalidArgument("task_type is required")
        spec = QueueSpec(
            name=request.name,
            task_type=TASK_TYPES[request.task_type],
            label_set=tuple(request.label_set),
            rating_min=request.rating_min,
            rating_max=request.rating_max,
            labelers_per_task=request.labelers_per_task or 1,
            lease_seconds=request.lease_seconds or 600,
            instructions=request.instructions,
            metadata=dict(request.metadata),
        )
        return queue_pb(await asyncio.to_thread(self._labeling().store.create_queue, spec))

    async def GetQueue(self, request: pb.GetQueueRequest, context: grpc.aio.ServicerContext) -> pb.Queue:
        return queue_pb(await asyncio.to_thread(self._labeling().store.get_queue, request.name))

    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQueuesResponse:
        page = await asyncio.to_thread(
            self._labeling().store.list_queues, request.page_size, request.page_token
        )
        return pb.ListQueuesResponse(
            queues=[queue_pb(q) for q in page.items], next_page_token=page.next_page_token
        )

    async def CreateTasks(
        self, request: pb.CreateTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTasksResponse:
        inputs = [
            TaskInput(
                document_id=t.document_id,
                text=t.text,
                prompt=t.prompt,
                response=t.response,
                candidate_a=t.candidate_a,
                candidate_b=t.candidate_b,
                metadata=dict(t.metadata),
                source=TaskSource.API,
            )
            for t in request.tasks
        ]
        created = await self._labeling().create_tasks(request.queue, inputs)
        return pb.CreateTasksResponse(task_ids=list(created.task_ids), created=created.created)

    async def NextTask(
        self, request: pb.NextTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.NextTaskResponse:
        if not request.labeler_id:
            raise errors.InvalidArgument("labeler_id is empty: say who is labeling")
        task = await asyncio.to_thread(self._labeling().store.next_task, request.queue, request.labeler_id)
        return (
            pb.NextTaskResponse(queue_empty=True) if task is None else pb.NextTaskResponse(task=task_pb(task))
        )

    async def SubmitLabel(
        self, request: pb.SubmitLabelRequest, context: grpc.aio.ServicerContext
    ) -> pb.Label:
        kind = request.WhichOneof("value")
        if kind is None:
            raise errors.InvalidArgument("no value: set class_label, rating, corrected_text or preference")
        value: Any = getattr(request, kind)
        if kind == "preference":
            if value not in PREFS:
                raise errors.InvalidArgument("preference must be A, B or TIE")
            value = PREFS[value]
        label = await self._labeling().submit_label(
            request.task_id, request.lease_id, request.labeler_id, value, request.comment
        )
        task_type = TaskType.CORRECTION if kind == "corrected_text" else TaskType.CLASSIFICATION
        return label_pb(label, task_type)

    async def SkipTask(
        self, request: pb.SkipTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.SkipTaskResponse:
        result = await asyncio.to_thread(
            self._labeling().store.skip_task,
            request.task_id,
            request.lease_id,
            request.labeler_id,
            request.reason,
        )
        return pb.SkipTaskResponse(task_id=result.task_id, state=STATES_PB[result.state])

    async def ListLabels(
        self, request: pb.ListLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLabelsResponse:
        source = SOURCES.get(request.source)
        queue = await asyncio.to_thread(self._labeling().store.get_queue, request.queue)
        page = await asyncio.to_thread(
            self._labeling().store.list_labels,
            request.queue,
            source,
            request.page_size,
            request.page_token,
        )
        return pb.ListLabelsResponse(
            labels=[label_pb(x, queue.task_type) for x in page.items], next_page_token=page.next_page_token
        )

    async def Agreement(
        self, request: pb.AgreementRequest, context: grpc.aio.ServicerContext
    ) -> pb.AgreementResponse:
        result = await self._labeling().agreement(
            request.queue, METRICS.get(request.metric), request.include_pair_counts
        )
        return pb.AgreementResponse(
            queue=request.queue,
            metric=METRICS_PB[result.metric],
            metric_name=result.metric.value,
            value=result.value,
            n_items=result.n_items,
            n_labelers=result.n_labelers,
            pair_counts=[
                pb.LabelPairCount(label_a=p.label_a, label_b=p.label_b, count=p.count)
                for p in result.pair_counts
            ],
        )

    async def RegisterLabelingFunction(
        self, request: pb.RegisterLabelingFunctionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterLabelingFunctionResponse:
        labeled, abstained = await self._labeling().register_function(
            request.queue, request.name, request.version, backfill=not request.skip_backfill
        )
        return pb.RegisterLabelingFunctionResponse(
            queue=request.queue,
            name=request.name,
            version=request.version,
            tasks_labeled=labeled,
            tasks_abstained=abstained,
        )

    async def RunJudge(
        self, request: pb.RunJudgeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunJudgeResponse:
        labeled, failed = await self._labeling().run_judge(
            request.queue,
            request.judge_prompt,
            request.judge_prompt_version,
            request.model_alias,
            request.limit,
        )
        return pb.RunJudgeResponse(queue=request.queue, tasks_labeled=labeled, tasks_failed=failed)

    async def CreateDatasetVersion(
        self, request: pb.CreateDatasetVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DatasetVersion:
        version = await self._labeling().create_dataset_version(
            request.dataset,
            list(request.queues),
            dict(request.filter),
            [SOURCES[s] for s in request.sources if s in SOURCES],
            request.eval_fraction,
            request.seed,
            request.description,
        )
        return version_pb(version)

    async def GetDatasetVersion(
        self, request: pb.GetDatasetVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DatasetVersion:
        return version_pb(
            await asyncio.to_thread(self._labeling().store.get_dataset_version, request.version_id)
        )

    async def ListDatasetVersions(
        self, request: pb.ListDatasetVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDatasetVersionsResponse:
        page = await asyncio.to_thread(
            self._labeling().store.list_dataset_versions,
            request.dataset,
            request.page_size,
            request.page_token,
        )
        return pb.ListDatasetVersionsResponse(
            versions=[version_pb(v) for v in page.items], next_page_token=page.next_page_token
        )
