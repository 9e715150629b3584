"""Serving: what the platform costs on top of the engine it serves with, and how it compares.

One fixed greedy chat workload runs at 1, 8 and 32 concurrent streams on five systems, one after
another (only one engine is alive at a time):

  (a) vLLM's ``AsyncLLM`` in process, through :class:`TextEngine` with serving's engine settings;
  serving gRPC and serving HTTP: the serving service as ``make up`` runs it (API key, validation,
      chat template, admission, inference.logged to Kafka), through ``GenerateStream`` and through
      its OpenAI-compatible ``/v1/chat/completions`` (streamed, usage included);
  (b) vLLM's own OpenAI server as a process on the same model and settings (what a user would run
      instead), called with the same ``AsyncOpenAI`` streaming code as serving's HTTP API;
  (c) plain transformers ``generate`` (fp32, greedy; the concurrent prompts batched with left
      padding at 8 and 32, one at a time at 1), in a process of its own.

Output tokens are the servers' own counts (the final gRPC message, OpenAI ``usage``, vLLM's outputs,
the generated ids for transformers). Throughput is printed as ratios against (a) and (b) measured in
the same run, so the figures mean the same on a slower or busier machine.

Each system gets a warm-up at the largest concurrency, then ROUNDS rounds of 1, 8 and 32 streams;
at each concurrency the round with the higher throughput is kept (others' load on a shared machine
only ever slows a run down). gRPC and HTTP take turns on one serving process, run by run.

``LLMOPS_BENCH_QUICK=1`` runs fewer prompts (a check that everything works, not a measurement).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from openai import AsyncOpenAI

from llmops.cli.local import free_port
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.core.settings import LOOPBACK, PlatformSettings
from llmops.serving.engine import EngineOptions, GenerationParams, TextEngine
from llmops.testing.platform import auth, running_platform

QUICK = os.environ.get("LLMOPS_BENCH_QUICK", "") not in ("", "0")
MAX_TOKENS = 32
# Concurrency -> how many requests a run sends (at 32: two waves of 32 streams).
PLAN = {1: 3, 8: 8, 32: 32} if QUICK else {1: 8, 8: 64, 32: 64}
ROUNDS = 1 if QUICK else 2
WARMUP = (8, 8) if QUICK else (32, 32)  # requests, concurrency; not measured
GOAL_VS_ENGINE = 0.95
GOAL_VS_VLLM_SERVER = 1.0
# Serving's engine settings (llmops.serving.settings defaults): fp32, eager, 2048 tokens, 1 GiB KV
# cache, LoRA enabled (4 adapters, rank 16).
OPTIONS = EngineOptions(served_name=SMOLLM2_NAME)
VLLM_SERVER_NAME = "bench"
VLLM_SERVER_START_TIMEOUT = 300.0

ENGINE = "(a) engine in process"
GRPC = "serving gRPC"
HTTP = "serving HTTP"
VLLM_SERVER = "(b) vLLM OpenAI server"
TRANSFORMERS = "(c) transformers"
ROWS = (ENGINE, GRPC, HTTP, VLLM_SERVER, TRANSFORMERS)

Messages = list[dict[str, str]]
# One request: send the messages, return (completion tokens, perf_counter() of the first text or None).
Call = Callable[[Messages], Awaitable[tuple[int, float | None]]]


def _prompts(run: int, n: int) -> list[Messages]:
    """The ``n`` prompts of one run (0: the warm-up), the same on every system.

    Each run has prompts of its own, so vLLM's prefix cache helps every vLLM system the same way
    (the shared chat-template prefix only) and no run replays an earlier one. They all ask for
    more than MAX_TOKENS tokens, so greedy answers end at the length limit.
    """
    return [
        [{"role": "user", "content": f"Write a short paragraph about the number {1000 * (run + 1) + i}."}]
        for i in range(n)
    ]


@dataclass
class Figures:
    tokens: int
    elapsed: float
    ttft_ms: list[float] | None
    latency_ms: list[float]
    # The machine's 1-minute load average when the run began (2 cores shared with others: noise).
    load: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _drive(call: Call, prompts: list[Messages], concurrency: int) -> Figures:
    """Send ``prompts`` with at most ``concurrency`` in flight; time each from its send."""
    semaphore = asyncio.Semaphore(concurrency)
    tokens = 0
    ttfts: list[float] = []
    latencies: list[float] = []

    async def one(messages: Messages) -> None:
        nonlocal tokens
        async with semaphore:
            started = time.perf_counter()
            count, first = await call(messages)
            ended = time.perf_counter()
        tokens += count
        ttfts.append(((first or ended) - started) * 1000)
        latencies.append((ended - started) * 1000)

    load, began = os.getloadavg()[0], time.perf_counter()
    await asyncio.gather(*(one(m) for m in prompts))
    return Figures(tokens, time.perf_counter() - began, ttfts, latencies, load)


def _run_id(round_: int, concurrency: int) -> int:
    return 1 + round_ * 100 + concurrency


def _keep_best(best: dict[int, Figures], concurrency: int, figures: Figures) -> None:
    if concurrency not in best or figures.tokens_per_s > best[concurrency].tokens_per_s:
        best[concurrency] = figures


async def _measure(calls: dict[str, Call]) -> dict[str, dict[int, Figures]]:
    """Warm each system up, then run the rounds, the systems taking turns run by run."""
    for call in calls.values():
        await _drive(call, _prompts(0, WARMUP[0]), WARMUP[1])
    _note(*calls)
    best: dict[str, dict[int, Figures]] = {system: {} for system in calls}
    for round_ in range(ROUNDS):
        for c, n in PLAN.items():
            for system, call in calls.items():
                _keep_best(best[system], c, await _drive(call, _prompts(_run_id(round_, c), n), c))
    return best


_STARTED: dict[str, float] = {}


def _note(*systems: str) -> None:
    """Say that ``systems`` are warm and their measurement begins (time since their start, if timed)."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    since = _STARTED.get(systems[0])
    ready = f", started and warmed up in {time.monotonic() - since:.0f}s" if since is not None else ""
    print(f"  {' and '.join(systems)}: measuring (load average {load}{ready})", flush=True)


@contextlib.contextmanager
def _timed(*systems: str, startup: bool = True) -> Iterator[None]:
    began = time.monotonic()
    if startup:  # the first system's measurement begins when it is ready
        _STARTED[systems[0]] = began
    yield
    print(f"  {' and '.join(systems)}: done in {time.monotonic() - began:.0f}s", flush=True)


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """Undo what vLLM's set-up writes into os.environ, so later child processes start clean."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _engine_environment(model: Path, cache: Path) -> dict[str, str]:
    """The environment serving's engine runs vLLM with (TextEngine's own set-up), with caches in ``cache``."""
    with _environment_kept():
        TextEngine(model, OPTIONS, cache_dir=cache)._configure_environment()
        return dict(os.environ)


# --- (a) the engine in process ---------------------------------------------------------------------


async def _engine(model: Path, cache: Path) -> dict[str, dict[int, Figures]]:
    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0, top_p=1.0)
    async with TextEngine(model, OPTIONS, cache_dir=cache) as engine:

        async def call(messages: Messages) -> tuple[int, float | None]:
            first, tokens = None, 0
            text = engine.format_chat(messages)
            async for chunk in engine.generate(text, params, uuid.uuid4().hex):
                if first is None and chunk.delta:
                    first = time.perf_counter()
                if chunk.finished:
                    tokens = chunk.completion_tokens
            return tokens, first

        return await _measure({ENGINE: call})


# --- serving, gRPC and HTTP ------------------------------------------------------------------------


def _grpc_call(stub: serving_pb2_grpc.ServingServiceStub, metadata: tuple) -> Call:
    async def call(messages: Messages) -> tuple[int, float | None]:
        first, tokens = None, None
        request = serving_pb2.GenerateRequest(
            messages=[serving_pb2.ChatMessage(**m) for m in messages],
            max_tokens=MAX_TOKENS,
            temperature=0,
        )
        async for chunk in stub.GenerateStream(request, metadata=metadata, timeout=600):
            if first is None and chunk.delta:
                first = time.perf_counter()
            if chunk.finish_reason:
                tokens = chunk.usage.completion_tokens
        if tokens is None:
            raise RuntimeError("GenerateStream ended without its final message (usage)")
        return tokens, first

    return call


def _openai_call(client: AsyncOpenAI, model: str) -> Call:
    """The same streaming client code for serving's HTTP API and vLLM's OpenAI server."""

    async def call(messages: Messages) -> tuple[int, float | None]:
        first, tokens = None, None
        stream = await client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        if tokens is None:
            raise RuntimeError(f"{client.base_url}: the stream ended without usage")
        return tokens, first

    return call


def _openai_client(base_url: str, api_key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)


async def _serving_calls(
    address: str, metadata: tuple, base_url: str, api_key: str
) -> dict[str, dict[int, Figures]]:
    async with grpc.aio.insecure_channel(address) as channel, _openai_client(base_url, api_key) as client:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        return await _measure({GRPC: _grpc_call(stub, metadata), HTTP: _openai_call(client, SMOLLM2_NAME)})


def _serving(root: Path) -> dict[str, dict[int, Figures]]:
    with running_platform(root, ["serving"]) as platform:
        return asyncio.run(
            _serving_calls(
                platform.address("serving"), auth(platform), platform.openai_base_url, platform.api_key()
            )
        )


# --- (b) vLLM's own OpenAI server ------------------------------------------------------------------


def _group_alive(group: int) -> bool:
    """Whether a live (not zombie) process is in process group ``group``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server, then kill its process group (it and the engine process it started,
    in a session of their own) if anything of it outlives the terminate."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _vllm_server(model: Path, folder: Path) -> Iterator[str]:
    """``python -m vllm.entrypoints.openai.api_server`` on a free loopback port; its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--dtype",
        OPTIONS.dtype,
        "--enforce-eager",
        "--max-model-len",
        str(OPTIONS.max_model_len),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--served-model-name",
        VLLM_SERVER_NAME,
        # The same settings as serving's engine: LoRA on (serving answers adapters next to the base
        # model), so the comparison is like for like.
        *(
            [
                "--enable-lora",
                "--max-loras",
                str(OPTIONS.max_loras),
                "--max-lora-rank",
                str(OPTIONS.max_lora_rank),
            ]
            if OPTIONS.enable_lora
            else []
        ),
    ]
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=_engine_environment(model, folder / "cache"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + VLLM_SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM's server exited with {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM's server not healthy in {VLLM_SERVER_START_TIMEOUT:.0f}s:\n{_tail(log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{LOOPBACK}:{port}/health", timeout=2).status_code == 200:
                    break
            time.sleep(1)
        yield f"http://{LOOPBACK}:{port}/v1"
    finally:
        _stop(process)


async def _vllm_calls(base_url: str) -> dict[str, dict[int, Figures]]:
    async with _openai_client(base_url, "unused") as client:
        return await _measure({VLLM_SERVER: _openai_call(client, VLLM_SERVER_NAME)})


def _vllm(model: Path, folder: Path) -> dict[str, dict[int, Figures]]:
    with _vllm_server(model, folder) as base_url:
        return asyncio.run(_vllm_calls(base_url))


# --- (c) transformers ------------------------------------------------------------------------------


def _transformers_worker(model_path: str) -> dict[int, tuple[int, float, list[float], list[float], float]]:
    """In a process of its own: greedy ``generate``, batched like the concurrency (left padding).

    TTFT is the time to the first generated token of the ``generate`` call, i.e. of the whole batch
    at 8 and 32 (every prompt in a batch gets its batch's figures).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.puts, self.at = 0, None

        def put(self, value: torch.Tensor) -> None:
            self.puts += 1
            if self.puts == 2 and self.at is None:  # the first put is the prompt
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    def generate(batch: list[Messages]) -> tuple[int, float, float]:
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
        started = time.perf_counter()
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        streamer = FirstToken()
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=MAX_TOKENS,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
                streamer=streamer,
            )
        ended = time.perf_counter()
        tokens = 0
        for row in out[:, inputs["input_ids"].shape[1] :].tolist():
            # Up to and including the end-of-sequence token, as vLLM counts; the rest is padding.
            tokens += row.index(eos) + 1 if eos in row else len(row)
        return tokens, (streamer.at or ended) - started, ended - started

    def run(prompts: list[Messages], concurrency: int) -> tuple[int, float, list[float], list[float], float]:
        tokens, ttfts, latencies = 0, [], []
        load, began = os.getloadavg()[0], time.perf_counter()
        for i in range(0, len(prompts), concurrency):
            batch = prompts[i : i + concurrency]
            count, ttft, latency = generate(batch)
            tokens += count
            ttfts += [ttft * 1000] * len(batch)
            latencies += [latency * 1000] * len(batch)
        return tokens, time.perf_counter() - began, ttfts, latencies, load

    run(_prompts(0, WARMUP[0]), WARMUP[1])
    best: dict[int, tuple[int, float, list[float], list[float], float]] = {}
    for round_ in range(ROUNDS):
        for c, n in PLAN.items():
            figures = run(_prompts(_run_id(round_, c), n), c)
            if c not in best or figures[0] / figures[1] > best[c][0] / best[c][1]:
                best[c] = figures
    return best


def _transformers(model: Path) -> dict[str, dict[int, Figures]]:
    _note(TRANSFORMERS)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        results = pool.submit(_transformers_worker, str(model)).result()
    return {TRANSFORMERS: {c: Figures(*r) for c, r in results.items()}}


# --- report ----------------------------------------------------------------------------------------


def _ratio(figures: dict[str, Figures | None], row: str, base: str) -> float | None:
    a, b = figures.get(row), figures.get(base)
    return None if a is None or b is None else a.tokens_per_s / b.tokens_per_s


def _table(concurrency: int, figures: dict[str, Figures | None]) -> None:
    print(
        f"\nconcurrency {concurrency}: {PLAN[concurrency]} requests x up to {MAX_TOKENS} tokens"
        f" (best of {ROUNDS} round{'s' if ROUNDS > 1 else ''})"
    )
    header = (
        f"{'system':<24} {'tokens':>6} {'tok/s':>7} {'lat p50':>8} {'lat p95':>8}"
        f" {'ttft p50':>8} {'ttft p95':>8} {'vs (a)':>7} {'vs (b)':>7} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in ROWS:
        f = figures.get(row)
        if f is None:
            print(f"{row:<24} {'failed':>6}")
            continue
        ttft = (
            f"{_percentile(f.ttft_ms, 50):>8.0f} {_percentile(f.ttft_ms, 95):>8.0f}"
            if f.ttft_ms
            else f"{'n/a':>8} {'n/a':>8}"
        )
        ratios = " ".join(
            f"{r:>7.2f}" if r is not None else f"{'n/a':>7}"
            for r in (_ratio(figures, row, ENGINE), _ratio(figures, row, VLLM_SERVER))
        )
        print(
            f"{row:<24} {f.tokens:>6} {f.tokens_per_s:>7.1f} {_percentile(f.latency_ms, 50):>8.0f}"
            f" {_percentile(f.latency_ms, 95):>8.0f} {ttft} {ratios} {f.load:>5.1f}"
        )


def _goals(by_concurrency: dict[int, dict[str, Figures | None]]) -> None:
    print()
    for row in (GRPC, HTTP):
        for base, goal in ((ENGINE, GOAL_VS_ENGINE), (VLLM_SERVER, GOAL_VS_VLLM_SERVER)):
            ratios = {c: _ratio(figures, row, base) for c, figures in by_concurrency.items()}
            shown = ", ".join(f"{c}: {'n/a' if r is None else f'{r:.2f}'}" for c, r in ratios.items())
            if any(r is None for r in ratios.values()):
                verdict = "cannot judge (a system failed)"
            elif all(r >= goal for r in ratios.values()):  # type: ignore[operator]
                verdict = "met"
            else:
                verdict = "NOT met"
            print(f"goal: {row} tokens/s >= {goal:.2f}x {base} at every concurrency: {verdict} ({shown})")


def run() -> None:
    model = smollm2_path(PlatformSettings().models_dir)
    print(
        f"workload{' (QUICK: a check, not a measurement)' if QUICK else ''}: greedy chat requests x up to"
        f" {MAX_TOKENS} tokens, {', '.join(f'{n} at concurrency {c}' for c, n in PLAN.items())},"
        f" {ROUNDS} round(s); {WARMUP[0]} warm-up requests at concurrency {WARMUP[1]} per system"
        f"\nmodel: {model.name} {OPTIONS.dtype}, enforce_eager,"
        f" max_model_len {OPTIONS.max_model_len}, KV cache {OPTIONS.kv_cache_gib} GiB; (a) and serving"
        f" with LoRA enabled (serving's default), (b) without",
        flush=True,
    )
    results: dict[str, dict[int, Figures] | None] = dict.fromkeys(ROWS)
    with tempfile.TemporaryDirectory(prefix="llmops-bench-") as tmp:
        root = Path(tmp)
        with _environment_kept(), _timed(ENGINE):
            results.update(asyncio.run(_engine(model, root / "engine")))
        with _timed(GRPC, HTTP):
            results.update(_serving(root / "platform"))
        try:
            with _timed(VLLM_SERVER):
                results.update(_vllm(model, root / "vllm-server"))
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            print(f"  {VLLM_SERVER} failed: {exc}", flush=True)
        try:
            with _timed(TRANSFORMERS, startup=False):
                results.update(_transformers(model))
        except Exception as exc:  # noqa: BLE001
            print(f"  {TRANSFORMERS} failed: {exc!r}", flush=True)
    by_concurrency = {c: {row: (r[c] if r else None) for row, r in results.items()} for c in PLAN}
    for c, figures in by_concurrency.items():
        _table(c, figures)
    print(
        "\ntok/s: output tokens (the servers' usage) / wall time of the run; latency and ttft per"
        " request from its send, ms. vs (a), vs (b): tok/s ratio (1.00 = the same). load: the"
        " machine's 1-minute load average as the run began (2 cores; above 2, others were busy too)."
        "\n(c) transformers: one generate() per batch of the concurrency's size; its latency and"
        " ttft (time to the batch's first generated token) are the batch's."
    )
    _goals(by_concurrency)
