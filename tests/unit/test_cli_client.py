"""The CLI's channels: the API key from LLMOPS_API_KEY or the `make up` key file, added to every call."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest
import typer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from llmops.cli import client


class _Metadata(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def intercept_service(self, continuation, details):  # noqa: ANN001, ANN201
        self.seen.append(dict(details.invocation_metadata))
        return continuation(details)


def test_the_key_comes_from_the_environment_before_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_RUN_DIR", str(tmp_path))
    (tmp_path / "api-key").write_text("from-the-file-0123456789\n")
    monkeypatch.delenv("LLMOPS_API_KEY", raising=False)
    assert client.settings().api_key.get_secret_value() == "from-the-file-0123456789"  # type: ignore[union-attr]
    monkeypatch.setenv("LLMOPS_API_KEY", "from-the-environment-0123")
    assert client.settings().api_key.get_secret_value() == "from-the-environment-0123"  # type: ignore[union-attr]


def test_no_key_exits_2_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("LLMOPS_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("LLMOPS_API_KEY", raising=False)
    with pytest.raises(typer.Exit) as caught:
        client.channel("registry")
    assert caught.value.exit_code == 2
    assert "LLMOPS_API_KEY" in capsys.readouterr().err


def test_every_call_on_a_cli_channel_carries_the_key_and_a_request_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Metadata()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[seen])
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setenv("LLMOPS_RUN_DIR", str(tmp_path))
        (tmp_path / "api-key").write_text("local-key-0123456789")
        monkeypatch.delenv("LLMOPS_API_KEY", raising=False)
        monkeypatch.setenv("LLMOPS_REGISTRY_ADDRESS", f"127.0.0.1:{port}")
        with client.channel("registry") as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finally:
        server.stop(None)
    (metadata,) = seen.seen
    assert metadata["x-api-key"] == "local-key-0123456789"
    assert metadata["x-request-id"]
