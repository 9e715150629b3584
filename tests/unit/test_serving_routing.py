from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from llmops.contracts.rpc.registry.v1 import registry_pb2, registry_pb2_grpc
from llmops.core.clients import connect
from llmops.core.settings import ClientSettings
from llmops.serving.deployments import RegistryLookup, RegistryUnavailable, fetch_adapter
from llmops.serving.domain.requests import InvalidRequest
from llmops.serving.routing import AliasTable, Deployment, UnknownModel, parse


def test_request_names() -> None:
    assert parse("support-bot") == ("support-bot", "champion", None)
    assert parse("support-bot@challenger") == ("support-bot", "challenger", None)
    assert parse("support-bot/3") == ("support-bot", None, 3)
    for bad in ("@x", "m@", "m/x", "/3"):
        with pytest.raises(UnknownModel):
            parse(bad)


def test_alias_table_persists_and_forgets(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    table = AliasTable(path)
    v2 = Deployment("bot", 2, "file:///a/2", "SmolLM2-135M-Instruct")
    table.set("bot", "champion", v2)
    table.close()
    reopened = AliasTable(path)
    assert reopened.by_alias("bot", "champion") == v2
    assert reopened.by_version("bot", 2) == v2
    reopened.set("bot", "champion", None)
    assert reopened.by_alias("bot", "champion") is None
    assert reopened.by_version("bot", 2) == v2  # a version once served stays addressable by number
    assert reopened.all_aliases() == []


def test_fetch_adapter_needs_an_adapter(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        fetch_adapter(f"file://{folder}", tmp_path / "cache")
    (folder / "adapter_config.json").write_text("{}")
    assert fetch_adapter(f"file://{folder}", tmp_path / "cache") == folder


def test_routing_errors_are_domain_errors_with_their_status() -> None:
    assert UnknownModel.status == "NOT_FOUND" and RegistryUnavailable.status == "UNAVAILABLE"
    assert InvalidRequest.status == "INVALID_ARGUMENT"


class _Registry(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def GetVersion(self, request, context):  # noqa: ANN001, ANN201, N802
        self.metadata.append(dict(context.invocation_metadata()))
        if request.version == 3:
            return registry_pb2.ModelVersion(
                model=request.model, version=3, artifact_uri="file:///a/3", base_model="SmolLM2"
            )
        if request.version == 4:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad key")
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such version")


async def test_registry_lookup_asks_over_the_platform_channel() -> None:
    registry = _Registry()
    server = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(registry, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = ClientSettings(api_key="serving-key-0123456789", registry_address=f"127.0.0.1:{port}")
    channel = connect("registry", settings)
    try:
        lookup = RegistryLookup(channel)
        assert await lookup.get("bot", 3) == Deployment("bot", 3, "file:///a/3", "SmolLM2")
        assert await lookup.get("bot", 9) is None
        with pytest.raises(RegistryUnavailable, match="PERMISSION_DENIED"):
            await lookup.get("bot", 4)
    finally:
        await channel.close()
        await server.stop(None)
    # The key and request id come from the channel's interceptor, not from the lookup.
    assert all(m["x-api-key"] == "serving-key-0123456789" and m["x-request-id"] for m in registry.metadata)
