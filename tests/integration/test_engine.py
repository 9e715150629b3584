"""TextEngine on the real vLLM with SmolLM2-135M-Instruct: one engine for the module (~30 s to start)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from llmops.core.model_assets import smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.serving.engine import EngineOptions, GenerationChunk, GenerationParams, TextEngine

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Write a short story about a dragon who loves books."}]


@pytest_asyncio.fixture(scope="module")
async def engine() -> AsyncIterator[TextEngine]:
    platform = PlatformSettings()
    async with TextEngine(
        smollm2_path(platform.models_dir),
        EngineOptions(served_name="smollm2-test", max_model_len=2048),
        cache_dir=platform.data_dir / "cache",
    ) as started:
        yield started


async def _collect(
    engine: TextEngine, prompt: str, params: GenerationParams, request_id: str
) -> tuple[str, list[GenerationChunk]]:
    chunks = [chunk async for chunk in engine.generate(prompt, params, request_id)]
    return "".join(c.delta for c in chunks), chunks


async def test_chat_template_and_greedy_is_deterministic(engine: TextEngine) -> None:
    prompt = engine.format_chat(QUESTION)
    # SmolLM2's ChatML turn markers, with the assistant turn opened for the reply.
    assert "<|im_start|>user\nWrite a short story" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")

    params = GenerationParams(max_tokens=32, temperature=0.0)
    first, chunks = await _collect(engine, prompt, params, "greedy-1")
    second, _ = await _collect(engine, prompt, params, "greedy-2")
    assert first and first == second

    last = chunks[-1]
    assert last.finished and last.finish_reason in ("stop", "length")
    assert not any(c.finished for c in chunks[:-1])
    assert last.prompt_tokens == engine.count_tokens(prompt)
    assert 0 < last.completion_tokens <= 32
    assert last.time_to_first_token is not None and last.time_to_first_token > 0


async def test_stream_matches_final_output(engine: TextEngine) -> None:
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    prompt = engine.format_chat(QUESTION)
    params = GenerationParams(max_tokens=48, temperature=0.0, stop=("library",))
    streamed, chunks = await _collect(engine, prompt, params, "stream")

    # The same request through vLLM with only the final, cumulative output.
    final = None
    async for out in engine._require_engine().generate(
        prompt,
        SamplingParams(
            max_tokens=48, temperature=0.0, stop=["library"], output_kind=RequestOutputKind.FINAL_ONLY
        ),
        "final",
    ):
        final = out
    assert final is not None
    assert streamed == final.outputs[0].text
    assert chunks[-1].completion_tokens == len(final.outputs[0].token_ids)
    assert chunks[-1].finish_reason == final.outputs[0].finish_reason


async def test_max_tokens_gives_length(engine: TextEngine) -> None:
    prompt = engine.format_chat(QUESTION)
    text, chunks = await _collect(engine, prompt, GenerationParams(max_tokens=5, temperature=0.0), "length")
    assert text
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].completion_tokens == 5


async def test_stop_string_ends_and_is_left_out(engine: TextEngine) -> None:
    prompt = engine.format_chat(QUESTION)
    full, _ = await _collect(engine, prompt, GenerationParams(max_tokens=32, temperature=0.0), "no-stop")
    # A word from the middle of the greedy reply, so the run with it as a stop string must end there.
    stop = next(w for w in full.split()[3:] if len(w) >= 4)
    text, chunks = await _collect(
        engine, prompt, GenerationParams(max_tokens=32, temperature=0.0, stop=(stop,)), "stop"
    )
    assert stop not in text
    assert text == full[: full.index(stop)]
    assert chunks[-1].finish_reason == "stop"


async def test_cancel_mid_stream_aborts(engine: TextEngine) -> None:
    prompt = engine.format_chat(QUESTION)
    params = GenerationParams(max_tokens=500, temperature=0.0)
    short = GenerationParams(max_tokens=8, temperature=0.0)
    processor = engine._require_engine().output_processor
    before, _ = await _collect(engine, prompt, short, "before")

    # The client stops reading: closing the iterator must abort the request in vLLM at once.
    stream = engine.generate(prompt, params, "closed")
    async for chunk in stream:
        assert not chunk.finished
        break
    assert engine.num_unfinished_requests == 1
    await stream.aclose()
    assert engine.num_unfinished_requests == 0
    assert not processor.request_states

    # The handler task is cancelled (gRPC does this when the client goes away).
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(prompt, params, "cancelled"):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.num_unfinished_requests == 0
    assert not processor.request_states

    # Still serving, with the same greedy answer as before the aborts.
    text, chunks = await _collect(engine, prompt, short, "after")
    assert text == before
    assert chunks[-1].completion_tokens == 8
