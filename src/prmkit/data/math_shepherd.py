"""Math-Shepherd (Wang et al. 2024): GSM8K and MATH solutions with automatic step labels.

One JSONL line per solution, trimmed::

    {"input": "Janet pays $40/hour for 3 hours ... in a year? Step 1: Janet spends 3 hours + 5 hours
               = <<3+5=8>>8 hours per week on music lessons. ки\\nStep 2: ... ки\\n...
               Step 5: She spends 260 * 52 = <<260*52=13520>>13520 on music lessons in a year.
               The answer is: 13520 ки",
     "label": "<the same text with each ки replaced by + or ->",
     "task": "GSM8K"}

Each step ends in the tag "ки"; ``label`` repeats ``input`` with each tag replaced by "+" or "-".

Labels are "hard estimates" (the paper's HE): "+" when at least one of N completions sampled
from that step reached the reference answer. That is a value estimate, not a human judgement
of the step; it is stored as label_kind "correctness" (+ -> 1, - -> 0) because the labels are
binary and are used like PRM800K's, but expect noise: a wrong step that a sampler can recover
from gets "+".

Mapping onto records (``math_shepherd_from_row``):
    question: the text before the first "Step 1:" (either case; looked for before the second
    tag). When a line has no such marker,
    the text up to the last "?" before the first tag (the fallback TRL's converter uses); a line
    with neither is an error. A tag inside the question (a known annotation slip in a few
    lines) is removed with its label, and ``meta["dropped_labels"]`` counts them.
    steps: the text between tags, stripped, "Step k:" kept (TRL's conversion keeps it too).
    outcome: the label of the last step when it states "The answer is"; after the final answer
    no completion is sampled, so that label says whether the answer is right. answer: the text
    after "The answer is:".
    meta: source "math-shepherd", task, raw_labels (the "+"/"-" of each step); the source has
    no ids.
"""

from __future__ import annotations

import re
from typing import Any

from prmkit.errors import DataError
from prmkit.records import Trajectory, typename

TAG = "ки"
_STEP_ONE = re.compile(r"[Ss]tep 1:")
_ANSWER = re.compile(r"The answer is:?\s*(.+?)\s*$", re.DOTALL)


def math_shepherd_from_row(row: Any) -> list[Trajectory]:
    """The one record of a Math-Shepherd line; errors are ``DataError`` naming the field."""
    if not isinstance(row, dict):
        raise DataError("must be an object")
    text, marks = row.get("input"), row.get("label")
    for name, value in (("input", text), ("label", marks)):
        if not isinstance(value, str):
            raise DataError(f"must be a string, got {typename(value)}", field=name)
    task = row.get("task")
    tags = [m.start() for m in re.finditer(TAG, text)]
    if not tags:
        raise DataError(f"no step tags {TAG!r}", field="input")
    if len(marks) != len(text) - len(tags) * (len(TAG) - 1):
        raise DataError("is not the input with each tag replaced by one character "
                        f"({len(marks)} characters, expected "
                        f"{len(text) - len(tags) * (len(TAG) - 1)})", field="label")
    signs = []
    for k, pos in enumerate(tags):
        at = pos - k * (len(TAG) - 1)  # each earlier tag is one character shorter in the label
        sign = marks[at]
        if sign not in "+-":
            raise DataError(f"character {at} is {sign!r} where tag {k + 1} of the input "
                            "stands; expected + or -", field="label")
        signs.append(sign)
    if marks != _replace_tags(text, tags, signs):
        raise DataError("differs from the input outside the tags", field="label")

    # The marker must come before the second tag: a later "step 1:" is inside a step.
    marker = _STEP_ONE.search(text, 0, tags[1] if len(tags) > 1 else len(text))
    if marker is not None:
        start = marker.start()
    else:
        question_mark = text.rfind("?", 0, tags[0])
        if question_mark < 0:
            raise DataError("no 'Step 1:' marker and no '?' before the first tag: cannot tell "
                            "the question from the steps", field="input")
        start = question_mark + 1
    dropped = sum(pos < start for pos in tags)
    question = text[:start].replace(TAG, "").strip()
    if not question:
        raise DataError("no question before the first step", field="input")

    steps, labels, raw = [], [], []
    begin = start
    for k, pos in enumerate(tags):
        if pos < start:
            continue
        step = text[begin:pos].strip()
        if not step:
            raise DataError(f"step {len(steps) + 1} is empty", field="input")
        steps.append(step)
        labels.append(1 if signs[k] == "+" else 0)
        raw.append(signs[k])
        begin = pos + len(TAG)
    if text[begin:].strip():
        raise DataError("text after the last tag is not part of any step", field="input")

    found = _ANSWER.search(steps[-1])
    meta: dict[str, Any] = {"source": "math-shepherd", "task": task, "raw_labels": raw}
    if dropped:
        meta["dropped_labels"] = dropped
    return [Trajectory(question=question, steps=steps, labels=labels,
                       outcome=labels[-1] == 1 if found else None,
                       answer=found.group(1) if found else None, meta=meta)]


def _replace_tags(text: str, tags: list[int], signs: list[str]) -> str:
    parts, begin = [], 0
    for pos, sign in zip(tags, signs):
        parts += [text[begin:pos], sign]
        begin = pos + len(TAG)
    return "".join(parts) + text[begin:]
