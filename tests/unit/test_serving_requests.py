"""Validation of serving's generation requests: every rule and its message."""

from __future__ import annotations

import math

import pytest

from llmops.serving.domain.requests import (
    MAX_PROMPT_CHARS,
    InvalidRequest,
    check_fits_context,
    validate_generation,
)
from llmops.serving.engine import GenerationParams

LIMITS = {"default_max_tokens": 128, "max_tokens_limit": 1024}


def _validate(
    prompt: str = "Hello",
    messages: list[tuple[str, str]] | None = None,
    max_tokens: int = 0,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: list[str] | None = None,
) -> tuple[list[dict[str, str]] | str, GenerationParams]:
    return validate_generation(prompt, messages or [], max_tokens, temperature, top_p, stop or [], **LIMITS)


def _error(**kwargs: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        _validate(**kwargs)  # type: ignore[arg-type]
    return caught.value


def test_prompt_with_defaults() -> None:
    source, params = _validate(prompt="Hello")
    assert source == "Hello"
    assert params == GenerationParams(max_tokens=128, temperature=1.0, top_p=1.0, stop=(), seed=None)


def test_messages_become_chat_dicts() -> None:
    source, _ = _validate(prompt="", messages=[("system", "Be brief."), ("user", "Hi"), ("assistant", "Hey")])
    assert source == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hey"},
    ]


def test_explicit_values_are_kept() -> None:
    _, params = _validate(max_tokens=1024, temperature=0.0, top_p=0.5, stop=["\n\n", "END"])
    assert params == GenerationParams(max_tokens=1024, temperature=0.0, top_p=0.5, stop=("\n\n", "END"))


def test_neither_prompt_nor_messages() -> None:
    error = _error(prompt="", messages=[])
    assert str(error) == "prompt is empty: give a prompt or messages"
    assert error.field == "prompt"


def test_both_prompt_and_messages() -> None:
    error = _error(prompt="Hi", messages=[("user", "Hi")])
    assert str(error) == "prompt and messages are both set: give one of them"


def test_unknown_role() -> None:
    error = _error(prompt="", messages=[("user", "Hi"), ("tool", "x")])
    assert str(error) == "messages[1].role must be one of system, user, assistant, got 'tool'"
    assert error.field == "messages"


@pytest.mark.parametrize("max_tokens", [-1, 1025, 5000])
def test_max_tokens_out_of_range(max_tokens: int) -> None:
    error = _error(max_tokens=max_tokens)
    assert str(error) == f"max_tokens must be between 1 and 1024, got {max_tokens}"
    assert error.field == "max_tokens"


def test_max_tokens_bounds_accepted() -> None:
    assert _validate(max_tokens=1)[1].max_tokens == 1
    assert _validate(max_tokens=1024)[1].max_tokens == 1024


@pytest.mark.parametrize("temperature", [-0.1, 2.01, math.nan])
def test_temperature_out_of_range(temperature: float) -> None:
    error = _error(temperature=temperature)
    assert str(error) == f"temperature must be between 0 and 2, got {temperature}"
    assert error.field == "temperature"


def test_temperature_bounds_accepted() -> None:
    assert _validate(temperature=0.0)[1].temperature == 0.0
    assert _validate(temperature=2.0)[1].temperature == 2.0


@pytest.mark.parametrize("top_p", [0.0, -0.5, 1.01, math.nan])
def test_top_p_out_of_range(top_p: float) -> None:
    error = _error(top_p=top_p)
    assert str(error) == f"top_p must be in (0, 1], got {top_p}"
    assert error.field == "top_p"


def test_top_p_upper_bound_accepted() -> None:
    assert _validate(top_p=1.0)[1].top_p == 1.0


def test_too_many_stop_strings() -> None:
    assert _validate(stop=[str(i) for i in range(8)])[1].stop == tuple(str(i) for i in range(8))
    error = _error(stop=[str(i) for i in range(9)])
    assert str(error) == "stop has 9 strings, at most 8"
    assert error.field == "stop"


def test_empty_stop_string() -> None:
    error = _error(stop=["END", ""])
    assert str(error) == "stop[1] is empty"


def test_long_stop_string() -> None:
    assert _validate(stop=["x" * 64])[1].stop == ("x" * 64,)
    error = _error(stop=["x" * 65])
    assert str(error) == "stop[0] is 65 characters long, at most 64"


def test_long_prompt() -> None:
    assert _validate(prompt="x" * MAX_PROMPT_CHARS)[0] == "x" * MAX_PROMPT_CHARS
    error = _error(prompt="x" * (MAX_PROMPT_CHARS + 1))
    assert str(error) == f"prompt is {MAX_PROMPT_CHARS + 1} characters long, at most {MAX_PROMPT_CHARS}"


def test_long_messages() -> None:
    half = "x" * (MAX_PROMPT_CHARS // 2)
    error = _error(prompt="", messages=[("user", half), ("assistant", half), ("user", "y")])
    assert (
        str(error)
        == f"messages are {MAX_PROMPT_CHARS + 1} characters long in all, at most {MAX_PROMPT_CHARS}"
    )
    assert error.field == "messages"


def test_invalid_request_is_a_value_error() -> None:
    assert issubclass(InvalidRequest, ValueError)


def test_fits_context() -> None:
    check_fits_context(prompt_tokens=2000, max_tokens=48, max_model_len=2048)


def test_prompt_plus_max_tokens_exceeds_context() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_fits_context(prompt_tokens=2000, max_tokens=49, max_model_len=2048)
    assert str(caught.value) == (
        "prompt (2000 tokens) + max_tokens (49) is more than the model's context of 2048 tokens: "
        "ask for at most 48 tokens"
    )
    assert caught.value.field == "max_tokens"


def test_prompt_alone_fills_context() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_fits_context(prompt_tokens=2048, max_tokens=1, max_model_len=2048)
    assert str(caught.value) == "prompt is 2048 tokens long, the model's context is 2048 tokens"
    assert caught.value.field == "prompt"
