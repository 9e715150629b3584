"""The cleaning pipeline: normalise, strip HTML, filter on quality, redact PII, drop exact and near dups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmops.core.convert import copy_fields
from llmops.core.pii import redact_pii
from llmops.ingestion.domain.dedup import NearDuplicateIndex, content_hash
from llmops.ingestion.domain.html import html_to_text, looks_like_html
from llmops.ingestion.domain.normalize import normalize_text
from llmops.ingestion.domain.quality import QualityConfig, check_quality

HTML_MIME_TYPES = frozenset({"text/html", "application/xhtml+xml"})


class Step(StrEnum):
    """The pipeline's steps, in the order they run; a dropped document names the step that dropped it."""

    NORMALIZE = "normalize"
    HTML = "html"
    QUALITY = "quality"
    PII = "pii"
    EXACT_DUP = "exact_dup"
    NEAR_DUP = "near_dup"
    ERROR = "error"  # not a step: the document could not be processed


class PipelineConfig(BaseModel):
    """What the pipeline does: one switch per step, the quality thresholds and the near-duplicate settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    normalize: bool = True
    strip_html: bool = True
    # Convert text whose mime type is not HTML but looks like HTML (scraped pages sent as text/plain).
    detect_html: bool = True
    quality_filter: bool = True
    redact_pii: bool = True
    # The kinds of llmops.core.pii.PII_TYPES to redact; None: all of them.
    pii_kinds: frozenset[str] | None = None
    exact_dedup: bool = True
    near_dedup: bool = True
    quality: QualityConfig = Field(default_factory=QualityConfig)
    near_dup_threshold: float = Field(0.8, gt=0.0, lt=1.0)
    # Standard errors of the MinHash estimate a candidate may fall below the threshold (see
    # NearDuplicateIndex's verify_margin).
    near_dup_verify_margin: float = Field(1.0, ge=0.0, le=5.0)
    num_perm: int = Field(128, ge=2)
    shingle_size: int = Field(5, ge=1)

    def new_index(self) -> NearDuplicateIndex:
        """An empty near-duplicate index with this configuration's parameters."""
        return NearDuplicateIndex(
            num_perm=self.num_perm,
            threshold=self.near_dup_threshold,
            shingle_size=self.shingle_size,
            verify_margin=self.near_dup_verify_margin,
        )


class SeenHashes(Protocol):
    """Memory of the content hashes already kept (a set, or a store the caller persists)."""

    def __contains__(self, item: object, /) -> bool: ...

    def add(self, item: str, /) -> None: ...


@dataclass(frozen=True)
class RawDocument:
    """A document as received, before cleaning; ``position`` is its index in the batch."""

    doc_id: str
    text: str
    source: str
    mime_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    position: int = 0


@dataclass(frozen=True)
class CleanedDocument:
    """A kept document: normalised, HTML-free, redacted text and its content hash."""

    doc_id: str
    text: str
    source: str
    metadata: Mapping[str, str]
    position: int
    content_hash: str
    html_stripped: bool
    pii_counts: Mapping[str, int]


@dataclass(frozen=True)
class Outcome:
    """What happened to one document: kept (with the cleaned document) or dropped (with step and reason)."""

    kept: bool
    doc: CleanedDocument | None
    dropped_step: str | None
    reason: str | None
    pii_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemError:
    """A batch item that could not be processed; the reason never quotes the item's text."""

    position: int
    source: str
    reason: str


@dataclass
class BatchCounts:
    """Per-batch tallies of the pipeline's work."""

    received: int = 0
    normalised: int = 0
    html_stripped: int = 0
    dropped_quality: int = 0
    pii_redacted: int = 0  # documents with any PII
    pii_redacted_by_type: dict[str, int] = field(default_factory=dict)
    dropped_exact_dup: int = 0
    dropped_near_dup: int = 0
    kept: int = 0
    errors: int = 0
    item_errors: list[ItemError] = field(default_factory=list)

    def record_error(self, position: int, source: str, reason: str) -> None:
        """Count a bad item (e.g. a row without text) and keep why; the batch goes on."""
        self.errors += 1
        self.item_errors.append(ItemError(position, source, reason))


class CleaningPipeline:
    """Runs documents through the cleaning steps, one at a time, updating the batch counts.

    Args:
        config: which steps run and with what thresholds.
        index: near-duplicate index, persisted by the caller so later batches see earlier ones.
        seen_hashes: content hashes of kept documents (exact-duplicate memory), persisted by the caller.
    """

    def __init__(self, config: PipelineConfig, index: NearDuplicateIndex, seen_hashes: SeenHashes) -> None:
        expected = (
            config.num_perm,
            config.near_dup_threshold,
            config.shingle_size,
            config.near_dup_verify_margin,
        )
        actual = (index.num_perm, index.threshold, index.shingle_size, index.verify_margin)
        if expected != actual:
            raise ValueError(
                f"near-duplicate index has num_perm, threshold, shingle_size, verify_margin {actual}; "
                f"the configuration says {expected}"
            )
        self.config = config
        self.index = index
        self.seen_hashes = seen_hashes
        self.counts = BatchCounts()

    def new_batch(self) -> BatchCounts:
        """Start counting a new batch; returns the counts of the one that ended."""
        finished, self.counts = self.counts, BatchCounts()
        return finished

    def record_error(self, position: int, source: str, reason: str) -> Outcome:
        """Count a received item that cannot be processed (e.g. a row without text); the batch goes on."""
        self.counts.received += 1
        return self._fail(position, source, reason)

    def _fail(self, position: int, source: str, reason: str) -> Outcome:
        self.counts.record_error(position, source, reason)
        return Outcome(kept=False, doc=None, dropped_step=Step.ERROR, reason=reason)

    def process(self, doc: RawDocument) -> Outcome:
        """Clean one document; an unexpected failure is recorded as an item error, never raised."""
        self.counts.received += 1
        if not isinstance(doc.text, str):
            return self._fail(doc.position, doc.source, f"text is {type(doc.text).__name__}, not a string")
        try:
            return self._process(doc)
        except Exception as error:  # one bad document must not stop the batch
            return self._fail(doc.position, doc.source, f"{type(error).__name__} while cleaning")

    def _process(self, doc: RawDocument) -> Outcome:
        config = self.config
        counts = self.counts
        text = doc.text
        if config.normalize:
            text = normalize_text(text)
            counts.normalised += 1

        html_stripped = False
        is_html = (doc.mime_type or "").split(";")[0].strip().lower() in HTML_MIME_TYPES
        if config.strip_html and (is_html or (config.detect_html and looks_like_html(text))):
            # Entities can decode to characters normalisation removes (&#8203;, &nbsp;): normalise again.
            text = html_to_text(text)
            text = normalize_text(text) if config.normalize else text
            html_stripped = True
            counts.html_stripped += 1

        if config.quality_filter:
            reason = check_quality(text, config.quality)
            if reason is not None:
                counts.dropped_quality += 1
                return Outcome(kept=False, doc=None, dropped_step=Step.QUALITY, reason=reason)

        pii_counts: dict[str, int] = {}
        if config.redact_pii:
            kinds = config.pii_kinds
            text, pii_counts = redact_pii(text) if kinds is None else redact_pii(text, kinds)
            if pii_counts:
                counts.pii_redacted += 1
                for kind, found in pii_counts.items():
                    counts.pii_redacted_by_type[kind] = counts.pii_redacted_by_type.get(kind, 0) + found

        digest = content_hash(text)
        if config.exact_dedup:
            if digest in self.seen_hashes:
                counts.dropped_exact_dup += 1
                return Outcome(
                    kept=False,
                    doc=None,
                    dropped_step=Step.EXACT_DUP,
                    reason=f"exact_duplicate: content hash {digest[:16]}",
                    pii_counts=pii_counts,
                )
            # Remembered even if the near-duplicate step drops it: a later identical copy is then
            # told apart as an exact duplicate, cheaply.
            self.seen_hashes.add(digest)

        if config.near_dedup:
            match = self.index.check_and_insert(doc.doc_id, text)
            if match is not None:
                counts.dropped_near_dup += 1
                return Outcome(
                    kept=False,
                    doc=None,
                    dropped_step=Step.NEAR_DUP,
                    reason=f"near_duplicate_of: {match}",
                    pii_counts=pii_counts,
                )

        counts.kept += 1
        cleaned = copy_fields(
            CleanedDocument,
            doc,
            text=text,
            content_hash=digest,
            html_stripped=html_stripped,
            pii_counts=pii_counts,
        )
        return Outcome(kept=True, doc=cleaned, dropped_step=None, reason=None, pii_counts=pii_counts)
