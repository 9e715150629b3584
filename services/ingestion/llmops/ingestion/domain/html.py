"""HTML to plain text with the standard library's tolerant parser, and a cheap HTML detector."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

from llmops.ingestion.domain.normalize import collapse_whitespace

# Elements whose content is never visible text (or, for head, is metadata: title, meta, links).
_SKIPPED = frozenset(
    {"script", "style", "noscript", "head", "title", "template", "svg", "math", "iframe", "object", "canvas"}
)
# Elements a browser renders as blocks: their boundaries become line breaks.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hgroup", "hr", "html", "legend", "li", "main", "menu", "nav", "ol", "optgroup",
        "option", "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
# Elements that separate paragraphs: a blank line, so paragraph structure survives.
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6"})
_CELLS = frozenset({"td", "th"})
# What may appear inside <head>; anything else means the author forgot </head> and the body began,
# which is how browsers recover too (otherwise a missing </head> would swallow the whole page).
_HEAD_CONTENT = frozenset({"title", "meta", "link", "style", "script", "base", "noscript", "template"})
_WHITESPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*>")


class _TextExtractor(HTMLParser):
    """Collects visible text, turning block boundaries into line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []  # stack of open skipped elements
        self._pre_depth = 0
        # Newlines owed before the next text: adjacent boundaries (</li><li>) merge into the
        # strongest of them instead of stacking up blank lines.
        self._pending_break = 0

    def _leave_head_if_open(self) -> None:
        if self._skipping == ["head"]:
            self._skipping.clear()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HEAD_CONTENT:
            self._leave_head_if_open()
        if tag in _SKIPPED:
            self._skipping.append(tag)
            return
        if self._skipping:
            return
        self._boundary(tag, opening=True)
        if tag == "pre":
            self._pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <hr/>, and self-closed <div/> from XHTML: a boundary, never an open element.
        if tag not in _HEAD_CONTENT:
            self._leave_head_if_open()
        if not self._skipping and tag not in _SKIPPED:
            self._boundary(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            if tag in self._skipping:
                # Close it and anything left unclosed inside it.
                del self._skipping[len(self._skipping) - 1 - self._skipping[::-1].index(tag) :]
            return
        if self._skipping:
            return
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
        # </br> is read as <br> by browsers.
        self._boundary(tag, opening=tag == "br")

    def handle_data(self, data: str) -> None:
        if self._skipping == ["head"] and data.strip():
            # Text directly inside <head> (not in <title>, which is a skipped child) ends the head.
            self._skipping.clear()
        if self._skipping:
            return
        if not self._pre_depth:
            data = _WHITESPACE.sub(" ", data)
            if data == " " and self._pending_break:
                return  # indentation between blocks
        if self._pending_break:
            self.parts.append("\n" * self._pending_break)
            self._pending_break = 0
        self.parts.append(data)

    def _boundary(self, tag: str, opening: bool) -> None:
        if tag == "br":
            # Consecutive <br>s are deliberate vertical space, so they add up rather than merge.
            self.parts.append("\n" * (self._pending_break + 1))
            self._pending_break = 0
        elif tag in _PARAGRAPHS:
            self._pending_break = 2
        elif tag in _BLOCKS:
            self._pending_break = max(self._pending_break, 1)
        elif tag in _CELLS and opening:
            self.parts.append("\t")


def html_to_text(html: str) -> str:
    """Extract the visible text of an HTML document.

    Script, style, noscript, head and template contents are dropped, block elements become line
    breaks (paragraphs and headings a blank line), entities are unescaped and whitespace is collapsed
    as a browser would (except inside ``<pre>``). Broken markup is tolerated.
    """
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        # The stdlib parser gives up on a few malformed declarations (e.g. "<![if" sections);
        # stripping tags by pattern still yields the text.
        return collapse_whitespace(html_lib.unescape(_TAG.sub(" ", html)))
    return collapse_whitespace("".join(parser.parts))


_DOCUMENT_START = re.compile(
    r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S
)
_KNOWN_TAG = re.compile(
    r"<(/?)(?:a|abbr|article|aside|b|blockquote|body|br|code|div|em|footer|form|h[1-6]|head|header|hr|html|i"
    r"|img|input|label|li|link|main|meta|nav|ol|p|pre|script|section|small|span|strong|style|sub|sup|table"
    r"|tbody|td|th|thead|title|tr|u|ul)(?=[\s/>])[^<>]*>",
    re.I,
)


def looks_like_html(text: str) -> bool:
    """Tell whether a text is HTML markup rather than prose that merely mentions a tag.

    True when it starts like an HTML document, or holds at least three tags of well-known HTML
    elements, or two with at least one closing tag.
    """
    if _DOCUMENT_START.match(text):
        return True
    tags = 0
    closing = False
    for match in _KNOWN_TAG.finditer(text):
        tags += 1
        closing = closing or bool(match.group(1))
        if tags >= 3 or (tags >= 2 and closing):
            return True
    return False
