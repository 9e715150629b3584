"""Validation of generation requests: pure functions, no I/O, one message per broken rule."""

from __future__ import annotations

import math

from llmops.core.errors import InvalidArgument
from llmops.serving.engine import GenerationParams

ROLES = ("system", "user", "assistant")
MAX_PROMPT_CHARS = 32 * 1024
MAX_STOP_STRINGS = 8
MAX_STOP_CHARS = 64
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0
# Unset sampling fields mean the usual defaults of OpenAI-style APIs: plain sampling.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


class InvalidRequest(InvalidArgument):
    """A request field breaks a rule; the message names the field, ``field`` holds its name."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def validate_generation(
    prompt: str,
    messages: list[tuple[str, str]],
    max_tokens: int,
    temperature: float | None,
    top_p: float | None,
    stop: list[str],
    *,
    default_max_tokens: int,
    max_tokens_limit: int,
) -> tuple[list[dict[str, str]] | str, GenerationParams]:
    """Check a generation request and turn it into engine input.

    Args:
        prompt: Raw prompt text; exactly one of ``prompt`` and ``messages`` must be non-empty.
        messages: ``(role, content)`` pairs for the chat template.
        max_tokens: Completion length; 0 means ``default_max_tokens``.
        temperature: 0 (greedy) to 2; None means 1.
        top_p: Nucleus mass in (0, 1]; None means 1.
        stop: Strings that end the completion (not included in it).
        default_max_tokens: Used when ``max_tokens`` is 0.
        max_tokens_limit: The largest ``max_tokens`` accepted.

    Returns:
        The prompt string, or the messages as ``[{"role", "content"}]``; and the sampling settings.

    Raises:
        InvalidRequest: The first broken rule.
    """
    source = validate_conversation(prompt, messages)
    params = validate_sampling(
        max_tokens,
        temperature,
        top_p,
        stop,
        default_max_tokens=default_max_tokens,
        max_tokens_limit=max_tokens_limit,
    )
    return source, params


def validate_sampling(
    max_tokens: int,
    temperature: float | None,
    top_p: float | None,
    stop: list[str],
    *,
    default_max_tokens: int,
    max_tokens_limit: int,
) -> GenerationParams:
    """The sampling half of :func:`validate_generation` (checked before any retrieval is paid for)."""
    if max_tokens == 0:
        max_tokens = default_max_tokens
    elif not 1 <= max_tokens <= max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens must be between 1 and {max_tokens_limit}, got {max_tokens}", field="max_tokens"
        )

    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    # Written so that NaN fails too.
    elif not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(
            f"temperature must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, got {temperature}",
            field="temperature",
        )

    if top_p is None:
        top_p = DEFAULT_TOP_P
    elif math.isnan(top_p) or not 0.0 < top_p <= 1.0:
        raise InvalidRequest(f"top_p must be in (0, 1], got {top_p}", field="top_p")

    _validate_stop(stop)

    return GenerationParams(
        max_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p), stop=tuple(stop)
    )


def validate_conversation(prompt: str, messages: list[tuple[str, str]]) -> list[dict[str, str]] | str:
    """The prompt, or the messages as ``[{"role", "content"}]``; exactly one must be given."""
    if prompt and messages:
        raise InvalidRequest("prompt and messages are both set: give one of them", field="prompt")
    if not prompt and not messages:
        raise InvalidRequest("prompt is empty: give a prompt or messages", field="prompt")
    if prompt:
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(
                f"prompt is {len(prompt)} characters long, at most {MAX_PROMPT_CHARS}", field="prompt"
            )
        return prompt

    chat: list[dict[str, str]] = []
    for i, (role, content) in enumerate(messages):
        if role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}", field="messages"
            )
        chat.append({"role": role, "content": content})
    total = sum(len(m["content"]) for m in chat)
    if total > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"messages are {total} characters long in all, at most {MAX_PROMPT_CHARS}", field="messages"
        )
    return chat


def _validate_stop(stop: list[str]) -> None:
    if len(stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"stop has {len(stop)} strings, at most {MAX_STOP_STRINGS}", field="stop")
    for i, s in enumerate(stop):
        if not s:
            raise InvalidRequest(f"stop[{i}] is empty", field="stop")
        if len(s) > MAX_STOP_CHARS:
            raise InvalidRequest(
                f"stop[{i}] is {len(s)} characters long, at most {MAX_STOP_CHARS}", field="stop"
            )


def check_fits_context(prompt_tokens: int, max_tokens: int, max_model_len: int) -> None:
    """Raise :class:`InvalidRequest` when the prompt plus ``max_tokens`` exceed the context length."""
    if prompt_tokens + max_tokens > max_model_len:
        if prompt_tokens >= max_model_len:
            raise InvalidRequest(
                f"prompt is {prompt_tokens} tokens long, the model's context is {max_model_len} tokens",
                field="prompt",
            )
        raise InvalidRequest(
            f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) is more than the model's "
            f"context of {max_model_len} tokens: ask for at most {max_model_len - prompt_tokens} tokens",
            field="max_tokens",
        )
