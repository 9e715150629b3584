"""The labeling store on SQLite: queues, leases, labels, skips, programmatic labels, versions."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmops.contracts import topics
from llmops.labeling.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidLabel,
    LeaseExpired,
    LeaseNotFound,
    NotFound,
)
from llmops.labeling.domain.models import (
    LabelSource,
    Preference,
    QueueSpec,
    TaskInput,
    TaskSource,
    TaskState,
    TaskType,
)
from llmops.labeling.domain.values import validate_label_value
from llmops.labeling.domain.versions import build_dataset_version
from llmops.labeling.store import LabelingStore, tables
from llmops.testing.store_baselines import make_baseline_store

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LabelingStore]:
    s = LabelingStore(f"sqlite:///{tmp_path}/labeling.db")
    yield s
    s.close()


def _queue(store: LabelingStore, name: str = "sentiment", k: int = 1, **fields: object) -> None:
    spec = QueueSpec(
        name=name,
        task_type=fields.pop("task_type", TaskType.CLASSIFICATION),  # type: ignore[arg-type]
        label_set=fields.pop("label_set", ("neg", "pos")),  # type: ignore[arg-type]
        labelers_per_task=k,
        **fields,  # type: ignore[arg-type]
    )
    store.create_queue(spec, now=T0)


def _texts(store: LabelingStore, queue: str, n: int) -> list[str]:
    inputs = [TaskInput(document_id=f"doc-{i}", text=f"text {i}") for i in range(n)]
    return store.create_tasks(queue, inputs, now=T0).task_ids


# --- queues ------------------------------------------------------------------------------------


def test_queue_lifecycle(store: LabelingStore) -> None:
    queue = store.create_queue(
        QueueSpec(
            name="sentiment",
            task_type=TaskType.CLASSIFICATION,
            label_set=("neg", "pos"),
            labelers_per_task=0,
            lease_seconds=0,
            instructions="Pick one.",
            metadata={"team": "search"},
        ),
        now=T0,
    )
    assert (queue.labelers_per_task, queue.lease_seconds) == (1, 600)  # proto defaults for 0
    assert queue.total_tasks == 0 and queue.created_at == T0
    with pytest.raises(AlreadyExists, match="sentiment"):
        _queue(store, "sentiment")
    with pytest.raises(NotFound, match="nope"):
        store.get_queue("nope")

    ids = _texts(store, "sentiment", 3)
    task = store.next_task("sentiment", "alice", now=T0)
    assert task is not None
    store.submit_label(task.task_id, task.lease_id, "alice", "pos", now=T0)
    store.next_task("sentiment", "alice", now=T0)
    q = store.get_queue("sentiment", now=T0)
    assert (q.total_tasks, q.completed_tasks, q.leased_tasks, q.open_tasks) == (3, 1, 1, 1)
    assert q.metadata == {"team": "search"} and q.instructions == "Pick one."
    assert store.get_task(ids[0], now=T0).state is TaskState.COMPLETED

    for name in ("b-queue", "a-queue", "c-queue"):
        _queue(store, name)
    first = store.list_queues(page_size=2)
    second = store.list_queues(page_size=2, page_token=first.next_page_token)
    assert [q.name for q in first.items] == ["a-queue", "b-queue"]
    assert [q.name for q in second.items] == ["c-queue", "sentiment"] and second.next_page_token == ""
    assert second.items[1].total_tasks == 3
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_queues(page_token="garbage!")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (QueueSpec(name="q", task_type=TaskType.CLASSIFICATION), "non-empty label_set"),
        (QueueSpec(name="q", task_type=TaskType.CLASSIFICATION, label_set=("a", "a")), "duplicate"),
        (
            QueueSpec(name="q", task_type=TaskType.RATING, rating_min=5, rating_max=1),
            "rating_min < rating_max",
        ),
        (QueueSpec(name="bad name!", task_type=TaskType.CORRECTION), "queue name"),
        (QueueSpec(name="q", task_type=TaskType.CORRECTION, labelers_per_task=-1), "labelers_per_task"),
        (QueueSpec(name="q", task_type=TaskType.CORRECTION, label_set=("x",)), "only for classification"),
    ],
)
def test_invalid_queue_definitions_are_refused(store: LabelingStore, spec: QueueSpec, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        store.create_queue(spec)


# --- tasks and leases --------------------------------------------------------------------------


def test_create_tasks_is_idempotent_on_document_id(store: LabelingStore) -> None:
    _queue(store)
    first = store.create_tasks(
        "sentiment",
        [
            TaskInput(document_id="d1", text="a", snapshot_id="snap-1", source=TaskSource.DOCUMENTS),
            TaskInput(text="no document"),
            TaskInput(document_id="d1", text="a again in the same batch"),
        ],
        now=T0,
    )
    assert first.created == 2 and first.task_ids[0] == first.task_ids[2]
    again = store.create_tasks("sentiment", [TaskInput(document_id="d1", text="redelivered")], now=T0)
    assert again.created == 0 and again.task_ids == [first.task_ids[0]]
    assert store.get_queue("sentiment").total_tasks == 2
    task = store.get_task(first.task_ids[0])
    assert (task.input.snapshot_id, task.input.source, task.input.text) == (
        "snap-1",
        TaskSource.DOCUMENTS,
        "a",
    )

    with pytest.raises(InvalidArgument, match="task 1: a classification task needs a non-empty text"):
        store.create_tasks("sentiment", [TaskInput(text="ok"), TaskInput(prompt="no text")])
    with pytest.raises(NotFound):
        store.create_tasks("missing", [TaskInput(text="x")])
    assert store.get_queue("sentiment").total_tasks == 2  # nothing from the refused batch


def test_two_labelers_share_a_task_that_needs_two_labels_and_a_third_does_not(store: LabelingStore) -> None:
    _queue(store, k=2)
    (task_id,) = _texts(store, "sentiment", 1)
    alice = store.next_task("sentiment", "alice", now=T0)
    bob = store.next_task("sentiment", "bob", now=T0)
    assert alice is not None and bob is not None
    assert alice.task_id == bob.task_id == task_id and alice.lease_id != bob.lease_id
    assert alice.state is TaskState.LEASED
    assert alice.lease_expires_at == T0 + dt.timedelta(seconds=600)
    assert store.next_task("sentiment", "carol", now=T0) is None

    store.submit_label(task_id, alice.lease_id, "alice", "pos", now=T0)
    assert store.next_task("sentiment", "carol", now=T0) is None  # bob still holds the second slot
    label = store.submit_label(task_id, bob.lease_id, "bob", "neg", comment="sarcastic", now=T0)
    assert label.source is LabelSource.HUMAN and label.comment == "sarcastic" and label.document_id == "doc-0"
    assert store.get_task(task_id).state is TaskState.COMPLETED
    assert store.next_task("sentiment", "carol", now=T0) is None


def test_oldest_task_first_and_retry_returns_the_same_lease(store: LabelingStore) -> None:
    _queue(store)
    ids = _texts(store, "sentiment", 3)
    first = store.next_task("sentiment", "alice", now=T0)
    retry = store.next_task("sentiment", "alice", now=T0 + dt.timedelta(seconds=5))
    assert first is not None and retry is not None
    assert first.task_id == ids[0] and (retry.task_id, retry.lease_id) == (first.task_id, first.lease_id)
    other = store.next_task("sentiment", "bob", now=T0)
    assert other is not None and other.task_id == ids[1]


def test_an_expired_lease_returns_the_task_and_voids_the_submit(store: LabelingStore) -> None:
    _queue(store, lease_seconds=60)
    (task_id,) = _texts(store, "sentiment", 1)
    alice = store.next_task("sentiment", "alice", now=T0)
    assert alice is not None
    assert store.next_task("sentiment", "bob", now=T0 + dt.timedelta(seconds=59)) is None
    assert store.get_queue("sentiment", now=T0 + dt.timedelta(seconds=30)).leased_tasks == 1
    assert store.get_queue("sentiment", now=T0 + dt.timedelta(seconds=60)).open_tasks == 1

    later = T0 + dt.timedelta(seconds=61)
    bob = store.next_task("sentiment", "bob", now=later)
    assert bob is not None and bob.task_id == task_id
    with pytest.raises(LeaseExpired, match="expired"):
        store.submit_label(task_id, alice.lease_id, "alice", "pos", now=later)
    store.submit_label(task_id, bob.lease_id, "bob", "neg", now=later)
    assert store.get_task(task_id).state is TaskState.COMPLETED


def test_a_per_call_lease_length_overrides_the_queue(store: LabelingStore) -> None:
    _queue(store)
    _texts(store, "sentiment", 1)
    task = store.next_task("sentiment", "alice", now=T0, lease_seconds=5)
    assert task is not None and task.lease_expires_at == T0 + dt.timedelta(seconds=5)
    with pytest.raises(InvalidArgument, match="lease_seconds"):
        store.next_task("sentiment", "bob", now=T0, lease_seconds=0)


def test_a_labeler_never_gets_a_task_twice(store: LabelingStore) -> None:
    _queue(store, k=3)
    ids = _texts(store, "sentiment", 2)
    seen = []
    for _ in range(2):
        task = store.next_task("sentiment", "alice", now=T0)
        assert task is not None
        seen.append(task.task_id)
        store.submit_label(task.task_id, task.lease_id, "alice", "pos", now=T0)
    assert sorted(seen) == sorted(ids)
    assert store.next_task("sentiment", "alice", now=T0) is None
    assert store.next_task("sentiment", "bob", now=T0) is not None


def test_submit_checks_the_lease_and_the_value(store: LabelingStore) -> None:
    _queue(store)
    ids = _texts(store, "sentiment", 2)
    task = store.next_task("sentiment", "alice", now=T0)
    assert task is not None
    with pytest.raises(LeaseNotFound, match="not found"):
        store.submit_label(task.task_id, "no-such-lease", "alice", "pos", now=T0)
    with pytest.raises(LeaseNotFound, match="not held by labeler 'mallory'"):
        store.submit_label(task.task_id, task.lease_id, "mallory", "pos", now=T0)
    with pytest.raises(LeaseNotFound, match="not a lease on task"):
        store.submit_label(ids[1], task.lease_id, "alice", "pos", now=T0)
    with pytest.raises(InvalidLabel, match="not in the queue's label set"):
        store.submit_label(task.task_id, task.lease_id, "alice", "meh", now=T0)
    with pytest.raises(NotFound):
        store.submit_label("no-such-task", task.lease_id, "alice", "pos", now=T0)

    label = store.submit_label(task.task_id, task.lease_id, "alice", "pos", now=T0)
    # A retried submit returns the recorded label; another value through the used lease is refused.
    assert store.submit_label(task.task_id, task.lease_id, "alice", "pos", now=T0) == label
    with pytest.raises(AlreadyExists, match="already used"):
        store.submit_label(task.task_id, task.lease_id, "alice", "neg", now=T0)
    with pytest.raises(LeaseNotFound, match="submit a label"):
        store.skip_task(task.task_id, task.lease_id, "alice", now=T0)


def test_skip_releases_the_task_to_others_only(store: LabelingStore) -> None:
    _queue(store)
    (task_id,) = _texts(store, "sentiment", 1)
    alice = store.next_task("sentiment", "alice", now=T0)
    assert alice is not None
    result = store.skip_task(task_id, alice.lease_id, "alice", "not my language", now=T0)
    assert (result.task_id, result.state) == (task_id, TaskState.OPEN)
    assert store.skip_task(task_id, alice.lease_id, "alice", now=T0) == result  # retry
    assert store.next_task("sentiment", "alice", now=T0) is None
    with pytest.raises(LeaseNotFound, match="released by a skip"):
        store.submit_label(task_id, alice.lease_id, "alice", "pos", now=T0)

    bob = store.next_task("sentiment", "bob", now=T0)
    assert bob is not None and bob.task_id == task_id
    assert store.get_task(task_id, now=T0).state is TaskState.LEASED


# --- programmatic labels -----------------------------------------------------------------------


def test_programmatic_labels_neither_complete_tasks_nor_override_humans(store: LabelingStore) -> None:
    _queue(store, instructions="Sentiment?")
    ids = _texts(store, "sentiment", 2)
    rule = store.add_programmatic_label(
        ids[0], LabelSource.RULE, "rule:keywords@1", "pos", confidence=0.9, metadata={"hit": "great"}, now=T0
    )
    assert rule.source is LabelSource.RULE and rule.confidence == 0.9 and rule.metadata == {"hit": "great"}
    # Idempotent per (task, labeler): the first value stays.
    again = store.add_programmatic_label(ids[0], LabelSource.RULE, "rule:keywords@1", "neg", now=T0)
    assert again == rule
    store.add_programmatic_label(ids[0], LabelSource.JUDGE, "judge:sentiment@2/judge", "pos", now=T0)
    store.add_programmatic_label(ids[1], LabelSource.JUDGE, "judge:sentiment@2/judge", "neg", now=T0)

    assert store.get_task(ids[0]).state is TaskState.OPEN and store.get_task(ids[0]).label_count == 0
    task = store.next_task("sentiment", "alice", now=T0)
    assert task is not None and task.task_id == ids[0]
    store.submit_label(ids[0], task.lease_id, "alice", "neg", now=T0)

    assert store.labels_for_agreement("sentiment") == {ids[0]: {"alice": "neg"}}
    assert len(store.list_labels("sentiment").items) == 4
    judged = store.list_labels("sentiment", source=LabelSource.JUDGE)
    assert {label.task_id for label in judged.items} == set(ids)

    build = build_dataset_version(
        "sentiment-v", store.tasks_with_labels(["sentiment"]), eval_fraction=0.0, seed=0
    )
    by_task = {e.task_id: e for e in build.examples}
    assert (by_task[ids[0]].label, by_task[ids[0]].label_source) == ("neg", "human")
    assert (by_task[ids[1]].label, by_task[ids[1]].label_source) == ("neg", "judge")
    assert by_task[ids[0]].prompt == "Sentiment?\n\ntext 0"

    with pytest.raises(InvalidArgument, match="submit_label"):
        store.add_programmatic_label(ids[1], LabelSource.HUMAN, "alice", "pos")
    with pytest.raises(InvalidArgument, match="confidence"):
        store.add_programmatic_label(ids[1], LabelSource.RULE, "rule:x@1", "pos", confidence=1.5)
    with pytest.raises(InvalidLabel):
        store.add_programmatic_label(ids[1], LabelSource.RULE, "rule:x@1", "maybe")


def test_labels_page_and_tasks_filter_on_metadata(store: LabelingStore) -> None:
    _queue(store, name="ratings", task_type=TaskType.RATING, label_set=(), rating_min=1, rating_max=5)
    inputs = [TaskInput(response=f"r{i}", metadata={"lang": "en" if i % 2 else "fr"}) for i in range(5)]
    ids = store.create_tasks("ratings", inputs, now=T0).task_ids
    for i, task_id in enumerate(ids):
        store.add_programmatic_label(task_id, LabelSource.JUDGE, "judge:q@1", i + 1, now=T0)
    pages, token = [], ""
    while True:
        page = store.list_labels("ratings", page_size=2, page_token=token)
        pages.append([label.value for label in page.items])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[1.0, 2.0], [3.0, 4.0], [5.0]]
    english = store.tasks_with_labels(["ratings"], filter={"lang": "en"})
    assert [t.task.task_id for t in english] == [ids[1], ids[3]]
    assert store.tasks_with_labels(["ratings"], sources=[LabelSource.HUMAN]) == []
    with pytest.raises(NotFound):
        store.tasks_with_labels(["ratings", "missing"])


def test_pairwise_and_rating_values_round_trip(store: LabelingStore) -> None:
    _queue(store, name="prefs", task_type=TaskType.PAIRWISE_PREFERENCE, label_set=())
    (task_id,) = store.create_tasks(
        "prefs", [TaskInput(prompt="p", candidate_a="x", candidate_b="y")], now=T0
    ).task_ids
    task = store.next_task("prefs", "alice", now=T0)
    assert task is not None
    label = store.submit_label(task_id, task.lease_id, "alice", "b", now=T0)
    assert label.value is Preference.B and label.value_text == "B"
    assert store.labels_for_agreement("prefs") == {task_id: {"alice": Preference.B}}


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize(("slots", "threads"), [(1, 8), (2, 8)])
def test_concurrent_next_task_never_over_leases(tmp_path: Path, slots: int, threads: int) -> None:
    url = f"sqlite:///{tmp_path}/concurrent.db"
    setup = LabelingStore(url)
    _queue(setup, k=slots)
    _texts(setup, "sentiment", 1)
    setup.close()

    # Separate store objects (engines), as separate service replicas would have.
    stores = [LabelingStore(url) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    results: list[object] = [None] * threads
    errors: list[BaseException] = []

    def grab(i: int) -> None:
        try:
            barrier.wait()
            results[i] = stores[i].next_task("sentiment", f"labeler-{i}", now=T0)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    workers = [threading.Thread(target=grab, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for s in stores:
        s.close()
    assert errors == []
    assert sum(r is not None for r in results) == slots


# --- dataset versions and labeling functions ---------------------------------------------------


def test_dataset_versions_are_saved_once_and_listed_newest_first(store: LabelingStore) -> None:
    _queue(store)
    ids = _texts(store, "sentiment", 4)
    for task_id in ids:
        store.add_programmatic_label(task_id, LabelSource.RULE, "rule:kw@1", "pos", now=T0)
    tasks = store.tasks_with_labels(["sentiment"])
    versions = []
    for seed in range(3):
        build = build_dataset_version("sent", tasks, eval_fraction=0.5, seed=seed, now=T0)
        version = replace(build.version, uri=f"file:///versions/{build.version.version_id}.parquet")
        saved = store.save_dataset_version(version)
        assert saved == version
        versions.append(saved)
    changed = build_dataset_version("sent", tasks, eval_fraction=0.5, seed=0, description="changed").version
    again = store.save_dataset_version(replace(changed, uri="file:///elsewhere.parquet"))
    assert again == versions[0]  # immutable: the first record stays
    # Each version was announced once, with its file, in the transaction that stored it.
    announced = [q.event() for q in store.outbox.pending() if q.topic == topics.DATASETS_VERSION_CREATED]
    assert [(e.version_id, e.uri) for e in announced] == [(v.version_id, v.uri) for v in versions]
    with pytest.raises(InvalidArgument, match="has no uri"):
        store.save_dataset_version(build_dataset_version("other", tasks, eval_fraction=0.5, seed=9).version)
    assert store.get_dataset_version(versions[1].version_id).lineage.labeler_ids == ("rule:kw@1",)
    with pytest.raises(NotFound):
        store.get_dataset_version("missing")
    first = store.list_dataset_versions("sent", page_size=2)
    rest = store.list_dataset_versions("sent", page_size=2, page_token=first.next_page_token)
    listed = [v.version_id for v in [*first.items, *rest.items]]
    assert listed == [v.version_id for v in reversed(versions)]
    assert store.list_dataset_versions("other").items == []


def test_labeling_functions_are_registered_once_per_version(store: LabelingStore) -> None:
    _queue(store)
    store.register_labeling_function("sentiment", "keywords", "1", now=T0)
    store.register_labeling_function("sentiment", "keywords", "1", now=T0 + dt.timedelta(hours=1))
    store.register_labeling_function("sentiment", "keywords", "2", now=T0)
    refs = store.list_labeling_functions("sentiment")
    assert [(r.name, r.version) for r in refs] == [("keywords", "1"), ("keywords", "2")]
    assert refs[0].registered_at == T0
    assert store.get_queue("sentiment").labeling_functions == ("keywords@1", "keywords@2")
    with pytest.raises(NotFound):
        store.register_labeling_function("missing", "keywords", "1")


def test_naive_times_are_utc_and_memory_databases_work() -> None:
    with LabelingStore("sqlite:///:memory:") as s:
        _queue(s, lease_seconds=60)
        _texts(s, "sentiment", 1)
        task = s.next_task("sentiment", "alice", now=T0.replace(tzinfo=None))
        assert task is not None and task.lease_expires_at == T0 + dt.timedelta(seconds=60)
        assert s.next_task("sentiment", "bob", now=T0 + dt.timedelta(seconds=30)) is None


# --- migrations --------------------------------------------------------------------------------


def test_a_store_made_by_the_release_before_migrations_keeps_its_data(tmp_path: Path) -> None:
    # What the previous release made at open (frozen baseline schema, no version table), and its rows.
    url = make_baseline_store(tmp_path / "labeling.db", "labeling")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        queue_id = conn.execute(
            sa.insert(tables.queues_t).values(
                name="old",
                task_type="classification",
                label_set=["neg", "pos"],
                rating_min=0.0,
                rating_max=0.0,
                labelers_per_task=2,
                lease_seconds=600,
                instructions="",
                meta={"team": "search"},
                created_at=T0,
            )
        ).inserted_primary_key[0]
        task_pk = conn.execute(
            sa.insert(tables.tasks_t).values(
                task_id="task-1",
                queue_id=queue_id,
                document_id="doc-1",
                text="kept",
                prompt="",
                response="",
                candidate_a="",
                candidate_b="",
                meta={},
                snapshot_id="snap-1",
                source="api",
                state="open",
                human_label_count=1,
                created_at=T0,
            )
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(tables.labels_t).values(
                label_id="label-1",
                task_pk=task_pk,
                queue_id=queue_id,
                source="human",
                labeler_id="alice",
                value="pos",
                comment="",
                confidence=0.0,
                meta={},
                created_at=T0,
            )
        )
    engine.dispose()

    with LabelingStore(url) as store:
        queue = store.get_queue("old", now=T0)
        assert (queue.total_tasks, queue.open_tasks, queue.metadata) == (1, 1, {"team": "search"})
        [label] = store.list_labels("old").items
        assert (label.label_id, label.labeler_id, label.value, label.created_at) == (
            "label-1",
            "alice",
            "pos",
            T0,
        )
        # The migrated store keeps working on the old rows: bob labels the task alice labeled.
        task = store.next_task("old", "bob", now=T0)
        assert task is not None and task.task_id == "task-1" and task.input.text == "kept"
        store.submit_label(task.task_id, task.lease_id, "bob", "pos", now=T0)
        assert store.get_task("task-1", now=T0).state == TaskState.COMPLETED
    with sa.create_engine(url).connect() as conn:
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version_labeling")).scalar_one() == "0003"
        )


# --- value validation --------------------------------------------------------------------------


def test_label_values_are_validated_against_the_queue() -> None:
    assert validate_label_value(TaskType.RATING, "4", rating_min=1, rating_max=5) == 4.0
    for value, problem in [(6, "outside the queue's range"), (True, "bool"), ("x", "not a number")]:
        with pytest.raises(InvalidLabel, match=problem):
            validate_label_value(TaskType.RATING, value, rating_min=1, rating_max=5)
    with pytest.raises(InvalidLabel, match="must be a string"):
        validate_label_value(TaskType.CLASSIFICATION, 1, label_set=("1",))
    with pytest.raises(InvalidLabel, match="empty"):
        validate_label_value(TaskType.CORRECTION, "   ")
    with pytest.raises(InvalidLabel, match="20000"):
        validate_label_value(TaskType.CORRECTION, "x" * 20_001)
    assert validate_label_value(TaskType.CORRECTION, "x" * 20_000) == "x" * 20_000
    assert validate_label_value(TaskType.PAIRWISE_PREFERENCE, "PREFERENCE_TIE") is Preference.TIE
    with pytest.raises(InvalidLabel, match="not one of A, B, TIE"):
        validate_label_value(TaskType.PAIRWISE_PREFERENCE, "C")
