"""Feedback into training data: a user's correction labels its review task (a reviewer wins), two
differently rated answers to one prompt make a preference pair (a labeler wins), both stable under
redelivery, and dataset versions for one registered model and time window."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.contracts.events import FeedbackAccepted
from llmops.core.artifacts import ArtifactStore
from llmops.labeling.domain.errors import InvalidArgument
from llmops.labeling.domain.feedback import (
    CORRECTION_LABELER,
    PREFERENCE_LABELER,
    Answer,
    RatedAnswer,
    preference_pairs,
    registered_model,
    review_task,
)
from llmops.labeling.domain.models import (
    DerivedLabel,
    DerivedTask,
    LabelSource,
    Preference,
    TaskInput,
)
from llmops.labeling.domain.versions import read_parquet
from llmops.labeling.store import LabelingStore
from llmops.labeling.workflows import Labeling, PairSettings

REVIEW, PAIRS = "feedback-review", "feedback-pairs"
PROMPT = "What is the capital of France?"
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _answer(request_id: str, completion: str, model: str = "geo@champion", prompt: str = PROMPT) -> Answer:
    return Answer(request_id, model, prompt, completion, model_version="3", arm="champion")


def _feedback(request_id: str, score: float, correction: str = "", feedback_id: str = "") -> FeedbackAccepted:
    return FeedbackAccepted(
        feedback_id=feedback_id or f"fb-{request_id}-{score}",
        request_id=request_id,
        score=score,
        correction=correction,
        occurred_at=T0,
        producer="test",
    )


class FakeMonitoring:
    """Monitoring's inference log, as the answer lookup sees it."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}

    def answered(self, answer: Answer) -> None:
        self.answers[answer.request_id] = answer

    async def inference(self, request_id: str) -> dict[str, str] | None:
        a = self.answers.get(request_id)
        if a is None:
            return None
        return {
            "model": a.model,
            "model_version": a.model_version,
            "arm": a.arm,
            "prompt": a.prompt,
            "completion": a.completion,
            "error": a.error,
        }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LabelingStore]:
    s = LabelingStore(f"sqlite:///{tmp_path}/labeling.db")
    yield s
    s.close()


@pytest.fixture
def monitoring() -> FakeMonitoring:
    return FakeMonitoring()


@pytest.fixture
def labeling(store: LabelingStore, monitoring: FakeMonitoring, tmp_path: Path) -> Labeling:
    labeling = Labeling(
        store,
        ArtifactStore(str(tmp_path / "artifacts")),
        judge_client=None,
        inference_lookup=monitoring.inference,
        review_queue=REVIEW,
        review_max_score=0.5,
        inference_lookup_seconds=0,
        pairs=PairSettings(PAIRS, min_score_gap=0.1, per_feedback=3),
    )
    labeling.ensure_feedback_queues()
    return labeling


async def _version(labeling: Labeling, queue: str, **kwargs: object) -> list:
    version = await labeling.create_dataset_version(
        kwargs.pop("dataset", f"{queue}-data"),  # type: ignore[arg-type]
        [queue],
        kwargs.pop("filter", {}),  # type: ignore[arg-type]
        [],
        0.0,
        0,
        "",
        **kwargs,  # type: ignore[arg-type]
    )
    with ArtifactStore.open_uri(version.uri) as f:
        return read_parquet(io.BytesIO(f.read()))  # type: ignore[arg-type]


def _label_next(store: LabelingStore, queue: str, labeler: str, value: object) -> None:
    task = store.next_task(queue, labeler)
    assert task is not None
    store.submit_label(task.task_id, task.lease_id, labeler, value)


# --- corrections ---------------------------------------------------------------------------------


def test_registered_model_drops_the_alias_or_version() -> None:
    assert registered_model("geo@champion") == "geo"
    assert registered_model("geo/3") == "geo"
    assert registered_model("org/geo") == "org/geo"
    assert registered_model("geo") == "geo"


async def test_a_users_correction_becomes_an_sft_example_without_a_reviewer(
    labeling: Labeling, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Lyon."))
    await labeling.on_feedback(_feedback("r1", 0.0, correction="Paris."))

    rows = await _version(labeling, REVIEW)
    assert [(r.prompt, r.completion, r.label_source) for r in rows] == [(PROMPT, "Paris.", "feedback")]
    assert rows[0].labeler_ids == (CORRECTION_LABELER,)
    meta = rows[0].metadata
    assert (meta["registered_model"], meta["model"], meta["model_version"], meta["arm"]) == (
        "geo",
        "geo@champion",
        "3",
        "champion",
    )
    assert meta["feedback_at"] == T0.isoformat() and meta["user_correction"] == "Paris."


async def test_a_reviewers_correction_wins_over_the_users(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Lyon."))
    await labeling.on_feedback(_feedback("r1", 0.0, correction="paris"))
    # The task stays open to reviewers: the user's label does not complete it.
    _label_next(store, REVIEW, "reviewer", "Paris is the capital of France.")

    rows = await _version(labeling, REVIEW)
    assert [(r.completion, r.label_source, r.labeler_ids) for r in rows] == [
        ("Paris is the capital of France.", "human", ("reviewer",))
    ]


async def test_low_score_without_correction_waits_for_a_reviewer(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Lyon."))
    await labeling.on_feedback(_feedback("r1", 0.1))
    assert store.get_queue(REVIEW).total_tasks == 1
    with pytest.raises(InvalidArgument, match="no labeled example"):
        await _version(labeling, REVIEW)


async def test_a_correction_without_the_answer_makes_a_task_but_no_label(
    labeling: Labeling, store: LabelingStore
) -> None:
    # The inference log never had the answer: there is no prompt to pair the correction with.
    await labeling.on_feedback(_feedback("lost", 0.0, correction="Paris."))
    task = store.next_task(REVIEW, "reviewer")
    assert task is not None and task.input.metadata["inference_missing"] == "true"
    assert store.list_labels(REVIEW).items == []


async def test_a_redelivered_correction_makes_one_task_and_one_label(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Lyon."))
    event = _feedback("r1", 0.0, correction="Paris.")
    for _ in range(3):
        await labeling.on_feedback(event)
    assert store.get_queue(REVIEW).total_tasks == 1
    assert [label.source for label in store.list_labels(REVIEW).items] == [LabelSource.FEEDBACK]


# --- preference pairs ----------------------------------------------------------------------------


async def test_two_differently_rated_answers_make_a_dpo_pair(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r-good", "Paris."))
    monitoring.answered(_answer("r-bad", "Lyon."))
    # The two scores come back to back: the second finds the first in labeling's own record.
    await labeling.on_feedback(_feedback("r-good", 1.0))
    await labeling.on_feedback(_feedback("r-bad", 0.0))

    rows = await _version(labeling, PAIRS)
    assert [(r.prompt, r.chosen, r.rejected, r.label_source) for r in rows] == [
        (PROMPT, "Paris.", "Lyon.", "feedback")
    ]
    assert rows[0].labeler_ids == (PREFERENCE_LABELER,)
    meta = rows[0].metadata
    assert meta["registered_model"] == "geo" and meta["model_version"] == "3" and meta["arm"] == "champion"
    assert (meta["request_id_a"], meta["request_id_b"]) == ("r-bad", "r-good")
    assert (meta["score_a"], meta["score_b"]) == ("0.0", "1.0") and meta["feedback_at"] == T0.isoformat()


async def test_equal_scores_make_no_pair(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Paris."))
    monitoring.answered(_answer("r2", "It is Paris."))
    await labeling.on_feedback(_feedback("r1", 1.0))
    await labeling.on_feedback(_feedback("r2", 1.0))
    assert store.get_queue(PAIRS).total_tasks == 0


def test_only_answers_to_the_same_prompt_from_the_same_model_with_a_real_gap_pair_up() -> None:
    answer = _answer("r0", "Lyon.")
    others = [
        RatedAnswer(_answer("same-score", "Marseille."), 0.05),  # gap 0.05 < 0.1
        RatedAnswer(_answer("same-text", "Lyon."), 1.0),  # nothing to prefer
        RatedAnswer(_answer("other-model", "Paris.", model="maps@champion"), 1.0),
        RatedAnswer(_answer("other-prompt", "Berlin.", prompt="Capital of Germany?"), 1.0),
        RatedAnswer(_answer("other-version", "Paris.", model="geo/2"), 1.0),  # same registered model
    ]
    pairs = preference_pairs(PAIRS, _feedback("r0", 0.0), answer, others, min_score_gap=0.1, limit=5)
    assert [p.input.metadata["request_id_a"] for p in pairs] == ["other-version"]
    assert pairs[0].label is not None and pairs[0].label.value is Preference.A


def test_pairs_take_the_largest_gaps_first_up_to_the_limit() -> None:
    others = [RatedAnswer(_answer(f"r{i}", f"answer {i}"), i / 10) for i in range(1, 10)]
    pairs = preference_pairs(
        PAIRS, _feedback("r0", 0.0), _answer("r0", "x"), others, min_score_gap=0.1, limit=2
    )
    assert [p.input.metadata["request_id_b"] for p in pairs] == ["r9", "r8"]


async def test_the_same_two_answers_make_one_pair_whichever_feedback_finds_them(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Paris."))
    monitoring.answered(_answer("r2", "Lyon."))
    # r1's feedback finds r2's; redelivered, and with a second feedback on r2, they find each other
    # again: one pair, one label.
    await labeling.on_feedback(_feedback("r2", 0.2))
    await labeling.on_feedback(_feedback("r2", 0.2))
    await labeling.on_feedback(_feedback("r1", 0.9))
    await labeling.on_feedback(_feedback("r1", 0.9))
    await labeling.on_feedback(_feedback("r2", 0.1))
    assert store.get_queue(PAIRS).total_tasks == 1
    labels = store.list_labels(PAIRS).items
    assert [(label.source, label.value) for label in labels] == [(LabelSource.FEEDBACK, Preference.A)]


async def test_a_failed_answer_is_never_paired(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r-good", "Paris."))
    failed = _answer("r-failed", "Par")
    monitoring.answered(Answer(**{**failed.__dict__, "error": "UNAVAILABLE"}))
    await labeling.on_feedback(_feedback("r-good", 1.0))
    await labeling.on_feedback(_feedback("r-failed", 0.0))
    assert store.get_queue(PAIRS).total_tasks == 0
    assert store.get_queue(REVIEW).total_tasks == 1  # the low score is still reviewed
    # Nor is it a partner for a later answer: only r-good's score was recorded.
    monitoring.answered(_answer("r-late", "Lyon."))
    await labeling.on_feedback(_feedback("r-late", 0.0))
    rows = await _version(labeling, PAIRS)
    assert [(r.chosen, r.rejected) for r in rows] == [("Paris.", "Lyon.")]


async def test_a_redelivered_score_counts_once(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Paris."))
    monitoring.answered(_answer("r2", "Lyon."))
    await labeling.on_feedback(_feedback("r1", 0.0, feedback_id="fb-a"))
    await labeling.on_feedback(_feedback("r1", 0.0, feedback_id="fb-a"))  # redelivered
    await labeling.on_feedback(_feedback("r1", 1.0, feedback_id="fb-b"))
    await labeling.on_feedback(_feedback("r2", 0.0))
    (row,) = await _version(labeling, PAIRS)
    # r1's mean is (0 + 1) / 2, not (0 + 0 + 1) / 3.
    assert (row.metadata["request_id_a"], row.metadata["score_a"]) == ("r1", "0.5")


async def test_answers_are_compared_mean_with_mean(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r1", "Paris."))
    monitoring.answered(_answer("r2", "Paris, the capital."))
    for i in range(2):
        await labeling.on_feedback(_feedback("r1", 0.9, feedback_id=f"fb-r1-{i}"))
        await labeling.on_feedback(_feedback("r2", 0.9, feedback_id=f"fb-r2-{i}"))
    # One low rating of r2, which users otherwise liked: its mean is 0.83, within 0.1 of r1's 0.9.
    # (Its own 0.7 against r1's mean would have made r2 the rejected side.)
    await labeling.on_feedback(_feedback("r2", 0.7, feedback_id="fb-r2-low"))
    assert store.get_queue(PAIRS).total_tasks == 0
    # Rated low again, r2's mean (0.75) is 0.15 below r1's: now it is the rejected side.
    await labeling.on_feedback(_feedback("r2", 0.5, feedback_id="fb-r2-lower"))
    (row,) = await _version(labeling, PAIRS)
    assert (row.chosen, row.rejected) == ("Paris.", "Paris, the capital.")
    assert (row.metadata["score_a"], row.metadata["score_b"]) == ("0.9", repr((0.9 + 0.9 + 0.7 + 0.5) / 4))


async def test_a_labelers_choice_wins_over_the_scores(
    labeling: Labeling, store: LabelingStore, monitoring: FakeMonitoring
) -> None:
    monitoring.answered(_answer("r-good", "Paris."))
    monitoring.answered(_answer("r-bad", "Paris, on the Seine."))
    await labeling.on_feedback(_feedback("r-good", 1.0))
    await labeling.on_feedback(_feedback("r-bad", 0.0))
    # Candidate A is "r-bad" (ordered by request id); the labeler prefers it despite its score.
    _label_next(store, PAIRS, "alice", "A")

    rows = await _version(labeling, PAIRS)
    assert [(r.chosen, r.rejected, r.label_source) for r in rows] == [
        ("Paris, on the Seine.", "Paris.", "human")
    ]


async def test_pairs_off_without_a_queue(
    store: LabelingStore, monitoring: FakeMonitoring, tmp_path: Path
) -> None:
    labeling = Labeling(
        store,
        ArtifactStore(str(tmp_path / "artifacts")),
        judge_client=None,
        inference_lookup=monitoring.inference,
        review_queue=REVIEW,
        review_max_score=0.5,
        inference_lookup_seconds=0,
        pairs=PairSettings(""),
    )
    labeling.ensure_feedback_queues()
    monitoring.answered(_answer("r1", "Paris."))
    monitoring.answered(_answer("r2", "Lyon."))
    await labeling.on_feedback(_feedback("r1", 1.0))
    await labeling.on_feedback(_feedback("r2", 0.9))  # above the review threshold: nothing at all
    assert [q.name for q in store.list_queues().items] == [REVIEW]
    assert store.get_queue(REVIEW).total_tasks == 0


# --- datasets for one model and time window ------------------------------------------------------


async def test_a_dataset_for_one_registered_model(labeling: Labeling, monitoring: FakeMonitoring) -> None:
    monitoring.answered(_answer("r1", "Lyon."))
    monitoring.answered(_answer("r2", "Lyon.", model="maps/4"))
    await labeling.on_feedback(_feedback("r1", 0.0, correction="Paris."))
    await labeling.on_feedback(_feedback("r2", 0.0, correction="Paris, France."))

    geo = await _version(labeling, REVIEW, dataset="geo-sft", filter={"registered_model": "geo"})
    maps = await _version(labeling, REVIEW, dataset="maps-sft", filter={"registered_model": "maps"})
    assert [r.completion for r in geo] == ["Paris."] and [r.completion for r in maps] == ["Paris, France."]


def test_created_after_keeps_only_newer_tasks(store: LabelingStore, labeling: Labeling) -> None:
    def derived(doc: str, text: str) -> DerivedTask:
        label = DerivedLabel(LabelSource.FEEDBACK, CORRECTION_LABELER, text)
        return DerivedTask(REVIEW, TaskInput(document_id=doc, prompt="p", response="r"), label)

    store.create_derived_tasks([derived("old", "old fix")], now=T0)
    store.create_derived_tasks([derived("new", "new fix")], now=T0 + dt.timedelta(days=2))
    newer = store.tasks_with_labels([REVIEW], created_after=T0 + dt.timedelta(days=1))
    assert [t.task.input.document_id for t in newer] == ["new"]
    assert len(store.tasks_with_labels([REVIEW])) == 2


def test_derived_tasks_are_stored_all_or_nothing(store: LabelingStore, labeling: Labeling) -> None:
    good = DerivedTask(REVIEW, TaskInput(document_id="a", prompt="p", response="r"))
    bad = DerivedTask(
        PAIRS,
        TaskInput(document_id="b", prompt="p", candidate_a="x", candidate_b="y"),
        DerivedLabel(LabelSource.FEEDBACK, PREFERENCE_LABELER, "not a preference"),
    )
    with pytest.raises(Exception, match="preference"):
        store.create_derived_tasks([good, bad])
    assert store.get_queue(REVIEW).total_tasks == 0 and store.get_queue(PAIRS).total_tasks == 0


def test_review_task_keeps_what_it_always_had() -> None:
    task = review_task(REVIEW, _feedback("r1", 0.0, correction="Paris."), _answer("r1", "Lyon."))
    assert task.input.document_id == "feedback:fb-r1-0.0" and task.input.response == "Lyon."
    assert task.input.metadata["feedback_score"] == "0.0" and task.input.metadata["request_id"] == "r1"
    assert (
        task.label is not None and task.label.value == "Paris." and task.label.source is LabelSource.FEEDBACK
    )
