"""The registry store on SQLite: models, version numbering (also under concurrency), idempotent
registration, lineage records, the outbox and migrations from the previous release."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmops.contracts import topics
from llmops.registry.domain.errors import AlreadyExists, InvalidArgument, NotFound
from llmops.registry.domain.gates import parse_gate
from llmops.registry.domain.models import (
    DatasetVersionRecord,
    IngestionBatchRecord,
    ModelDefaults,
    VersionSpec,
    VersionStatus,
)
from llmops.registry.store import SqlRegistryStore, open_store, tables
from llmops.testing.store_baselines import make_baseline_store

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/registry.sqlite"


@pytest.fixture
def store(url: str) -> Iterator[SqlRegistryStore]:
    s = SqlRegistryStore(url)
    yield s
    s.close()


def _spec(model: str = "bot", **fields: object) -> VersionSpec:
    return VersionSpec(model=model, artifact_uri=f"file:///a/{model}", **fields)  # type: ignore[arg-type]


# --- models ------------------------------------------------------------------------------------


def test_create_get_and_list_models(store: SqlRegistryStore) -> None:
    gate = parse_gate(["eval_accuracy>=0.8"])
    created = store.create_model("bot", description="support bot", base_model="smollm2", gate=gate, now=T0)
    assert (created.name, created.gate, created.latest_version, created.created_at) == ("bot", gate, 0, T0)
    with pytest.raises(AlreadyExists, match="'bot' already exists"):
        store.create_model("bot")
    for name in ("c", "a", "b"):
        store.create_model(name)
    first = store.list_models(page_size=2)
    assert [m.name for m in first.items] == ["a", "b"] and first.next_page_token
    second = store.list_models(page_size=2, page_token=first.next_page_token)
    assert [m.name for m in second.items] == ["bot", "c"] and second.next_page_token == ""
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_models(page_token="garbage")
    with pytest.raises(NotFound, match="'nope' not found"):
        store.get_model("nope")


def test_set_gate_replaces_and_empty_removes(store: SqlRegistryStore) -> None:
    store.create_model("bot", gate=parse_gate(["a>=1"]), now=T0)
    later = T0 + dt.timedelta(hours=1)
    updated = store.set_gate("bot", parse_gate(["b<=2", "c>0"]), now=later)
    assert [str(r) for r in updated.gate] == ["b<=2.0", "c>0.0"] and updated.updated_at == later
    assert store.set_gate("bot", []).gate == ()


def test_bad_model_names_are_rejected_naming_the_field(store: SqlRegistryStore) -> None:
    with pytest.raises(InvalidArgument, match="name is empty"):
        store.create_model("")
    with pytest.raises(InvalidArgument, match="not a valid model name"):
        store.create_model("my model@prod")
    store.create_model("org/support-bot.v2")


# --- versions ----------------------------------------------------------------------------------


def test_versions_number_from_one_per_model(store: SqlRegistryStore) -> None:
    store.create_model("bot", base_model="smollm2")
    store.create_model("other", base_model="smollm2")
    numbers = [store.register_version(_spec("bot")).version.version for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert store.register_version(_spec("other")).version.version == 1
    assert store.get_model("bot").latest_version == 3
    page = store.list_versions("bot", page_size=2)
    assert [v.version for v in page.items] == [3, 2]
    assert [v.version for v in store.list_versions("bot", page_token=page.next_page_token).items] == [1]


def test_a_version_keeps_what_it_was_registered_with(store: SqlRegistryStore) -> None:
    store.create_model("bot", base_model="smollm2")
    spec = _spec(
        adapter=True,
        adapter_kind="LoRA",
        metrics={"eval_accuracy": 0.9},
        params={"lr": "2e-4"},
        training_job_id="job-1",
        dataset_version_id="dv-1",
        description="first",
        status=VersionStatus.PENDING,
        trained_at=T0,
    )
    v = store.register_version(spec, now=T0).version
    assert v == store.get_version("bot", 1)
    assert (v.base_model, v.adapter, v.adapter_kind, v.status) == (
        "smollm2",
        True,
        "lora",
        VersionStatus.PENDING,
    )
    assert (v.metrics, v.params, v.training_job_id, v.dataset_version_id) == (
        {"eval_accuracy": 0.9},
        {"lr": "2e-4"},
        "job-1",
        "dv-1",
    )
    assert (v.created_at, v.trained_at, v.description) == (T0, T0, "first")
    assert store.versions_with_status(VersionStatus.PENDING) == [v]
    assert store.set_version_status("bot", 1, VersionStatus.READY).status == VersionStatus.READY
    assert store.versions_with_status(VersionStatus.PENDING) == []


def test_registration_validates_and_names_the_field(store: SqlRegistryStore) -> None:
    store.create_model("bot")
    cases = [
        (_spec(), "base_model is empty"),
        (VersionSpec("bot", "", base_model="b"), "artifact_uri is empty"),
        (_spec(base_model="b", adapter_kind="lora"), "adapter_kind is 'lora' but adapter is false"),
        (_spec(base_model="b", metrics={"acc": float("nan")}), r"metrics\['acc'\]"),
        (_spec(base_model="b", metrics={"bad name": 1.0}), "metrics key 'bad name'"),
    ]
    for spec, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            store.register_version(spec)
    with pytest.raises(NotFound, match="create it with CreateModel first"):
        store.register_version(_spec("ghost", base_model="b"))
    assert store.get_model("bot").latest_version == 0


def test_a_missing_model_is_created_with_defaults_when_asked(store: SqlRegistryStore) -> None:
    defaults = ModelDefaults(description="auto", base_model="smollm2", gate=parse_gate(["acc>=0.5"]))
    v = store.register_version(_spec("new"), defaults=defaults).version
    assert (v.version, v.base_model) == (1, "smollm2")
    model = store.get_model("new")
    assert (model.description, model.gate) == ("auto", defaults.gate)
    # Defaults only apply to creation: an existing model keeps its own.
    store.register_version(_spec("new"), defaults=ModelDefaults(description="other"))
    assert store.get_model("new").description == "auto"


def test_registration_is_idempotent_on_the_training_job(store: SqlRegistryStore) -> None:
    store.create_model("bot", base_model="smollm2")
    first = store.register_version(_spec(training_job_id="job-1"))
    again = store.register_version(_spec(training_job_id="job-1", metrics={"changed": 1.0}))
    assert first.created and not again.created
    assert again.version == first.version
    assert store.get_model("bot").latest_version == 1
    assert len(store.outbox.pending()) == 1
    store.create_model("other", base_model="smollm2")
    with pytest.raises(AlreadyExists, match="job 'job-1' is already registered as bot version 1"):
        store.register_version(_spec("other", training_job_id="job-1"))


def _run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_concurrent_registrations_never_share_a_number(url: str) -> None:
    # Two store objects (as two replicas would have) on one file, several threads each.
    stores = [SqlRegistryStore(url), SqlRegistryStore(url)]
    stores[0].create_model("bot", base_model="smollm2")
    got: list[int] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        for _ in range(5):
            number = stores[i % 2].register_version(_spec()).version.version
            with lock:
                got.append(number)

    try:
        _run_threads(8, register)
        assert sorted(got) == list(range(1, 41))
        assert stores[1].get_model("bot").latest_version == 40
        assert len(stores[0].outbox.pending()) == 40
    finally:
        for s in stores:
            s.close()


def test_concurrent_deliveries_of_one_job_register_once(url: str) -> None:
    stores = [SqlRegistryStore(url), SqlRegistryStore(url)]
    defaults = ModelDefaults(base_model="smollm2")
    created: list[bool] = []

    def deliver(i: int) -> None:
        result = stores[i % 2].register_version(_spec("auto", training_job_id="job-7"), defaults=defaults)
        created.append(result.created)

    try:
        _run_threads(6, deliver)
        assert sorted(created) == [False] * 5 + [True]
        assert stores[0].get_model("auto").latest_version == 1
    finally:
        for s in stores:
            s.close()


# --- lineage records ---------------------------------------------------------------------------


def test_lineage_records_are_written_once_and_read_back(store: SqlRegistryStore) -> None:
    dv = DatasetVersionRecord("dv-1", "sft", "file:///dv-1", 9, 1, ("snap-a",), ("topics",), T0)
    batch = IngestionBatchRecord("batch-1", "articles", "snap-a", "file:///snap-a", {"kept": 10}, T0)
    other = IngestionBatchRecord("batch-2", "articles", "snap-z", "file:///snap-z", {"kept": 1}, T0)
    assert store.record_dataset_version(dv) and not store.record_dataset_version(dv)
    assert store.record_ingestion_batch(batch) and not store.record_ingestion_batch(batch)
    store.record_ingestion_batch(other)
    store.create_model("bot", base_model="smollm2")
    store.register_version(_spec(dataset_version_id="dv-1", training_job_id="job-1"))
    records = store.lineage_records("bot", 1)
    assert records.dataset_version == dv
    assert list(records.batches) == [batch]
    assert records.alias_history == []
    with pytest.raises(InvalidArgument, match="batch_id is empty"):
        store.record_ingestion_batch(IngestionBatchRecord("", "d", "s", "u", {}, T0))


# --- outbox ------------------------------------------------------------------------------------


def test_outbox_keeps_events_in_order_until_removed(store: SqlRegistryStore) -> None:
    store.create_model("bot", base_model="smollm2")
    for _ in range(3):
        store.register_version(_spec(metrics={"acc": 0.5}, trace_id="trace-1"))
    pending = store.outbox.pending()
    assert [e.topic for e in pending] == [topics.MODELS_VERSION_REGISTERED] * 3
    payloads = [json.loads(e.payload) for e in pending]
    assert [p["version"] for p in payloads] == [1, 2, 3]
    assert payloads[0]["metrics"] == {"acc": 0.5} and payloads[0]["trace_id"] == "trace-1"
    assert payloads[0]["producer"] == "registry" and all(e.key == b"bot" for e in pending)
    store.outbox.remove([pending[0].id])
    assert [e.id for e in store.outbox.pending()] == [pending[1].id, pending[2].id]


def test_open_store_picks_the_backend_by_scheme(url: str) -> None:
    s = open_store(url)
    assert isinstance(s, SqlRegistryStore)
    s.close()
    with pytest.raises(ValueError, match="no registry store for 'mysql'"):
        open_store("mysql://localhost/db")
    with pytest.raises(ValueError, match="is not a URL"):
        open_store("not a url")


# --- migrations --------------------------------------------------------------------------------


def test_a_store_made_by_the_previous_release_keeps_its_data(tmp_path: Path) -> None:
    # The release before migrations created its tables with metadata.create_all and kept no version.
    url = make_baseline_store(tmp_path / "registry.sqlite", "registry")
    old = sa.create_engine(url)
    with old.begin() as conn:
        conn.execute(
            sa.insert(tables.models_t).values(
                id=1,
                name="bot",
                description="from the old release",
                base_model="smollm2",
                gate=[{"metric": "eval_accuracy", "comparator": ">=", "threshold": 0.8}],
                latest_version=1,
                created_at=T0,
                updated_at=T0,
            )
        )
        conn.execute(
            sa.insert(tables.versions_t).values(
                model_id=1,
                version=1,
                artifact_uri="file:///a/bot",
                base_model="smollm2",
                adapter=True,
                adapter_kind="lora",
                metrics={"eval_accuracy": 0.9},
                params={},
                status="ready",
                training_job_id="job-old",
                dataset_version_id="",
                description="",
                created_at=T0,
            )
        )
    old.dispose()

    with SqlRegistryStore(url) as store:
        model = store.get_model("bot")
        assert (model.description, model.latest_version, [str(r) for r in model.gate]) == (
            "from the old release",
            1,
            ["eval_accuracy>=0.8"],
        )
        assert store.get_version("bot", 1).training_job_id == "job-old"
        # Numbering goes on from the old rows.
        assert store.register_version(_spec(training_job_id="job-new")).version.version == 2
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        # Stamped at the baseline, then upgraded to the newest revision.
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version_registry").all() == [("0003",)]
    engine.dispose()
