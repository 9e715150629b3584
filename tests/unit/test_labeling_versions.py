"""Dataset versions: resolution rules, content-hashed ids, deterministic split, Parquet files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmops.labeling.domain.errors import InvalidArgument
from llmops.labeling.domain.models import (
    Label,
    LabeledTask,
    LabelSource,
    LabelValue,
    Preference,
    Task,
    TaskInput,
    TaskState,
    TaskType,
)
from llmops.labeling.domain.versions import (
    DPO_COLUMNS,
    SFT_COLUMNS,
    Excluded,
    build_dataset_version,
    compute_version_id,
    read_parquet,
    resolve_task,
    split_of,
    training_columns,
    write_parquet,
)

T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
HUMAN, RULE, JUDGE = LabelSource.HUMAN, LabelSource.RULE, LabelSource.JUDGE


def _task(
    task_id: str,
    task_type: TaskType,
    labels: list[tuple[LabelSource, str, LabelValue]],
    *,
    instructions: str = "",
    **fields: object,
) -> LabeledTask:
    inp = TaskInput(**fields)  # type: ignore[arg-type]
    task = Task(task_id, "q", task_type, inp, TaskState.COMPLETED, T0, label_count=len(labels))
    stored = tuple(
        Label(
            label_id=f"{task_id}-l{i}",
            task_id=task_id,
            queue="q",
            source=source,
            labeler_id=labeler,
            value=value,
            created_at=T0 + dt.timedelta(minutes=i),
        )
        for i, (source, labeler, value) in enumerate(labels)
    )
    return LabeledTask(task, stored, instructions)


def _classification(n: int, start: int = 0) -> list[LabeledTask]:
    return [
        _task(
            f"task-{i:05d}",
            TaskType.CLASSIFICATION,
            [(HUMAN, "alice", "pos" if i % 3 else "neg"), (HUMAN, "bob", "pos")],
            text=f"text {i}",
            document_id=f"doc-{i}",
            snapshot_id="snap-1" if i % 2 else "snap-2",
            metadata={"lang": "en"},
        )
        for i in range(start, start + n)
    ]


# --- ids ---------------------------------------------------------------------------------------


def test_same_inputs_give_the_same_id_in_another_process() -> None:
    tasks = _classification(40)
    first = build_dataset_version("reviews", tasks, eval_fraction=0.25, seed=7, now=T0)
    shuffled = build_dataset_version(
        "reviews", list(reversed(tasks)), eval_fraction=0.25, seed=7, now=T0 + dt.timedelta(days=1)
    )
    assert first.version.version_id == shuffled.version.version_id
    assert first.examples == shuffled.examples
    assert len(first.version.version_id) == 64

    # A second run in a fresh interpreter (different hash randomisation) gives the same id.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_labeling_versions as t; "
        "print(t.build_dataset_version('reviews', t._classification(40), eval_fraction=0.25, seed=7)"
        ".version.version_id)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == first.version.version_id


def test_the_id_changes_with_the_content_and_the_split_parameters() -> None:
    tasks = _classification(20)
    base = build_dataset_version("reviews", tasks, eval_fraction=0.2, seed=1).version.version_id
    ids = {
        base,
        build_dataset_version("reviews", _classification(21), eval_fraction=0.2, seed=1).version.version_id,
        build_dataset_version("reviews", tasks, eval_fraction=0.3, seed=1).version.version_id,
        build_dataset_version("reviews", tasks, eval_fraction=0.2, seed=2).version.version_id,
        build_dataset_version("other", tasks, eval_fraction=0.2, seed=1).version.version_id,
    }
    assert len(ids) == 5
    relabeled = [*tasks[:-1], _task("task-00019", TaskType.CLASSIFICATION, [(HUMAN, "a", "neg")], text="t")]
    assert build_dataset_version("reviews", relabeled, eval_fraction=0.2, seed=1).version.version_id != base
    # The description is not content.
    same = build_dataset_version("reviews", tasks, eval_fraction=0.2, seed=1, description="new")
    assert same.version.version_id == base


# --- split -------------------------------------------------------------------------------------


def test_split_is_deterministic_close_to_the_fraction_and_stable_when_examples_are_added() -> None:
    build = build_dataset_version("big", _classification(2000), eval_fraction=0.2, seed=42)
    eval_share = build.version.eval_count / 2000
    assert 0.17 < eval_share < 0.23
    assert build.version.train_count + build.version.eval_count == 2000
    assert all(e.split == split_of(e.example_id, 42, 0.2) for e in build.examples)

    grown = build_dataset_version("big", _classification(2500), eval_fraction=0.2, seed=42)
    before = {e.example_id: e.split for e in build.examples}
    assert all(before[e.example_id] == e.split for e in grown.examples if e.example_id in before)

    other_seed = build_dataset_version("big", _classification(2000), eval_fraction=0.2, seed=43)
    assert [e.split for e in other_seed.examples] != [e.split for e in build.examples]
    none_held_out = build_dataset_version("big", _classification(50), eval_fraction=0.0, seed=42)
    assert none_held_out.version.eval_count == 0


# --- resolution rules --------------------------------------------------------------------------


def test_humans_always_win_over_rules_and_judges() -> None:
    task = _task(
        "t1",
        TaskType.CLASSIFICATION,
        [(RULE, "rule:kw@1", "pos"), (JUDGE, "judge:p@1/judge", "pos"), (HUMAN, "alice", "neg")],
        text="meh",
    )
    example, used = resolve_task(task)
    assert not isinstance(example, Excluded)
    assert (example.label, example.label_source, example.labeler_ids) == ("neg", "human", ("alice",))
    assert [label.labeler_id for label in used] == ["alice"]

    programmatic_only = _task(
        "t2", TaskType.CLASSIFICATION, [(RULE, "rule:kw@1", "pos"), (JUDGE, "judge:p@1", "pos")], text="x"
    )
    example, _ = resolve_task(programmatic_only)
    assert not isinstance(example, Excluded)
    assert (example.label, example.label_source) == ("pos", "judge+rule")

    # With humans excluded by the caller, the programmatic labels are used.
    example, _ = resolve_task(task, sources={RULE})
    assert not isinstance(example, Excluded)
    assert (example.label, example.label_source) == ("pos", "rule")
    example, _ = resolve_task(task, sources={JUDGE, HUMAN})
    assert not isinstance(example, Excluded) and example.label == "neg"


def test_classification_majority_tie_break_and_sft_form() -> None:
    majority = _task(
        "t1",
        TaskType.CLASSIFICATION,
        [(HUMAN, "a", "pos"), (HUMAN, "b", "neg"), (HUMAN, "c", "pos")],
        instructions="Is the review positive?",
        text="Great phone.",
    )
    example, _ = resolve_task(majority)
    assert not isinstance(example, Excluded)
    assert (example.label, example.resolution) == ("pos", "majority")
    assert example.prompt == "Is the review positive?\n\nGreat phone."
    assert example.completion == "pos"

    tie = _task("t2", TaskType.CLASSIFICATION, [(HUMAN, "a", "pos"), (HUMAN, "b", "neg")], text="ok")
    example, _ = resolve_task(tie)
    assert not isinstance(example, Excluded)
    assert (example.label, example.resolution) == ("neg", "tie:neg|pos")
    assert example.prompt == "ok"  # no instructions: the text alone
    assert training_columns(TaskType.CLASSIFICATION) == SFT_COLUMNS


def test_rating_mean_and_correction_latest() -> None:
    rating = _task(
        "r1",
        TaskType.RATING,
        [(HUMAN, "a", 4.0), (HUMAN, "b", 5.0), (HUMAN, "c", 5.0), (JUDGE, "judge:x@1", 1.0)],
        prompt="Q?",
        response="A.",
    )
    example, _ = resolve_task(rating)
    assert not isinstance(example, Excluded)
    assert example.rating == pytest.approx(14 / 3)
    assert (example.prompt, example.completion, example.resolution) == ("Q?", "A.", "mean")
    assert training_columns(TaskType.RATING) == ("prompt", "completion", "rating")

    correction = _task(
        "c1",
        TaskType.CORRECTION,
        [(HUMAN, "a", "first fix"), (HUMAN, "b", "second fix"), (JUDGE, "judge:x@1", "judge fix")],
        prompt="Summarise.",
        response="bad summary",
    )
    example, used = resolve_task(correction)
    assert not isinstance(example, Excluded)
    assert (example.prompt, example.completion) == ("Summarise.", "second fix")
    assert example.labeler_ids == ("b",) and [label.labeler_id for label in used] == ["b"]


def test_pairwise_majority_and_ties_are_excluded() -> None:
    def pairwise(task_id: str, prefs: list[Preference]) -> LabeledTask:
        labels = [(HUMAN, f"h{i}", p) for i, p in enumerate(prefs)]
        return _task(
            task_id, TaskType.PAIRWISE_PREFERENCE, labels, prompt="P", candidate_a="A", candidate_b="B"
        )

    b_wins, _ = resolve_task(pairwise("p1", [Preference.B, Preference.B, Preference.A]))
    assert not isinstance(b_wins, Excluded)
    assert (b_wins.prompt, b_wins.chosen, b_wins.rejected, b_wins.label) == ("P", "B", "A", "B")
    assert training_columns(TaskType.PAIRWISE_PREFERENCE) == DPO_COLUMNS

    tie_majority, _ = resolve_task(pairwise("p2", [Preference.TIE, Preference.TIE, Preference.A]))
    split_vote, _ = resolve_task(pairwise("p3", [Preference.A, Preference.B]))
    assert isinstance(tie_majority, Excluded) and "TIE" in tie_majority.reason
    assert isinstance(split_vote, Excluded) and "tie" in split_vote.reason

    build = build_dataset_version(
        "prefs",
        [pairwise("p1", [Preference.A]), pairwise("p2", [Preference.TIE]), pairwise("p3", [Preference.B])],
        eval_fraction=0.0,
        seed=0,
    )
    assert sorted(e.task_id for e in build.examples) == ["p1", "p3"]
    assert [e.task_id for e in build.excluded] == ["p2"]


def test_lineage_and_invalid_builds() -> None:
    build = build_dataset_version("reviews", _classification(10), eval_fraction=0.5, seed=3)
    lineage = build.version.lineage
    assert lineage.snapshot_ids == ("snap-1", "snap-2")
    assert lineage.labeler_ids == ("alice", "bob")
    assert lineage.label_ids_count == 20 and lineage.queues == ("q",)
    assert build.version.task_type is TaskType.CLASSIFICATION

    rating = _task("r", TaskType.RATING, [(HUMAN, "a", 3.0)], response="x")
    with pytest.raises(InvalidArgument, match="one task type"):
        build_dataset_version("mixed", [*_classification(2), rating], eval_fraction=0.1, seed=0)
    with pytest.raises(InvalidArgument, match="eval_fraction"):
        build_dataset_version("reviews", _classification(2), eval_fraction=1.0, seed=0)
    unlabeled = _task("u", TaskType.CLASSIFICATION, [], text="x")
    with pytest.raises(InvalidArgument, match="no labeled example"):
        build_dataset_version("reviews", [unlabeled], eval_fraction=0.1, seed=0)


# --- Parquet -----------------------------------------------------------------------------------


def test_parquet_round_trip_is_atomic_and_immutable(tmp_path: Path) -> None:
    tasks = [
        *_classification(30),
        _task("weird", TaskType.CLASSIFICATION, [(HUMAN, "z", "pos")], text="ünïcødé ✓", metadata={}),
    ]
    build = build_dataset_version("reviews", tasks, eval_fraction=0.3, seed=5)
    path = tmp_path / "datasets" / "reviews" / f"{build.version.version_id}.parquet"
    assert write_parquet(build.examples, path, {"version_id": build.version.version_id}) is True
    assert read_parquet(path) == list(build.examples)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left

    table = pq.read_table(path)
    assert table.schema.metadata[b"version_id"] == build.version.version_id.encode()
    splits = table.column("split").to_pylist()
    assert splits.count("eval") == build.version.eval_count
    assert set(SFT_COLUMNS) <= set(table.column_names)

    # Immutable: a second write of the version leaves the file alone.
    before = path.stat().st_mtime_ns
    other = [dataclasses.replace(build.examples[0], completion="tampered")]
    assert write_parquet(other, path) is False
    assert path.stat().st_mtime_ns == before
    assert read_parquet(path) == list(build.examples)


def test_parquet_keeps_ratings_and_preference_columns(tmp_path: Path) -> None:
    rated = _task("r", TaskType.RATING, [(HUMAN, "a", 2.0), (HUMAN, "b", 3.0)], prompt="p", response="x")
    build = build_dataset_version("ratings", [rated], eval_fraction=0.0, seed=0)
    write_parquet(build.examples, tmp_path / "r.parquet")
    (example,) = read_parquet(tmp_path / "r.parquet")
    assert example.rating == 2.5 and example.task_type is TaskType.RATING

    assert compute_version_id("d", [], 0.1, 1) != compute_version_id("d", [], 0.1, 2)
