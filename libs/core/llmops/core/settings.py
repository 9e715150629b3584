"""Settings: the only place that reads the environment.

Each service has one ``Settings`` class (a subclass of :class:`ServiceSettings`, prefix
``LLMOPS_<SERVICE>_``); the connections they share (Kafka, ClickHouse, Qdrant, Ray, API keys, folders)
are defined once here with their own prefixes. Bad values fail at start with the setting's name.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llmops.core.pii import PII_TYPES, Redactor
from llmops.core.retry import RetryPolicy

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

LOOPBACK = "127.0.0.1"


def comma_list(value: object) -> object:
    """A setting given as ``a,b,c`` (an environment variable) as a list of its non-empty items; any
    other value as it is (for a ``mode="before"`` field validator)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class PlatformSettings(BaseSettings):
    """Folders and switches shared by every process (prefix ``LLMOPS_``)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore")

    data_dir: Path = Field(Path(".data"), description="Where local stores keep their files.")
    models_dir: Path = Field(Path(".models"), description="Where `make setup` puts prepared models.")
    run_dir: Path = Field(Path(".run"), description="Pid files, logs and the local API key of `make up`.")
    artifacts_url: str | None = Field(
        None, description="Root of the artifact store (fsspec URL); default: file://<data_dir>/artifacts."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Allocations between two collections of the youngest generation (CPython's default: 700); see
    # llmops.core.service._tune_garbage_collector.
    gc_young_threshold: int = Field(50_000, ge=100, le=10_000_000)
    log_format: Literal["text", "json"] = "text"

    @field_validator("data_dir", "models_dir", "run_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or f"file://{self.data_dir / 'artifacts'}"

    def sqlite_url(self, service: str) -> str:
        """The default metadata database of ``service``: a SQLite file in its data folder."""
        folder = self.data_dir / service
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / (service + '.sqlite')}"


class KafkaSettings(BaseSettings):
    """The message bus (prefix ``LLMOPS_KAFKA_``)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_KAFKA_", extra="ignore")

    bootstrap_servers: str = f"{LOOPBACK}:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # A failing handler (or DLQ publish) is tried again, waiting retry_backoff_ms, then twice as long
    # each time up to retry_backoff_max_ms, until retry_budget_seconds have passed; then the message
    # goes to the dead-letter topic. The default rides out a store or broker restart.
    retry_budget_seconds: float = Field(60.0, ge=0, le=3600)
    retry_backoff_ms: int = Field(200, ge=1)
    retry_backoff_max_ms: int = Field(5000, ge=1)
    # Topics a service publishes or consumes are created at its start when missing, with these
    # settings (per partition: retention.bytes). The size bound keeps a long-running development
    # broker small; in production set them as the cluster's policy wants (0 MB: no size bound), or
    # LLMOPS_KAFKA_CREATE_TOPICS=false where topics are managed elsewhere.
    create_topics: bool = True
    topic_partitions: int = Field(1, ge=1, le=1000)
    topic_replication_factor: int = Field(1, ge=1, le=10)
    topic_retention_hours: float = Field(168.0, gt=0)
    topic_retention_mb: int = Field(16, ge=0)
    dlq_retention_hours: float = Field(720.0, gt=0)
    # At shutdown a handler still running gets this long to finish before it is cancelled (its
    # message is then not committed and comes again).
    handler_grace_seconds: float = Field(5.0, ge=0, le=600)
    # Closing waits this long in all (handlers' grace included) for messages not yet sent; a broker
    # that is away would make it wait for ever.
    close_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # After an empty fetch that the broker answered sooner than this, the consumer waits out the rest
    # (development brokers answer at once; Apache Kafka waits fetch.max.wait.ms itself, so there it
    # never applies). See llmops.core.kafka_fetch. 0 turns it off. 500: an idle consumer asks as
    # often as it would against Apache Kafka's default fetch.max.wait.ms (measured: an idle serving
    # process 0.32 -> 0.15 CPU s per 20 s, monitoring 1.25 -> 0.89), for up to 0.5 s more latency
    # on the first record after a quiet spell on a development broker.
    idle_fetch_pause_ms: int = Field(500, ge=0, le=10_000)
    # A service's outbox relay publishes as soon as a change commits, and also looks this often (for
    # events written by another replica sharing the database, or left by an earlier run).
    outbox_poll_seconds: float = Field(2.0, gt=0, le=3600)
    # How long the record of handled events remembers one: longer than topics keep messages, since a
    # message can come again for as long as the topic holds it.
    handled_retention_hours: float = Field(336.0, gt=0)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            budget_s=self.retry_budget_seconds,
            first_delay_s=self.retry_backoff_ms / 1000,
            max_delay_s=max(self.retry_backoff_max_ms, self.retry_backoff_ms) / 1000,
        )

    @model_validator(mode="after")
    def _handled_outlives_messages(self) -> KafkaSettings:
        if self.handled_retention_hours < self.topic_retention_hours:
            raise ValueError(
                f"LLMOPS_KAFKA_HANDLED_RETENTION_HOURS ({self.handled_retention_hours:g}) must not be "
                f"shorter than LLMOPS_KAFKA_TOPIC_RETENTION_HOURS ({self.topic_retention_hours:g}): a "
                "message still in its topic could come again after its handled mark was pruned"
            )
        return self

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "LLMOPS_KAFKA_SECURITY_PROTOCOL is SASL_* but LLMOPS_KAFKA_SASL_MECHANISM, "
                "LLMOPS_KAFKA_SASL_USERNAME and LLMOPS_KAFKA_SASL_PASSWORD are not all set"
            )
        return self


class ClickHouseSettings(BaseSettings):
    """The analytics store (prefix ``LLMOPS_CLICKHOUSE_``).

    Default: the ClickHouse engine in process (chdb) in ``<data_dir>/clickhouse``. Production: a
    ``http(s)://user:password@host:8123/database`` DSN for clickhouse-connect.
    """

    model_config = SettingsConfigDict(env_prefix="LLMOPS_CLICKHOUSE_", extra="ignore")

    dsn: str | None = None

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("chdb://", "http://", "https://", "clickhouse://")):
            raise ValueError(
                "LLMOPS_CLICKHOUSE_DSN must start with chdb://, http://, https:// or clickhouse://"
            )
        return value

    def resolved_dsn(self, platform: PlatformSettings) -> str:
        return self.dsn or f"chdb://{platform.data_dir / 'clickhouse'}"


class QdrantSettings(BaseSettings):
    """The vector store (prefix ``LLMOPS_QDRANT_``): a server by ``url``, else local mode on disk."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_QDRANT_", extra="ignore")

    url: str | None = None
    api_key: SecretStr | None = None
    path: Path | None = Field(None, description="Local mode's folder; default: <data_dir>/qdrant.")

    def client(self, platform: PlatformSettings) -> QdrantClient:
        """A client: the server at ``url``, else local mode in ``path`` (one process per folder)."""
        from qdrant_client import QdrantClient

        if self.url:
            key = self.api_key.get_secret_value() if self.api_key else None
            return QdrantClient(url=self.url, api_key=key)
        folder = self.path or platform.data_dir / "qdrant"
        folder.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(folder))


class RaySettings(BaseSettings):
    """The training cluster (prefix ``LLMOPS_RAY_``): a cluster by ``address``, else a local Ray.

    The address is ``LLMOPS_RAY_ADDRESS``, or else Ray's own ``RAY_ADDRESS``
    (``ray://head:10001`` or ``head:6379``)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_RAY_", extra="ignore", populate_by_name=True)

    address: str | None = Field(
        None, validation_alias=AliasChoices("LLMOPS_RAY_ADDRESS", "RAY_ADDRESS", "address")
    )
    num_cpus: int | None = Field(None, ge=1)


class AuthSettings(BaseSettings):
    """gRPC API keys (prefix ``LLMOPS_``): ``LLMOPS_API_KEYS=key1,key2``."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore")

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    auth_disabled: bool = False

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)

    @model_validator(mode="after")
    def _keys_or_disabled(self) -> AuthSettings:
        if not self.api_keys and not self.auth_disabled:
            raise ValueError(
                "LLMOPS_API_KEYS is empty: set one or more comma-separated keys "
                "(or LLMOPS_AUTH_DISABLED=true to serve without authentication)"
            )
        if any(len(k.get_secret_value()) < 16 for k in self.api_keys):
            raise ValueError("LLMOPS_API_KEYS: every key must be at least 16 characters long")
        return self


class PiiSettings(BaseSettings):
    """Which kinds of personal data are redacted (prefix ``LLMOPS_PII_``): ``LLMOPS_PII_KINDS=EMAIL,IBAN``."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_PII_", extra="ignore")

    kinds: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(PII_TYPES),
        description="Comma-separated kinds of llmops.core.pii.PII_TYPES; default: all of them.",
    )

    @field_validator("kinds", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [kind.upper() for kind in comma_list(value)]  # type: ignore[union-attr]
        return value

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        # An empty value would silently turn redaction off; that is the pipelines' own switch.
        if not value:
            raise ValueError(f"LLMOPS_PII_KINDS is empty: name one or more of {', '.join(PII_TYPES)}")
        unknown = sorted(set(value) - set(PII_TYPES))
        if unknown:
            raise ValueError(
                f"LLMOPS_PII_KINDS: unknown kind(s) {', '.join(unknown)}; known: {', '.join(PII_TYPES)}"
            )
        return value

    def kind_set(self) -> frozenset[str]:
        """The kinds to redact, for ``llmops.core.pii.redact_pii(text, kinds)``."""
        return frozenset(self.kinds)


# Default ports, one place, so `make up`, the CLI and the docs agree.
DEFAULT_GRPC_PORTS: dict[str, int] = {
    "ingestion": 50051,
    "labeling": 50052,
    "training": 50053,
    "registry": 50054,
    "serving": 50055,
    "retrieval": 50056,
    "feedback": 50057,
    "monitoring": 50058,
}
DEFAULT_METRICS_PORTS: dict[str, int] = {name: 9100 + i for i, name in enumerate(DEFAULT_GRPC_PORTS, 1)}
# Serving's OpenAI-compatible HTTP API.
DEFAULT_SERVING_HTTP_PORT = 8055


class ClientSettings(BaseSettings):
    """Where clients (the CLI, tests, other services) find each service (prefix ``LLMOPS_``).

    ``LLMOPS_SERVING_ADDRESS=host:port`` and so on; the API key from ``LLMOPS_API_KEY``.
    """

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore")

    api_key: SecretStr | None = None
    tls: bool = Field(False, description="Call services over TLS with the system's root certificates.")
    tls_ca_file: Path | None = Field(None, description="Call services over TLS, trusting this CA file.")
    call_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline of a unary call that sets none of its own."
    )
    ingestion_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['ingestion']}"
    labeling_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['labeling']}"
    training_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['training']}"
    registry_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['registry']}"
    serving_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['serving']}"
    retrieval_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['retrieval']}"
    feedback_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['feedback']}"
    monitoring_address: str = f"{LOOPBACK}:{DEFAULT_GRPC_PORTS['monitoring']}"

    def address(self, service: str) -> str:
        return getattr(self, f"{service}_address")


class ServiceSettings(BaseSettings):
    """What every service has: its name, where it listens, the shared connections.

    A subclass writes its name once (``service_name = "labeling"``); its prefix
    (``LLMOPS_LABELING_``) and default ports follow from it.
    """

    model_config = SettingsConfigDict(extra="ignore")
    service_name: ClassVar[str]

    host: str = LOOPBACK
    grpc_port: int = Field(
        0, ge=0, le=65535, description="Default: the service's port in DEFAULT_GRPC_PORTS."
    )
    metrics_port: int = Field(
        -1,
        ge=-1,
        le=65535,
        description="0 turns the Prometheus endpoint off; default: DEFAULT_METRICS_PORTS.",
    )
    grace_seconds: float = Field(5.0, ge=0)
    # Which replica this is: with the gRPC port, its identity in consumer groups (Kafka static
    # membership), so a replica that restarts gets its partitions back at once. Default: the host
    # name (a pod's name in a StatefulSet); replicas on one host differ by port.
    instance_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)

    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    clients: ClientSettings = Field(default_factory=ClientSettings)
    # Personal data in what people type (prompts, completions, feedback, queries) is replaced by
    # typed placeholders before it leaves the service that received it: which kinds
    # (LLMOPS_PII_KINDS, default all), and the service's own switch (LLMOPS_<SERVICE>_REDACT_PII).
    pii: PiiSettings = Field(default_factory=PiiSettings)
    redact_pii: bool = True

    def redactor(self) -> Redactor:
        return Redactor(self.pii.kind_set(), enabled=self.redact_pii)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: object) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.__dict__.get("service_name")
        if name is not None:
            cls.model_config["env_prefix"] = f"LLMOPS_{name.upper()}_"

    @model_validator(mode="after")
    def _default_ports(self) -> ServiceSettings:
        name = self.service_name
        if self.grpc_port == 0:
            self.grpc_port = DEFAULT_GRPC_PORTS[name]
        if self.metrics_port == -1:
            self.metrics_port = DEFAULT_METRICS_PORTS[name]
        return self

    @property
    def replica_id(self) -> str:
        """This replica's stable identity: ``<instance_id>-<grpc_port>``."""
        return f"{self.instance_id}-{self.grpc_port}"

    def consumer_group(self, purpose: str = "") -> str:
        """The Kafka consumer group of this service for one of its subscriptions."""
        return f"llmops-{self.service_name}.{purpose}" if purpose else f"llmops-{self.service_name}"


class DatabaseSettings(BaseSettings):
    """The service's metadata database (``LLMOPS_<SERVICE>_DATABASE_URL``), for services that keep one."""

    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL (sqlite:///path or postgresql+psycopg://...); default: SQLite in the "
        "data folder.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from llmops.core.sql import check_database_url

        prefix = cls.model_config.get("env_prefix", "LLMOPS_")
        return check_database_url(value, f"{prefix}DATABASE_URL")

    def resolved_database_url(self) -> str:
        return self.database_url or self.platform.sqlite_url(self.service_name)  # type: ignore[attr-defined]
