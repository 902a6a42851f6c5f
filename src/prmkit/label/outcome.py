"""Outcome labels: every step gets the final answer's correctness (and the judge of answers
against a record's reference that Monte-Carlo labels share)."""

from __future__ import annotations

from collections.abc import Callable

from prmkit.answers import final_answer, judge_answers
from prmkit.records import Trajectory


def reference_answer(t: Trajectory) -> str | None:
    reference = t.meta.get("reference_answer")
    if reference is not None:
        return str(reference)
    return t.answer if t.outcome is True else None


def judge_for(t: Trajectory, timeout_s: float = 5.0) -> Callable[[list], list[bool | None]]:
    """Answers -> right or wrong against the record's reference (None where unknown)."""
    reference = reference_answer(t)

    def judge(answers: list[str | None]) -> list[bool | None]:
        if reference is None:
            return [None] * len(answers)
        return judge_answers([reference] * len(answers), answers, [t.question] * len(answers),
                             timeout_s=timeout_s, processes=1)
    return judge


def label_outcome(t: Trajectory) -> Trajectory:
    right = t.outcome
    if right is None:
        right = judge_for(t)([t.answer or final_answer(t.steps)])[0]
    labels = [None if right is None else float(right)] * t.num_steps
    return Trajectory(question=t.question, steps=list(t.steps), labels=labels,
                      label_kind="correctness", outcome=right, answer=t.answer,
                      meta={**t.meta, "labeling": {"strategy": "outcome", "outcome": right}})
