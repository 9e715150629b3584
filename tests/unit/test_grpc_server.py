"""The gRPC bootstrap in process on loopback: health, readiness, API keys, request ids, UNIMPLEMENTED."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from llmops.cli.local import free_port
from llmops.contracts.rpc.registry.v1 import registry_pb2, registry_pb2_grpc
from llmops.contracts.rpc.training.v1 import training_pb2, training_pb2_grpc
from llmops.core.grpc_server import GrpcServer
from llmops.core.settings import AuthSettings
from llmops.core.unimplemented import planned_servicer

KEY = "test-key-0123456789"


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    server = GrpcServer("registry", "127.0.0.1", free_port(), AuthSettings(api_keys=[KEY]))
    server.add(
        registry_pb2_grpc.add_RegistryServiceServicer_to_server,
        planned_servicer(registry_pb2_grpc.RegistryServiceServicer, "RegistryService", "planned later"),
        "llmops.registry.v1.RegistryService",
    )
    server.add(
        training_pb2_grpc.add_TrainingServiceServicer_to_server,
        planned_servicer(training_pb2_grpc.TrainingServiceServicer, "TrainingService", "planned later"),
        "llmops.training.v1.TrainingService",
    )
    await server.start()
    yield server
    await server.stop(0)


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return reply.status


async def test_not_serving_and_unavailable_until_ready(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Promote(registry_pb2.PromoteRequest(), metadata=(("x-api-key", KEY),))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await server.set_serving()
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_api_key_is_required_except_for_health(server: GrpcServer) -> None:
    await server.set_serving()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for metadata, message in [
            ((), "missing API key"),
            ((("x-api-key", "wrong-key-000000000"),), "invalid API key"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Promote(registry_pb2.PromoteRequest(), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert message in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Promote(registry_pb2.PromoteRequest(), metadata=(("authorization", f"Bearer {KEY}"),))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_unimplemented_rpcs_say_so_and_carry_the_request_id(server: GrpcServer) -> None:
    await server.set_serving()
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = registry_pb2_grpc.RegistryServiceStub(channel).Promote(
            registry_pb2.PromoteRequest(), metadata=(("x-api-key", KEY), ("x-request-id", "req-42"))
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert err.value.details() == "RegistryService.Promote is not implemented yet (planned later)"
        assert ("x-request-id", "req-42") in tuple(err.value.trailing_metadata())
        # Server streaming RPCs too.
        stream = training_pb2_grpc.TrainingServiceStub(channel).StreamProgress(
            training_pb2.StreamProgressRequest(job_id="j"), metadata=(("x-api-key", KEY),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stream:
                pass
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_lists_the_services(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = set()
        async for reply in replies:
            names = {s.name for s in reply.list_services_response.service}
            break
    assert {
        "llmops.registry.v1.RegistryService",
        "llmops.training.v1.TrainingService",
        "grpc.health.v1.Health",
    } <= names
