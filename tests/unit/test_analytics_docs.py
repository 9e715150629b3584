"""Every ```sql example of docs/analytics.md runs on the analytics store and answers with rows.

A small fixture of every event kind goes in through the store's writers (as monitoring's consumers
write them) and a price is added as an operator would (monitoring stopped, a writing client); then each
example runs through the store's read-only query path, as `llmops sql` runs it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
from llmops.core.clickhouse import connect, migrations_dir
from llmops.monitoring.store.analytics import EVENT_TABLES, AnalyticsStore

DOC = migrations_dir().parents[2] / "docs" / "analytics.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)


def examples() -> list[str]:
    return SQL_BLOCK.findall(DOC.read_text(encoding="utf-8"))


def fixture_events(now: dt.datetime) -> list[Event]:
    """A few minutes of platform life: a canary, answers and feedback, retrieval, training, data."""

    def ago(minutes: float) -> dt.datetime:
        return now - dt.timedelta(minutes=minutes)

    answers = [
        InferenceLogged(
            request_id=f"req-{i}", model="bot", model_version=version, arm=arm, user=f"user-{i % 2}",
            prompt="How long do refunds take?", completion="Five days [1].", prompt_tokens=40 + i,
            completion_tokens=8, latency_ms=100.0 + 10 * i, time_to_first_token_ms=20.0 + i,
            finish_reason="stop", template="support", template_version=2, retrieval_collection="handbook",
            citations=[Citation(index=1, chunk_id="c-1", document_id="doc-1", score=0.8)],
            producer="serving", occurred_at=ago(30 - i),
        )
        for i, (version, arm) in enumerate(
            [("bot/2", "champion"), ("bot/2", "champion"), ("bot/3", "challenger"), ("bot/2", "champion")]
        )
    ]  # fmt: skip
    return [
        *answers,
        FeedbackAccepted(feedback_id="fb-1", request_id="req-0", score=1.0, thumb="up", occurred_at=ago(20)),
        FeedbackAccepted(
            feedback_id="fb-2",
            request_id="req-1",
            score=0.0,
            thumb="down",
            comment="too vague",
            correction="Refunds take five business days.",
            user_id="user-1",
            occurred_at=ago(19),
        ),
        FeedbackAccepted(feedback_id="fb-3", request_id="req-2", score=0.75, occurred_at=ago(18)),
        FeedbackRejected(
            request_id="req-3",
            feedback_id="fb-4",
            reasons=["score must be between 0 and 1, got 7.0"],
            submitted_event_id=uuid.uuid4(),
            occurred_at=ago(17),
        ),
        RetrievalLogged(
            request_id="req-0",
            collection="handbook",
            query="refund time",
            top_k=3,
            chunk_ids=["c-1", "c-2"],
            document_ids=["doc-1", "doc-2"],
            scores=[0.8, 0.5],
            latency_ms=6.0,
            mode="dense",
            occurred_at=ago(30),
        ),
        RetrievalLogged(
            request_id="req-9",
            collection="handbook",
            query="warp drive",
            top_k=3,
            latency_ms=9.0,
            mode="hybrid",
            occurred_at=ago(25),
        ),
        TrainingRequested(
            request_key="feedback-drop-1",
            base_model="smollm2",
            dataset_version_id="dv-1",
            model_name="bot",
            hyperparameters={"learning_rate": 2e-4, "epochs": 1},
            reason="feedback_drop",
            occurred_at=ago(120),
        ),
        *[
            TrainingProgress(
                job_id="job-1",
                step=step,
                total_steps=20,
                epoch=step / 20,
                loss=2.0 - step / 20,
                learning_rate=1e-4,
                tokens_per_second=400.0,
                occurred_at=ago(110 - step),
            )
            for step in (5, 10, 20)
        ],
        TrainingCompleted(
            job_id="job-1",
            model_name="bot",
            base_model="smollm2",
            dataset_version_id="dv-1",
            adapter_uri="file:///artifacts/job-1",
            method="sft_lora",
            metrics={"eval_loss": 1.1},
            occurred_at=ago(89),
        ),
        TrainingProgress(
            job_id="job-2",
            step=1,
            total_steps=20,
            epoch=0.05,
            loss=2.5,
            learning_rate=1e-4,
            occurred_at=ago(60),
        ),
        TrainingFailed(job_id="job-2", reason="RayActorError: worker died", occurred_at=ago(59)),
        ModelVersionRegistered(
            model="bot",
            version=3,
            artifact_uri="file:///artifacts/job-1",
            base_model="smollm2",
            metrics={"eval_loss": 1.1},
            occurred_at=ago(88),
        ),
        ModelAliasChanged(model="bot", alias="champion", version=2, previous_version=1, occurred_at=ago(200)),
        ModelAliasChanged(
            model="bot", alias="challenger", version=3, actor="policy", reason="canary", occurred_at=ago(87)
        ),
        ModelCanaryChanged(
            model="bot",
            alias="champion",
            challenger_alias="challenger",
            share=0.25,
            champion_version=2,
            challenger_version=3,
            actor="policy",
            occurred_at=ago(86),
        ),
        DocumentRaw(
            document_id="doc-1", dataset="handbook", text="Refunds take 5 days.", occurred_at=ago(300)
        ),
        DocumentRaw(document_id="doc-2", dataset="handbook", text="Mail me at a@b.co", occurred_at=ago(300)),
        DocumentCleaned(
            document_id="doc-1",
            dataset="handbook",
            batch_id="b-1",
            snapshot_id="s-1",
            text="Refunds take 5 days.",
            content_hash="h-1",
            occurred_at=ago(299),
        ),
        DocumentCleaned(
            document_id="doc-2",
            dataset="handbook",
            batch_id="b-1",
            snapshot_id="s-1",
            text="Mail me at [EMAIL]",
            content_hash="h-2",
            pii_redacted={"EMAIL": 1},
            occurred_at=ago(299),
        ),
        IngestionBatchCompleted(
            batch_id="b-1",
            dataset="handbook",
            snapshot_id="s-1",
            snapshot_uri="file:///snapshots/s-1",
            counts={"received": 2, "kept": 2},
            occurred_at=ago(298),
        ),
        LabelCreated(
            label_id="l-1",
            task_id="t-1",
            queue="answer-quality",
            source="human",
            labeler_id="ann",
            value="good",
            document_id="doc-1",
            occurred_at=ago(250),
        ),
        DatasetVersionCreated(
            version_id="dv-1",
            dataset="handbook",
            uri="file:///datasets/dv-1",
            train_count=9,
            eval_count=1,
            snapshot_ids=["s-1"],
            queues=["answer-quality"],
            occurred_at=ago(240),
        ),
        DriftDetected(
            model="bot",
            signal="prompt_length",
            statistic="psi",
            value=0.3,
            threshold=0.2,
            window_start=ago(60),
            window_end=ago(0),
            occurred_at=ago(0),
        ),
        AlertRaised(
            rule="feedback_drop", severity="warning", message="thumbs-up share fell", occurred_at=ago(0)
        ),
        LoopStepped(
            loop_id="loop-1", model="bot", step="triggered", reason="feedback fell", occurred_at=ago(0)
        ),
        AnswerJudged(
            request_id="req-0",
            model="bot",
            model_version="bot/1",
            arm="champion",
            judge="judge",
            prompt_version="v1",
            score=0.75,
            rating=4.0,
            judge_answer="4",
            loop_id="loop-1",
            occurred_at=ago(0),
        ),  # fmt: skip
    ]


@pytest.fixture
async def filled_store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    dsn = f"chdb://{tmp_path / 'analytics'}"
    now = dt.datetime.now(dt.UTC)
    events = fixture_events(now)
    assert {type(e) for e in events} == set(EVENT_TABLES)
    writing = AnalyticsStore(dsn)
    try:
        await writing.open()
        for event in events:
            assert await writing.insert(type(event), [event]) == 1
    finally:
        await writing.close()
    # A price, as docs/analytics.md tells an operator to add one: monitoring stopped, a client that writes.
    client = connect(dsn)
    try:
        client.insert(
            "model_prices",
            [["bot", now - dt.timedelta(days=30), 0.05, 0.2, "EUR", "test fixture"]],
            column_names=[
                "model",
                "valid_from",
                "prompt_price_per_1m_tokens",
                "completion_price_per_1m_tokens",
                "currency",
                "source",
            ],
        )
        # What a drift run writes (monitoring's drift job, through its own store).
        client.insert(
            "drift_results",
            [["r-1", now, "schedule", "bot", "bot/1", "champion", "", "", "prompt_tokens", "psi", 0.31, None,
              0.2, None, True, "ok", "", 400, 120, now - dt.timedelta(hours=1), now,
              now - dt.timedelta(days=1), now - dt.timedelta(hours=1)]],
            column_names=[
                "report_id", "computed_at", "source", "model", "model_version", "arm", "collection", "mode",
                "signal", "statistic", "value", "p_value", "threshold", "alpha", "drifted", "status", "note",
                "reference_count", "current_count", "window_start", "window_end", "reference_start",
                "reference_end",
            ],
        )  # fmt: skip
    finally:
        client.close()
    store = AnalyticsStore(dsn)
    try:
        await store.open()
        yield store
    finally:
        await store.close()


def test_the_doc_has_examples_for_every_table_and_view() -> None:
    text = "\n".join(examples())
    named = [
        *(f"{t.table}_v" for t in EVENT_TABLES.values()),
        "model_prices",
        "inference_with_feedback",
        "quality_hourly",
        "usage_by_caller",
        "retrieval_scores_hourly",
        "training_runs_v",
        "model_aliases_current",
        "model_canaries_current",
        "drift_results_v",
    ]
    assert [name for name in named if name not in text] == []
    assert len(examples()) >= 25


async def test_every_example_runs_and_answers(filled_store: AnalyticsStore) -> None:
    failures = []
    for sql in examples():
        try:
            result = await filled_store.query(sql, {}, 1000)
        except Exception as exc:  # noqa: BLE001 - collect every failing example, not only the first
            failures.append(f"{sql}\n-> {exc}")
            continue
        if not result.rows:
            failures.append(f"{sql}\n-> no rows")
    assert failures == []


async def test_cost_per_caller_uses_the_price(filled_store: AnalyticsStore) -> None:
    result = await filled_store.query(
        "SELECT sum(total_tokens), sum(unpriced_tokens), round(sum(cost), 9), any(currency)"
        " FROM usage_by_caller"
    )
    # 4 answers: 40+41+42+43 prompt tokens at 0.05 and 4 x 8 completion tokens at 0.2 per million.
    assert result.rows == [[198, 0, round((166 * 0.05 + 32 * 0.2) / 1e6, 9), "EUR"]]
