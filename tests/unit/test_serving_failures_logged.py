"""Requests that fail on the server side are logged as inference.logged with `error`; the caller's own
errors are not. Generation runs on an in-memory engine and router (the real engine is exercised in the
integration tests); the log goes through the real InferenceLogWriter and its publish buffer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmops.contracts.events import Event, InferenceLogged
from llmops.serving.deployments import RegistryUnavailable
from llmops.serving.domain.requests import InvalidRequest
from llmops.serving.engine import GenerationChunk, GenerationError, GenerationParams, RenderedPrompt
from llmops.serving.generation import Generation, GenerationRequest, Started, Step, server_side_error
from llmops.serving.inference_log import InferenceLogWriter
from llmops.serving.routing import Route, UnknownModel
from llmops.serving.settings import Settings


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")


class _Bus:
    service = "serving"

    def __init__(self) -> None:
        self.published: list[Event] = []

    def stamp(self, event: Event) -> Event:
        return event

    async def publish(self, event: Event) -> None:
        self.published.append(event)


class _Engine:
    """Streams "a", "b", "c" (or fails after ``fail_after`` chunks, or stalls for ``stall`` seconds
    before each chunk after the first ``stall_from``)."""

    max_model_len = 2048

    def __init__(self, *, fail_after: int | None = None, stall: float = 0.0, stall_from: int = 0) -> None:
        self.fail_after = fail_after
        self.stall = stall
        self.stall_from = stall_from

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        return "\n".join(m["content"] for m in messages)

    async def render(self, prompt: str) -> RenderedPrompt:
        return RenderedPrompt({"prompt_token_ids": list(range(len(prompt.split())))})

    async def generate(
        self, prompt: RenderedPrompt, params: GenerationParams, request_id: str, lora: object = None
    ) -> AsyncIterator[GenerationChunk]:
        now = time.monotonic()
        for i, delta in enumerate("abc"):
            if self.fail_after is not None and i == self.fail_after:
                raise GenerationError(f"request {request_id} ended with finish_reason='abort'")
            if self.stall and i >= self.stall_from:
                await asyncio.sleep(self.stall)
            last = i == 2
            yield GenerationChunk(delta, last, "stop" if last else None, prompt.tokens, i + 1, now, now)  # type: ignore[arg-type]


class _Router:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def resolve(self, requested: str, user: str = "") -> tuple[Route, None]:
        if self.error is not None:
            raise self.error
        return Route(requested or "base", None, "challenger"), None

    @contextlib.asynccontextmanager
    async def using(self, route: Route) -> AsyncIterator[None]:
        yield


async def _serve(
    tmp_path: Path,
    engine: _Engine,
    router: _Router,
    request: GenerationRequest,
    *,
    timeout: float | None = None,
) -> tuple[BaseException | None, list[InferenceLogged]]:
    bus = _Bus()
    writer = InferenceLogWriter(
        bus,  # type: ignore[arg-type]
        tmp_path / "spool.jsonl",
        memory_limit=100,
        spool_limit_bytes=1 << 20,
        redact=lambda text: text,
    )
    settings = Settings(served_model_name="base")
    generation = Generation(settings, engine, writer, lambda: router, None, None)  # type: ignore[arg-type]
    raised: BaseException | None = None
    async with writer:
        try:
            async with asyncio.timeout(timeout):
                await generation.complete(request)
        except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
            raised = exc
        await writer.drain(5)
    return raised, [e for e in bus.published if isinstance(e, InferenceLogged)]


async def test_an_answer_is_logged_without_error(tmp_path: Path) -> None:
    raised, logged = await _serve(
        tmp_path, _Engine(), _Router(), GenerationRequest(model="bot", prompt="hi there")
    )
    assert raised is None
    assert [(e.completion, e.error, e.finish_reason) for e in logged] == [("abc", "", "stop")]


async def test_an_engine_failure_is_logged_with_its_status_and_what_was_generated(tmp_path: Path) -> None:
    request = GenerationRequest(model="bot", prompt="hi there", request_id="r-1", user="alice", max_tokens=9)
    raised, logged = await _serve(tmp_path, _Engine(fail_after=2), _Router(), request)
    assert isinstance(raised, GenerationError)
    (event,) = logged
    assert event.error == "ABORTED"
    assert (event.request_id, event.model, event.arm, event.user) == ("r-1", "bot", "challenger", "alice")
    assert event.model_version == "base"
    assert (event.completion, event.finish_reason, event.prompt_tokens, event.max_tokens) == (
        "ab",
        "error",
        2,
        9,
    )
    assert event.latency_ms > 0


async def test_a_dependency_that_is_away_before_routing_is_logged_as_unavailable(tmp_path: Path) -> None:
    router = _Router(RegistryUnavailable("the registry could not be asked"))
    request = GenerationRequest(model="bot@champion", prompt="hello", request_id="r-2")
    raised, logged = await _serve(tmp_path, _Engine(), router, request)
    assert isinstance(raised, RegistryUnavailable)
    (event,) = logged
    assert (event.error, event.model, event.model_version, event.prompt) == (
        "UNAVAILABLE",
        "bot@champion",
        "",
        "hello",
    )
    assert event.temperature is None and event.max_tokens is None


async def test_a_passed_deadline_during_generation_is_logged_as_deadline_exceeded(tmp_path: Path) -> None:
    # "a" comes at once, then the engine stalls far past the deadline (no race with a loaded machine).
    request = GenerationRequest(model="bot", prompt="hi", deadline=time.monotonic() + 1.0)
    raised, logged = await _serve(tmp_path, _Engine(stall=60, stall_from=1), _Router(), request, timeout=1.0)
    assert isinstance(raised, TimeoutError)
    assert [(e.error, e.completion) for e in logged] == [("DEADLINE_EXCEEDED", "a")]


@pytest.mark.parametrize(
    ("router", "request_"),
    [
        (
            _Router(UnknownModel("model 'nope' is not served here")),
            GenerationRequest(model="nope", prompt="x"),
        ),
        (_Router(), GenerationRequest(model="bot", prompt="x", messages=(("user", "y"),), raw_prompt=True)),
    ],
    ids=["unknown-model", "invalid-argument"],
)
async def test_the_callers_own_errors_are_not_logged(
    tmp_path: Path, router: _Router, request_: GenerationRequest
) -> None:
    raised, logged = await _serve(tmp_path, _Engine(), router, request_)
    assert raised is not None and not isinstance(raised, RuntimeError)
    assert logged == []


async def test_a_caller_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    bus = _Bus()
    writer = InferenceLogWriter(
        bus,  # type: ignore[arg-type]
        tmp_path / "spool.jsonl",
        memory_limit=100,
        spool_limit_bytes=1 << 20,
        redact=lambda text: text,
    )
    generation = Generation(Settings(served_model_name="base"), _Engine(), writer, _Router, None, None)  # type: ignore[arg-type]
    async with writer:
        steps = generation.run(GenerationRequest(model="bot", prompt="hi"), streamed=True)
        assert isinstance(await anext(steps), Started)
        assert isinstance(await anext(steps), Step)
        await steps.aclose()  # no deadline: the caller left
        await writer.drain(5)
    assert bus.published == []


def test_which_failures_are_the_servers() -> None:
    assert server_side_error(GenerationError("x"), None) == "ABORTED"
    assert server_side_error(RegistryUnavailable("x"), None) == "UNAVAILABLE"
    assert server_side_error(KeyError("bug"), None) == "INTERNAL"
    assert server_side_error(InvalidRequest("x"), None) == ""
    assert server_side_error(asyncio.CancelledError(), None) == ""
    assert server_side_error(asyncio.CancelledError(), time.monotonic() - 1) == "DEADLINE_EXCEEDED"
    assert server_side_error(asyncio.CancelledError(), time.monotonic() + 60) == ""
