"""Heuristic quality filter: length, word count, symbol share, repetition."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

# Han, kana and hangul syllables count one word per character: those scripts are written without
# spaces, and counting whole runs would reject any CJK document as "too few words".
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")
_WORD_OR_SPACE = re.compile(r"[^\W_]|\s")


class QualityConfig(BaseModel):
    """Thresholds of the quality filter; a document failing any of them is dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_chars: int = Field(20, ge=0)
    max_chars: int = Field(100_000, ge=1)
    min_words: int = Field(3, ge=0)
    max_symbol_ratio: float = Field(0.3, ge=0.0, le=1.0)
    max_repeated_line_ratio: float = Field(0.5, ge=0.0, le=1.0)
    max_top_word_ratio: float = Field(0.3, ge=0.0, le=1.0)
    top_word_min_words: int = Field(20, ge=1)
    max_char_repetition: int = Field(50, ge=1)


def _symbol_count(text: str) -> int:
    """Characters that are neither alphanumeric nor whitespace, combining marks excepted.

    Marks (Devanagari vowel signs, Arabic harakat, ...) are part of words in their scripts even
    though ``str.isalnum`` says otherwise; counting them would reject whole languages.
    """
    rest = _WORD_OR_SPACE.sub("", text)
    return sum(1 for char in rest if unicodedata.category(char)[0] != "M")


def _repeated_line_ratio(text: str) -> float:
    lines = [line for line in (raw.strip() for raw in text.split("\n")) if line]
    if len(lines) < 2:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


def check_quality(text: str, config: QualityConfig) -> str | None:
    """Judge a normalised document against the thresholds.

    Returns:
        None when the document is kept, else the reason: a stable code, a colon, and the measured
        figure against its limit (e.g. ``"too_short: 12 chars < 20"``). The reason never quotes the
        document, which has not been PII-redacted yet.
    """
    chars = len(text)
    if chars < config.min_chars:
        return f"too_short: {chars} chars < {config.min_chars}"
    if chars > config.max_chars:
        return f"too_long: {chars} chars > {config.max_chars}"
    words = _WORD.findall(text)
    if len(words) < config.min_words:
        return f"too_few_words: {len(words)} words < {config.min_words}"
    # A run longer than the limit means at least limit + 1 identical characters in a row.
    run = re.search(rf"(.)\1{{{config.max_char_repetition},}}", text, re.S)
    if run:
        return f"char_repetition: run of {len(run.group(0))} identical chars > {config.max_char_repetition}"
    symbol_ratio = _symbol_count(text) / chars
    if symbol_ratio > config.max_symbol_ratio:
        return f"too_many_symbols: symbol ratio {symbol_ratio:.2f} > {config.max_symbol_ratio:.2f}"
    repeated = _repeated_line_ratio(text)
    if repeated > config.max_repeated_line_ratio:
        return f"repeated_lines: {repeated:.2f} of lines are repeats > {config.max_repeated_line_ratio:.2f}"
    if len(words) >= config.top_word_min_words:
        top_count = Counter(word.lower() for word in words).most_common(1)[0][1]
        top_ratio = top_count / len(words)
        if top_ratio > config.max_top_word_ratio:
            limit = config.max_top_word_ratio
            return f"top_word_dominates: most frequent word is {top_ratio:.2f} of words > {limit:.2f}"
    return None
