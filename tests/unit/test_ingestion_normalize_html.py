"""Normalisation and HTML-to-text of the ingestion domain."""

from __future__ import annotations

import pytest

from llmops.ingestion.domain.html import html_to_text, looks_like_html
from llmops.ingestion.domain.normalize import normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ﬁne ｆｕｌｌｗｉｄｔｈ ①", "fine fullwidth 1"),  # NFKC: ligature, fullwidth, circled digit
        ("e\u0301te\u0301", "été"),  # combining accents composed
        ("zero\u200bwidth\u200d join\ufeff", "zerowidth join"),
        ("bell\x07 and\x00 nul\x1b", "bell and nul"),
        ("tabs\t\tand   spaces", "tabs and spaces"),
        ("trailing   \nline\t\n", "trailing\nline"),
        ("a\n\n\n\n\nb", "a\n\nb"),
        ("a\r\nb\rc\x0cd", "a\nb\nc\nd"),
        ("  \n\n  padded  \n\n ", "padded"),
        ("line\u2028sep\u00a0nbsp", "line\nsep nbsp"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_text_is_idempotent() -> None:
    once = normalize_text(" ａ\u200b\t b \n\n\n\n c\u0301\x00 ")
    assert normalize_text(once) == once


def test_html_to_text_drops_invisible_content_and_breaks_blocks() -> None:
    page = """<!DOCTYPE html><html><head><title>Title</title><style>p { color: red }</style>
    <script>var x = "<p>not text</p>";</script></head>
    <body><h1>Heading &amp; more</h1><p>First   paragraph
    spans lines.</p><noscript>enable js</noscript><template><p>hidden</p></template>
    <ul><li>one</li><li>two</li></ul><div>a<br>b</div>
    <table><tr><td>x</td><td>y</td></tr><tr><td>z</td></tr></table></body></html>"""
    assert html_to_text(page) == "Heading & more\n\nFirst paragraph spans lines.\n\none\ntwo\na\nb\nx y\nz"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
        ("<div>text<script>never closed", "text"),
        ("<head><title>t</title><p>forgot to close head", "forgot to close head"),
        ("</p></div>stray closers</span>", "stray closers"),
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("x &lt;tag&gt; &eacute; &#233; &#x263A;", "x <tag> é é ☺"),
        ("<![if !supportLists]>item<![endif]>", "item"),
        ("<p>one<!-- a comment --> two</p>", "one two"),
        ("<pre>keep\n  lines</pre>", "keep\nlines"),
        ("", ""),
    ],
)
def test_html_to_text_is_robust(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!doctype html><html><body>x</body></html>", True),
        ("  <html lang='en'>", True),
        ("<p>Hello</p><p>world</p>", True),
        ("<div class='a'><span>x</span></div>", True),
        ("Some <b>bold</b> text", True),
        ("if a < b and c > d then", False),
        ("Use the <div> element for blocks.", False),
        ("Generic List<String> and Map<K, V>", False),
        ("plain prose with no markup", False),
    ],
)
def test_looks_like_html(text: str, expected: bool) -> None:
    assert looks_like_html(text) is expected
