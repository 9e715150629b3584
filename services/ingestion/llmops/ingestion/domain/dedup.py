"""Exact and near-duplicate detection: content hashes, and a persistent MinHash LSH index of our own.

Near-duplicates are found with MinHash signatures over word 5-grams (character 5-grams for texts
shorter than a shingle) and banded locality-sensitive hashing; candidates are confirmed by the share
of signature positions they agree on, leaving room for that estimate's sampling error (see
``verify_margin``). Every hash is a pure function of the text and the index's
seed (blake2b, fixed arithmetic), never Python's per-process ``hash()``, so an index saved by one
process answers correctly in another, on another machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from llmops.ingestion.domain.normalize import normalize_text

FORMAT_NAME = "llmops-near-duplicate-index"
FORMAT_VERSION = 1
# Names the whole hashing recipe (tokens, shingle hash, permutations, band keys); an index file made
# with another recipe holds signatures that cannot be compared with ours.
HASHING = "words-lower-w+/blake2b64-poly/fmix32/affine32/band-poly64"

_TOKEN = re.compile(r"\w+")
# Enough for the words that make up nearly all tokens of a corpus, at some 40 MB.
_MAX_CACHED_WORDS = 1 << 18
_U32_16 = np.uint32(16)
_U32_13 = np.uint32(13)
_FMIX_1 = np.uint32(0x85EBCA6B)
_FMIX_2 = np.uint32(0xC2B2AE35)
_SHIFT_32 = np.uint64(32)
_CHUNK = 8192
# Weights of the banding's false-positive and false-negative areas. Candidates are verified against
# their full signatures, so a banding false positive costs one vectorised comparison while a false
# negative is a duplicate lost for good: banding is tuned to miss almost nothing the verification
# would accept (0.8 with 128 permutations gives 18 bands of 7 rows, against 9 of 13 at 0.5/0.5).
FALSE_POSITIVE_WEIGHT = 0.01
FALSE_NEGATIVE_WEIGHT = 0.99


def content_hash(text: str) -> str:
    """SHA-256 (hex) of the normalised text: equal for texts that differ only in normalisation."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (runs of letters, digits and underscores) the shingles are made of."""
    return _TOKEN.findall(text.lower())


def shingles(text: str, size: int = 5, char_size: int = 5) -> list[str]:
    """The shingles of a text: word ``size``-grams joined by a space.

    Texts with fewer than ``size`` words fall back to character ``char_size``-grams of their words
    joined by spaces (or the whole joined text when shorter still), so short texts are comparable too.
    """
    words = tokenize(text)
    if len(words) >= size:
        return [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    return _char_shingles(" ".join(words), char_size)


def _char_shingles(joined: str, char_size: int) -> list[str]:
    if len(joined) <= char_size:
        return [joined]
    return [joined[i : i + char_size] for i in range(len(joined) - char_size + 1)]


def _blake64(data: bytes, person: bytes = b"") -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "little")


class _WordHashes(dict[str, int]):
    """word -> stable 64-bit hash, computed once per distinct word (vocabularies repeat a lot)."""

    def __missing__(self, word: str) -> int:
        if len(self) >= _MAX_CACHED_WORDS:
            self.clear()  # bounded memory on unbounded vocabularies (ids, numbers, typos)
        value = self[word] = _blake64(word.encode("utf-8"), b"word")
        return value


_WORD_HASHES = _WordHashes()


def _seeded_uint64(seed: int, purpose: str, count: int) -> np.ndarray:
    """``count`` pseudo-random uint64 values derived from the seed with blake2b.

    Not numpy's generators: their streams are allowed to change between numpy versions, and these
    values decide every signature a saved index holds.
    """
    out = bytearray()
    counter = 0
    while len(out) < 8 * count:
        out += hashlib.blake2b(f"{purpose}:{seed}:{counter}".encode(), digest_size=64).digest()
        counter += 1
    return np.frombuffer(bytes(out[: 8 * count]), dtype="<u8").astype(np.uint64)


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, in place: an avalanching bijection."""
    values ^= values >> _U32_16
    values *= _FMIX_1
    values ^= values >> _U32_13
    values *= _FMIX_2
    values ^= values >> _U32_16
    return values


def optimal_bands(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """Bands and rows per band minimising the weighted false-positive and false-negative areas.

    The probability that two sets of Jaccard ``s`` share at least one band is
    ``P(s) = 1 - (1 - s**r)**b``; the false-positive area is the integral of ``P`` over
    ``[0, threshold]`` and the false-negative area that of ``1 - P`` over ``[threshold, 1]``
    (Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3; as datasketch does).

    Returns:
        ``(bands, rows)`` with ``bands * rows <= num_perm``.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    pairs = np.array(
        [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=float
    )
    bands, rows = pairs[:, :1], pairs[:, 1:]
    # P is a polynomial of degree b*r <= num_perm: Gauss-Legendre with num_perm/2 + 1 nodes is exact.
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)

    def area(low: float, high: float, negate: bool) -> np.ndarray:
        s = (high - low) / 2 * nodes + (high + low) / 2
        miss = (1.0 - s**rows) ** bands  # probability of sharing no band
        values = miss if negate else 1.0 - miss
        return (values * weights).sum(axis=1) * (high - low) / 2

    error = fp_weight * area(0.0, threshold, False) + fn_weight * area(threshold, 1.0, True)
    best = int(np.argmin(error))
    return int(pairs[best, 0]), int(pairs[best, 1])


class NearDuplicateIndex:
    """MinHash LSH index of documents; finds those whose word-shingle Jaccard similarity passes a threshold.

    Args:
        num_perm: signature length (hash permutations); more is more accurate and slower.
        threshold: Jaccard similarity from which two documents are near-duplicates.
        shingle_size: words per shingle.
        char_shingle_size: characters per shingle for texts with fewer than ``shingle_size`` words.
        seed: fixes the permutations; indexes can only be compared or merged with the same seed.
        verify_margin: how far below the threshold, in standard errors of the MinHash estimate at the
            threshold (``sqrt(t * (1 - t) / num_perm)``), a candidate's estimated similarity may fall
            and still be accepted. The estimate of a pair exactly at the threshold is below it half
            the time, so a margin of 0 loses half of such pairs; 1.0 (the default) keeps about 84% of
            them and over 99% of pairs 0.05 above it, at the cost of also accepting some pairs a few
            points below the threshold. A lost duplicate is lost for good, an extra one costs a document
            that was nearly a copy anyway.
    """

    def __init__(
        self,
        num_perm: int = 128,
        threshold: float = 0.8,
        shingle_size: int = 5,
        char_shingle_size: int = 5,
        seed: int = 1,
        verify_margin: float = 1.0,
    ) -> None:
        if num_perm < 2:
            raise ValueError(f"num_perm must be at least 2, got {num_perm}")
        if shingle_size < 1 or char_shingle_size < 1:
            raise ValueError(f"shingle sizes must be positive, got {shingle_size} and {char_shingle_size}")
        self.num_perm = num_perm
        self.threshold = threshold
        self.shingle_size = shingle_size
        self.char_shingle_size = char_shingle_size
        self.seed = seed
        self.bands, self.rows = optimal_bands(
            threshold, num_perm, FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT
        )
        if not 0.0 <= verify_margin <= 5.0:
            raise ValueError(f"verify_margin must be between 0 and 5 standard errors, got {verify_margin}")
        self.verify_margin = float(verify_margin)
        error = math.sqrt(threshold * (1.0 - threshold) / num_perm)
        # Least number of agreeing signature positions a candidate needs (an integer: no rounding
        # surprises from comparing shares of positions as floats).
        self.min_agreement = max(1, math.ceil(num_perm * (threshold - verify_margin * error) - 1e-9))
        # Permutations h -> a*h + b mod 2^32 with odd a (a bijection, so no collisions are added), after
        # a fmix32 pre-mix: the scheme datasketch 2.0 uses by default. Measured 2.4x faster than
        # (a*h + b) mod 2^61-1 with numpy, because 32-bit multiplies vectorise and 64-bit ones do not.
        self._perm_a = (_seeded_uint64(seed, "perm-a", num_perm) | np.uint64(1)).astype(np.uint32)[:, None]
        self._perm_b = _seeded_uint64(seed, "perm-b", num_perm).astype(np.uint32)[:, None]
        self._shingle_mult = _seeded_uint64(seed, "shingle", shingle_size) | np.uint64(1)
        self._band_mult = (_seeded_uint64(seed, "band", self.rows) | np.uint64(1))[None, :]
        self._ids: list[str] = []
        self._signatures = np.empty((1024, num_perm), dtype=np.uint32)
        self._band_keys = np.empty((1024, self.bands), dtype=np.uint64)
        # One dict per band: band key -> document index, or a list of them once two share the key
        # (rare, since near-duplicates are not inserted; a bare int keeps the tables small).
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]

    def __len__(self) -> int:
        return len(self._ids)

    # --- signatures --------------------------------------------------------------------------------

    def _shingle_hashes(self, text: str) -> np.ndarray:
        """uint32 hash of every shingle of the text (duplicates kept: they do not change a minimum)."""
        words = tokenize(text)
        size = self.shingle_size
        if len(words) >= size:
            word_hashes = np.fromiter(map(_WORD_HASHES.__getitem__, words), dtype=np.uint64, count=len(words))
            # The 64-bit hash of shingle i is sum_j m_j * word_hash[i + j] mod 2^64 with odd m_j: words
            # are hashed once per distinct word and shingles cost a few vector operations.
            count = len(words) - size + 1
            combined = word_hashes[:count] * self._shingle_mult[0]
            for j in range(1, size):
                combined += word_hashes[j : j + count] * self._shingle_mult[j]
        else:
            grams = _char_shingles(" ".join(words), self.char_shingle_size)
            combined = np.array([_blake64(gram.encode("utf-8"), b"chars") for gram in grams], dtype=np.uint64)
        return _fmix32((combined >> _SHIFT_32).astype(np.uint32))

    def signature(self, text: str) -> np.ndarray:
        """MinHash signature of a text: ``num_perm`` uint32 values."""
        hashes = self._shingle_hashes(text)
        signature = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        # In slices, so a huge text needs num_perm x _CHUNK values of memory, not num_perm x its length.
        for start in range(0, len(hashes), _CHUNK):
            permuted = self._perm_a * hashes[start : start + _CHUNK]  # wraps mod 2^32, as intended
            permuted += self._perm_b
            np.minimum(signature, permuted.min(axis=1), out=signature)
        return signature

    def _keys(self, signature: np.ndarray) -> list[int]:
        banded = signature[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        return (banded * self._band_mult).sum(axis=1, dtype=np.uint64).tolist()

    @staticmethod
    def similarity(signature_a: np.ndarray, signature_b: np.ndarray) -> float:
        """Estimated Jaccard similarity of two signatures: the share of positions where they agree."""
        return float(np.count_nonzero(signature_a == signature_b)) / len(signature_a)

    # --- queries -----------------------------------------------------------------------------------

    def _matches(self, signature: np.ndarray, keys: list[int]) -> list[tuple[float, int]]:
        candidates: set[int] = set()
        for table, key in zip(self._tables, keys, strict=True):
            found = table.get(key)
            if found is None:
                continue
            if isinstance(found, int):
                candidates.add(found)
            else:
                candidates.update(found)
        if not candidates:
            return []
        indices = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        agreement = np.count_nonzero(self._signatures[indices] == signature, axis=1)
        keep = agreement >= self.min_agreement
        ranked = sorted(
            zip((agreement[keep] / self.num_perm).tolist(), indices[keep].tolist(), strict=True),
            key=lambda m: -m[0],
        )
        return ranked

    def query(self, text: str) -> list[str]:
        """Ids of indexed documents whose estimated Jaccard similarity to the text reaches the threshold
        (less the verification margin).

        Returns:
            Ids, most similar first (an id inserted twice is listed once).
        """
        signature = self.signature(text)
        ids = (self._ids[index] for _, index in self._matches(signature, self._keys(signature)))
        return list(dict.fromkeys(ids))

    def insert(self, doc_id: str, text: str) -> None:
        """Index a document (ids need not be unique; a re-ingested id is simply indexed again)."""
        signature = self.signature(text)
        self._add(doc_id, signature, self._keys(signature))

    def check_and_insert(self, doc_id: str, text: str) -> str | None:
        """Return the id of the indexed near-duplicate of the text, or index the text and return None."""
        signature = self.signature(text)
        keys = self._keys(signature)
        matches = self._matches(signature, keys)
        if matches:
            return self._ids[matches[0][1]]
        self._add(doc_id, signature, keys)
        return None

    def _add(self, doc_id: str, signature: np.ndarray, keys: list[int]) -> None:
        index = len(self._ids)
        if index == len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.empty_like(self._signatures)])
            self._band_keys = np.concatenate([self._band_keys, np.empty_like(self._band_keys)])
        self._signatures[index] = signature
        self._band_keys[index] = keys
        self._ids.append(doc_id)
        self._index_keys(index, keys)

    def _index_keys(self, index: int, keys: list[int]) -> None:
        for table, key in zip(self._tables, keys, strict=True):
            found = table.get(key)
            if found is None:
                table[key] = index
            elif isinstance(found, int):
                table[key] = [found, index]
            else:
                found.append(index)

    # --- persistence -------------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "hashing": HASHING,
            "num_perm": self.num_perm,
            "threshold": self.threshold,
            "shingle_size": self.shingle_size,
            "char_shingle_size": self.char_shingle_size,
            "seed": self.seed,
            "verify_margin": self.verify_margin,
            "bands": self.bands,
            "rows": self.rows,
            "count": len(self),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one ``.npz`` file, atomically (temporary file, then rename).

        The file holds a JSON header (format version, parameters), the signatures, the band keys and
        the ids; a reader never sees a half-written index.
        """
        target = Path(path)
        encoded = [doc_id.encode("utf-8") for doc_id in self._ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(item) for item in encoded], out=offsets[1:])
        arrays = {
            "header": np.frombuffer(json.dumps(self._header()).encode("utf-8"), dtype=np.uint8),
            "signatures": self._signatures[: len(self)],
            "band_keys": self._band_keys[: len(self)],
            "id_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            "id_offsets": offsets,
        }
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify_margin: float | None = None) -> NearDuplicateIndex:
        """Read an index written by :meth:`save`.

        ``verify_margin`` replaces the saved one (it changes which candidates are accepted, not what
        the index holds); files written before it existed used 0.

        Raises:
            ValueError: the file is not such an index, or was written with another format or hashing.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            try:
                header = json.loads(data["header"].tobytes().decode("utf-8"))
                signatures = data["signatures"]
                band_keys = data["band_keys"]
                id_bytes = data["id_bytes"].tobytes()
                offsets = data["id_offsets"].tolist()
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path} is not a near-duplicate index file: {error}") from error
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} holds format {header.get('format')!r} version {header.get('version')!r}; "
                f"this code reads {FORMAT_NAME!r} version {FORMAT_VERSION}"
            )
        if header.get("hashing") != HASHING:
            raise ValueError(f"{path} was built with hashing {header.get('hashing')!r}, not {HASHING!r}")
        index = cls(
            num_perm=header["num_perm"],
            threshold=header["threshold"],
            shingle_size=header["shingle_size"],
            char_shingle_size=header["char_shingle_size"],
            seed=header["seed"],
            verify_margin=header.get("verify_margin", 0.0) if verify_margin is None else verify_margin,
        )
        count = header["count"]
        if (index.bands, index.rows) != (header["bands"], header["rows"]):
            raise ValueError(
                f"{path} uses {header['bands']}x{header['rows']} bands; expected {index.bands}x{index.rows}"
            )
        if signatures.shape != (count, index.num_perm) or band_keys.shape != (count, index.bands):
            raise ValueError(f"{path} is inconsistent: arrays do not match its header's count {count}")
        index._signatures = np.array(signatures, dtype=np.uint32)
        index._band_keys = np.array(band_keys, dtype=np.uint64)
        index._ids = [id_bytes[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
        for position, keys in enumerate(index._band_keys.tolist()):
            index._index_keys(position, keys)
        if count == 0:  # keep room to grow
            index._signatures = np.empty((1024, index.num_perm), dtype=np.uint32)
            index._band_keys = np.empty((1024, index.bands), dtype=np.uint64)
        return index
