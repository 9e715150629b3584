"""Evaluation metrics: ROUGE-L (LCS F1), exact match, and the judge's position-swapped win rate."""

from __future__ import annotations

import asyncio

import pytest

from llmops.contracts.vocabulary import parse_pairwise_verdict
from llmops.training.trainer.evaluate import judge_pairs
from llmops.training.trainer.metrics import exact_match, lcs_length, normalize, rouge_l


def test_lcs_length() -> None:
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["a", "b"], ["a", "b"]) == 2


def test_rouge_l() -> None:
    # LCS "the cat on the mat": 5 of 6 words each way.
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # Order matters: LCS 1 -> P = 1/2, R = 1/4, F1 = 1/3; in order, LCS 2 -> P = 1, R = 1/2, F1 = 2/3.
    assert rouge_l("red card", "the card is red") == pytest.approx(1 / 3)
    assert rouge_l("card red", "the card is red") == pytest.approx(2 / 3)
    assert rouge_l("Hello, World!", "hello world") == 1.0
    assert rouge_l("", "") == 1.0
    assert rouge_l("", "something") == 0.0
    assert rouge_l("nothing shared", "completely different") == 0.0


def test_exact_match_normalises_case_and_spaces() -> None:
    assert exact_match("  Card 3 is RED. ", "card 3 is red.") == 1.0
    assert exact_match("Card 3 is red", "card 3 is red.") == 0.0
    assert normalize("A\u00a0 b\n") == "a b"


def test_parse_verdict() -> None:
    assert parse_pairwise_verdict("A") == "A"
    assert parse_pairwise_verdict(" B.") == "B"
    assert parse_pairwise_verdict("Answer B is better") == "B"
    assert parse_pairwise_verdict("Both are fine") is None
    assert parse_pairwise_verdict("") is None


def test_judge_pairs_cancels_position_bias() -> None:
    prompts = [f"p{i}" for i in range(6)]
    new = [f"new {i}" for i in range(6)]
    old = [f"old {i}" for i in range(6)]
    seen: list[tuple[str, str]] = []

    def always_a(prompt: str, a: str, b: str) -> str:
        seen.append((a, b))
        return "A"

    # A judge that always says "A" wins half the time once positions swap.
    assert judge_pairs(prompts, new, old, always_a) == (3, 6)
    assert seen[0] == ("new 0", "old 0") and seen[1] == ("old 1", "new 1")

    def prefers_new(prompt: str, a: str, b: str) -> str:
        return "A" if a.startswith("new") else "B"

    assert judge_pairs(prompts, new, old, prefers_new) == (6, 6)


def test_judge_pairs_undecided_cases() -> None:
    calls = []

    def abstains(prompt: str, a: str, b: str) -> None:
        calls.append(prompt)
        return None

    # Identical answers are not sent; abstentions are undecided.
    assert judge_pairs(["p", "q"], ["same", "x"], ["same", "y"], abstains) == (0, 0)
    assert calls == ["q"]

    def broken(prompt: str, a: str, b: str) -> str:
        raise ConnectionError("serving is down")

    # A failing judge costs the metric, not the job.
    assert judge_pairs(["p", "q"], ["a", "b"], ["c", "d"], broken) == (0, 0)


def test_judge_pairs_with_an_async_judge() -> None:
    async def judge(prompt: str, a: str, b: str) -> str:
        await asyncio.sleep(0)
        return "A" if a.startswith("new") else "B"

    assert judge_pairs(["p", "q"], ["new 1", "new 2"], ["old 1", "old 2"], judge) == (2, 2)
