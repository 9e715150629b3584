"""Exact and near-duplicate detection of the ingestion domain."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from llmops.ingestion.domain.dedup import NearDuplicateIndex, content_hash, optimal_bands, shingles

VOCABULARY = [f"w{i}" for i in range(2000)]


def random_text(rng: random.Random, words: int = 200) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def jaccard(a: str, b: str) -> float:
    left, right = set(shingles(a)), set(shingles(b))
    return len(left & right) / len(left | right)


def test_content_hash_is_sha256_of_normalised_text() -> None:
    digest = content_hash("Hello   world\u200b\n\n\n\n")
    assert digest == content_hash("Hello world") and len(digest) == 64
    assert digest != content_hash("Hello world!")


def test_shingles_are_word_5_grams_with_a_character_fallback() -> None:
    assert shingles("One, two; three four FIVE six") == ["one two three four five", "two three four five six"]
    assert shingles("Hi there") == ["hi th", "i the", " ther", "there"]
    assert shingles("ok") == ["ok"]


def test_exact_copy_and_one_word_change_are_caught_unrelated_text_is_not() -> None:
    rng = random.Random(1)
    index = NearDuplicateIndex()
    original = random_text(rng)
    assert index.check_and_insert("original", original) is None
    assert index.check_and_insert("copy", original) == "original"
    words = original.split()
    words[100] = "changed"
    edited = " ".join(words)
    assert jaccard(original, edited) > 0.9
    assert index.check_and_insert("edited", edited) == "original"
    assert index.check_and_insert("other", random_text(rng)) is None
    assert len(index) == 2  # matched documents are not inserted
    assert index.query(edited) == ["original"]


def test_short_texts_use_character_shingles() -> None:
    index = NearDuplicateIndex()
    index.insert("a", "Hello there, world")
    assert index.query("hello there world!") == ["a"]
    assert index.query("goodbye moon") == []


def test_signature_estimates_jaccard() -> None:
    rng = random.Random(2)
    index = NearDuplicateIndex()
    words = random_text(rng, 300).split()
    half = words[:150] + random_text(rng, 150).split()
    truth = jaccard(" ".join(words), " ".join(half))
    estimate = index.similarity(index.signature(" ".join(words)), index.signature(" ".join(half)))
    assert abs(estimate - truth) < 0.1


def test_signatures_are_stable_across_processes() -> None:
    # Pinned values: a change here means saved indexes no longer match new signatures.
    text = "the quick brown fox jumps over the lazy dog"
    expected = [645616934, 70638672, 1358747958, 477194378, 156659011, 1693968000]
    assert NearDuplicateIndex().signature(text)[:6].tolist() == expected
    code = (
        "from llmops.ingestion.domain.dedup import NearDuplicateIndex;"
        f"print(NearDuplicateIndex().signature({text!r})[:6].tolist())"
    )
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        )
        assert json.loads(out.stdout) == expected


@pytest.mark.parametrize(
    ("threshold", "num_perm", "fp", "fn"), [(0.8, 128, 0.5, 0.5), (0.5, 64, 0.5, 0.5), (0.9, 32, 0.3, 0.7)]
)
def test_band_choice_matches_the_literature(threshold: float, num_perm: int, fp: float, fn: float) -> None:
    assert optimal_bands(threshold, num_perm, fp, fn) == _optimal_param(threshold, num_perm, fp, fn)


def test_bands_favour_recall_since_candidates_are_verified() -> None:
    index = NearDuplicateIndex(threshold=0.8, num_perm=128)
    assert (index.bands, index.rows) == (18, 7)
    # Probability that a pair at the threshold shares a band: 0.985, where 9x13 gives 0.40.
    assert 1 - (1 - 0.8**7) ** 18 > 0.98


def test_persistence_round_trip(tmp_path: Path) -> None:
    rng = random.Random(3)
    index = NearDuplicateIndex(num_perm=64, threshold=0.7, shingle_size=4)
    texts = {f"doc-{i}": random_text(rng) for i in range(50)}
    for doc_id, text in texts.items():
        assert index.check_and_insert(doc_id, text) is None
    index.insert("naïve-id ✓", random_text(rng))  # any id survives the round trip
    path = tmp_path / "index.npz"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # no temporary file left behind

    loaded = NearDuplicateIndex.load(path)
    assert len(loaded) == 51
    assert (loaded.num_perm, loaded.threshold, loaded.shingle_size) == (64, 0.7, 4)
    words = texts["doc-17"].split()
    words[50:52] = ["x", "y"]
    assert loaded.check_and_insert("later", " ".join(words)) == "doc-17"
    assert loaded.check_and_insert("new", random_text(rng)) is None
    assert len(loaded) == 52
    assert np.array_equal(loaded.signature(texts["doc-3"]), index.signature(texts["doc-3"]))

    # Saving over an existing file replaces it; an empty index round-trips and can grow.
    NearDuplicateIndex().save(path)
    empty = NearDuplicateIndex.load(path)
    assert len(empty) == 0
    empty.insert("a", texts["doc-1"])
    assert empty.query(texts["doc-1"]) == ["a"]


def test_load_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, data=np.arange(3))
    with pytest.raises(ValueError, match="not a near-duplicate index"):
        NearDuplicateIndex.load(other)
    index = NearDuplicateIndex()
    path = tmp_path / "index.npz"
    index.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    header = json.loads(arrays["header"].tobytes())
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="version 99"):
        NearDuplicateIndex.load(path)


def test_false_positives_on_unrelated_texts() -> None:
    rng = random.Random(4)
    index = NearDuplicateIndex()
    flagged = sum(
        index.check_and_insert(str(i), random_text(rng, rng.randint(80, 300))) is not None for i in range(200)
    )
    # 200 unrelated texts share no 5-gram in practice: any flag would be a false positive.
    assert flagged == 0
    assert len(index) == 200


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=1.0)
    with pytest.raises(ValueError, match="num_perm"):
        NearDuplicateIndex(num_perm=1)
    with pytest.raises(ValueError, match="verify_margin"):
        NearDuplicateIndex(verify_margin=-0.5)


def test_verification_margin_is_counted_in_standard_errors() -> None:
    # At 0.8 with 128 permutations the standard error is sqrt(0.8 * 0.2 / 128) = 0.0354 (4.5 positions).
    assert NearDuplicateIndex(verify_margin=0.0).min_agreement == 103  # ceil(102.4)
    assert NearDuplicateIndex().min_agreement == 98  # ceil(97.87): the default margin is 1
    assert NearDuplicateIndex(verify_margin=2.0).min_agreement == 94


def _edited(rng: random.Random, words: list[str], edits: int) -> str:
    changed = list(words)
    for at in rng.sample(range(len(changed)), edits):
        changed[at] = f"edit{at}"
    return " ".join(changed)


def test_margin_keeps_pairs_at_the_threshold_whose_estimate_falls_short() -> None:
    """Pairs whose true Jaccard is at or just above 0.8: without a margin about half are lost to the
    estimate's sampling error; one standard error keeps nearly all of them."""
    rng = random.Random(5)
    strict, default = NearDuplicateIndex(verify_margin=0.0), NearDuplicateIndex()
    pairs = []
    while len(pairs) < 150:
        words = random_text(rng, 300).split()
        edited = _edited(rng, words, rng.randint(5, 7))
        if 0.8 <= jaccard(" ".join(words), edited) <= 0.85:
            pairs.append((" ".join(words), edited))
    kept = {"strict": 0, "default": 0}
    for i, (original, edited) in enumerate(pairs):
        for name, index in (("strict", strict), ("default", default)):
            index.insert(f"o{i}", original)
            kept[name] += index.query(edited) == [f"o{i}"]
    assert kept["default"] >= 0.9 * len(pairs), kept
    assert kept["strict"] < kept["default"] - 0.1 * len(pairs), kept


def test_a_candidate_between_the_two_cuts() -> None:
    """An edited copy whose signatures agree on 98 to 102 of 128 positions: a near-duplicate with the
    default margin, not with none."""
    rng = random.Random(6)
    probe = NearDuplicateIndex()
    for _ in range(500):
        original = random_text(rng, 300)
        edited = _edited(rng, original.split(), rng.randint(5, 9))
        agreement = int(np.count_nonzero(probe.signature(original) == probe.signature(edited)))
        if 98 <= agreement <= 102:
            break
    else:
        pytest.fail("no pair between the cuts in 500 tries")
    for margin, expected in ((0.0, None), (1.0, "original")):
        index = NearDuplicateIndex(verify_margin=margin)
        index.insert("original", original)
        assert index.check_and_insert("edited", edited) == expected


def test_margin_is_saved_and_can_be_replaced_on_load(tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    NearDuplicateIndex(verify_margin=1.5).save(path)
    assert NearDuplicateIndex.load(path).verify_margin == 1.5
    replaced = NearDuplicateIndex.load(path, verify_margin=0.0)
    assert (replaced.verify_margin, replaced.min_agreement) == (0.0, 103)
    # A file written before the margin existed was verified without one, and still loads that way.
    with np.load(path) as data:
        arrays = dict(data)
    header = json.loads(arrays["header"].tobytes())
    del header["verify_margin"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    assert NearDuplicateIndex.load(path).verify_margin == 0.0
