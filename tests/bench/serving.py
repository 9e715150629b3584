"""Serving: what the platform costs on top of the engine it serves with, and how it compares.

One fixed greedy chat workload runs at 1, 8 and 32 concurrent streams on five systems:

  (a) vLLM's ``AsyncLLM`` in process, through :class:`TextEngine` with serving's engine settings;
  serving gRPC and serving HTTP: the serving service as ``make up`` runs it (API key, validation,
      chat template, admission, inference.logged to Kafka), through ``GenerateStream`` and through
      its OpenAI-compatible ``/v1/chat/completions`` (streamed, usage included);
  (b) vLLM's own OpenAI server as a process on the same model and settings (what a user would run
      instead), called with the same ``AsyncOpenAI`` streaming code as serving's HTTP API;
  (c) plain transformers ``generate`` (fp32, greedy; the concurrent prompts batched with left
      padding at 8 and 32, one at a time at 1), in a process of its own, after the others.

(a), serving and (b) are up at the same time (an idle engine costs no CPU: measured 0.06 s in 10 s)
and take turns run by run, ROUNDS rounds, the order rotated each round. A ratio is the median of
the round-by-round ratios of runs made side by side, printed with its range: on a 2-core machine
shared with others a single run moves by 20 %, so one best-of figure per system, measured minutes
apart, says more about the machine than about the system. The CPU time of each front-end process
(serving's, vLLM server's API process) per 1,000 output tokens is printed too: it is what the
platform adds on top of the engine, and it does not depend on the machine's other load.

Output tokens are the servers' own counts (the final gRPC message, OpenAI ``usage``, vLLM's outputs,
the generated ids for transformers).

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

from llmops.cli.local import LocalPlatform, free_port, group_alive
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.core.settings import LOOPBACK, PlatformSettings
from llmops.serving.engine import EngineOptions, GenerationParams, TextEngine
from llmops.testing.platform import auth, running_platform

QUICK = os.environ.get("LLMOPS_BENCH_QUICK", "") not in ("", "0")
MAX_TOKENS = 32
# Concurrency -> how many requests a run sends (at 32: two waves of 32 streams).
PLAN = {1: 3, 8: 8, 32: 32} if QUICK else {1: 8, 8: 64, 32: 64}
ROUNDS = 1 if QUICK else 4
TRANSFORMERS_ROUNDS = 1 if QUICK else 2
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
    # CPU seconds the system's front-end process spent during the run (None: not measured).
    front_end_cpu: float | None = None

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


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of one process (not its children), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class System:
    """One system under test: how to send a request, and the pid of its front end (the process that
    answers the API, without the engine processes; None where the client shares that process)."""

    call: Call
    front_end: int | None = None


async def _measure(systems: dict[str, System]) -> dict[str, dict[int, list[Figures]]]:
    """Warm every system up, then ROUNDS rounds: in each, every concurrency on every system, the
    systems taking turns run by run (the order rotated each round), so each ratio compares runs made
    within a minute or two of each other on the same machine."""
    for system in systems.values():
        await _drive(system.call, _prompts(0, WARMUP[0]), WARMUP[1])
    _note(*systems)
    runs: dict[str, dict[int, list[Figures]]] = {name: {c: [] for c in PLAN} for name in systems}
    names = list(systems)
    for round_ in range(ROUNDS):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for c, n in PLAN.items():
            for name in order:
                system = systems[name]
                before = _cpu_seconds(system.front_end)
                figures = await _drive(system.call, _prompts(_run_id(round_, c), n), c)
                after = _cpu_seconds(system.front_end)
                if before is not None and after is not None:
                    figures.front_end_cpu = after - before
                runs[name][c].append(figures)
    return runs


def _note(*systems: str) -> None:
    """Say that ``systems`` are warm and their measurement begins."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  {', '.join(systems)}: warm, measuring (load average {load})", flush=True)


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    print(f"  {what}: {time.monotonic() - began:.0f}s", flush=True)


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


def _engine_call(engine: TextEngine) -> Call:
    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0, top_p=1.0)

    async def call(messages: Messages) -> tuple[int, float | None]:
        first, tokens = None, 0
        text = engine.format_chat(messages)
        async for chunk in engine.generate(text, params, uuid.uuid4().hex):
            if first is None and chunk.delta:
                first = time.perf_counter()
            if chunk.finished:
                tokens = chunk.completion_tokens
        return tokens, first

    return call


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


# --- (b) vLLM's own OpenAI server ------------------------------------------------------------------


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server, then kill its process group (it and the engine process it started,
    in a session of their own) if anything of it outlives the terminate."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while group_alive(process.pid) and time.monotonic() < deadline:
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
def _vllm_server(model: Path, folder: Path) -> Iterator[tuple[str, int]]:
    """``python -m vllm.entrypoints.openai.api_server`` on a free loopback port; its base URL and
    the pid of its API process (the engine runs in processes it starts)."""
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
        yield f"http://{LOOPBACK}:{port}/v1", process.pid
    finally:
        _stop(process)


# --- (c) transformers ------------------------------------------------------------------------------


def _transformers_worker(
    model_path: str,
) -> dict[int, list[tuple[int, float, list[float], list[float], float]]]:
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
    runs: dict[int, list[tuple[int, float, list[float], list[float], float]]] = {c: [] for c in PLAN}
    for round_ in range(TRANSFORMERS_ROUNDS):
        for c, n in PLAN.items():
            runs[c].append(run(_prompts(_run_id(round_, c), n), c))
    return runs


def _transformers(model: Path) -> dict[str, dict[int, list[Figures]]]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        results = pool.submit(_transformers_worker, str(model)).result()
    return {TRANSFORMERS: {c: [Figures(*r) for r in rs] for c, rs in results.items()}}


# --- report ----------------------------------------------------------------------------------------

Runs = dict[str, dict[int, list[Figures]] | None]


def _median_run(figures: list[Figures]) -> Figures:
    return sorted(figures, key=lambda f: f.tokens_per_s)[(len(figures) - 1) // 2]


def _ratios(runs: Runs, row: str, base: str, concurrency: int) -> list[float] | None:
    """Round by round, ``row``'s tokens/s over ``base``'s (paired: the two ran side by side)."""
    a, b = runs.get(row), runs.get(base)
    if not a or not b:
        return None
    if row == TRANSFORMERS:  # measured apart from the others: against their medians
        return [f.tokens_per_s / _median_run(b[concurrency]).tokens_per_s for f in a[concurrency]]
    return [x.tokens_per_s / y.tokens_per_s for x, y in zip(a[concurrency], b[concurrency], strict=True)]


def _ratio_cell(ratios: list[float] | None) -> str:
    if ratios is None:
        return f"{'n/a':>17}"
    low, high = min(ratios), max(ratios)
    return f"{statistics.median(ratios):>5.2f} [{low:.2f}-{high:.2f}]"


def _table(concurrency: int, runs: Runs) -> None:
    print(f"\nconcurrency {concurrency}: {PLAN[concurrency]} requests x up to {MAX_TOKENS} tokens, per run")
    header = (
        f"{'system':<24} {'tok/s':>7} {'lat p50':>8} {'lat p95':>8} {'ttft p50':>8} {'ttft p95':>8}"
        f" {'vs (a) [range]':>17} {'vs (b) [range]':>17} {'fe ms/1k':>8} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in ROWS:
        by_c = runs.get(row)
        if not by_c:
            print(f"{row:<24} {'failed':>7}")
            continue
        figures = by_c[concurrency]
        latency = [x for f in figures for x in f.latency_ms]
        ttft_ms = [x for f in figures for x in (f.ttft_ms or [])]
        ttft = (
            f"{_percentile(ttft_ms, 50):>8.0f} {_percentile(ttft_ms, 95):>8.0f}"
            if ttft_ms
            else f"{'n/a':>8} {'n/a':>8}"
        )
        cpu = [f.front_end_cpu for f in figures if f.front_end_cpu is not None]
        tokens = sum(f.tokens for f in figures)
        front_end = f"{1e6 * sum(cpu) / tokens:>8.0f}" if cpu and len(cpu) == len(figures) else f"{'n/a':>8}"
        ratios = " ".join(
            _ratio_cell(_ratios(runs, row, base, concurrency)) for base in (ENGINE, VLLM_SERVER)
        )
        print(
            f"{row:<24} {statistics.median(f.tokens_per_s for f in figures):>7.1f}"
            f" {_percentile(latency, 50):>8.0f} {_percentile(latency, 95):>8.0f} {ttft} {ratios}"
            f" {front_end} {max(f.load for f in figures):>5.1f}"
        )


def _goals(runs: Runs) -> None:
    print()
    for row in (GRPC, HTTP):
        for base, goal in ((ENGINE, GOAL_VS_ENGINE), (VLLM_SERVER, GOAL_VS_VLLM_SERVER)):
            ratios = {c: _ratios(runs, row, base, c) for c in PLAN}
            shown = ", ".join(f"{c}: {_ratio_cell(r).strip()}" for c, r in ratios.items())
            if any(r is None for r in ratios.values()):
                verdict = "cannot judge (a system failed)"
            elif all(statistics.median(r) >= goal for r in ratios.values()):  # type: ignore[arg-type]
                verdict = "met"
            else:
                verdict = "NOT met"
            print(
                f"goal: {row} tokens/s >= {goal:.2f}x {base} at every concurrency (median of paired"
                f" rounds): {verdict} ({shown})"
            )


async def _side_by_side(model: Path, root: Path, platform: LocalPlatform, vllm: tuple[str, int]) -> Runs:
    """(a) starts here, in this process; serving and (b) already run beside it. All three stay up
    (an idle engine costs no CPU), so their runs interleave."""
    vllm_url, vllm_pid = vllm
    with _timed(f"{ENGINE}: started"), _environment_kept():
        engine = TextEngine(model, OPTIONS, cache_dir=root / "engine")
        await engine.__aenter__()
    try:
        async with (
            grpc.aio.insecure_channel(platform.address("serving")) as channel,
            _openai_client(platform.openai_base_url, platform.api_key()) as serving_http,
            _openai_client(vllm_url, "unused") as vllm_http,
        ):
            serving_pid = platform.pid("serving")
            return await _measure(
                {
                    ENGINE: System(_engine_call(engine)),
                    GRPC: System(
                        _grpc_call(serving_pb2_grpc.ServingServiceStub(channel), auth(platform)), serving_pid
                    ),
                    HTTP: System(_openai_call(serving_http, SMOLLM2_NAME), serving_pid),
                    VLLM_SERVER: System(_openai_call(vllm_http, VLLM_SERVER_NAME), vllm_pid),
                }
            )
    finally:
        await engine.__aexit__(None, None, None)


def run() -> None:
    model = smollm2_path(PlatformSettings().models_dir)
    print(
        f"workload{' (QUICK: a check, not a measurement)' if QUICK else ''}: greedy chat requests x up to"
        f" {MAX_TOKENS} tokens, {', '.join(f'{n} at concurrency {c}' for c, n in PLAN.items())},"
        f" {ROUNDS} round(s) ({TRANSFORMERS_ROUNDS} for (c)); {WARMUP[0]} warm-up requests at"
        f" concurrency {WARMUP[1]} per system\nmodel: {model.name} {OPTIONS.dtype}, enforce_eager,"
        f" max_model_len {OPTIONS.max_model_len}, KV cache {OPTIONS.kv_cache_gib} GiB, LoRA enabled"
        " (serving's default) on (a), serving and (b)",
        flush=True,
    )
    results: Runs = dict.fromkeys(ROWS)
    with tempfile.TemporaryDirectory(prefix="llmops-bench-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as stack:
            with _timed("serving (gRPC and HTTP): started"):
                platform = stack.enter_context(running_platform(root / "platform", ["serving"]))
            with _timed(f"{VLLM_SERVER}: started"):
                vllm = stack.enter_context(_vllm_server(model, root / "vllm-server"))
            with _timed(f"{ENGINE}, serving and {VLLM_SERVER}: measured"):
                results.update(asyncio.run(_side_by_side(model, root, platform, vllm)))
        try:
            with _timed(f"{TRANSFORMERS}: measured"):
                results.update(_transformers(model))
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            print(f"  {TRANSFORMERS} failed: {exc!r}", flush=True)
    for c in PLAN:
        _table(c, results)
    print(
        "\ntok/s: median over the rounds of output tokens (the servers' usage) / wall time of a run;"
        " latency and ttft: percentiles over every request of every round, from its send, ms."
        " vs (a), vs (b): the median of the round-by-round tok/s ratios [lowest-highest] (1.00 = the"
        " same; the runs of a round ran side by side, in turns). fe ms/1k: CPU ms the front-end process"
        " (the one answering the API, not the engine's) spent per 1,000 output tokens. load: the"
        " highest 1-minute load average as a run began (2 cores; above 2, others were busy too)."
        "\n(c) transformers: measured after the others, one generate() per batch of the concurrency's"
        " size; its latency and ttft (time to the batch's first generated token) are the batch's, its"
        " ratios against the others' medians."
    )
    _goals(results)
