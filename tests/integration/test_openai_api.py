"""Serving's OpenAI-compatible HTTP API, called with the official `openai` client, and backpressure,
cancellation and deadlines over both transports, against serving as a process on vLLM."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import grpc
import openai
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME
from llmops.testing.platform import auth, running_platform

pytestmark = pytest.mark.integration

LIMIT = 2
QUESTION = "What is the capital of France?"
LONG = "Write a very long story about a dragon who learns to bake bread. Make it as long as you can."


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(
        tmp_path_factory.mktemp("openai"), ["serving"], LLMOPS_SERVING_MAX_REQUESTS_IN_FLIGHT=str(LIMIT)
    ) as platform:
        yield platform


@pytest.fixture(scope="module")
def client(platform: LocalPlatform) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=platform.openai_base_url, api_key=platform.api_key(), max_retries=0, timeout=180
    )


@pytest.fixture(scope="module")
def serving(platform: LocalPlatform) -> Iterator[serving_pb2_grpc.ServingServiceStub]:
    with grpc.insecure_channel(platform.address("serving")) as channel:
        yield serving_pb2_grpc.ServingServiceStub(channel)


def _in_flight(platform: LocalPlatform) -> float:
    body = urllib.request.urlopen(
        f"http://127.0.0.1:{platform.metrics_ports['serving']}/metrics", timeout=5
    ).read()
    match = re.search(r'llmops_in_flight\{service="serving",what="requests"\} ([0-9.]+)', body.decode())
    assert match, "serving exports llmops_in_flight"
    return float(match.group(1))


def _until_idle(platform: LocalPlatform, timeout: float = 5) -> float:
    """Seconds until serving has nothing in flight (fails after ``timeout``)."""
    began = time.monotonic()
    while _in_flight(platform) != 0:
        if time.monotonic() - began > timeout:
            raise AssertionError(
                f"serving still has {_in_flight(platform)} request(s) in flight after {timeout}s"
            )
        time.sleep(0.05)
    return time.monotonic() - began


def test_models_lists_the_base_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids[0] == SMOLLM2_NAME
    assert models.data[0].model_extra["loaded"] is True


def test_chat_streamed_and_not_give_the_same_greedy_answer(client: openai.OpenAI, serving, platform) -> None:  # noqa: ANN001
    raw = client.chat.completions.with_raw_response.create(
        model=SMOLLM2_NAME,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=24,
        temperature=0,
        user="ada",
        extra_headers={"x-request-id": "req-ada-1"},
    )
    # The caller's request id is the answer's, echoed in its header.
    assert raw.headers["x-request-id"] == "req-ada-1"
    whole = raw.parse()
    assert whole.model_extra["request_id"] == "req-ada-1"
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert 0 < whole.usage.completion_tokens <= 24 and whole.usage.prompt_tokens > 5
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert whole.model_extra["model_version"] == SMOLLM2_NAME

    chunks = list(
        client.chat.completions.create(
            model=SMOLLM2_NAME,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finished) == 1 and finished[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert (
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    )

    # The same request over gRPC answers the same: one request path.
    over_grpc = serving.Generate(
        serving_pb2.GenerateRequest(prompt=QUESTION, max_tokens=24, temperature=0),
        metadata=auth(platform),
        timeout=120,
    )
    assert over_grpc.text == text


def test_completions_take_the_prompt_as_is(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=SMOLLM2_NAME, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.object == "text_completion" and reply.choices[0].text.strip()
    assert reply.usage.prompt_tokens < 10  # no chat template around it
    pieces = list(
        client.completions.create(
            model=SMOLLM2_NAME, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(p.choices[0].text for p in pieces) == reply.choices[0].text


def test_errors_have_openai_shape_and_status(platform: LocalPlatform, client: openai.OpenAI) -> None:
    wrong = openai.OpenAI(base_url=platform.openai_base_url, api_key="not-the-key-at-all", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.models.list()
    assert err.value.status_code == 401 and err.value.body["type"] == "authentication_error"
    assert err.value.response.headers["x-request-id"]  # refused answers carry one too
    with pytest.raises(openai.BadRequestError, match="temperature must be between 0 and 2"):
        client.chat.completions.create(
            model=SMOLLM2_NAME, messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    with pytest.raises(openai.NotFoundError, match="unknown model 'no-such-model'"):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model=SMOLLM2_NAME, messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(openai.BadRequestError, match="variable"):
        client.chat.completions.create(
            model=SMOLLM2_NAME,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"variables": {"a": "b"}},
        )


def test_past_the_limit_http_gets_429_at_once_and_a_closed_stream_frees_its_slot(
    platform: LocalPlatform, client: openai.OpenAI
) -> None:
    long = {
        "model": SMOLLM2_NAME,
        "messages": [{"role": "user", "content": LONG}],
        "max_tokens": 1000,
        "temperature": 0,
    }
    streams = [client.chat.completions.create(stream=True, **long) for _ in range(LIMIT)]
    for stream in streams:
        next(iter(stream))  # each is admitted and generating
    assert _in_flight(platform) == LIMIT
    began = time.monotonic()
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**{**long, "max_tokens": 4})
    assert time.monotonic() - began < 5  # refused at once, not queued behind the 1000-token answers
    assert refused.value.response.headers["retry-after"] == "1"
    assert refused.value.body["type"] == "rate_limit_error"
    for stream in streams:
        stream.close()  # the client goes away mid-answer
    print(f"slots free {_until_idle(platform):.2f}s after the clients closed their streams")
    reply = client.chat.completions.create(**{**long, "max_tokens": 4})
    assert reply.choices[0].finish_reason == "length"


def test_past_the_limit_grpc_gets_resource_exhausted_and_a_cancelled_stream_frees_its_slot(
    platform: LocalPlatform, serving: serving_pb2_grpc.ServingServiceStub
) -> None:
    md = auth(platform)
    long = serving_pb2.GenerateRequest(prompt=LONG, max_tokens=1000, temperature=0)
    calls = [serving.GenerateStream(long, metadata=md, timeout=300) for _ in range(LIMIT)]
    for call in calls:
        next(call)
    with pytest.raises(grpc.RpcError) as refused:
        serving.Generate(serving_pb2.GenerateRequest(prompt="hi", max_tokens=2), metadata=md, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "in flight" in refused.value.details()
    for call in calls:
        call.cancel()
    print(f"slots free {_until_idle(platform):.2f}s after the callers cancelled")
    assert serving.Generate(
        serving_pb2.GenerateRequest(prompt="hi", max_tokens=2), metadata=md, timeout=60
    ).usage.completion_tokens


def test_a_passed_deadline_stops_the_generation(
    platform: LocalPlatform, serving: serving_pb2_grpc.ServingServiceStub
) -> None:
    md = auth(platform)
    long = serving_pb2.GenerateRequest(prompt=LONG, max_tokens=1000, temperature=0)
    for call in (serving.Generate, lambda *a, **k: list(serving.GenerateStream(*a, **k))):
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            call(long, metadata=md, timeout=1.5)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - began < 10
        # The engine request was aborted with the call, not left generating 1000 tokens for nobody.
        _until_idle(platform)
