"""The training service's logic without Ray or Kafka: dataset lookup (from a stand-in labeling gRPC
server), the artifact-root check, validation, idempotency, cancel, progress streams; and the judge
client against a stand-in serving gRPC server."""

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

from llmops.cli.local import free_port
from llmops.contracts.events import TrainingFailed, TrainingRequested
from llmops.contracts.rpc.labeling.v1 import labeling_pb2, labeling_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.contracts.rpc.training.v1 import training_pb2 as tpb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.clients import connect
from llmops.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from llmops.core.grpc_server import GrpcServer
from llmops.core.model_assets import SMOLLM2_NAME, ModelAssetError, smollm2_path
from llmops.core.settings import AuthSettings, ClientSettings, PlatformSettings
from llmops.training import job_validation
from llmops.training.dataset_versions import DatasetVersions
from llmops.training.grpc_server import TrainingServicer
from llmops.training.jobs import TrainingJobs
from llmops.training.judge import ServingJudge
from llmops.training.settings import Settings
from llmops.training.spec import InvalidSpec, JobState
from llmops.training.store import JobStore


class FakeCluster:
    """What TrainingJobs asks of the cluster before a job runs."""

    local = True

    def resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def healthy(self) -> bool:
        return True

    async def request_stop(self, job_id: str, kind: str) -> bool:
        return False


class Labeling(labeling_pb2_grpc.LabelingServiceServicer):
    """A stand-in labeling: GetDatasetVersion answers from ``versions`` (version id -> uri)."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}
        self.asked: list[str] = []
        self.address = ""

    async def GetDatasetVersion(
        self, request: labeling_pb2.GetDatasetVersionRequest, context: grpc.aio.ServicerContext
    ) -> labeling_pb2.DatasetVersion:
        self.asked.append(request.version_id)
        if request.version_id not in self.versions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"dataset version {request.version_id} not found")
        return labeling_pb2.DatasetVersion(
            version_id=request.version_id, dataset="cards", uri=self.versions[request.version_id]
        )


@pytest.fixture
async def labeling() -> AsyncIterator[Labeling]:
    server = grpc.aio.server()
    servicer = Labeling()
    labeling_pb2_grpc.add_LabelingServiceServicer_to_server(servicer, server)
    servicer.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    yield servicer
    await server.stop(0)


@pytest.fixture
async def jobs(tmp_path: Path, labeling: Labeling) -> AsyncIterator[TrainingJobs]:
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
    channel = connect("labeling", ClientSettings(labeling_address=labeling.address))
    yield TrainingJobs(
        settings,
        store,
        artifacts,
        FakeCluster(),  # type: ignore[arg-type]
        DatasetVersions(channel),
    )
    await channel.close()
    store.close()


def _version(jobs: TrainingJobs, labeling: Labeling, dataset: str, version_id: str, rows: list[dict]) -> Path:
    """Write a version under the artifact root, as labeling does, and tell the stand-in labeling."""
    path = Path(jobs.artifacts.path(f"datasets/{dataset}/{version_id}.parquet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    labeling.versions[version_id] = path.as_uri()
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


async def test_dataset_lookup_asks_labeling_or_reads_the_label(
    jobs: TrainingJobs, labeling: Labeling, tmp_path: Path
) -> None:
    find = jobs.validation.find_dataset
    path = _version(jobs, labeling, "cards", "v1", SFT)
    assert await find("v1", {}) == path.as_uri() and labeling.asked == ["v1"]
    # Data made elsewhere, but copied under the artifact root.
    elsewhere = Path(jobs.artifacts.path("imports/elsewhere.parquet"))
    elsewhere.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(SFT), elsewhere)
    assert await find("anything", {"dataset_uri": str(elsewhere)}) == str(elsewhere)
    assert labeling.asked == ["v1"]
    with pytest.raises(NotFound, match="'v2' not found"):
        await find("v2", {})
    with pytest.raises(NotFound, match="does not exist"):
        await find("v1", {"dataset_uri": jobs.artifacts.uri("imports/nope.parquet")})
    # Labeling's own file is gone.
    path.unlink()
    with pytest.raises(NotFound, match="dataset version v1: .* does not exist"):
        await find("v1", {})
    # Labeling naming a file outside the artifact root is not followed either.
    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.Table.from_pylist(SFT), outside)
    labeling.versions["v3"] = outside.as_uri()
    with pytest.raises(InvalidArgument, match="outside the platform's artifact store"):
        await find("v3", {})


async def test_labeling_unreachable_is_unavailable(tmp_path: Path) -> None:
    channel = connect("labeling", ClientSettings(labeling_address=f"127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(Unavailable, match="labeling cannot be reached"):
            await DatasetVersions(channel).uri("v1")
    finally:
        await channel.close()


@pytest.mark.parametrize("label", ["dataset_uri", "champion_adapter_uri"])
async def test_a_label_url_outside_the_artifact_root_is_refused_and_nothing_is_read(
    jobs: TrainingJobs, labeling: Labeling, monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    """SubmitJob over gRPC: INVALID_ARGUMENT naming the label and the root; no file opened or probed."""
    _version(jobs, labeling, "cards", "v1", SFT)
    touched: list[str] = []
    real_exists = job_validation._exists

    def exists(uri: str) -> bool:
        touched.append(uri)
        return real_exists(uri)

    # Every probe of a file at submission goes through _exists, every read through split_counts.
    monkeypatch.setattr(job_validation, "_exists", exists)
    monkeypatch.setattr(job_validation.D, "split_counts", lambda *a: pytest.fail(f"read {a}"))
    server = GrpcServer("training", "127.0.0.1", free_port(), AuthSettings(auth_disabled=True))
    server.add(
        training_pb2_grpc.add_TrainingServiceServicer_to_server,
        TrainingServicer(lambda: jobs),
        "llmops.training.v1.TrainingService",
    )
    await server.start()
    await server.set_serving()
    spec = tpb.JobSpec(
        base_model=SMOLLM2_NAME,
        dataset_version_id="v1",
        method=tpb.TRAINING_METHOD_SFT_LORA,
        model_name="bot",
        labels={label: "file:///etc/passwd"},
    )
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = training_pb2_grpc.TrainingServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SubmitJob(tpb.SubmitJobRequest(spec=spec))
    finally:
        await server.stop(0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details()
    assert f"labels.{label}" in details and "/etc/passwd" in details
    assert jobs.artifacts.root_url in details
    assert touched == [] and labeling.asked == []
    assert (await jobs.list(None, "", 10, "")).items == []


async def test_validation_errors(jobs: TrainingJobs, labeling: Labeling) -> None:
    _version(jobs, labeling, "cards", "v1", SFT)
    _version(jobs, labeling, "cards", "evalonly", [{"prompt": "q", "completion": "a", "split": "eval"}])
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
        await jobs.submit(_raw("v1", labels={"champion_adapter_uri": jobs.artifacts.uri("adapters/none")}))
    with pytest.raises(InvalidArgument, match="champion_adapter_uri"):
        await jobs.submit(_raw("v1", labels={"champion_adapter_uri": "/no/adapter"}))
    assert (await jobs.list(None, "", 10, "")).items == []


async def test_submit_is_idempotent_and_cancel_publishes_a_failure(
    jobs: TrainingJobs, labeling: Labeling
) -> None:
    _version(jobs, labeling, "cards", "v1", SFT)
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
    # Queued with the state change, for the relay to publish.
    (event,) = [queued.event() for queued in jobs.store.outbox.pending()]  # type: ignore[union-attr]
    assert (
        isinstance(event, TrainingFailed)
        and event.job_id == job.job_id
        and event.reason.startswith("cancelled")
    )
    with pytest.raises(FailedPrecondition, match="CANCELLED"):
        await jobs.cancel(job.job_id)
    with pytest.raises(NotFound):
        await jobs.cancel("nope")


async def test_training_requested_event(jobs: TrainingJobs, labeling: Labeling) -> None:
    _version(jobs, labeling, "cards", "v1", SFT)
    event = TrainingRequested(
        request_key="loop-7",
        base_model=SMOLLM2_NAME,
        dataset_version_id="v1",
        model_name="bot",
        hyperparameters={"lora_dropout": 0, "max_steps": 3},
        resources={"num_workers": 1},
        reason="feedback",
        labels={"loop_id": "loop-7"},
    )
    await jobs.on_requested(event)
    await jobs.on_requested(event)
    (job,) = (await jobs.list(None, "bot", 10, "")).items
    assert job.idempotency_key == "loop-7"
    assert job.spec.labels == {"reason": "feedback", "loop_id": "loop-7"}
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
    clients = ClientSettings(serving_address=f"127.0.0.1:{port}", api_key="k" * 20)
    channel = connect("serving", clients)
    judge = ServingJudge(channel, model="judge-model", timeout=10)
    try:
        assert await judge.available()
        assert await judge("Which colour?", "Red.", "Blue.") == "B"
    finally:
        await channel.close()
        await server.stop(0)
    request, metadata = seen[0]
    assert request.model == "judge-model" and request.temperature == 0 and request.max_tokens <= 8
    assert "Answer A:\nRed." in request.prompt and "Answer B:\nBlue." in request.prompt
    # The platform's client channel adds the key and a request id; the judge builds no metadata.
    assert metadata["x-api-key"] == "k" * 20 and metadata["x-request-id"]
    # Nothing listening: no judge, no error.
    gone_channel = connect("serving", clients)
    try:
        assert not await ServingJudge(gone_channel).available()
    finally:
        await gone_channel.close()
