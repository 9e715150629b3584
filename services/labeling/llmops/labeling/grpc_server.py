"""LabelingService over gRPC: queues, tasks, labels, agreement, rules, judge and dataset versions."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc

from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.core.convert import EnumMap, copy_fields, message
from llmops.labeling.domain import errors
from llmops.labeling.domain.agreement import AgreementMetric
from llmops.labeling.domain.models import (
    DEFAULT_LEASE_SECONDS,
    Label,
    LabelSource,
    Preference,
    QueueSpec,
    TaskInput,
    TaskSource,
    TaskType,
)
from llmops.labeling.workflows import Labeling

TASK_TYPES = EnumMap(pb.TaskType, TaskType)
SOURCES = EnumMap(pb.LabelSource, LabelSource)
PREFS = EnumMap(pb.Preference, Preference)
METRICS = EnumMap(pb.AgreementMetric, AgreementMetric)


def label_pb(label: Label, task_type: TaskType) -> pb.Label:
    # The value goes into the oneof field its kind (and, for text, the task type) names.
    value = label.value
    if isinstance(value, Preference):
        return message(pb.Label, label, preference=value)
    if isinstance(value, float):
        return message(pb.Label, label, rating=value)
    if task_type == TaskType.CORRECTION:
        return message(pb.Label, label, corrected_text=str(value))
    return message(pb.Label, label, class_label=str(value))


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
        spec = copy_fields(
            QueueSpec,
            request,
            task_type=TASK_TYPES.require(request.task_type, "task_type"),
            labelers_per_task=request.labelers_per_task or 1,
            lease_seconds=request.lease_seconds or DEFAULT_LEASE_SECONDS,
        )
        queue = await asyncio.to_thread(self._labeling().store.create_queue, spec)
        return message(pb.Queue, queue)

    async def GetQueue(self, request: pb.GetQueueRequest, context: grpc.aio.ServicerContext) -> pb.Queue:
        queue = await asyncio.to_thread(self._labeling().store.get_queue, request.name)
        return message(pb.Queue, queue)

    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQueuesResponse:
        page = await asyncio.to_thread(
            self._labeling().store.list_queues, request.page_size, request.page_token
        )
        return message(pb.ListQueuesResponse, page, queues=page.items)

    async def CreateTasks(
        self, request: pb.CreateTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTasksResponse:
        inputs = [copy_fields(TaskInput, t, source=TaskSource.API) for t in request.tasks]
        created = await self._labeling().create_tasks(request.queue, inputs)
        return pb.CreateTasksResponse(task_ids=list(created.task_ids), created=created.created)

    async def NextTask(
        self, request: pb.NextTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.NextTaskResponse:
        if not request.labeler_id:
            raise errors.InvalidArgument("labeler_id is empty: say who is labeling")
        task = await asyncio.to_thread(self._labeling().store.next_task, request.queue, request.labeler_id)
        if task is None:
            return pb.NextTaskResponse(queue_empty=True)
        return pb.NextTaskResponse(task=message(pb.Task, task))

    async def SubmitLabel(
        self, request: pb.SubmitLabelRequest, context: grpc.aio.ServicerContext
    ) -> pb.Label:
        kind = request.WhichOneof("value")
        if kind is None:
            raise errors.InvalidArgument("no value: set class_label, rating, corrected_text or preference")
        value: Any = getattr(request, kind)
        if kind == "preference":
            value = PREFS.require(value, "preference")
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
        return message(pb.SkipTaskResponse, result)

    async def ListLabels(
        self, request: pb.ListLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLabelsResponse:
        source = SOURCES.from_pb(request.source, "source")
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
            request.queue, METRICS.from_pb(request.metric, "metric"), request.include_pair_counts
        )
        return message(pb.AgreementResponse, result, queue=request.queue, metric_name=result.metric.value)

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
        # UNSPECIFIED entries name no source.
        sources = [SOURCES.from_pb(s, "sources") for s in request.sources]
        version = await self._labeling().create_dataset_version(
            request.dataset,
            list(request.queues),
            dict(request.filter),
            [s for s in sources if s is not None],
            request.eval_fraction,
            request.seed,
            request.description,
            created_after=(
                request.created_after.ToDatetime(tzinfo=dt.UTC) if request.HasField("created_after") else None
            ),
        )
        return message(pb.DatasetVersion, version)

    async def GetDatasetVersion(
        self, request: pb.GetDatasetVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DatasetVersion:
        version = await asyncio.to_thread(self._labeling().store.get_dataset_version, request.version_id)
        return message(pb.DatasetVersion, version)

    async def ListDatasetVersions(
        self, request: pb.ListDatasetVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDatasetVersionsResponse:
        page = await asyncio.to_thread(
            self._labeling().store.list_dataset_versions,
            request.dataset,
            request.page_size,
            request.page_token,
        )
        return message(pb.ListDatasetVersionsResponse, page, versions=page.items)
