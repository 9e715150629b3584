"""The kernel in process on loopback: one error mapping, request ids across services, owned resources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from llmops.cli.local import free_port
from llmops.contracts.rpc.registry.v1 import registry_pb2, registry_pb2_grpc
from llmops.contracts.rpc.training.v1 import training_pb2, training_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.core.clients import connect, connect_sync
from llmops.core.errors import FailedPrecondition, InvalidArgument, NotFound
from llmops.core.grpc_server import GrpcServer
from llmops.core.logging import request_id_var
from llmops.core.service import Deferred, Runtime, serve
from llmops.core.settings import AuthSettings, ClientSettings, PlatformSettings
from llmops.retrieval.settings import Settings as RetrievalSettings

KEY = "test-key-0123456789"


class Registry(registry_pb2_grpc.RegistryServiceServicer):
    """Answers GetModel with the request id it was called under; fails on purpose otherwise."""

    async def GetModel(self, request: registry_pb2.GetModelRequest, context: object) -> registry_pb2.Model:
        if request.name == "missing":
            raise NotFound("model 'missing' not found")
        if request.name == "bug":
            raise KeyError("secret internal detail")
        return registry_pb2.Model(name=request_id_var.get())

    async def Promote(
        self, request: registry_pb2.PromoteRequest, context: object
    ) -> registry_pb2.PromoteResponse:
        raise FailedPrecondition("version 3 does not pass the gate: eval_loss 2.0 > 1.5")


class Training(training_pb2_grpc.TrainingServiceServicer):
    """GetJob asks the registry (through the client factory) and returns what it saw."""

    def __init__(self, clients: ClientSettings) -> None:
        self.clients = clients

    async def GetJob(self, request: training_pb2.GetJobRequest, context: object) -> training_pb2.Job:
        async with connect("registry", self.clients) as channel:
            model = await registry_pb2_grpc.RegistryServiceStub(channel).GetModel(
                registry_pb2.GetModelRequest(name=request.job_id)
            )
        return training_pb2.Job(job_id=model.name)

    async def StreamProgress(
        self, request: training_pb2.StreamProgressRequest, context: object
    ) -> AsyncIterator:
        yield training_pb2.TrainingProgress(job_id=request.job_id)
        raise RuntimeError("stream broke: internal detail")


@pytest.fixture
async def servers() -> AsyncIterator[tuple[GrpcServer, GrpcServer, ClientSettings]]:
    auth = AuthSettings(api_keys=[KEY])
    registry = GrpcServer("registry", "127.0.0.1", free_port(), auth)
    registry.add(registry_pb2_grpc.add_RegistryServiceServicer_to_server, Registry(), "r")
    training = GrpcServer("training", "127.0.0.1", free_port(), auth)
    clients = ClientSettings(
        api_key=KEY, registry_address=registry.address, training_address=training.address
    )
    training.add(training_pb2_grpc.add_TrainingServiceServicer_to_server, Training(clients), "t")
    for s in (registry, training):
        await s.start()
        await s.set_serving()
    yield registry, training, clients
    for s in (registry, training):
        await s.stop(0)


async def test_domain_errors_keep_their_code_and_message(servers) -> None:  # noqa: ANN001
    _, _, clients = servers
    async with connect("registry", clients) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetModel(registry_pb2.GetModelRequest(name="missing"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "model 'missing' not found"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Promote(registry_pb2.PromoteRequest())
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "does not pass the gate" in err.value.details()


async def test_an_internal_error_is_internal_with_the_request_id_not_its_text(servers) -> None:  # noqa: ANN001
    _, _, clients = servers
    async with connect("registry", clients) as channel:
        call = registry_pb2_grpc.RegistryServiceStub(channel).GetModel(
            registry_pb2.GetModelRequest(name="bug"), metadata=(("x-request-id", "req-bug-1"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "req-bug-1" in err.value.details()
    assert "secret" not in err.value.details()
    # A stream that breaks after its first message ends the same way.
    async with connect("training", clients) as channel:
        stream = training_pb2_grpc.TrainingServiceStub(channel).StreamProgress(
            training_pb2.StreamProgressRequest(job_id="j"), metadata=(("x-request-id", "req-stream-1"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stream:
                pass
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "req-stream-1" in err.value.details() and "internal detail" not in err.value.details()


async def test_the_callers_request_id_reaches_every_service_on_the_way(servers) -> None:  # noqa: ANN001
    _, _, clients = servers
    async with connect("training", clients) as channel:
        call = training_pb2_grpc.TrainingServiceStub(channel).GetJob(
            training_pb2.GetJobRequest(job_id="ok"), metadata=(("x-request-id", "req-trace-7"),)
        )
        job = await call
        trailing = tuple(await call.trailing_metadata())
    # The registry, called by training, served the call under the caller's id (its log lines carry it).
    assert job.job_id == "req-trace-7"
    assert ("x-request-id", "req-trace-7") in trailing


async def test_the_blocking_client_adds_the_key_and_a_request_id(servers) -> None:  # noqa: ANN001
    # The servers run on this event loop, so the blocking calls go to a thread.
    await asyncio.to_thread(_blocking_calls, servers[2])


def _blocking_calls(clients: ClientSettings) -> None:
    channel = connect_sync("registry", clients)
    try:
        reply, call = registry_pb2_grpc.RegistryServiceStub(channel).GetModel.with_call(
            registry_pb2.GetModelRequest(name="ok")
        )
    finally:
        channel.close()
    sent = dict(call.trailing_metadata())["x-request-id"]
    assert reply.name == sent and len(sent) == 36
    # Without a key the server refuses the call.
    anonymous = connect_sync("registry", clients.model_copy(update={"api_key": None}))
    try:
        with pytest.raises(grpc.RpcError) as err:
            registry_pb2_grpc.RegistryServiceStub(anonymous).GetModel(registry_pb2.GetModelRequest(name="ok"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        anonymous.close()


class _HalfStarting:
    """Opens two things, then fails: both must be closed, the newest first."""

    def __init__(self, closed: list[str]) -> None:
        self.closed = closed
        self.store: Deferred[str] = Deferred("store")

    def register(self, runtime: Runtime) -> None:
        pass

    async def start(self, runtime: Runtime) -> None:
        runtime.own("store", close=lambda _: self.closed.append("store"))

        class Engine:
            async def __aenter__(inner) -> Engine:
                return inner

            async def __aexit__(inner, *exc: object) -> None:
                self.closed.append("engine")

        await runtime.enter(Engine())
        raise RuntimeError("the model folder is missing")


async def test_a_start_that_fails_half_way_closes_what_it_opened_in_reverse(tmp_path: Path) -> None:
    closed: list[str] = []
    settings = RetrievalSettings(
        grpc_port=free_port(),
        metrics_port=0,
        platform=PlatformSettings(data_dir=tmp_path),
        auth=AuthSettings(auth_disabled=True),
    )
    service = _HalfStarting(closed)
    with pytest.raises(RuntimeError, match="model folder is missing"):
        await serve(service, settings)
    assert closed == ["engine", "store"]
    with pytest.raises(Exception, match="store is not started yet"):
        service.store()


def test_a_service_writes_its_name_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_RETRIEVAL_GRPC_PORT", "6123")
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    s = RetrievalSettings()
    assert (s.grpc_port, s.metrics_port) == (6123, 9106)
    assert s.consumer_group("documents") == "llmops-retrieval.documents"


def test_only_artifacts_under_the_root_are_accepted(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path / 'artifacts'}")
    inside = store.write_bytes("datasets/v1/train.parquet", b"x")
    assert store.require(inside, "dataset_uri") == inside
    for outside in (
        "file:///etc/passwd",
        f"file://{tmp_path}/artifacts/../secret",
        f"{tmp_path}/artifactsX/a",
    ):
        with pytest.raises(InvalidArgument, match="outside the platform's artifact store"):
            store.require(outside, "dataset_uri")
