"""Quality filter of the ingestion domain."""

from __future__ import annotations

import pydantic
import pytest

from llmops.ingestion.domain.quality import QualityConfig, check_quality

CONFIG = QualityConfig()
GOOD = (
    "The ingestion service cleans documents before they become training data. It removes markup, "
    "redacts personal data and drops duplicates, so that the model learns from text worth learning."
)


def test_defaults() -> None:
    assert (CONFIG.min_chars, CONFIG.max_chars, CONFIG.min_words) == (20, 100_000, 3)
    assert (CONFIG.max_symbol_ratio, CONFIG.max_repeated_line_ratio, CONFIG.max_top_word_ratio) == (
        0.3,
        0.5,
        0.3,
    )
    assert CONFIG.max_char_repetition == 50


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "short but fine sentence",
        "नमस्ते दुनिया, यह हिंदी में एक परीक्षण वाक्य है।",  # vowel signs are marks, not symbols
        "这是一个用于检查质量过滤器的中文测试文档。",  # no spaces: one word per ideograph
        "line one\nline one\nline two\nline three",  # 1 repeat in 4 lines
        "Price: $5 (approx.) - see #3.",
    ],
)
def test_kept(text: str) -> None:
    assert check_quality(text, CONFIG) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("too short here", "too_short: 14 chars < 20"),
        ("x" * 30 + " " + "y" * 10, "too_few_words: 2 words < 3"),
        ("word " * 5 + "a" * 60, "char_repetition: run of 60 identical chars > 50"),
        ("### *** !!! ??? ((( ))) one two three", "too_many_symbols: symbol ratio 0.49 > 0.30"),
        (
            "same line here\nsame line here\nsame line here\nsame line here\nother line",
            "repeated_lines: 0.60 of lines are repeats > 0.50",
        ),
    ],
)
def test_dropped_with_reason(text: str, reason: str) -> None:
    assert check_quality(text, CONFIG) == reason


def test_repeated_lines_at_the_limit_are_kept() -> None:
    # 2 repeats among 4 lines is a ratio of exactly 0.5: not above the limit.
    assert check_quality("same line here\nsame line here\nsame line here\nother line", CONFIG) is None


def test_too_long() -> None:
    config = QualityConfig(max_chars=100)
    assert check_quality(GOOD, config) == f"too_long: {len(GOOD)} chars > 100"


def test_top_word_only_judged_from_20_words() -> None:
    nineteen = " ".join(["spam"] * 10 + [f"word{i}" for i in range(9)])
    assert check_quality(nineteen, CONFIG) is None
    twenty = " ".join(["spam"] * 10 + [f"word{i}" for i in range(10)])
    assert check_quality(twenty, CONFIG) == "top_word_dominates: most frequent word is 0.50 of words > 0.30"
    # Counted case-insensitively.
    assert check_quality(twenty.replace("spam", "SPAM", 5), CONFIG) == check_quality(twenty, CONFIG)


def test_reasons_never_quote_the_text() -> None:
    secret = "alice@example.com"
    text = " ".join([secret] * 25)
    reason = check_quality(text, CONFIG)
    assert reason is not None and "alice" not in reason


def test_config_is_validated() -> None:
    with pytest.raises(pydantic.ValidationError):
        QualityConfig(max_symbol_ratio=1.5)
    with pytest.raises(pydantic.ValidationError):
        QualityConfig(min_chars=-1)
