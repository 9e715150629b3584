"""Text normalisation: Unicode NFKC, invisible and control characters removed, whitespace collapsed."""

from __future__ import annotations

import re
import unicodedata

# Every line-break convention becomes "\n"; form feed and vertical tab separate pages/blocks in text
# extracted from PDFs and office files, so they are line breaks too rather than dropped characters.
_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")

# C0/C1 controls except \t and \n, zero-width and bidi formatting characters (invisible, and used to
# smuggle text past filters), the byte-order mark, interlinear annotation marks, and lone surrogates
# (which cannot be encoded as UTF-8 further down the line).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
    "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def collapse_whitespace(text: str) -> str:
    """Collapse runs of horizontal whitespace to one space, strip lines, keep at most one blank line."""
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def normalize_text(text: str) -> str:
    """Normalise a document's text; idempotent.

    Line breaks are unified to ``\\n``, control characters (except ``\\n`` and ``\\t``) and zero-width
    or bidi formatting characters are removed, the result is NFKC-normalised, runs of spaces and tabs
    become one space, lines lose their leading and trailing spaces, 3+ newlines become 2, and the
    text is stripped.
    """
    text = _LINE_BREAKS.sub("\n", text)
    # Removed before NFKC so that characters they separated can compose.
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    return collapse_whitespace(text)
