"""Training service: LoRA fine-tuning jobs (SFT, DPO) on Ray, their progress, evaluation and adapters."""

from __future__ import annotations

import asyncio
import logging

from llmops.contracts.events import ModelVersionRegistered, TrainingRequested
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.service import Runtime
from llmops.training.grpc_server import TrainingServicer
from llmops.training.jobs import TrainingJobs
from llmops.training.judge import ServingJudge
from llmops.training.ray_runner import TrainingCluster
from llmops.training.settings import Settings
from llmops.training.store import JobStore

log = logging.getLogger(__name__)

REQUESTS_GROUP = "llmops-training.requests"
REGISTERED_GROUP = "llmops-training.registered"


class TrainingService:
    name = "training"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: TrainingJobs | None = None
        self._store: JobStore | None = None
        self._cluster: TrainingCluster | None = None
        self._judge: ServingJudge | None = None

    def _jobs(self) -> TrainingJobs:
        if self.jobs is None:
            raise RuntimeError("training is not started")
        return self.jobs

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            training_pb2_grpc.add_TrainingServiceServicer_to_server,
            TrainingServicer(self._jobs),
            "llmops.training.v1.TrainingService",
        )
        runtime.bus.consume(TrainingRequested, REQUESTS_GROUP, lambda e: self._jobs().on_requested(e))
        runtime.bus.consume(
            ModelVersionRegistered, REGISTERED_GROUP, lambda e: self._jobs().on_version_registered(e)
        )

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        self._store = JobStore(s.database_url or s.platform.sqlite_url("training"))
        self._cluster = TrainingCluster(
            s.ray,
            s.platform.data_dir,
            storage_path=s.resolved_ray_storage_path(),
            object_store_mb=s.ray_object_store_mb,
            poll_seconds=s.progress_poll_seconds,
        )
        await self._cluster.start()
        key = s.clients.api_key.get_secret_value() if s.clients.api_key else ""
        if key:
            self._judge = ServingJudge(
                s.clients.address("serving"), key, s.judge_model, s.judge_timeout_seconds
            )
        else:
            log.warning("LLMOPS_API_KEY is not set: evaluation runs without the judge (judge_decided=0)")
        self.jobs = TrainingJobs(
            s,
            self._store,
            runtime.bus,
            ArtifactStore(s.platform.resolved_artifacts_url()),
            self._cluster,
            self._judge,
        )

        await self.jobs.start()

    async def drain(self) -> None:
        """Stop the queue (the running job checkpoints and goes back to QUEUED) while the bus is still up."""
        if self.jobs is not None:
            await self.jobs.stop()

    async def stop(self) -> None:
        if self.jobs is not None:
            await self.jobs.stop()
        if self._cluster is not None:
            await asyncio.to_thread(self._cluster.stop)
        if self._judge is not None:
            await self._judge.close()
        if self._store is not None:
            self._store.close()
