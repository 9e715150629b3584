"""LLM-as-judge labels: a versioned prompt sent to serving's Generate (llmops.core.judge), its answer
parsed into a label.

Judge labels are marked with source JUDGE and the labeler id ``judge:<prompt>@<version>/<model>``;
they never overwrite a human label. An answer the parser cannot read is an abstention, not a guess.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from llmops.contracts.vocabulary import parse_pairwise_verdict
from llmops.core.errors import InvalidArgument
from llmops.core.judge import parse_rating
from llmops.labeling.domain.models import LabelValue, Preference, Queue, TaskInput, TaskType

# Built-in judge prompts, by (task type, version). A version is never edited once used: labels
# point at it. A caller can instead send its own template (with the same placeholders).
PROMPTS: dict[tuple[TaskType, str], str] = {
    (TaskType.CLASSIFICATION, "v1"): (
        "Classify the text into exactly one of these labels: {labels}.\n\nText:\n{text}\n\n"
        "Answer with the label only."
    ),
    (TaskType.RATING, "v1"): (
        "Rate how good the response is, from {rating_min:g} (worst) to {rating_max:g} (best).\n\n"
        "Request:\n{prompt}\n\nResponse:\n{response}\n\nAnswer with the number only."
    ),
    (TaskType.PAIRWISE_PREFERENCE, "v1"): (
        "Which response answers the request better?\n\nRequest:\n{prompt}\n\nResponse A:\n{candidate_a}\n\n"
        "Response B:\n{candidate_b}\n\nAnswer with A or B only."
    ),
}


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    version: str
    template: str

    def labeler_id(self, model: str) -> str:
        return f"judge:{self.name}@{self.version}/{model or 'default'}"


def resolve_prompt(queue: Queue, template: str, version: str) -> JudgePrompt:
    """The built-in prompt for the queue's task type, or the caller's ``template``."""
    version = version or "v1"
    if template:
        digest = hashlib.sha256(template.encode()).hexdigest()[:8]
        return JudgePrompt(f"custom-{digest}", version, template)
    try:
        return JudgePrompt(queue.task_type.value, version, PROMPTS[(queue.task_type, version)])
    except KeyError:
        known = ", ".join(f"{t.value}/{v}" for t, v in PROMPTS)
        raise InvalidArgument(
            f"no built-in judge prompt for {queue.task_type.value} version {version!r} (built-in: {known}); "
            "send judge_prompt as a template"
        ) from None


def render(prompt: JudgePrompt, task: TaskInput, queue: Queue) -> str:
    """The prompt text for ``task``: the template with the task's fields and the queue's labels."""
    try:
        return prompt.template.format(
            labels=", ".join(queue.label_set),
            text=task.text or task.response,
            prompt=task.prompt or task.text,
            response=task.response,
            candidate_a=task.candidate_a,
            candidate_b=task.candidate_b,
            rating_min=queue.rating_min,
            rating_max=queue.rating_max,
        )
    except (KeyError, IndexError) as exc:
        raise InvalidArgument(f"judge prompt has an unknown placeholder {exc}") from None


def parse(answer: str, queue: Queue) -> LabelValue | None:
    """Read a label out of the judge's answer; None when it says nothing the queue accepts."""
    text = answer.strip()
    if queue.task_type == TaskType.CLASSIFICATION:
        found = [
            (m.start(), label)
            for label in queue.label_set
            if (m := re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE))
        ]
        return min(found)[1] if found else None
    if queue.task_type == TaskType.RATING:
        return parse_rating(text, queue.rating_min, queue.rating_max)
    if queue.task_type == TaskType.PAIRWISE_PREFERENCE:
        verdict = parse_pairwise_verdict(text)
        return Preference(verdict) if verdict else None
    return None
