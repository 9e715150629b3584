"""Live judge scores for the canary: an LLM judge rates a sample of each arm's answers.

At every analysis of a canary whose policy names a judge (``canary.judge``), the controller asks
:class:`LiveJudge` to rate up to ``sample`` answers of each arm in the canary's window that this
judge and prompt version have not rated yet (the first by a hash of the request id, so the sample
is spread over the window and never biased by arrival). Each rating is published as
``monitoring.answer_judged``, which monitoring stores in ``judge_scores``; the analysis compares the
arms' scores there (:mod:`llmops.monitoring.loop.canary`).

Like Langfuse's or Phoenix's online evaluators, the judge is another model served by the platform
(any name serving resolves: a registered model, an alias, a version); in production point it at a
strong model. An answer the judge does not rate (no number in 1-5) is recorded with no score, and a
call that fails is not recorded, so the next analysis asks again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llmops.contracts.events import AnswerJudged, Event
from llmops.core.judge import parse_rating
from llmops.monitoring.loop.canary import REGISTERED
from llmops.monitoring.loop.policy import JUDGE_PROMPTS, JUDGE_RATINGS, JudgePolicy
from llmops.monitoring.store.analytics import AnalyticsStore

log = logging.getLogger(__name__)

# Answers of one version in the window that this judge and prompt have not rated, nor been asked
# about (``asked``: published, perhaps not stored yet).
UNJUDGED_SQL = f"""
SELECT request_id, arm, prompt, completion
FROM inference_log_v
WHERE {REGISTERED} = {{model:String}} AND error = '' AND model_version = {{version:String}}
    AND occurred_at >= {{start:DateTime64(3, 'UTC')}} AND occurred_at < {{end:DateTime64(3, 'UTC')}}
    AND NOT has({{asked:Array(String)}}, request_id)
    AND request_id NOT IN (
        SELECT request_id FROM judge_scores_v
        WHERE model = {{model:String}} AND judge = {{judge:String}}
            AND prompt_version = {{prompt_version:String}}
    )
ORDER BY cityHash64(request_id)
LIMIT {{n:UInt32}}
"""

# Request ids asked about, remembered until their scores are surely stored: an answer's rating
# reaches judge_scores through Kafka in seconds, and the query leaves out what is there. Past this age
# (or this count) an id is forgotten; were its rating still not stored (the store away for longer),
# the answer could be asked about again, and its second rating would replace the first.
_ASKED_SECONDS = 600.0
_ASKED_KEPT = 100_000


class Judge(Protocol):
    async def ask(
        self, prompt: str, model: str, max_tokens: int = 16, metadata: Mapping[str, str] | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Judged:
    """What one round asked, per version: rated, not rated (the judge gave no rating), failed calls."""

    scored: int = 0
    abstained: int = 0
    failed: int = 0


def score_of(rating: float | None) -> float | None:
    """A rating on the prompts' 1-5 scale as a score on [0, 1]."""
    low, high = JUDGE_RATINGS
    return None if rating is None else (rating - low) / (high - low)


class LiveJudge:
    """Rates live answers with an LLM judge served by the platform and publishes each rating."""

    def __init__(
        self,
        store: AnalyticsStore,
        judge: Judge,
        publish: Callable[[Event], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._judge = judge
        self._publish = publish
        self._clock = clock
        # (judge, prompt version, request id) -> when it was asked, oldest first.
        self._asked: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def asked(self) -> int:
        """Answers asked about whose ratings may not be stored yet (what the next query leaves out)."""
        self._forget_old()
        return len(self._asked)

    def _forget_old(self) -> None:
        oldest = self._clock() - _ASKED_SECONDS
        while self._asked and (len(self._asked) > _ASKED_KEPT or next(iter(self._asked.values())) < oldest):
            self._asked.popitem(last=False)

    async def judge(
        self,
        model: str,
        versions: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        policy: JudgePolicy,
        loop_id: str = "",
    ) -> dict[str, Judged]:
        """Rate up to ``policy.sample`` unrated answers of each of ``versions`` in [start, end)."""
        found = {}
        limit = asyncio.Semaphore(policy.concurrency)
        self._forget_old()
        for version in versions:
            asked = [r for (j, v, r) in self._asked if (j, v) == (policy.model, policy.prompt_version)]
            parameters: dict[str, Any] = {
                "model": model, "version": version, "start": start, "end": end, "asked": asked,
                "judge": policy.model, "prompt_version": policy.prompt_version, "n": policy.sample,
            }  # fmt: skip
            rows = await self.store.read(
                lambda c, p=parameters: c.query(UNJUDGED_SQL, parameters=p).result_rows
            )
            outcomes = await asyncio.gather(
                *(self._rate(row, model, version, policy, loop_id, limit) for row in rows)
            )
            found[version] = Judged(*(outcomes.count(o) for o in ("scored", "abstained", "failed")))
            log.info("judge %s rated %d answers of %s: %s", policy.model, len(rows), version, found[version])
        return found

    async def _rate(
        self, row: Sequence[Any], model: str, version: str, policy: JudgePolicy, loop_id: str,
        limit: asyncio.Semaphore,
    ) -> str:  # fmt: skip
        """Ask the judge about one answer and publish its rating: "scored", "abstained" or "failed"."""
        request_id, arm, prompt, completion = row
        key = (policy.model, policy.prompt_version, request_id)
        self._asked[key] = self._clock()
        self._asked.move_to_end(key)
        question = JUDGE_PROMPTS[policy.prompt_version].format(prompt=prompt, response=completion)
        async with limit:
            try:
                answer = await self._judge.ask(
                    question, policy.model, max_tokens=4,
                    metadata={"judge_prompt": f"canary-rating@{policy.prompt_version}"},
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - asked again at the next analysis
                self._asked.pop(key, None)
                log.warning("judge %s on %s failed: %s", policy.model, request_id, exc)
                return "failed"
        rating = parse_rating(answer, *JUDGE_RATINGS)
        await self._publish(
            AnswerJudged(
                request_id=request_id,
                model=model,
                model_version=version,
                arm=arm,
                judge=policy.model,
                prompt_version=policy.prompt_version,
                score=score_of(rating),
                rating=rating,
                judge_answer=answer[:200],
                loop_id=loop_id,
            )  # fmt: skip
        )
        return "scored" if rating is not None else "abstained"
