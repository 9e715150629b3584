from __future__ import annotations

from llmops.contracts.events import FeedbackAccepted, FeedbackRejected, FeedbackSubmitted
from llmops.core.pii import Redactor
from llmops.feedback.domain.review import review


def _review(**fields: object) -> FeedbackAccepted | FeedbackRejected:
    return review(FeedbackSubmitted(**fields), max_text_chars=100, redact=Redactor())  # type: ignore[arg-type]


def test_thumbs_are_normalised_to_scores() -> None:
    up = _review(request_id="r", thumb="up")
    down = _review(request_id="r", thumb="down")
    assert isinstance(up, FeedbackAccepted) and up.score == 1.0 and up.thumb == "up"
    assert isinstance(down, FeedbackAccepted) and down.score == 0.0


def test_score_must_be_in_range_and_exactly_one_signal() -> None:
    assert isinstance(_review(request_id="r", score=0.25), FeedbackAccepted)
    for fields, reason in [
        ({"score": 1.5}, "score must be between 0 and 1, got 1.5"),
        ({"score": float("nan")}, "score must be between 0 and 1"),
        ({"score": 0.5, "thumb": "up"}, "either score or thumb, not both"),
        ({}, "no signal"),
    ]:
        outcome = _review(request_id="r", **fields)
        assert isinstance(outcome, FeedbackRejected), fields
        assert any(reason in r for r in outcome.reasons), outcome.reasons


def test_every_problem_is_reported_at_once() -> None:
    outcome = _review(request_id=" ", thumb="up", comment="x" * 101, correction="y" * 101)
    assert isinstance(outcome, FeedbackRejected)
    assert len(outcome.reasons) == 3
    assert any("request_id is empty" in r for r in outcome.reasons)


def test_feedback_id_is_kept_or_derived_stably_from_the_event() -> None:
    event = FeedbackSubmitted(request_id="r", thumb="up")
    first = review(event, max_text_chars=10, redact=Redactor())
    second = review(event, max_text_chars=10, redact=Redactor())
    assert first.feedback_id == second.feedback_id
    assert _review(request_id="r", thumb="up", feedback_id="mine").feedback_id == "mine"
    accepted = _review(request_id="r", thumb="up")
    assert isinstance(accepted, FeedbackAccepted) and accepted.submitted_event_id is not None


def test_accepted_text_leaves_without_personal_data() -> None:
    outcome = _review(
        request_id="r",
        thumb="down",
        comment="wrong, write to ada@example.org or call +44 20 7946 0958",
        correction="Card 4111 1111 1111 1111 is declined.",
    )
    assert isinstance(outcome, FeedbackAccepted)
    assert outcome.comment == "wrong, write to [EMAIL] or call [PHONE]"
    assert outcome.correction == "Card [CREDIT_CARD] is declined."
    only_email = review(
        FeedbackSubmitted(request_id="r", thumb="up", comment="ada@example.org, +44 20 7946 0958"),
        max_text_chars=100,
        redact=Redactor(frozenset({"EMAIL"})),
    )
    assert isinstance(only_email, FeedbackAccepted) and only_email.comment == "[EMAIL], +44 20 7946 0958"
    kept = review(
        FeedbackSubmitted(request_id="r", thumb="up", comment="ada@example.org"),
        max_text_chars=100,
        redact=Redactor(enabled=False),
    )
    assert isinstance(kept, FeedbackAccepted) and kept.comment == "ada@example.org"
