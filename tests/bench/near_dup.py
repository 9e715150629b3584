"""Near-duplicate removal: our MinHash LSH index against datasketch's, on the same stream and shingles.

A deterministic stream of synthetic documents (80-300 words drawn from a Zipf-distributed vocabulary)
holds planted near-duplicates: copies of an earlier document with 2-5% of their words substituted,
deleted or inserted. Each index runs "query, then insert if nothing matched" over the stream, with
the same word 5-gram shingles, 128 permutations and threshold 0.8, in alternating blocks; throughput
is printed as a ratio against datasketch measured in the same run, and precision/recall against the
planted copies. Recall is also split by each copy's true Jaccard similarity to its source (exact,
over the shingle sets): scattered edits change up to 5 shingles each, so most copies fall below 0.8,
where flagging them is a false positive by the threshold's definition though a hit on the planted set.
Ours verifies LSH candidates against the threshold less one standard error of the MinHash estimate
(the default ``verify_margin``); datasketch takes every candidate that shares a band.
``LLMOPS_BENCH_NEAR_DUP_DOCS`` changes the stream's length (default 50,000).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from llmops.ingestion.domain.dedup import NearDuplicateIndex, shingles

DOCS = int(os.environ.get("LLMOPS_BENCH_NEAR_DUP_DOCS", "50000"))
SEED = 20240115
VOCABULARY = 5000
COPY_SHARE = 0.10
EDIT_SHARE = (0.02, 0.05)
THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE_SIZE = 5
BLOCK = 500


@dataclass
class Stream:
    texts: list[str]
    source_of: dict[int, int]  # position of a planted copy -> position of the document it copies


@dataclass
class Result:
    name: str
    seconds: float
    flagged: set[int]
    description: str


def _vocabulary(rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(letters, size=int(rng.integers(2, 11)))))
    return sorted(words)


def _stream(count: int) -> Stream:
    """Originals with Zipf-like word frequencies, and planted edited copies of earlier originals."""
    rng = np.random.default_rng(SEED)
    vocabulary = np.array(_vocabulary(rng), dtype=object)
    # Zipf-Mandelbrot frequencies, as word frequencies in natural text roughly follow.
    weights = 1.0 / (np.arange(1, VOCABULARY + 1) + 2.7) ** 1.1
    cumulative = np.cumsum(weights / weights.sum())

    def draw(size: int) -> list[str]:
        ranks = np.minimum(np.searchsorted(cumulative, rng.random(size)), VOCABULARY - 1)
        return list(vocabulary[ranks])

    texts: list[str] = []
    words_of: list[list[str]] = []
    originals: list[int] = []
    source_of: dict[int, int] = {}
    for position in range(count):
        if originals and rng.random() < COPY_SHARE:
            source = originals[int(rng.integers(len(originals)))]
            words = list(words_of[source])
            edits = max(1, round(len(words) * rng.uniform(*EDIT_SHARE)))
            for _ in range(edits):
                at = int(rng.integers(len(words)))
                operation = rng.integers(3)
                replacement = draw(1)[0]
                if operation == 0:
                    words[at] = replacement
                elif operation == 1:
                    del words[at]
                else:
                    words.insert(at, replacement)
            source_of[position] = source
        else:
            words = draw(int(rng.integers(80, 301)))
            originals.append(position)
        words_of.append(words)
        texts.append(" ".join(words))
    return Stream(texts, source_of)


class _Ours:
    name = "ours"

    def __init__(self) -> None:
        self.index = NearDuplicateIndex(num_perm=NUM_PERM, threshold=THRESHOLD, shingle_size=SHINGLE_SIZE)
        self.description = (
            f"{self.index.bands}x{self.index.rows} bands, candidates verified: at least "
            f"{self.index.min_agreement} of {NUM_PERM} signature positions agree "
            f"(threshold less {self.index.verify_margin:g} standard error)"
        )

    def flag(self, position: int, text: str) -> bool:
        return self.index.check_and_insert(str(position), text) is not None


class _Datasketch:
    name = "datasketch"

    def __init__(self) -> None:
        self.lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
        self.description = f"{self.lsh.b}x{self.lsh.r} bands, LSH candidates as they come"
        # Permutations shared across sketches (datasketch's documented fast path; the same values as
        # a fresh MinHash(num_perm=128)), so the baseline does not regenerate them per document.
        self.template = MinHash(num_perm=NUM_PERM)

    def flag(self, position: int, text: str) -> bool:
        sketch = MinHash(
            num_perm=NUM_PERM, permutations=self.template.permutations, scheme=self.template.scheme
        )
        sketch.update_batch([shingle.encode("utf-8") for shingle in shingles(text, SHINGLE_SIZE)])
        if self.lsh.query(sketch):
            return True
        self.lsh.insert(position, sketch)
        return False


def _run(texts: list[str]) -> list[Result]:
    """Both indexes over the stream, alternating blocks of documents.

    Alternating means load from other processes on a shared machine slows both alike, instead of
    whichever happened to run at the time.
    """
    runners: list[_Ours | _Datasketch] = [_Ours(), _Datasketch()]
    results = [Result(runner.name, 0.0, set(), runner.description) for runner in runners]
    for start in range(0, len(texts), BLOCK):
        block = texts[start : start + BLOCK]
        for runner, result in zip(runners, results, strict=True):
            began = time.perf_counter()
            flagged = [start + i for i, text in enumerate(block) if runner.flag(start + i, text)]
            result.seconds += time.perf_counter() - began
            result.flagged.update(flagged)
    return results


def _jaccard(a: str, b: str) -> float:
    left, right = set(shingles(a, SHINGLE_SIZE)), set(shingles(b, SHINGLE_SIZE))
    return len(left & right) / len(left | right)


def _report(result: Result, planted: set[int], above: set[int]) -> str:
    true_positives = len(result.flagged & planted)
    precision = true_positives / len(result.flagged) if result.flagged else 1.0
    below = planted - above
    recall = true_positives / len(planted)
    recall_above = len(result.flagged & above) / len(above) if above else 1.0
    recall_below = len(result.flagged & below) / len(below) if below else 1.0
    return (
        f"{result.name:<11} {DOCS / result.seconds:>8.0f} {precision:>9.4f} {recall:>7.4f} "
        f"{recall_above:>10.4f} {recall_below:>10.4f} {len(result.flagged):>8}"
    )


def run() -> None:
    started = time.perf_counter()
    stream = _stream(DOCS)
    planted = set(stream.source_of)
    similarity = {
        copy: _jaccard(stream.texts[copy], stream.texts[source]) for copy, source in stream.source_of.items()
    }
    above = {copy for copy, value in similarity.items() if value >= THRESHOLD}
    low, median, high = np.quantile(np.array(list(similarity.values())), [0.1, 0.5, 0.9])
    print(
        f"{DOCS} documents, {len(planted)} planted copies with {EDIT_SHARE[0]:.0%}-{EDIT_SHARE[1]:.0%} "
        f"of words edited (generated in {time.perf_counter() - started:.1f}s)\n"
        f"true Jaccard of planted pairs over word {SHINGLE_SIZE}-grams: p10 {low:.2f}, median {median:.2f}, "
        f"p90 {high:.2f}; {len(above) / len(planted):.0%} at or above the threshold {THRESHOLD}",
        flush=True,
    )
    ours, baseline = _run(stream.texts)
    for result in (ours, baseline):
        print(f"{result.name}: {result.description}")
    above_label, below_label = f"J>={THRESHOLD}", f"J<{THRESHOLD}"
    print(f"{'':<11} {'':>8} {'':>9} {'':>7} {'recall on pairs with':>21}")
    print(
        f"{'index':<11} {'docs/s':>8} {'precision':>9} {'recall':>7} "
        f"{above_label:>10} {below_label:>10} {'flagged':>8}"
    )
    for result in (ours, baseline):
        print(_report(result, planted, above))
    print(f"throughput ratio ours/datasketch: {baseline.seconds / ours.seconds:.2f}x", flush=True)
