from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from llmops.core.messaging import kafka_client_options
from llmops.core.settings import AuthSettings, ClickHouseSettings, KafkaSettings, PlatformSettings
from llmops.feedback.settings import Settings as FeedbackSettings
from llmops.serving.settings import Settings as ServingSettings

KEY = "k" * 20


def test_api_keys_are_required_unless_auth_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPS_API_KEYS", raising=False)
    with pytest.raises(ValidationError, match="LLMOPS_API_KEYS is empty"):
        AuthSettings()
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    assert AuthSettings().api_keys == []


def test_api_keys_split_on_commas_and_short_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_API_KEYS", f"{KEY}, {'x' * 16}")
    assert [k.get_secret_value() for k in AuthSettings().api_keys] == [KEY, "x" * 16]
    monkeypatch.setenv("LLMOPS_API_KEYS", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        AuthSettings()


def test_sasl_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="LLMOPS_KAFKA_SASL_MECHANISM"):
        KafkaSettings(security_protocol="SASL_SSL")
    ok = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"
    )
    assert ok.security_protocol == "SASL_SSL"


@pytest.mark.parametrize(
    ("protocol", "mechanism", "ssl"),
    [("SASL_SSL", "SCRAM-SHA-512", True), ("SASL_PLAINTEXT", "SCRAM-SHA-256", False), ("SSL", None, True)],
)
async def test_plain_kafka_clients_connect_as_the_bus_does(
    protocol: str, mechanism: str | None, ssl: bool
) -> None:
    credentials = {"sasl_mechanism": mechanism, "sasl_username": "svc", "sasl_password": "secret"}
    settings = KafkaSettings(
        bootstrap_servers="kafka-1:9093", security_protocol=protocol, **(credentials if mechanism else {})
    )
    options = kafka_client_options(settings)
    assert options["bootstrap_servers"] == "kafka-1:9093" and options["security_protocol"] == protocol
    assert (options.get("ssl_context") is not None) == ssl
    if mechanism:
        assert options["sasl_mechanism"] == mechanism
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "secret")
    # The options are ones aiokafka takes.
    AIOKafkaAdminClient(**options)


def test_handled_marks_must_outlive_the_messages_they_protect() -> None:
    with pytest.raises(ValidationError, match="HANDLED_RETENTION_HOURS"):
        KafkaSettings(topic_retention_hours=400, handled_retention_hours=300)


def test_clickhouse_dsn_defaults_to_the_engine_in_process(tmp_path) -> None:  # noqa: ANN001
    platform = PlatformSettings(data_dir=tmp_path)
    assert ClickHouseSettings().resolved_dsn(platform) == f"chdb://{tmp_path / 'clickhouse'}"
    assert ClickHouseSettings(dsn="https://u:p@ch:8443/db").resolved_dsn(platform) == "https://u:p@ch:8443/db"
    with pytest.raises(ValidationError, match="LLMOPS_CLICKHOUSE_DSN"):
        ClickHouseSettings(dsn="mysql://x")


def test_service_ports_come_from_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_API_KEYS", KEY)
    monkeypatch.setenv("LLMOPS_FEEDBACK_GRPC_PORT", "6001")
    settings = FeedbackSettings()
    assert settings.grpc_port == 6001 and settings.host == "127.0.0.1"
    monkeypatch.setenv("LLMOPS_FEEDBACK_GRPC_PORT", "70000")
    with pytest.raises(ValidationError, match="grpc_port"):
        FeedbackSettings()


def test_serving_limits_must_be_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_API_KEYS", KEY)
    monkeypatch.setenv("LLMOPS_SERVING_MAX_TOKENS_LIMIT", "4096")
    with pytest.raises(ValidationError, match="MAX_TOKENS_LIMIT must be smaller"):
        ServingSettings()


def test_ray_address_from_ours_or_rays_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.core.settings import RaySettings

    monkeypatch.delenv("LLMOPS_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert RaySettings().address is None  # a local Ray
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert RaySettings().address == "ray://head:10001"
    monkeypatch.setenv("LLMOPS_RAY_ADDRESS", "ray://other:10001")
    assert RaySettings().address == "ray://other:10001"  # ours wins
    assert RaySettings(address="head:6379").address == "head:6379"
