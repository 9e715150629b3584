"""Templates and retrieved context turned into the conversation the model answers."""

from __future__ import annotations

import pytest

from llmops.core.prompt_templates import ContextDocument, TemplateError, check_template
from llmops.serving.domain.requests import InvalidRequest
from llmops.serving.prompting import (
    PromptTemplate,
    RetrievalOptions,
    compose,
    parse_template_ref,
    retrieval_query,
)

DOCS = [
    ContextDocument(1, "The Zorblat bridge is 412 metres long.", "d-1", "c-1", "facts.md", 0.9),
    ContextDocument(2, "It opened in 1987.", "d-1", "c-2", "facts.md", 0.7),
]
SUPPORT = PromptTemplate(
    "support",
    3,
    "Customer {{ name }} asks: {{ question }}\n"
    "{% for d in documents %}[{{ d.index }}] {{ d.text }}\n{% endfor %}",
    "You are a {{ tone }} assistant.",
    ("name", "question", "tone"),
)


def test_template_references() -> None:
    assert parse_template_ref("support") == ("support", None, None)
    assert parse_template_ref("support@prod") == ("support", None, "prod")
    assert parse_template_ref("support/3") == ("support", 3, None)
    for bad in ("", "@x", "x@", "x/0", "x/y", "/2"):
        with pytest.raises(InvalidRequest, match="template"):
            parse_template_ref(bad)


def test_a_plain_request_is_left_as_it_is() -> None:
    assert compose("hello", [], None, {}, None) == "hello"
    assert compose("", [("user", "hi")], None, {}, None) == [("user", "hi")]


def test_retrieval_without_a_template_numbers_the_chunks_around_the_question() -> None:
    turns = compose("How long is the Zorblat bridge?", [], None, {}, DOCS)
    assert isinstance(turns, list) and len(turns) == 1  # the model keeps its own system prompt
    role, user = turns[-1]
    assert role == "user"
    assert "[1] The Zorblat bridge is 412 metres long." in user and "[2] It opened in 1987." in user
    assert user.endswith("[2] It opened in 1987.\n\nQuestion: How long is the Zorblat bridge?")


def test_a_template_renders_the_last_user_turn_with_its_variables_and_documents() -> None:
    turns = compose(
        "",
        [("user", "earlier"), ("assistant", "reply")],
        SUPPORT,
        {"name": "Ada", "question": "How long?", "tone": "brief"},
        DOCS,
    )
    assert turns == [
        ("system", "You are a brief assistant."),
        ("user", "earlier"),
        ("assistant", "reply"),
        (
            "user",
            "Customer Ada asks: How long?\n"
            "[1] The Zorblat bridge is 412 metres long.\n[2] It opened in 1987.",
        ),
    ]


def test_a_missing_or_unknown_variable_is_named() -> None:
    with pytest.raises(InvalidRequest, match="variable\\(s\\) tone missing"):
        compose("", [], SUPPORT, {"name": "Ada", "question": "q"}, None)
    with pytest.raises(InvalidRequest, match="colour are not declared"):
        compose("", [], SUPPORT, {"name": "Ada", "question": "q", "tone": "t", "colour": "red"}, None)
    with pytest.raises(InvalidRequest, match="prompt and template are both set"):
        compose("hi", [], SUPPORT, {"name": "Ada", "question": "q", "tone": "t"}, None)
    with pytest.raises(InvalidRequest, match="no template is named"):
        compose("hi", [], None, {"x": "y"}, None)


def test_registration_refuses_undeclared_and_reserved_variables() -> None:
    assert check_template("{{ a }} {{ documents }}", "{{ b }}", ["b", "a"]) == ("a", "b")
    with pytest.raises(TemplateError, match="undeclared variable\\(s\\) b"):
        check_template("{{ a }}", "{{ b }}", ["a"])
    with pytest.raises(TemplateError, match="'documents' is reserved"):
        check_template("{{ documents }}", "", ["documents"])
    with pytest.raises(TemplateError, match="does not parse"):
        check_template("{% for x in %}", "", [])


def test_the_retrieval_query_comes_from_the_request() -> None:
    options = RetrievalOptions(collection="c")
    assert retrieval_query(RetrievalOptions("c", query="explicit"), "p", [], {}) == "explicit"
    assert retrieval_query(options, "the prompt", [], {}) == "the prompt"
    assert (
        retrieval_query(options, "", [("user", "first"), ("assistant", "a"), ("user", "last")], {}) == "last"
    )
    assert retrieval_query(options, "", [], {"question": "from a variable"}) == "from a variable"
    with pytest.raises(InvalidRequest, match="nothing to search for"):
        retrieval_query(options, "", [], {})
