"""The training service's logic without Ray or Kafka: dataset lookup, validation, idempotency, cancel,
progress streams; and the judge client against a stand-in serving gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from llmops.contracts.events import TrainingFailed, TrainingRequested
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.model_assets import SMOLLM2_NAME, ModelAssetError, smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.training.jobs import TrainingJobs
from llmops.training.judge import ServingJudge
from llmops.training.settings import Settings
from llmops.training.spec import FailedPrecondition, InvalidSpec, JobState, NotFound
from llmops.training.store import JobStore


class FakeBus:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def publish(self, event: Any) -> None:
        self.events.append(event)


class FakeCluster:
    """What TrainingJobs asks of the cluster before a job runs."""

    local = True

    def resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def healthy(self) -> bool:
        return True

    async def request_stop(self, job_id: str, kind: str) -> bool:
        return False


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[TrainingJobs]:
    try:
        models_dir = smollm2_path(PlatformSettings().models_dir).parent
    except ModelAssetError as exc:
        pytest.skip(str(exc))
    settings = Settings(
        platform=PlatformSettings(data_dir=tmp_path / "data", models_dir=models_dir),
        auth={"auth_disabled": True},
    )
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    artifacts = ArtifactStore(settings.platform.resolved_artifacts_url())
    yield TrainingJobs(settings, store, FakeBus(), artifacts, FakeCluster())  # type: ignore[arg-type]
    store.close()


def _version(jobs: TrainingJobs, dataset: str, version_id: str, rows: list[dict]) -> Path:
    path = Path(jobs.artifacts.path(f"datasets/{dataset}/{version_id}.parquet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _raw(version_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "base_model": SMOLLM2_NAME,
        "dataset_version_id": version_id,
        "method": "sft_lora",
        "model_name": "bot",
        "hyperparameters": {},
        "resources": {},
        **kw,
    }


SFT = [
    {"prompt": "q", "completion": "a", "split": "train"},
    {"prompt": "r", "completion": "b", "split": "eval"},
]


async def test_dataset_lookup_by_version_id_or_uri(jobs: TrainingJobs, tmp_path: Path) -> None:
    path = _version(jobs, "cards", "v1", SFT)
    assert jobs.find_dataset("v1", {}) == f"file://{path}"
    elsewhere = tmp_path / "elsewhere.parquet"
    pq.write_table(pa.Table.from_pylist(SFT), elsewhere)
    assert jobs.find_dataset("anything", {"dataset_uri": str(elsewhere)}) == str(elsewhere)
    with pytest.raises(NotFound, match="datasets/\\*/v2.parquet"):
        jobs.find_dataset("v2", {})
    with pytest.raises(NotFound, match="does not exist"):
        jobs.find_dataset("v1", {"dataset_uri": str(tmp_path / "nope.parquet")})


async def test_validation_errors(jobs: TrainingJobs) -> None:
    _version(jobs, "cards", "v1", SFT)
    _version(jobs, "cards", "evalonly", [{"prompt": "q", "completion": "a", "split": "eval"}])
    with pytest.raises(InvalidSpec, match="no usable sft_lora example in its train split"):
        await jobs.submit(_raw("evalonly"))
    with pytest.raises(InvalidSpec, match="chosen, rejected"):
        await jobs.submit(_raw("v1", method="dpo_lora"))
    with pytest.raises(InvalidSpec, match="need 4 CPUs; the local Ray cluster has 2"):
        await jobs.submit(_raw("v1", resources={"num_workers": 2, "cpus_per_worker": 2}))
    with pytest.raises(InvalidSpec, match="GPU"):
        await jobs.submit(_raw("v1", resources={"gpus_per_worker": 1}))
    with pytest.raises(InvalidSpec, match="bogus_proj not in"):
        await jobs.submit(_raw("v1", hyperparameters={"target_modules": ["q_proj", "bogus_proj"]}))
    with pytest.raises(NotFound, match="not prepared|neither"):
        await jobs.submit(_raw("v1", base_model="/nowhere"))
    with pytest.raises(NotFound, match="champion_adapter_uri"):
        await jobs.submit(_raw("v1", labels={"champion_adapter_uri": "/no/adapter"}))
    assert (await jobs.list(None, "", 10, "")).jobs == []


async def test_submit_is_idempotent_and_cancel_publishes_a_failure(jobs: TrainingJobs) -> None:
    _version(jobs, "cards", "v1", SFT)
    job = await jobs.submit(_raw("v1", hyperparameters={"target_modules": ["q_proj", "v_proj"]}), "key")
    assert job.state is JobState.QUEUED and job.spec.hyperparameters.target_modules == ("q_proj", "v_proj")
    assert (await jobs.submit(_raw("v1"), "key")).job_id == job.job_id

    updates = jobs.stream(job.job_id)
    first = await anext(updates)
    assert first.state is JobState.QUEUED and first.progress is None

    cancelled = await jobs.cancel(job.job_id, "changed my mind")
    assert cancelled.state is JobState.CANCELLED and cancelled.error == "cancelled: changed my mind"
    last = await asyncio.wait_for(anext(updates), 5)
    assert last.state is JobState.CANCELLED
    with pytest.raises(StopAsyncIteration):
        await anext(updates)
    (event,) = jobs.bus.events  # type: ignore[attr-defined]
    assert (
        isinstance(event, TrainingFailed)
        and event.job_id == job.job_id
        and event.reason.startswith("cancelled")
    )
    with pytest.raises(FailedPrecondition, match="CANCELLED"):
        await jobs.cancel(job.job_id)
    with pytest.raises(NotFound):
        await jobs.cancel("nope")


async def test_training_requested_event(jobs: TrainingJobs) -> None:
    _version(jobs, "cards", "v1", SFT)
    event = TrainingRequested(
        request_key="loop-7",
        base_model=SMOLLM2_NAME,
        dataset_version_id="v1",
        model_name="bot",
        hyperparameters={"lora_dropout": 0, "max_steps": 3},
        resources={"num_workers": 1},
        reason="feedback",
    )
    await jobs.on_requested(event)
    await jobs.on_requested(event)
    (job,) = (await jobs.list(None, "bot", 10, "")).jobs
    assert job.idempotency_key == "loop-7" and job.spec.labels == {"reason": "feedback"}
    # An event's 0 is a value, not "use the default".
    assert job.spec.hyperparameters.lora_dropout == 0 and job.spec.hyperparameters.max_steps == 3


async def test_serving_judge_against_a_stand_in_server() -> None:
    seen: list[tuple[serving_pb2.GenerateRequest, dict[str, str]]] = []

    class Serving(serving_pb2_grpc.ServingServiceServicer):
        async def Generate(
            self, request: serving_pb2.GenerateRequest, context: grpc.aio.ServicerContext
        ) -> serving_pb2.GenerateResponse:
            seen.append((request, dict(context.invocation_metadata())))
            return serving_pb2.GenerateResponse(text=" B.")

    server = grpc.aio.server()
    serving_pb2_grpc.add_ServingServiceServicer_to_server(Serving(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("llmops.serving.v1.ServingService", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    judge = ServingJudge(f"127.0.0.1:{port}", "k" * 20, model="judge-model", timeout=10)
    try:
        assert await judge.available()
        assert await judge("Which colour?", "Red.", "Blue.") == "B"
    finally:
        await judge.close()
        await server.stop(0)
    request, metadata = seen[0]
    assert request.model == "judge-model" and request.temperature == 0 and request.max_tokens <= 8
    assert "Answer A:\nRed." in request.prompt and "Answer B:\nBlue." in request.prompt
    assert metadata["x-api-key"] == "k" * 20
    # Nothing listening: no judge, no error.
    gone = ServingJudge(f"127.0.0.1:{port}", "k" * 20)
    try:
        assert not await gone.available()
    finally:
        await gone.close()
