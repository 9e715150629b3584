"""Chunking by tokens that respects the document's structure.

A document is cut into sections at its headings (Markdown ``#`` headings and underlined ones), the
sections into paragraphs (blank lines), and paragraphs that do not fit into sentences; a sentence
that alone is longer than a chunk is cut at token boundaries. Units are packed greedily into chunks
of at most ``max_tokens`` (counted with the embedding model's own tokenizer, so a chunk is never
truncated when it is embedded); consecutive chunks of a section share their last units up to
``overlap_tokens``, and no chunk spans two sections. Each chunk keeps its character span in the
document and the heading of its section.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# Counts tokens of a text, and gives the character offsets of each token (for cutting long units).
TokenCounter = Callable[[str], int]
TokenOffsets = Callable[[str], Sequence[tuple[int, int]]]

_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S.*$", re.MULTILINE)
_SETEXT_HEADING = re.compile(r"^(?P<title>[^\n]*\S[^\n]*)\n {0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
# A sentence ends with . ! or ? (and closing quotes or brackets) followed by space and a capital,
# a digit or an opening quote; or at a line break inside a paragraph (lists, code).
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n")


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 200
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be in [0, max_tokens/2), got {self.overlap_tokens} "
                f"for max_tokens {self.max_tokens}"
            )


@dataclass(frozen=True)
class Chunk:
    position: int  # 0, 1, ... in the document
    text: str
    start: int  # character span in the document
    end: int
    heading: str  # the section's heading ("" before the first one)
    tokens: int


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int


def sections(text: str) -> list[tuple[str, int, int]]:
    """(heading, start, end) of each section: a heading line starts one; text before the first
    heading is a section without a heading."""
    starts = [(m.start(), m.group(0).strip().lstrip("#").strip()) for m in _ATX_HEADING.finditer(text)]
    starts += [(m.start(), m.group("title").strip()) for m in _SETEXT_HEADING.finditer(text)]
    starts.sort()
    out: list[tuple[str, int, int]] = []
    if not starts or starts[0][0] > 0:
        out.append(("", 0, starts[0][0] if starts else len(text)))
    for i, (start, heading) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        out.append((heading, start, end))
    return [s for s in out if text[s[1] : s[2]].strip()]


def _spans(text: str, start: int, end: int, splitter: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """The non-blank pieces of ``text[start:end]`` between matches of ``splitter``, as spans."""
    cursor = start
    for m in splitter.finditer(text, start, end):
        yield from _trimmed(text, cursor, m.start())
        cursor = m.end()
    yield from _trimmed(text, cursor, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        left = start + (len(piece) - len(piece.lstrip()))
        yield left, left + len(stripped)


def chunk_text(text: str, config: ChunkingConfig, count: TokenCounter, offsets: TokenOffsets) -> list[Chunk]:
    """``text`` cut into chunks (see the module docstring)."""
    chunks: list[Chunk] = []
    for heading, s_start, s_end in sections(text):
        units = list(_units(text, s_start, s_end, config.max_tokens, count, offsets))
        for first, last in _pack(units, config):
            start, end = units[first].start, units[last].end
            piece = text[start:end]
            chunks.append(Chunk(len(chunks), piece, start, end, heading, count(piece)))
    return chunks


def _units(
    text: str, start: int, end: int, limit: int, count: TokenCounter, offsets: TokenOffsets
) -> Iterator[_Unit]:
    """Paragraphs that fit, else their sentences, else token windows of a sentence."""
    for p_start, p_end in _spans(text, start, end, _PARAGRAPH_BREAK):
        tokens = count(text[p_start:p_end])
        if tokens <= limit:
            yield _Unit(p_start, p_end, tokens)
            continue
        for s_start, s_end in _spans(text, p_start, p_end, _SENTENCE_END):
            tokens = count(text[s_start:s_end])
            if tokens <= limit:
                yield _Unit(s_start, s_end, tokens)
                continue
            yield from _windows(text, s_start, s_end, limit, count, offsets)


def _windows(
    text: str, start: int, end: int, limit: int, count: TokenCounter, offsets: TokenOffsets
) -> Iterator[_Unit]:
    spans = offsets(text[start:end])
    for i in range(0, len(spans), limit):
        window = spans[i : i + limit]
        w_start, w_end = start + window[0][0], start + window[-1][1]
        yield _Unit(w_start, w_end, count(text[w_start:w_end]))


def _pack(units: list[_Unit], config: ChunkingConfig) -> Iterator[tuple[int, int]]:
    """(first, last) unit indices of each chunk; consecutive chunks overlap by whole units."""
    i = 0
    while i < len(units):
        total, j = units[i].tokens, i
        # The separators between units cost a token or so each; keep a margin of one per unit.
        while j + 1 < len(units) and total + units[j + 1].tokens + (j + 1 - i) <= config.max_tokens:
            j += 1
            total += units[j].tokens
        yield i, j
        if j + 1 >= len(units):
            return
        # Step back over trailing units that fit in the overlap, but always move forward.
        back, k, following = 0, j, units[j + 1].tokens
        while (
            k > i
            and back + units[k].tokens <= config.overlap_tokens
            # The overlap and the next unit must fit in one chunk, or it would only repeat.
            and back + units[k].tokens + following + (j - k + 1) <= config.max_tokens
        ):
            back += units[k].tokens
            k -= 1
        i = k + 1 if back else j + 1
