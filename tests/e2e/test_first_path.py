"""The first real path, end to end, with the processes `make up` starts.

Generate and GenerateStream on vLLM over gRPC -> inference.logged on Kafka -> monitoring writes it to
ClickHouse; an app publishes feedback.submitted with plain aiokafka -> feedback accepts it ->
monitoring stores it; Query joins the two by request id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest

from llmops.cli.local import SERVICES, LocalPlatform
from llmops.contracts import topics
from llmops.contracts.rpc.labeling.v1 import labeling_pb2, labeling_pb2_grpc
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.convert import query_dicts
from llmops.testing.platform import as_json, auth, eventually, publish_raw, running_platform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("e2e")) as platform:
        yield platform
    # `make down` semantics: every process was stopped by its pid.
    assert all(platform.pid(name) is None for name in (*SERVICES, "kafka"))


@pytest.fixture(scope="module")
def serving(platform: LocalPlatform) -> Iterator[serving_pb2_grpc.ServingServiceStub]:
    with grpc.insecure_channel(platform.address("serving")) as channel:
        yield serving_pb2_grpc.ServingServiceStub(channel)


def _query(platform: LocalPlatform, sql: str, **parameters: str) -> monitoring_pb2.QueryResponse:
    with grpc.insecure_channel(platform.address("monitoring")) as channel:
        return monitoring_pb2_grpc.MonitoringServiceStub(channel).Query(
            monitoring_pb2.QueryRequest(sql=sql, parameters=parameters), metadata=auth(platform), timeout=30
        )


def _rows(reply: monitoring_pb2.QueryResponse) -> list[dict]:
    return query_dicts(reply)


def test_all_services_report_serving(platform: LocalPlatform) -> None:
    assert {name: platform.health(name) for name in SERVICES} == {name: "SERVING" for name in SERVICES}


async def test_generate_stream_and_feedback_are_joined_in_sql(
    platform: LocalPlatform, serving: serving_pb2_grpc.ServingServiceStub
) -> None:
    unary = serving.Generate(
        serving_pb2.GenerateRequest(
            prompt="What is the capital of France?", max_tokens=24, temperature=0, metadata={"app": "e2e"}
        ),
        metadata=auth(platform),
        timeout=120,
    )
    assert unary.text.strip() and unary.request_id
    assert unary.finish_reason in ("stop", "length")
    assert 0 < unary.usage.completion_tokens <= 24 and unary.usage.prompt_tokens > 5
    assert 0 < unary.timing.time_to_first_token_ms <= unary.timing.total_ms

    stream_id = f"stream-{uuid.uuid4()}"
    chunks = list(
        serving.GenerateStream(
            serving_pb2.GenerateRequest(
                prompt="What is the capital of France?", max_tokens=24, temperature=0, request_id=stream_id
            ),
            metadata=auth(platform),
            timeout=120,
        )
    )
    assert len(chunks) > 1 and all(c.request_id == stream_id for c in chunks)
    streamed_text = "".join(c.delta for c in chunks)
    # Same greedy request, same answer, whether streamed or not.
    assert streamed_text == unary.text
    assert chunks[-1].finish_reason == unary.finish_reason
    assert chunks[-1].usage.completion_tokens == unary.usage.completion_tokens
    assert not any(c.finish_reason for c in chunks[:-1])

    # An app publishes feedback on the unary answer with a plain Kafka producer.
    await publish_raw(
        platform.bootstrap_servers,
        topics.FEEDBACK_SUBMITTED,
        [as_json({"request_id": unary.request_id, "thumb": "up", "comment": "correct"})],
        key=unary.request_id.encode(),
    )

    sql = (
        "SELECT request_id, model, completion, completion_tokens, score, comment "
        "FROM inference_with_feedback WHERE request_id = {r:String}"
    )
    rows = await eventually(
        lambda: [r for r in _rows(_query(platform, sql, r=unary.request_id)) if r["score"] is not None],
        timeout=60,
    )
    assert rows == [
        {
            "request_id": unary.request_id,
            "model": unary.model,
            "completion": unary.text,
            "completion_tokens": float(unary.usage.completion_tokens),
            "score": 1.0,
            "comment": "correct",
        }
    ]
    streamed_rows = await eventually(
        lambda: _rows(
            _query(
                platform,
                "SELECT streamed, completion FROM inference_log_v WHERE request_id = {r:String}",
                r=stream_id,
            )
        )
    )
    assert streamed_rows == [{"streamed": True, "completion": streamed_text}]


@pytest.mark.parametrize(
    ("request_fields", "metadata_kind", "code", "message"),
    [
        ({"prompt": ""}, "key", grpc.StatusCode.INVALID_ARGUMENT, "prompt is empty"),
        ({"prompt": "hi", "max_tokens": 5000}, "key", grpc.StatusCode.INVALID_ARGUMENT, "max_tokens"),
        ({"prompt": "hi", "top_p": 0.0}, "key", grpc.StatusCode.INVALID_ARGUMENT, "top_p"),
        ({"prompt": "hi", "model": "no-such-model"}, "key", grpc.StatusCode.NOT_FOUND, "unknown model"),
        ({"prompt": "hi"}, "none", grpc.StatusCode.UNAUTHENTICATED, "missing API key"),
        ({"prompt": "hi"}, "wrong", grpc.StatusCode.UNAUTHENTICATED, "invalid API key"),
    ],
)
def test_invalid_generate_requests_get_clear_errors(
    platform: LocalPlatform,
    serving: serving_pb2_grpc.ServingServiceStub,
    request_fields: dict,
    metadata_kind: str,
    code: grpc.StatusCode,
    message: str,
) -> None:
    metadata = {"key": auth(platform), "none": (), "wrong": (("x-api-key", "not-the-key-00000000"),)}[
        metadata_kind
    ]
    for call in (serving.Generate, lambda r, **kw: list(serving.GenerateStream(r, **kw))):
        with pytest.raises(grpc.RpcError) as err:
            call(serving_pb2.GenerateRequest(**request_fields), metadata=metadata, timeout=30)
        assert err.value.code() == code
        assert message in err.value.details()


def test_query_refuses_writes(platform: LocalPlatform) -> None:
    for sql in (
        "INSERT INTO feedback (request_id) VALUES ('x')",
        "DROP TABLE inference_log",
        "SELECT 1; SELECT 2",
    ):
        with pytest.raises(grpc.RpcError) as err:
            _query(platform, sql)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, sql


def test_list_models_and_clear_rpc_errors(
    platform: LocalPlatform, serving: serving_pb2_grpc.ServingServiceStub
) -> None:
    models = serving.ListModels(serving_pb2.ListModelsRequest(), metadata=auth(platform), timeout=10).models
    assert [m.name for m in models] == ["SmolLM2-135M-Instruct"] and models[0].is_default
    with grpc.insecure_channel(platform.address("retrieval")) as channel:
        with pytest.raises(grpc.RpcError) as err:
            retrieval_pb2_grpc.RetrievalServiceStub(channel).Retrieve(
                retrieval_pb2.RetrieveRequest(collection="docs", query="q"),
                metadata=auth(platform),
                timeout=30,
            )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "collection 'docs' does not exist" in err.value.details()
    # DriftReport is built: a request without its windows is refused, naming the missing field.
    with grpc.insecure_channel(platform.address("monitoring")) as channel:
        with pytest.raises(grpc.RpcError) as err:
            monitoring_pb2_grpc.MonitoringServiceStub(channel).DriftReport(
                monitoring_pb2.DriftReportRequest(model="m"), metadata=auth(platform), timeout=10
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "baseline_start" in err.value.details()


def test_metrics_endpoint_counts_requests(platform: LocalPlatform) -> None:
    url = f"http://127.0.0.1:{platform.metrics_ports['serving']}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'llmops_grpc_requests_total{code="OK",method="Generate",service="serving"}' in body
    assert "llmops_grpc_request_seconds_bucket" in body
    feedback_metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{platform.metrics_ports['monitoring']}/metrics", timeout=5)
        .read()
        .decode()
    )
    assert "llmops_events_consumed_total" in feedback_metrics


def test_cli_sql_prints_a_table_and_refuses_writes(platform: LocalPlatform) -> None:
    env = {
        **os.environ,
        "LLMOPS_MONITORING_ADDRESS": platform.address("monitoring"),
        "LLMOPS_API_KEY": platform.api_key(),
        "COLUMNS": "200",
    }
    cli = [sys.executable, "-m", "llmops.cli"]
    sql = (
        "SELECT model, count() AS answers, countIf(score IS NOT NULL) AS rated "
        "FROM inference_with_feedback GROUP BY model"
    )
    shown = subprocess.run([*cli, "sql", sql], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert (
        "SmolLM2-135M-Instruct" in shown.stdout and "answers" in shown.stdout and "1 row(s)" in shown.stdout
    )
    as_json_lines = subprocess.run(
        [*cli, "sql", "--json", sql], env=env, capture_output=True, text=True, timeout=60
    )
    row = json.loads(as_json_lines.stdout.splitlines()[0])
    assert row["model"] == "SmolLM2-135M-Instruct" and row["answers"] >= 2 and row["rated"] >= 1
    refused = subprocess.run(
        [*cli, "sql", "DELETE FROM feedback WHERE 1"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr


def test_a_request_id_follows_the_call_through_every_service(platform: LocalPlatform) -> None:
    """RunJudge on labeling calls Generate on serving: both log the caller's id and return it."""
    request_id = f"req-trace-{uuid.uuid4().hex[:8]}"
    queue = f"trace-{uuid.uuid4().hex[:6]}"
    with grpc.insecure_channel(platform.address("labeling")) as channel:
        labeling = labeling_pb2_grpc.LabelingServiceStub(channel)
        labeling.CreateQueue(
            labeling_pb2.CreateQueueRequest(
                name=queue, task_type=labeling_pb2.TASK_TYPE_CLASSIFICATION, label_set=["good", "bad"]
            ),
            metadata=auth(platform),
            timeout=30,
        )
        labeling.CreateTasks(
            labeling_pb2.CreateTasksRequest(
                queue=queue, tasks=[labeling_pb2.TaskInput(text="The answer was clear and correct.")]
            ),
            metadata=auth(platform),
            timeout=30,
        )
        reply, call = labeling.RunJudge.with_call(
            labeling_pb2.RunJudgeRequest(queue=queue, limit=1),
            metadata=(*auth(platform), ("x-request-id", request_id)),
            timeout=300,
        )
    assert reply.tasks_labeled + reply.tasks_failed == 1
    assert ("x-request-id", request_id) in tuple(call.trailing_metadata())
    for service in ("labeling", "serving"):
        log = (platform.log_dir / f"{service}.log").read_text(errors="replace")
        assert f"[{request_id}]" in log, f"{service}'s log has no line for {request_id}"
