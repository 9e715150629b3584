"""TrainingService over gRPC: SubmitJob, GetJob, ListJobs, CancelJob, StreamProgress."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from llmops.contracts.rpc.training.v1 import training_pb2 as pb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.errors import InvalidArgument
from llmops.training.jobs import TrainingJobs
from llmops.training.spec import InvalidSpec, JobSpec, JobState
from llmops.training.store import Job

METHODS = {pb.TRAINING_METHOD_SFT_LORA: "sft_lora", pb.TRAINING_METHOD_DPO_LORA: "dpo_lora"}
METHODS_PB = {v: k for k, v in METHODS.items()}
STATES = {
    pb.JOB_STATE_QUEUED: JobState.QUEUED,
    pb.JOB_STATE_RUNNING: JobState.RUNNING,
    pb.JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
    pb.JOB_STATE_FAILED: JobState.FAILED,
    pb.JOB_STATE_CANCELLED: JobState.CANCELLED,
}
STATES_PB = {v: k for k, v in STATES.items()}
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
    if spec.method not in METHODS:
        known = spec.method in pb.TrainingMethod.values()
        got = pb.TrainingMethod.Name(spec.method) if known else str(spec.method)
        raise InvalidSpec(
            f"spec.method is required: TRAINING_METHOD_SFT_LORA or TRAINING_METHOD_DPO_LORA (got {got})"
        )
    hp = {name: getattr(spec.hyperparameters, name) for name in HYPERPARAMETERS}
    hp["target_modules"] = list(spec.hyperparameters.target_modules)
    return {
        "base_model": spec.base_model,
        "dataset_version_id": spec.dataset_version_id,
        "method": METHODS[spec.method],
        "model_name": spec.model_name,
        "hyperparameters": hp,
        "resources": {name: getattr(spec.resources, name) for name in RESOURCES},
        "labels": dict(spec.labels),
    }


def spec_pb(spec: JobSpec) -> pb.JobSpec:
    hp = spec.hyperparameters.model_dump()
    return pb.JobSpec(
        base_model=spec.base_model,
        dataset_version_id=spec.dataset_version_id,
        method=METHODS_PB[spec.method],
        hyperparameters=pb.Hyperparameters(
            target_modules=list(spec.hyperparameters.target_modules), **{k: hp[k] for k in HYPERPARAMETERS}
        ),
        resources=pb.Resources(**spec.resources.model_dump()),
        model_name=spec.model_name,
        labels=spec.labels,
    )


def _ts(value: dt.datetime | float | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    if isinstance(value, dt.datetime):
        ts.FromDatetime(value)
    else:
        ts.FromNanoseconds(int(value * 1e9))
    return ts


def progress_pb(job: Job) -> pb.Progress:
    """The job's latest progress with its state (and its eval loss once evaluated)."""
    p = job.progress or {}
    out = pb.Progress(
        job_id=job.job_id,
        step=int(p.get("step", 0)),
        total_steps=int(p.get("total_steps", 0)),
        epoch=float(p.get("epoch", 0.0)),
        loss=float(p.get("loss", 0.0)),
        learning_rate=float(p.get("learning_rate", 0.0)),
        tokens_per_second=float(p.get("tokens_per_second", 0.0)),
        samples_per_second=float(p.get("samples_per_second", 0.0)),
        state=STATES_PB[job.state],
        eval_loss=float(job.metrics.get("eval_loss", 0.0)),
    )
    if "timestamp" in p:
        out.timestamp.CopyFrom(_ts(float(p["timestamp"])))
    else:
        out.timestamp.CopyFrom(_ts(job.updated_at))
    return out


def job_pb(job: Job) -> pb.Job:
    out = pb.Job(
        job_id=job.job_id,
        spec=spec_pb(job.spec),
        state=STATES_PB[job.state],
        created_at=_ts(job.created_at),
        latest_progress=progress_pb(job),
        metrics=job.metrics,
        adapter_uri=job.adapter_uri,
        error=job.error,
        ray_job_id=job.ray_run_name,
        idempotency_key=job.idempotency_key,
        registered_version=job.registered_version,
    )
    if job.started_at is not None:
        out.started_at.CopyFrom(_ts(job.started_at))
    if job.finished_at is not None:
        out.finished_at.CopyFrom(_ts(job.finished_at))
    return out


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
        if request.state != pb.JOB_STATE_UNSPECIFIED and request.state not in STATES:
            raise InvalidArgument(f"unknown state {request.state}")
        state = STATES.get(request.state)
        page = await self._jobs().list(state, request.model_name, request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=[job_pb(j) for j in page.jobs], next_page_token=page.next_page_token)

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
