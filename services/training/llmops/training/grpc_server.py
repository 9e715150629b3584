"""TrainingService over gRPC: SubmitJob, GetJob, ListJobs, CancelJob, StreamProgress."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from llmops.contracts.rpc.training.v1 import training_pb2 as pb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.convert import EnumMap, message, timestamp
from llmops.core.errors import InvalidArgument
from llmops.training.jobs import TrainingJobs
from llmops.training.spec import InvalidSpec, JobSpec, JobState, TrainingMethod
from llmops.training.store import Job

METHODS = EnumMap(pb.TrainingMethod, TrainingMethod)
STATES = EnumMap(pb.JobState, JobState)
HYPERPARAMETERS = (
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "learning_rate",
    "epochs",
    "batch_size",
    "max_length",
    "max_steps",
    "seed",
    "dpo_beta",
    "gradient_accumulation_steps",
    "warmup_ratio",
)
RESOURCES = ("num_workers", "cpus_per_worker", "gpus_per_worker")


def spec_from_pb(spec: pb.JobSpec) -> dict[str, Any]:
    """The raw spec (unset values left out) that :func:`llmops.training.spec.build_spec` validates."""
    try:
        method = METHODS.require(spec.method, "spec.method")
    except InvalidArgument as exc:
        raise InvalidSpec(str(exc)) from None
    hp = {name: getattr(spec.hyperparameters, name) for name in HYPERPARAMETERS}
    hp["target_modules"] = list(spec.hyperparameters.target_modules)
    return {
        "base_model": spec.base_model,
        "dataset_version_id": spec.dataset_version_id,
        "method": method.value,
        "model_name": spec.model_name,
        "hyperparameters": hp,
        "resources": {name: getattr(spec.resources, name) for name in RESOURCES},
        "labels": dict(spec.labels),
    }


def spec_pb(spec: JobSpec) -> pb.JobSpec:
    return message(pb.JobSpec, spec, method=METHODS.to_pb(spec.method))


def progress_pb(job: Job) -> pb.Progress:
    """The job's latest progress with its state (and its eval loss once evaluated)."""
    p = job.progress or {}
    return pb.Progress(
        job_id=job.job_id,
        step=int(p.get("step", 0)),
        total_steps=int(p.get("total_steps", 0)),
        epoch=float(p.get("epoch", 0.0)),
        loss=float(p.get("loss", 0.0)),
        learning_rate=float(p.get("learning_rate", 0.0)),
        tokens_per_second=float(p.get("tokens_per_second", 0.0)),
        samples_per_second=float(p.get("samples_per_second", 0.0)),
        timestamp=timestamp(float(p["timestamp"]) if "timestamp" in p else job.updated_at),
        state=STATES.to_pb(job.state),
        eval_loss=float(job.metrics.get("eval_loss", 0.0)),
    )


def job_pb(job: Job) -> pb.Job:
    return message(
        pb.Job,
        job,
        spec=spec_pb(job.spec),
        latest_progress=progress_pb(job),
        ray_job_id=job.ray_run_name,
    )


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    """Protobuf in and out; domain errors reach the caller through the server's error interceptor."""

    def __init__(self, jobs: Callable[[], TrainingJobs]) -> None:
        # A Deferred: the service builds TrainingJobs in start(); the readiness gate keeps calls out
        # until then.
        self._jobs = jobs

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        if not request.HasField("spec"):
            raise InvalidArgument("spec is required")
        return job_pb(await self._jobs().submit(spec_from_pb(request.spec), request.idempotency_key))

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        return job_pb(await self._jobs().get(_job_id(request.job_id)))

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        state = STATES.from_pb(request.state, "state")
        page = await self._jobs().list(state, request.model_name, request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=[job_pb(j) for j in page.items], next_page_token=page.next_page_token)

    async def CancelJob(self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        return job_pb(await self._jobs().cancel(_job_id(request.job_id), request.reason))

    async def StreamProgress(
        self, request: pb.StreamProgressRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Progress]:
        updates = self._jobs().stream(_job_id(request.job_id))
        try:
            async for job in updates:
                yield progress_pb(job)
        finally:
            await updates.aclose()


def _job_id(job_id: str) -> str:
    if not job_id:
        raise InvalidArgument("job_id is empty")
    return job_id
