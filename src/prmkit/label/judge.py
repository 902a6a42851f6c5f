"""Step labels from a judge model: ask a model about each step, read its verdict.

The prompt is a template file the user can change (``--template``; the default is
``templates/judge.txt``) with the placeholders ``{question}``, ``{previous}`` (the earlier steps,
numbered, or "(none)"), ``{step}`` and ``{number}`` (1-based). The judge is any ``Generator``: it
is asked to continue the prompt by one step, and the verdict is read from that reply.

``parse_verdict`` copes with what small models write: "Yes", "**No**.", "Verdict: incorrect",
"The step is not correct because ...", "Correct!". The first word that decides wins; a negated
positive ("not correct", "isn't right") is a No. A reply with no decisive word is None, and that
step stays unlabelled. Labels follow the first-error rule: the first step judged No is 0, the
steps judged Yes before it are 1, everything else None.
"""

from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path

from prmkit.errors import PrmkitError
from prmkit.generate.base import Generator
from prmkit.records import Trajectory

PLACEHOLDERS = ("question", "previous", "step", "number")
_NEGATED = r"(?:not|\w+n't|never)\s+(?:\w+\s+){0,2}?(?:correct|right|valid|true|accurate)"
_VERDICT = re.compile(
    rf"(?P<bad>\b(?:{_NEGATED}|incorrect|wrong|false|invalid|no|error|mistake|flawed)\b)"
    r"|(?P<good>\b(?:correct|right|true|yes|valid|accurate)\b)", re.IGNORECASE)
_LABELLED = re.compile(r"(?:verdict|answer|judgement|judgment)\s*[:=-]\s*(.*)", re.IGNORECASE)


def default_template() -> str:
    return resources.files("prmkit.label").joinpath("templates/judge.txt").read_text("utf-8")


def read_template(path: str | Path | None) -> str:
    """The template at ``path`` (the default when None), checked for unknown placeholders."""
    if path is None:
        return default_template()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PrmkitError(f"{path}: cannot read the judge template ({e.strerror})") from None
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise PrmkitError(f"{path}: not a template ({e}); write literal braces as {{{{ }}}}") \
            from None
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise PrmkitError(f"{path}: unknown placeholder {{{unknown[0]}}} (known: "
                          f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    if "step" not in fields:
        raise PrmkitError(f"{path}: the template never shows the step ({{step}})")
    return text


def parse_verdict(reply: str) -> bool | None:
    """True (the step is right), False (wrong) or None (no decisive word)."""
    if not reply:
        return None
    labelled = _LABELLED.search(reply)
    for text in ([labelled.group(1)] if labelled else []) + [reply]:
        m = _VERDICT.search(text)
        if m:
            return m.group("good") is not None
    return None


def judge_prompt(template: str, t: Trajectory, step: int) -> str:
    previous = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(t.steps[:step])) or "(none)"
    return template.format(question=t.question, previous=previous, step=t.steps[step],
                           number=step + 1)


def label_judge(t: Trajectory, index: int, generator: Generator, template: str,
                seed: int = 0) -> Trajectory:
    """The record labelled by the judge; ``meta["labeling"]`` keeps each reply and verdict."""
    from prmkit.label.montecarlo import hash_seed

    verdicts, replies = [], []
    for step in range(t.num_steps):
        [reply] = generator.complete(judge_prompt(template, t, step), [], 1, max_steps=1,
                                     seed=hash_seed(seed, index, step))
        text = " ".join(reply.steps)
        replies.append(text)
        verdicts.append(parse_verdict(text))
        if verdicts[-1] is False:  # the first error: later steps are not asked about
            break
    labels: list[float | None] = [None] * t.num_steps
    for step, verdict in enumerate(verdicts):
        labels[step] = None if verdict is None else float(verdict)
    return Trajectory(question=t.question, steps=list(t.steps), labels=labels,
                      label_kind="correctness", outcome=t.outcome, answer=t.answer,
                      meta={**t.meta, "labeling": {"strategy": "judge", "verdicts": verdicts,
                                                   "replies": replies}})
