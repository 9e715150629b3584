"""Serving: what the platform costs on top of the engine it serves with.

The same greedy workload runs twice in one process's lifetime: first on the vLLM engine in process
(the baseline), then through the serving service as `make up` runs it (gRPC, API key, validation,
chat template, inference.logged to Kafka). Figures are printed as ratios against the baseline, so
they mean the same on a slower or busier machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.model_assets import smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.serving.engine import EngineOptions, GenerationParams, TextEngine
from llmops.testing.platform import auth, running_platform

PROMPTS = [f"Write one sentence about the number {i}." for i in range(16)]
MAX_TOKENS = 32
CONCURRENCY = (1, 8)


@dataclass
class Figures:
    tokens_per_s: float
    ttft_ms_p50: float
    latency_ms_p50: float


def _summarise(tokens: int, elapsed: float, ttfts: list[float], latencies: list[float]) -> Figures:
    return Figures(tokens / elapsed, statistics.median(ttfts), statistics.median(latencies))


async def _engine_run(engine: TextEngine, concurrency: int) -> Figures:
    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0, top_p=1.0)
    semaphore = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []
    latencies: list[float] = []
    tokens = 0

    async def one(i: int, prompt: str) -> None:
        nonlocal tokens
        async with semaphore:
            started = time.perf_counter()
            first = None
            text = engine.format_chat([{"role": "user", "content": prompt}])
            async for chunk in engine.generate(text, params, f"bench-{concurrency}-{i}"):
                if first is None and chunk.delta:
                    first = time.perf_counter()
                if chunk.finished:
                    tokens += chunk.completion_tokens
            end = time.perf_counter()
            ttfts.append(((first or end) - started) * 1000)
            latencies.append((end - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(PROMPTS)))
    return _summarise(tokens, time.perf_counter() - started, ttfts, latencies)


async def _service_run(address: str, metadata: tuple, concurrency: int) -> Figures:
    semaphore = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []
    latencies: list[float] = []
    tokens = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)

        async def one(prompt: str) -> None:
            nonlocal tokens
            async with semaphore:
                started = time.perf_counter()
                first = None
                request = serving_pb2.GenerateRequest(prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
                async for chunk in stub.GenerateStream(request, metadata=metadata, timeout=600):
                    if first is None and chunk.delta:
                        first = time.perf_counter()
                    if chunk.finish_reason:
                        tokens += chunk.usage.completion_tokens
                end = time.perf_counter()
                ttfts.append(((first or end) - started) * 1000)
                latencies.append((end - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(one(p) for p in PROMPTS))
    return _summarise(tokens, time.perf_counter() - started, ttfts, latencies)


async def _baseline(cache: Path) -> dict[int, Figures]:
    model = smollm2_path(PlatformSettings().models_dir)
    async with TextEngine(model, EngineOptions(served_name="bench"), cache_dir=cache) as engine:
        await _engine_run(engine, 1)  # warm-up
        return {c: await _engine_run(engine, c) for c in CONCURRENCY}


async def _through_service(root: Path) -> dict[int, Figures]:
    with running_platform(root, ["serving"]) as platform:
        address, metadata = platform.address("serving"), auth(platform)
        await _service_run(address, metadata, 1)  # warm-up
        return {c: await _service_run(address, metadata, c) for c in CONCURRENCY}


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="llmops-bench-") as tmp:
        print(
            f"workload: {len(PROMPTS)} greedy requests x {MAX_TOKENS} tokens, SmolLM2-135M-Instruct",
            flush=True,
        )
        baseline = asyncio.run(_baseline(Path(tmp) / "cache"))
        service = asyncio.run(_through_service(Path(tmp)))
    print(
        f"\n{'concurrency':>11} | {'engine tok/s':>12} | {'service tok/s':>13} | {'throughput ratio':>16} |"
        f" {'ttft p50 engine/service ms':>26} | {'latency ratio p50':>17}"
    )
    for c in CONCURRENCY:
        b, s = baseline[c], service[c]
        ratio = s.tokens_per_s / b.tokens_per_s
        print(
            f"{c:>11} | {b.tokens_per_s:>12.1f} | {s.tokens_per_s:>13.1f} | {ratio:>16.3f} |"
            f" {b.ttft_ms_p50:>11.0f} / {s.ttft_ms_p50:<12.0f} | {s.latency_ms_p50 / b.latency_ms_p50:>17.3f}"
        )
    print("\nratio = through the serving service / engine in process (1.0 = no overhead).")
