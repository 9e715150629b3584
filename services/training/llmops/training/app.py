"""Training service: LoRA fine-tuning jobs (SFT, DPO) on Ray, their progress, evaluation and adapters."""

from __future__ import annotations

import asyncio
import logging

from llmops.contracts.events import (
    ModelVersionRegistered,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.errors import Unavailable
from llmops.core.service import Deferred, Runtime
from llmops.training.dataset_versions import DatasetVersions
from llmops.training.grpc_server import TrainingServicer
from llmops.training.jobs import TrainingJobs
from llmops.training.judge import ServingJudge
from llmops.training.ray_runner import TrainingCluster
from llmops.training.settings import Settings
from llmops.training.store import JobStore

log = logging.getLogger(__name__)


class TrainingService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs = Deferred[TrainingJobs]("the training job queue")

    def register(self, runtime: Runtime) -> None:
        runtime.bus.publishes(TrainingProgress, TrainingCompleted, TrainingFailed)
        s = self.settings
        runtime.grpc.add(
            training_pb2_grpc.add_TrainingServiceServicer_to_server,
            TrainingServicer(self.jobs),
            "llmops.training.v1.TrainingService",
        )
        runtime.bus.consume(
            TrainingRequested, s.consumer_group("requests"), lambda e: self.jobs().on_requested(e)
        )
        runtime.bus.consume(
            ModelVersionRegistered,
            s.consumer_group("registered"),
            lambda e: self.jobs().on_version_registered(e),
        )

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        store = runtime.own(JobStore(s.resolved_database_url()))
        cluster = TrainingCluster(
            s.ray,
            s.platform.data_dir,
            storage_path=s.resolved_ray_storage_path(),
            object_store_mb=s.ray_object_store_mb,
            poll_seconds=s.progress_poll_seconds,
        )
        # Owned before it starts, so a start cut short still stops what it launched. Stopping Ray
        # blocks (it waits for its processes): off the event loop.
        runtime.own(cluster, close=lambda c: asyncio.to_thread(c.stop))
        await cluster.start()
        judge = None
        if s.clients.api_key is not None and s.clients.api_key.get_secret_value():
            judge = ServingJudge(runtime.channel("serving"), s.judge_model, s.judge_timeout_seconds)
        else:
            log.warning("LLMOPS_API_KEY is not set: evaluation runs without the judge (judge_decided=0)")
        jobs = TrainingJobs(
            s,
            store,
            ArtifactStore(s.platform.resolved_artifacts_url()),
            cluster,
            DatasetVersions(runtime.channel("labeling")),
            judge,
        )
        runtime.deliver_with(store)
        await jobs.start()
        # Closed first at shutdown (newest first): the running job checkpoints before Ray stops.
        runtime.own(jobs, close=lambda j: j.stop())
        self.jobs.set(jobs)

    async def drain(self) -> None:
        """Stop the queue (the running job checkpoints and goes back to QUEUED) while the bus is still up."""
        try:
            jobs = self.jobs()
        except Unavailable:
            return  # never started: nothing to drain
        await jobs.stop()
