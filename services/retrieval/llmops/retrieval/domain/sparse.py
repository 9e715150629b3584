"""The lexical side of hybrid search: BM25 term weights as sparse vectors.

Qdrant applies the IDF half of BM25 itself (a sparse vector with ``Modifier.IDF``, computed from
the collection at query time), so a document's vector holds only the term-frequency half:
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))`` per term, and a query's vector holds 1
per distinct term. Terms are lower-cased words without English stop words; a term's index is a
stable 31-bit hash of it, so vectors made by any process agree.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)

# A common English stop-word list (the words carry no topic).
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


def terms(text: str) -> list[str]:
    """The terms of ``text`` in order: lower-cased words, stop words and one-letter words left out."""
    return [
        w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if len(w) > 1 and w not in STOP_WORDS
    ]


def term_index(term: str) -> int:
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def document_vector(text: str, *, k1: float = 1.2, b: float = 0.75, avg_len: float = 120.0) -> SparseVector:
    """The BM25 term-frequency weights of a document (or chunk)."""
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = k1 * (1 - b + b * length / avg_len)
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        index = term_index(term)
        # Two terms with one hash (rare at 31 bits) add up, as one term would.
        weights[index] = weights.get(index, 0.0) + tf * (k1 + 1) / (tf + norm)
    return SparseVector(sorted(weights), [weights[i] for i in sorted(weights)])


def query_vector(text: str) -> SparseVector:
    """A query's vector: 1 for each distinct term (Qdrant multiplies by the term's IDF)."""
    indices = sorted({term_index(t) for t in terms(text)})
    return SparseVector(indices, [1.0] * len(indices))
