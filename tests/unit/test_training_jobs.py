"""Job specs (defaults, ranges, messages), the gRPC spec mapping, the job store and its migrations."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text

from llmops.contracts.rpc.training.v1 import training_pb2 as pb
from llmops.core.errors import InvalidArgument, NotFound
from llmops.testing.store_baselines import make_baseline_store
from llmops.training.grpc_server import job_pb, spec_from_pb
from llmops.training.ray_runner import short_temp_dir
from llmops.training.spec import Hyperparameters, InvalidSpec, JobState, Resources, build_spec
from llmops.training.store import JobStore, jobs_t

RAW = {
    "base_model": "SmolLM2-135M-Instruct",
    "dataset_version_id": "abc123",
    "method": "sft_lora",
    "model_name": "bot",
}


def _spec(**overrides: object):  # noqa: ANN202
    return build_spec({**RAW, **overrides}, Hyperparameters(), Resources())


def test_defaults_fill_what_is_unset() -> None:
    spec = build_spec(
        {**RAW, "hyperparameters": {"lora_rank": 0, "learning_rate": 1e-3, "target_modules": []}},
        Hyperparameters(lora_rank=16),
        Resources(cpus_per_worker=2),
    )
    # gRPC zeros mean "the server default".
    assert spec.hyperparameters.lora_rank == 16 and spec.hyperparameters.learning_rate == 1e-3
    assert spec.hyperparameters.target_modules == ("all-linear",)
    assert spec.resources.cpus_per_worker == 2 and spec.resources.num_workers == 1
    # An event's zeros are values.
    spec = build_spec(
        {**RAW, "hyperparameters": {"lora_dropout": 0}}, Hyperparameters(), Resources(), zero_is_default=False
    )
    assert spec.hyperparameters.lora_dropout == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hyperparameters": {"lora_rank": -1}}, "hyperparameters.lora_rank"),
        ({"hyperparameters": {"lora_dropout": 1.5}}, "hyperparameters.lora_dropout"),
        ({"hyperparameters": {"warmup_ratio": 1}}, "hyperparameters.warmup_ratio"),
        ({"hyperparameters": {"gradient_accumulation_steps": -2}}, "gradient_accumulation_steps"),
        ({"hyperparameters": {"target_modules": ["q_proj", "all-linear"]}}, "cannot be combined"),
        ({"hyperparameters": {"colour": 3}}, "hyperparameters.colour: unknown field"),
        ({"resources": {"num_workers": -1}}, "resources.num_workers"),
        ({"resources": {"gpus_per_worker": -1}}, "resources.gpus_per_worker"),
        ({"method": "rlhf"}, "method must be one of sft_lora, dpo_lora"),
        ({"model_name": "../etc"}, "model_name must be"),
        ({"dataset_version_id": "*/x"}, "dataset_version_id"),
        ({"base_model": ""}, "base_model"),
    ],
)
def test_invalid_specs_name_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace(".", r"\.").replace("*", r"\*")):
        _spec(**overrides)


def test_params_are_strings() -> None:
    spec = _spec(hyperparameters={"target_modules": "q_proj,v_proj", "max_steps": 8})
    params = spec.params()
    assert params["target_modules"] == "q_proj,v_proj" and params["max_steps"] == "8"
    assert params["num_workers"] == "1" and params["learning_rate"] == "0.0002"


def test_grpc_spec_mapping_round_trip() -> None:
    message = pb.JobSpec(
        base_model="SmolLM2-135M-Instruct",
        dataset_version_id="abc123",
        method=pb.TRAINING_METHOD_DPO_LORA,
        model_name="bot",
        hyperparameters=pb.Hyperparameters(lora_rank=4, dpo_beta=0.2, target_modules=["q_proj"]),
        resources=pb.Resources(num_workers=2),
        labels={"team": "search"},
    )
    spec = build_spec(spec_from_pb(message), Hyperparameters(), Resources())
    assert spec.method == "dpo_lora" and spec.hyperparameters.lora_rank == 4
    assert spec.hyperparameters.dpo_beta == 0.2 and spec.hyperparameters.target_modules == ("q_proj",)
    assert spec.resources.num_workers == 2 and spec.labels == {"team": "search"}
    with pytest.raises(InvalidSpec, match="spec.method is required"):
        spec_from_pb(pb.JobSpec(base_model="x"))


def test_store_idempotency_states_and_paging(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    spec = _spec()
    first, created = store.create(spec, "key-1", "file:///d.parquet", "/models/x")
    again, created_again = store.create(spec, "key-1", "file:///d.parquet", "/models/x")
    assert created and not created_again and again.job_id == first.job_id
    other, _ = store.create(_spec(model_name="other"), "", "file:///d.parquet", "/models/x")
    third, _ = store.create(spec, "", "file:///d.parquet", "/models/x")
    assert first.state is JobState.QUEUED and store.next_queued().job_id == first.job_id

    running = store.start_attempt(first.job_id)
    assert (
        running.state is JobState.RUNNING and running.attempts == 1 and running.ray_run_name == first.job_id
    )
    store.set_progress(first.job_id, {"step": 3, "total_steps": 8})
    # The service stopped while it ran: back to QUEUED, and the next attempt gets a new run name.
    assert store.requeue_running() == [first.job_id]
    resumed = store.start_attempt(first.job_id)
    assert resumed.ray_run_name == f"{first.job_id}-r2" and resumed.started_at == running.started_at
    assert resumed.progress == {"step": 3, "total_steps": 8}

    done = store.transition(first.job_id, [JobState.RUNNING], JobState.SUCCEEDED, adapter_uri="file:///a")
    assert done.state is JobState.SUCCEEDED and done.finished_at is not None
    # A finished job cannot be cancelled: the conditional update changes nothing.
    assert store.transition(first.job_id, [JobState.QUEUED, JobState.RUNNING], JobState.CANCELLED) is None

    page = store.list(page_size=2)
    assert [j.job_id for j in page.items] == [third.job_id, other.job_id] and page.next_page_token
    rest = store.list(page_size=2, page_token=page.next_page_token)
    assert [j.job_id for j in rest.items] == [first.job_id] and rest.next_page_token == ""
    assert [j.job_id for j in store.list(model_name="other").items] == [other.job_id]
    assert [j.job_id for j in store.list(state=JobState.SUCCEEDED).items] == [first.job_id]
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list(page_token="bogus")
    # A token of the release before the kernel's paging ("jobs:<id>") is refused, not misread.
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list(page_token="am9iczoz")
    with pytest.raises(InvalidArgument, match="page_size"):
        store.list(page_size=-1)
    with pytest.raises(NotFound, match="nope"):
        store.get("nope")

    message = job_pb(store.get(first.job_id))
    assert message.state == pb.JOB_STATE_SUCCEEDED and message.latest_progress.step == 3
    assert message.ray_job_id == f"{first.job_id}-r2" and message.idempotency_key == "key-1"
    assert message.registered_version == 0  # not registered yet

    # The registry registered the adapter (models.version_registered names its URI).
    assert store.set_registered_version("file:///elsewhere", 4) is None
    assert store.set_registered_version("file:///a", 3) == first.job_id
    assert job_pb(store.get(first.job_id)).registered_version == 3
    assert store.get(other.job_id).registered_version == 0
    store.close()


def test_a_store_of_the_previous_release_keeps_its_jobs(tmp_path: Path) -> None:
    """The release before migrations made its tables with create_all: opening it stamps 0001 and reads on."""
    url = make_baseline_store(tmp_path / "jobs.sqlite", "training")
    old = create_engine(url)
    now = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
    with old.begin() as conn:
        conn.execute(
            insert(jobs_t).values(
                job_id="old-job",
                idempotency_key="old-key",
                model_name="bot",
                spec=_spec().model_dump(mode="json"),
                state="SUCCEEDED",
                dataset_uri="file:///d.parquet",
                base_model_path="/models/x",
                created_at=now,
                updated_at=now,
                finished_at=now,
                metrics={"eval_loss": 1.5},
                adapter_uri="file:///a",
                error="",
                ray_run_name="old-job",
                attempts=1,
                registered_version=2,
            )
        )
    old.dispose()

    with JobStore(url) as store:
        job = store.get("old-job")
        assert job.state is JobState.SUCCEEDED and job.metrics == {"eval_loss": 1.5}
        assert job.registered_version == 2 and job.created_at == now and store.by_key("old-key") == job
        # New jobs go on after the old ones.
        new, _ = store.create(_spec(), "", "file:///d.parquet", "/models/x")
        assert [j.job_id for j in store.list().items] == [new.job_id, "old-job"]
    check = create_engine(url)
    with check.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_training")).scalar_one() == "0002"
    check.dispose()
    # Opened again: nothing to migrate, nothing lost.
    with JobStore(url) as store:
        assert store.get("old-job").adapter_uri == "file:///a"


def test_ray_temp_dir_is_short(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 150)
    temp = short_temp_dir(deep)
    # Ray puts sockets at <temp>/session_<date>_<pid>/sockets/raylet (about 60 more characters).
    assert len(str(temp)) <= 30 and temp == short_temp_dir(deep) and temp != short_temp_dir(tmp_path)
