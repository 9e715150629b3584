"""Text generation on one vLLM ``AsyncLLM``: start, stream deltas, abort on cancel, shut down.

vLLM reads its settings from the environment, some of them once at import, so :class:`TextEngine`
sets them (without overriding what the user set) before it imports vLLM; import vLLM elsewhere in
the process only after the engine has been entered, or set the same variables yourself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from llmops.core.errors import Aborted, FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
    from vllm.lora.request import LoRARequest
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", ""]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one request (already validated); temperature 0 means greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class GenerationChunk:
    """One streamed piece of a generation.

    ``delta`` is the new text since the previous chunk; token counts are cumulative. Times are
    ``time.monotonic()`` seconds: ``first_token_at - started_at`` is the time to first token.
    """

    delta: str
    finished: bool
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    started_at: float
    first_token_at: float | None

    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the call to the first generated token, or None before it."""
        return None if self.first_token_at is None else self.first_token_at - self.started_at


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt tokenised once by the engine's renderer: what :meth:`TextEngine.generate` takes, and
    its length in tokens (for the context check before the engine sees it)."""

    engine_input: Any

    @property
    def tokens(self) -> int:
        return len(self.engine_input.get("prompt_token_ids") or ())


class GenerationError(Aborted):
    """The engine ended a request for a reason other than a stop or the length limit (retry may help)."""


class EngineNotStarted(Unavailable):
    """The engine was used outside its ``async with`` block (not started yet, or stopped)."""


@dataclass(frozen=True)
class EngineOptions:
    """How vLLM runs the model (serving's settings of the same names)."""

    # The model name vLLM reports (metrics, logs).
    served_name: str
    # Context length: prompt plus generated tokens.
    max_model_len: int = 2048
    # Weights and activations dtype (float32 on CPU).
    dtype: str = "float32"
    # Whether requests may carry a LoRA adapter; how many stay resident; the largest rank accepted.
    enable_lora: bool = True
    max_loras: int = 4
    max_lora_rank: int = 16
    # KV cache size on CPU, in GiB.
    kv_cache_gib: int = 1


class TextEngine:
    """An async context manager that owns one vLLM ``AsyncLLM`` serving a causal LM (and LoRAs)."""

    # Engines started in this process; the shared temporary folder goes when the last one stops.
    _running: ClassVar[int] = 0

    def __init__(self, model_path: Path, options: EngineOptions, *, cache_dir: Path) -> None:
        """Describe the engine; nothing starts until ``async with``.

        Args:
            model_path: A Hugging Face folder (config, safetensors, tokenizer with a chat template).
            options: How vLLM runs it.
            cache_dir: Folder for vLLM, torch inductor and temporary files (keeps them out of
                the home folder and /tmp).
        """
        self._model_path = Path(model_path)
        self._options = options
        self._served_name = options.served_name
        self._max_model_len = options.max_model_len
        self._enable_lora = options.enable_lora
        # What vLLM's AsyncEngineArgs gets, in its names.
        self._vllm_options: dict[str, Any] = {
            "model": str(self._model_path),
            "served_model_name": options.served_name,
            "max_model_len": options.max_model_len,
            "dtype": options.dtype,
            "enable_lora": options.enable_lora,
            "max_loras": options.max_loras,
            "max_lora_rank": options.max_lora_rank,
            # No torch.compile warm-up at start (this CPU build has no Triton either).
            "enforce_eager": True,
            "disable_log_stats": True,
        }
        self._cache_dir = Path(cache_dir)
        self._engine: AsyncLLM | None = None
        self._adapters: dict[str, LoRARequest] = {}
        self._next_lora_id = 0
        self._owned_tmp_dir: Path | None = None
        self.startup_seconds: float | None = None

    @property
    def max_model_len(self) -> int:
        """The context length (prompt plus completion tokens)."""
        return self._max_model_len

    @property
    def served_name(self) -> str:
        return self._served_name

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def is_running(self) -> bool:
        """Whether the engine is started and its background process is alive."""
        return self._engine is not None and not self._engine.errored

    @property
    def num_unfinished_requests(self) -> int:
        """Requests the engine is still tracking (0 when idle)."""
        return self._require_engine().get_num_unfinished_requests()

    def _configure_environment(self) -> None:
        """Point vLLM's settings and caches at our folders; a value the user set wins."""
        # vLLM leaves its ZMQ socket files behind in the temporary folder; one folder per process
        # lets __aexit__ remove them without touching another process's live sockets.
        tmp_dir = self._cache_dir / "tmp" / f"pid-{os.getpid()}"
        defaults = {
            "VLLM_CPU_KVCACHE_SPACE": str(self._options.kv_cache_gib),
            # vLLM otherwise keeps a core for the frontend, which leaves a 2-core machine one for the model.
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CACHE_ROOT": str(self._cache_dir / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(self._cache_dir / "torchinductor"),
            "TMPDIR": str(tmp_dir),
            "HF_HUB_OFFLINE": "1",
            # No network here, and usage stats would write under ~/.config/vllm.
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_DO_NOT_TRACK": "1",
        }
        for name, value in defaults.items():
            os.environ.setdefault(name, value)
        # The sockets go where TMPDIR says even if this process cached tempfile.gettempdir() earlier.
        os.environ.setdefault("VLLM_RPC_BASE_PATH", os.environ["TMPDIR"])
        if os.environ["TMPDIR"] == os.environ["VLLM_RPC_BASE_PATH"] == str(tmp_dir):
            self._owned_tmp_dir = tmp_dir
        for name in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TMPDIR", "VLLM_RPC_BASE_PATH"):
            Path(os.environ[name]).mkdir(parents=True, exist_ok=True)

    @cached_property
    def _tokenizer(self) -> PreTrainedTokenizerBase:
        self._configure_environment()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._model_path)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        """Render ``[{"role", "content"}, ...]`` with the model's chat template, ready for the reply."""
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(text, str)
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a prompt (special tokens added the way vLLM adds them)."""
        return len(self._tokenizer(text, add_special_tokens=True)["input_ids"])

    async def __aenter__(self) -> Self:
        if self._engine is not None:
            raise RuntimeError("TextEngine is already started")
        self._configure_environment()
        _ = self._tokenizer  # fail early on a bad model folder, before the 20-30 s start

        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**self._vllm_options)
        started = time.monotonic()
        # Construction blocks until the engine process is ready; a thread keeps the event loop
        # (health checks, signals) responsive meanwhile. AsyncLLM starts its output handler on the
        # first request when built outside the loop.
        try:
            self._engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        except BaseException:
            self._remove_tmp_dir()
            raise
        TextEngine._running += 1
        self.startup_seconds = time.monotonic() - started
        logger.info("vLLM engine for %s started in %.1fs", self._served_name, self.startup_seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            engine.shutdown()
        finally:
            TextEngine._running -= 1
            self._remove_tmp_dir()

    def _remove_tmp_dir(self) -> None:
        """Delete our per-process temporary folder (vLLM's stale sockets) once no engine runs here."""
        if self._owned_tmp_dir is not None and TextEngine._running == 0:
            shutil.rmtree(self._owned_tmp_dir, ignore_errors=True)

    def _require_engine(self) -> AsyncLLM:
        if self._engine is None:
            raise EngineNotStarted("TextEngine is not started: use it inside `async with`")
        return self._engine

    def _sampling_params(self, params: GenerationParams) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        return SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            include_stop_str_in_output=False,
            seed=params.seed,
            output_kind=RequestOutputKind.DELTA,
        )

    async def render(self, prompt: str) -> RenderedPrompt:
        """Tokenise ``prompt`` the way the engine will (its renderer, vLLM's input path)."""
        from vllm.inputs import TextPrompt

        (engine_input,) = await self._require_engine().renderer.render_cmpl_async([TextPrompt(prompt=prompt)])
        return RenderedPrompt(engine_input)

    async def generate(
        self,
        prompt: str | RenderedPrompt,
        params: GenerationParams,
        request_id: str,
        lora: LoRARequest | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        """Stream the completion of ``prompt``; the last chunk has ``finished=True``.

        Closing the iterator early (client gone) aborts the request in vLLM.

        Args:
            prompt: The full prompt text (use :meth:`format_chat` for messages), or that text
                already :meth:`render` ed (tokenised once, not twice).
            params: Validated sampling settings.
            request_id: The caller's id, for logs and for :meth:`abort`.
            lora: The adapter to apply, or None for the base model.

        Raises:
            GenerationError: vLLM ended the request with an error or an abort from elsewhere.
        """
        engine = self._require_engine()
        started = time.monotonic()
        # Rendering (tokenising) through the engine's renderer is vLLM's non-deprecated input path.
        rendered = prompt if isinstance(prompt, RenderedPrompt) else await self.render(prompt)
        engine_input = rendered.engine_input
        prompt_tokens = rendered.tokens
        completion_tokens = 0
        first_token_at: float | None = None

        stream = engine.generate(engine_input, self._sampling_params(params), request_id, lora_request=lora)
        # aclosing: when our caller stops early, GeneratorExit reaches vLLM's generator now (not
        # at garbage collection), and its handler aborts the request in the engine.
        async with contextlib.aclosing(stream):
            async for output in stream:
                completion = output.outputs[0]
                if completion.token_ids:
                    completion_tokens += len(completion.token_ids)
                    if first_token_at is None:
                        first_token_at = time.monotonic()
                if output.prompt_token_ids:
                    prompt_tokens = len(output.prompt_token_ids)
                reason = completion.finish_reason or ""
                if output.finished and reason not in ("stop", "length"):
                    raise GenerationError(f"request {request_id} ended with finish_reason={reason!r}")
                if not completion.text and not output.finished:
                    # Tokens held back (a possible stop string) or not yet a full character.
                    continue
                yield GenerationChunk(
                    delta=completion.text,
                    finished=output.finished,
                    finish_reason=reason if output.finished else "",  # type: ignore[arg-type]
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    started_at=started,
                    first_token_at=first_token_at,
                )

    async def load_adapter(self, name: str, path: Path) -> LoRARequest:
        """Load the peft LoRA adapter in ``path`` under ``name`` (while serving; no restart).

        Returns the request handle that ``generate`` takes to answer with the adapter. Loading the
        same name again returns the handle it already has.
        """
        from vllm.lora.request import LoRARequest

        engine = self._require_engine()
        if name in self._adapters:
            return self._adapters[name]
        if not self._enable_lora:
            raise FailedPrecondition(
                "this engine was started without LoRA support (LLMOPS_SERVING_ENABLE_LORA)"
            )
        self._next_lora_id += 1
        request = LoRARequest(lora_name=name, lora_int_id=self._next_lora_id, lora_path=str(path))
        await engine.add_lora(request)
        self._adapters[name] = request
        return request

    async def unload_adapter(self, name: str) -> bool:
        request = self._adapters.pop(name, None)
        if request is None:
            return False
        return await self._require_engine().remove_lora(request.lora_int_id)

    @property
    def adapters(self) -> dict[str, LoRARequest]:
        """A copy of the loaded adapters by name (use :meth:`adapter` on a request's path)."""
        return dict(self._adapters)

    def adapter(self, name: str) -> LoRARequest | None:
        """The loaded adapter ``name``, or None; no copy, for the per-request path."""
        return self._adapters.get(name)

    async def abort(self, request_id: str) -> None:
        """Stop a running request by the id given to :meth:`generate` (no-op if it is done)."""
        await self._require_engine().abort(request_id)
