"""Feedback into SFT and DPO datasets with the real labeling and monitoring processes on the real
broker: answers and feedback for one model are published as serving and feedback publish them, and
CreateDatasetVersion gives the corrections as SFT rows and the better rated answers as DPO `chosen`."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator

import grpc
import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.events import FeedbackAccepted, InferenceLogged
from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.testing.platform import (
    auth,
    caught_up,
    eventually,
    publish_raw,
    running_platform,
)

pytestmark = pytest.mark.integration

CAPITAL = "What is the capital of France?"
PLANET = "Which is the largest planet?"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("feedback-data"), ["labeling", "monitoring"]) as platform:
        yield platform


def _answer(request_id: str, model: str, prompt: str, completion: str) -> bytes:
    return (
        InferenceLogged(
            request_id=request_id,
            model=model,
            model_version="3",
            arm="champion",
            prompt=prompt,
            completion=completion,
            prompt_tokens=8,
            completion_tokens=3,
            latency_ms=50.0,
            time_to_first_token_ms=10.0,
            producer="serving",
        )
        .model_dump_json()
        .encode()
    )


def _feedback(request_id: str, score: float, correction: str = "") -> bytes:
    return (
        FeedbackAccepted(
            feedback_id=f"fb-{request_id}",
            request_id=request_id,
            score=score,
            correction=correction,
            producer="feedback",
        )
        .model_dump_json()
        .encode()
    )


def _rows(uri: str) -> list[dict]:
    with ArtifactStore.open_uri(uri) as f:
        return pq.read_table(io.BytesIO(f.read())).to_pylist()


async def test_feedback_becomes_sft_and_dpo_datasets_for_one_model(platform: LocalPlatform) -> None:
    run = uuid.uuid4().hex[:8]
    rid = {name: f"{run}-{name}" for name in ("lyon", "paris", "saturn", "maps")}
    bootstrap = platform.bootstrap_servers
    await publish_raw(
        bootstrap,
        topics.INFERENCE_LOGGED,
        [
            _answer(rid["lyon"], "geo@champion", CAPITAL, "Lyon."),
            _answer(rid["paris"], "geo/3", CAPITAL, "Paris."),
            _answer(rid["saturn"], "geo@champion", PLANET, "Saturn."),
            # Another registered model answering the same prompt: never paired with geo's answers.
            _answer(rid["maps"], "maps@champion", CAPITAL, "Marseille."),
        ],
    )
    # All the feedback at once, the good score of the pair next to the bad one: whichever labeling
    # handles second finds the first in its own record, whether or not monitoring has stored it yet.
    # The low score with a correction is published twice (an app's retry); then a second correction.
    corrected = _feedback(rid["lyon"], 0.0, correction="Paris.")
    await publish_raw(
        bootstrap,
        topics.FEEDBACK_ACCEPTED,
        [
            _feedback(rid["paris"], 1.0),
            corrected,
            _feedback(rid["maps"], 0.0),
            corrected,
            _feedback(rid["saturn"], 0.0, correction="Jupiter."),
        ],
    )
    await eventually(
        lambda: caught_up(bootstrap, "llmops-labeling.feedback", topics.FEEDBACK_ACCEPTED), timeout=90
    )

    md = auth(platform)
    with grpc.insecure_channel(platform.address("labeling")) as channel:
        labeling = labeling_pb2_grpc.LabelingServiceStub(channel)
        sft = labeling.CreateDatasetVersion(
            pb.CreateDatasetVersionRequest(
                dataset="geo-sft", queues=["feedback-review"], filter={"registered_model": "geo"}
            ),
            metadata=md,
        )
        dpo = labeling.CreateDatasetVersion(
            pb.CreateDatasetVersionRequest(
                dataset="geo-dpo", queues=["feedback-pairs"], filter={"registered_model": "geo"}
            ),
            metadata=md,
        )
        assert labeling.GetQueue(pb.GetQueueRequest(name="feedback-pairs"), metadata=md).total_tasks == 1
        future = Timestamp()
        future.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        with pytest.raises(grpc.RpcError) as err:
            labeling.CreateDatasetVersion(
                pb.CreateDatasetVersionRequest(
                    dataset="geo-sft", queues=["feedback-review"], created_after=future
                ),
                metadata=md,
            )
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "no labeled example" in err.value.details()
        )

    sft_rows = sorted(_rows(sft.uri), key=lambda r: r["prompt"])
    assert [(r["prompt"], r["completion"], r["label_source"]) for r in sft_rows] == [
        (CAPITAL, "Paris.", "feedback"),
        (PLANET, "Jupiter.", "feedback"),
    ]
    meta = dict(sft_rows[0]["metadata"])
    assert (meta["registered_model"], meta["model_version"], meta["arm"]) == ("geo", "3", "champion")
    assert meta["request_id"] == rid["lyon"] and meta["feedback_at"]
    dpo_rows = _rows(dpo.uri)
    assert [(r["prompt"], r["chosen"], r["rejected"], r["label_source"]) for r in dpo_rows] == [
        (CAPITAL, "Paris.", "Lyon.", "feedback")
    ]
    assert sft.train_count + sft.eval_count == 2 and dpo.train_count + dpo.eval_count == 1
