"""The ingestion cleaning pipeline: step order, counts, duplicates within and across batches, bad items."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llmops.ingestion.domain.dedup import NearDuplicateIndex
from llmops.ingestion.domain.pipeline import (
    BatchCounts,
    CleaningPipeline,
    ItemError,
    PipelineConfig,
    RawDocument,
    Step,
)

VOCABULARY = [f"word{i}" for i in range(2000)]


def prose(seed: int, words: int = 120) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def pipeline(config: PipelineConfig | None = None) -> CleaningPipeline:
    config = config or PipelineConfig()
    return CleaningPipeline(config, config.new_index(), set())


def doc(doc_id: str, text: object, mime_type: str | None = None, position: int = 0) -> RawDocument:
    return RawDocument(
        doc_id, text, source="test", mime_type=mime_type, metadata={"k": "v"}, position=position
    )  # type: ignore[arg-type]


def test_kept_document_is_normalised_and_redacted() -> None:
    cleaner = pipeline()
    outcome = cleaner.process(doc("a", f"  Write to jane@example.com\u200b  about it.\n\n\n\n{prose(1)}  "))
    assert outcome.kept and outcome.dropped_step is None and outcome.reason is None
    assert outcome.doc is not None
    assert outcome.doc.text == f"Write to [EMAIL] about it.\n\n{prose(1)}"
    assert outcome.pii_counts == outcome.doc.pii_counts == {"EMAIL": 1}
    assert (outcome.doc.doc_id, outcome.doc.source, outcome.doc.metadata) == ("a", "test", {"k": "v"})
    assert len(outcome.doc.content_hash) == 64 and not outcome.doc.html_stripped


def test_html_is_stripped_before_pii_redaction() -> None:
    # The address inside <script> disappears with the script: PII redaction never sees it.
    script = "<script>send('ops@example.com')</script>"
    html = f"<html><body><p>{prose(2)}</p>{script}<p>Call 555-123-4567</p></body></html>"
    outcome = pipeline().process(doc("h", html, mime_type="text/html; charset=utf-8"))
    assert outcome.kept and outcome.doc is not None and outcome.doc.html_stripped
    assert outcome.doc.text == f"{prose(2)}\n\nCall [PHONE]"
    assert outcome.pii_counts == {"PHONE": 1}


def test_html_is_detected_without_a_mime_type_and_can_be_switched_off() -> None:
    html = f"<div><p>{prose(3)}</p><p>more text here</p></div>"
    assert pipeline().process(doc("d", html)).doc.html_stripped  # type: ignore[union-attr]
    no_detection = pipeline(PipelineConfig(detect_html=False)).process(doc("d", html))
    assert (
        no_detection.doc is not None and not no_detection.doc.html_stripped and "<p>" in no_detection.doc.text
    )


def test_quality_filter_runs_before_pii_redaction() -> None:
    cleaner = pipeline()
    outcome = cleaner.process(doc("q", "hi bob@example.com"))
    assert (outcome.kept, outcome.dropped_step, outcome.reason) == (
        False,
        Step.QUALITY,
        "too_short: 18 chars < 20",
    )
    assert outcome.pii_counts == {} and cleaner.counts.pii_redacted == 0


def test_exact_dedup_compares_normalised_redacted_text() -> None:
    cleaner = pipeline()
    body = prose(4)
    assert cleaner.process(doc("1", f"From alice@example.com: {body}")).kept
    # Differs only by the e-mail address and by whitespace / invisible characters: the same after cleaning.
    second = cleaner.process(doc("2", f"From  bob@example.org:\u200b {body}\n"))
    assert (second.kept, second.dropped_step) == (False, Step.EXACT_DUP)
    assert second.reason is not None and second.reason.startswith("exact_duplicate: content hash ")
    assert second.pii_counts == {"EMAIL": 1}


def test_near_duplicates_within_a_batch_and_across_batches(tmp_path: Path) -> None:
    config = PipelineConfig()
    seen: set[str] = set()
    cleaner = CleaningPipeline(config, config.new_index(), seen)
    words = prose(5, 200).split()
    assert cleaner.process(doc("orig", " ".join(words))).kept
    words[60] = "different"
    near = cleaner.process(doc("near", " ".join(words)))
    assert (near.kept, near.dropped_step, near.reason) == (False, Step.NEAR_DUP, "near_duplicate_of: orig")
    assert cleaner.process(doc("other", prose(6, 200))).kept

    # The caller persists the index and the hashes; a new pipeline (a later batch) still sees them.
    path = tmp_path / "near-dup.npz"
    cleaner.index.save(path)
    later = CleaningPipeline(config, NearDuplicateIndex.load(path), set(seen))
    words[61] = "changed"
    assert later.process(doc("later-near", " ".join(words))).dropped_step == Step.NEAR_DUP
    assert later.process(doc("later-exact", prose(6, 200))).dropped_step == Step.EXACT_DUP
    assert later.process(doc("later-new", prose(7, 200))).kept


def test_batch_counts() -> None:
    cleaner = pipeline()
    body = prose(8, 200)
    batch = [
        doc("kept-pii", f"Card 4111 1111 1111 1111 and jane@example.com. {prose(9)}"),
        doc("html", f"<p>{prose(10)}</p><p>ring +44 20 7946 0958</p>", mime_type="text/html"),
        doc("short", "too short"),
        doc("kept", body),
        doc("exact", body + "   "),
        doc("near", body.replace(body.split()[100], "replaced", 1)),
        doc("bad", None),
    ]
    outcomes = [cleaner.process(item) for item in batch]
    assert [o.dropped_step for o in outcomes] == [
        None,
        None,
        Step.QUALITY,
        None,
        Step.EXACT_DUP,
        Step.NEAR_DUP,
        Step.ERROR,
    ]
    assert cleaner.counts == BatchCounts(
        received=7,
        normalised=6,
        html_stripped=1,
        dropped_quality=1,
        pii_redacted=2,
        pii_redacted_by_type={"CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1},
        dropped_exact_dup=1,
        dropped_near_dup=1,
        kept=3,
        errors=1,
        item_errors=[ItemError(0, "test", "text is NoneType, not a string")],
    )
    finished = cleaner.new_batch()
    assert finished.kept == 3 and cleaner.counts == BatchCounts()


def test_bad_items_are_recorded_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    cleaner = pipeline()
    outcome = cleaner.record_error(4, "s3://bucket/rows.jsonl", "row has no text field")
    assert (outcome.kept, outcome.dropped_step, outcome.reason) == (
        False,
        Step.ERROR,
        "row has no text field",
    )

    def broken(text: str) -> tuple[str, dict[str, int]]:
        raise RuntimeError(f"cannot handle {text}")

    monkeypatch.setattr("llmops.ingestion.domain.pipeline.redact_pii", broken)
    failed = cleaner.process(doc("x", prose(11), position=5))
    # The reason names the failure, never the document's text.
    assert (failed.dropped_step, failed.reason) == (Step.ERROR, "RuntimeError while cleaning")
    monkeypatch.undo()
    assert cleaner.process(doc("y", prose(12), position=6)).kept
    assert cleaner.counts.received == 3 and cleaner.counts.errors == 2 and cleaner.counts.kept == 1
    assert cleaner.counts.item_errors == [
        ItemError(4, "s3://bucket/rows.jsonl", "row has no text field"),
        ItemError(5, "test", "RuntimeError while cleaning"),
    ]


def test_steps_can_be_switched_off() -> None:
    config = PipelineConfig(
        normalize=False,
        strip_html=False,
        quality_filter=False,
        redact_pii=False,
        exact_dedup=False,
        near_dedup=False,
    )
    cleaner = pipeline(config)
    text = "  <p>x@example.com</p>  "
    first, second = cleaner.process(doc("1", text)), cleaner.process(doc("2", text))
    assert first.kept and second.kept and first.doc is not None and first.doc.text == text
    assert cleaner.counts.normalised == cleaner.counts.html_stripped == cleaner.counts.pii_redacted == 0
    assert len(cleaner.index) == 0


def test_index_must_match_the_configuration() -> None:
    with pytest.raises(ValueError, match="num_perm, threshold, shingle_size, verify_margin"):
        CleaningPipeline(PipelineConfig(num_perm=64), NearDuplicateIndex(num_perm=128), set())
    with pytest.raises(ValueError, match=r"\(128, 0.8, 5, 0.0\).*\(128, 0.8, 5, 2.0\)"):
        CleaningPipeline(
            PipelineConfig(near_dup_verify_margin=2.0), NearDuplicateIndex(verify_margin=0.0), set()
        )
