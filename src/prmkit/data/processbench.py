"""ProcessBench (Zheng et al. 2024): solutions with the index of their earliest wrong step.

On the hub as ``Qwen/ProcessBench`` (splits gsm8k, math, olympiadbench, omnimath); one object
per item, trimmed::

    {"id": "gsm8k-0", "generator": "Qwen2-7B-Instruct",
     "problem": "Janet's ducks lay 16 eggs per day. ...",
     "steps": ["To determine how much Janet makes ...", "1. Calculate the total ...", ...],
     "final_answer_correct": false, "label": 1}

``label`` is the 0-based index of the earliest wrong step, -1 when every step is right.

Reading (``processbench_from_row``): steps before ``label`` -> 1, the step at ``label`` -> 0,
later steps -> None (ProcessBench does not judge them); all 1 when the label is -1.
``final_answer_correct`` -> outcome. meta: source "processbench", id, generator, raw_labels (the
label as given).

Writing (``processbench_rows``): a record exports when its labels name a first error: a run of
1s, then a 0 (its index is the label; anything after it is ignored) or the end (label -1).
Records are skipped, and counted in the summary, when a step before the first 0 is unlabelled
or soft (the first-error index would be a guess) or when the outcome is unknown
(``final_answer_correct`` is required). id and generator come from meta when present, else the
record's position and "unknown".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from prmkit._io import atomic_open
from prmkit.errors import DataError
from prmkit.records import BadNumber, Trajectory, first_error_labels

Summary = dict[str, int]
FIELDS = ("id", "generator", "problem", "steps", "final_answer_correct", "label")


def processbench_from_row(row: Any) -> list[Trajectory]:
    """The one record of a ProcessBench item; errors are ``DataError`` naming the field."""
    if not isinstance(row, dict):
        raise DataError("must be an object")
    missing = [name for name in FIELDS if name not in row]
    if missing:
        raise DataError("missing required field", field=missing[0])
    problem, steps, label = row["problem"], row["steps"], row["label"]
    if not isinstance(problem, str) or not problem.strip():
        raise DataError("must be a non-empty string", field="problem")
    if not isinstance(steps, list) or not steps:
        raise DataError("must be a non-empty list of strings", field="steps")
    for i, step in enumerate(steps):
        if not isinstance(step, str) or not step.strip():
            raise DataError("must be a non-empty string", field=f"steps[{i}]")
    if type(label) is not int or not -1 <= label < len(steps):
        shown = label.text if isinstance(label, BadNumber) else json.dumps(label, default=repr)
        raise DataError(f"must be -1 or a step index below {len(steps)}, got {shown}",
                        field="label")
    if not isinstance(row["final_answer_correct"], bool):
        raise DataError("must be true or false", field="final_answer_correct")
    return [Trajectory(question=problem, steps=list(steps),
                       labels=first_error_labels(len(steps), label),
                       outcome=row["final_answer_correct"],
                       meta={"source": "processbench", "id": row["id"],
                             "generator": row["generator"], "raw_labels": label})]


def first_error_index(labels: list[float | None]) -> int | None:
    """The index of the first 0 after a run of 1s, -1 for all 1s, None when it is not defined.

    >>> [first_error_index(labels) for labels in ([1, 1, 0, None], [1, 1], [1, None, 0])]
    [2, -1, None]
    """
    for i, label in enumerate(labels):
        if label == 0:
            return i
        if label != 1:
            return None
    return -1


def processbench_rows(trajectories: Iterable[Trajectory]) -> tuple[list[dict[str, Any]], Summary]:
    """ProcessBench items for the records that have a first-error label, and a summary."""
    rows = []
    summary = {"trajectories_in": 0, "trajectories_out": 0, "skipped_no_first_error": 0,
               "skipped_no_outcome": 0}
    for position, t in enumerate(trajectories):
        summary["trajectories_in"] += 1
        label = first_error_index(t.labels)
        if label is None:
            summary["skipped_no_first_error"] += 1
            continue
        if t.outcome is None:
            summary["skipped_no_outcome"] += 1
            continue
        rows.append({"id": t.meta.get("id", str(position)),
                     "generator": t.meta.get("generator", "unknown"), "problem": t.question,
                     "steps": list(t.steps), "final_answer_correct": t.outcome, "label": label})
        summary["trajectories_out"] += 1
    return rows, summary


def write_processbench(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> Summary:
    """Write ProcessBench items as JSONL, atomically; returns ``processbench_rows``'s summary."""
    rows, summary = processbench_rows(trajectories)
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return summary
