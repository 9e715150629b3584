"""Text metrics for evaluation: ROUGE-L (LCS F1) and exact match."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-folded, Unicode-normalised (NFKC), whitespace collapsed: what exact match compares."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def tokens(text: str) -> list[str]:
    """Word tokens of :func:`normalize`\\ d text (punctuation dropped), as ROUGE-L counts them."""
    return _WORD.findall(normalize(text))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (O(len(a) * len(b)) time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: precision and recall of the longest common word subsequence, harmonic mean.

    Two empty texts agree (1.0); one empty text against a non-empty one scores 0.0.
    """
    pred, ref = tokens(prediction), tokens(reference)
    if not pred and not ref:
        return 1.0
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the texts are equal after :func:`normalize`, else 0.0."""
    return 1.0 if normalize(prediction) == normalize(reference) else 0.0
