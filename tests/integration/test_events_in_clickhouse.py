"""Every event kind the platform emits, published on the real broker, is in ClickHouse exactly once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.events import (
    AlertRaised,
    AnswerJudged,
    Citation,
    DatasetVersionCreated,
    DocumentCleaned,
    DocumentRaw,
    DriftDetected,
    Event,
    FeedbackAccepted,
    FeedbackRejected,
    InferenceLogged,
    IngestionBatchCompleted,
    LabelCreated,
    LoopStepped,
    ModelAliasChanged,
    ModelCanaryChanged,
    ModelVersionRegistered,
    RetrievalLogged,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from llmops.monitoring.app import CONSUMED
from llmops.monitoring.store.analytics import EVENT_TABLES
from llmops.testing.platform import caught_up, eventually, publish_raw, query_monitoring, running_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("events"), ["monitoring"]) as platform:
        yield platform


def one_of_each(run: str) -> list[Event]:
    """One event of every kind monitoring stores, with ids unique to this run."""
    now = dt.datetime.now(dt.UTC)
    return [
        InferenceLogged(
            request_id=f"{run}-req", model="bot", model_version="bot/3", arm="champion", prompt="Hi?",
            completion="Hello [1].", prompt_tokens=3, completion_tokens=2, latency_ms=50.0,
            time_to_first_token_ms=10.0,
            citations=[Citation(index=1, chunk_id="c", document_id="d", score=0.5)],
        ),
        FeedbackAccepted(feedback_id=f"{run}-fb", request_id=f"{run}-req", score=1.0, thumb="up"),
        FeedbackRejected(request_id=f"{run}-req", feedback_id=f"{run}-fb2", reasons=["no signal"]),
        RetrievalLogged(
            request_id=f"{run}-req", collection="handbook", query="hi", top_k=2, chunk_ids=["c"],
            document_ids=["d"], scores=[0.5], latency_ms=3.0,
        ),
        TrainingRequested(
            request_key=f"{run}-key", base_model="smollm2", dataset_version_id="dv", model_name="bot",
            hyperparameters={"learning_rate": 1e-4, "target_modules": ["q_proj"]},
        ),
        TrainingProgress(job_id=f"{run}-job", step=1, total_steps=2, epoch=0.5, loss=1.5, learning_rate=1e-4),
        TrainingCompleted(
            job_id=f"{run}-job", model_name="bot", base_model="smollm2", dataset_version_id="dv",
            adapter_uri=f"file:///a/{run}", method="sft_lora", metrics={"eval_loss": 1.0},
        ),
        TrainingFailed(job_id=f"{run}-job2", reason="OOM"),
        ModelVersionRegistered(
            model=f"{run}-m", version=1, artifact_uri=f"file:///a/{run}", base_model="smollm2"
        ),
        ModelAliasChanged(model=f"{run}-m", alias="champion", version=1),
        ModelCanaryChanged(model=f"{run}-m", alias="champion", challenger_alias="challenger", share=0.1),
        DocumentRaw(document_id=f"{run}-doc", dataset="handbook", text="Some text."),
        DocumentCleaned(
            document_id=f"{run}-doc", dataset="handbook", batch_id=f"{run}-b", snapshot_id="s",
            text="Some text.", content_hash="h",
        ),
        IngestionBatchCompleted(
            batch_id=f"{run}-b", dataset="handbook", snapshot_id="s", snapshot_uri="file:///s",
            counts={"kept": 1},
        ),
        LabelCreated(
            label_id=f"{run}-l", task_id=f"{run}-t", queue="q", source="rule", labeler_id="r", value="ok"
        ),
        DatasetVersionCreated(
            version_id=f"{run}-dv", dataset="handbook", uri="file:///dv", train_count=1, eval_count=0
        ),
        DriftDetected(
            model=f"{run}-m", signal="prompt_length", statistic="psi", value=0.3, threshold=0.2,
            window_start=now - dt.timedelta(hours=1), window_end=now, model_version="3", arm="challenger",
            p_value=1e-5, alpha=0.01, report_id=f"{run}-r",
        ),
        AlertRaised(
            rule=f"{run}-rule", severity="info", message="a test alert", query="SELECT 1",
            values={"observed": 2.0}, window_start=now - dt.timedelta(hours=1), window_end=now,
        ),
        LoopStepped(loop_id=f"{run}-loop", model=f"{run}-m", step="triggered", reason="a test loop"),
        AnswerJudged(
            request_id=f"{run}-r", model=f"{run}-m", judge="judge", prompt_version="v1", score=0.5, rating=3.0
        ),
    ]  # fmt: skip


def copies_in_clickhouse(platform: LocalPlatform, events: list[Event]) -> dict[str, int]:
    """How many rows each event has in its table's _v view, by event type name."""
    counts = {}
    for event in events:
        view = f"{EVENT_TABLES[type(event)].table}_v"
        rows = query_monitoring(
            platform, f"SELECT count() FROM {view} WHERE event_id = {{e:UUID}}", e=str(event.event_id)
        )
        counts[type(event).__name__] = int(rows[0][0])
    return counts


async def test_one_event_of_each_kind_is_stored_once_even_when_redelivered(platform: LocalPlatform) -> None:
    run = uuid.uuid4().hex[:8]
    events = one_of_each(run)
    assert {type(e) for e in events} == set(EVENT_TABLES) == set(CONSUMED)
    for event in events:
        await publish_raw(
            platform.bootstrap_servers, event.topic, [event.model_dump_json().encode()], key=event.kafka_key()
        )
    expected = {type(e).__name__: 1 for e in events}
    await eventually(lambda: copies_in_clickhouse(platform, events) == expected, timeout=120)

    # Redelivery: the same messages again (what a producer retry or a consumer crash before its commit
    # gives), and one of them twice more in one batch.
    for event in events:
        await publish_raw(
            platform.bootstrap_servers, event.topic, [event.model_dump_json().encode()], key=event.kafka_key()
        )
    twice = events[3]
    await publish_raw(platform.bootstrap_servers, twice.topic, [twice.model_dump_json().encode()] * 2)

    async def all_consumed() -> bool:
        for event_type, purpose in CONSUMED.items():
            if not await caught_up(
                platform.bootstrap_servers, f"llmops-monitoring.{purpose}", event_type.topic
            ):
                return False
        return True

    await eventually(all_consumed, timeout=60)
    assert copies_in_clickhouse(platform, events) == expected
