"""TRL's stepwise-supervision format (what ``trl.PRMTrainer`` trains on), read and written.

One row per solution, e.g. from ``trl-lib/math_shepherd``, trimmed::

    {"prompt": "Janet pays $40/hour for 3 hours per week of clarinet lessons ... in a year?",
     "completions": ["Step 1: Janet spends 3 hours + 5 hours = <<3+5=8>>8 hours per week ...",
                     "Step 2: She spends 40 * 3 = <<40*3=120>>120 on clarinet lessons per week.",
                     ...],
     "labels": [true, true, true, true, false]}

Reading (``trl_from_row``): completions are the steps as given, labels true -> 1 and false -> 0
(0/1 integers are accepted too). TRL rows carry no outcome, answer or id. meta: source "trl",
raw_labels (the labels as given).

Writing (``trl_rows``): TRL has no way to say "unlabelled", so each record is cut down to a
labelled prefix:
    - after its first bad step (label < 0.5), the rest is dropped: PRM800K-style labels stop
      meaning anything after the first error;
    - at its first unlabelled step before any bad step, that step and the rest are dropped
      (a label is never invented); a record whose first step is unlabelled is dropped whole;
    - soft labels are thresholded: >= 0.5 -> true, < 0.5 -> false (counted in the summary).
The summary says how many records and steps each rule removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from prmkit._io import atomic_open
from prmkit.errors import DataError
from prmkit.records import Trajectory

Summary = dict[str, int]


def trl_from_row(row: Any) -> list[Trajectory]:
    """The one record of a TRL stepwise-supervision row; errors are ``DataError`` with the field."""
    if not isinstance(row, dict):
        raise DataError("must be an object")
    prompt, completions, labels = row.get("prompt"), row.get("completions"), row.get("labels")
    if not isinstance(prompt, str):
        raise DataError("must be a string (conversational prompts are not supported)",
                        field="prompt")
    if not isinstance(completions, list):
        raise DataError("must be a list of strings", field="completions")
    if not isinstance(labels, list) or len(labels) != len(completions):
        raise DataError(f"must be a list with one label per completion ({len(completions)})",
                        field="labels")
    values = []
    for i, label in enumerate(labels):
        if label not in (True, False) or not isinstance(label, (bool, int)):
            raise DataError(f"must be true or false, got {json.dumps(label, default=repr)}",
                            field=f"labels[{i}]")
        values.append(int(label))
    for i, step in enumerate(completions):
        if not isinstance(step, str):
            raise DataError("must be a string", field=f"completions[{i}]")
    # Trajectory validation names "question"/"steps"; say it in TRL's words.
    if not prompt.strip():
        raise DataError("must not be empty", field="prompt")
    for i, step in enumerate(completions):
        if not step.strip():
            raise DataError("empty step", field=f"completions[{i}]")
    if not completions:
        raise DataError("must hold at least one completion", field="completions")
    return [Trajectory(question=prompt, steps=list(completions), labels=values,
                       meta={"source": "trl", "raw_labels": list(labels)})]


def trl_rows(trajectories: Iterable[Trajectory]) -> tuple[list[dict[str, Any]], Summary]:
    """TRL rows for the records (cut as the module docstring says) and a summary of the cuts."""
    rows = []
    summary = {"trajectories_in": 0, "trajectories_out": 0, "steps_in": 0, "steps_out": 0,
               "steps_dropped_after_error": 0, "steps_dropped_unlabelled": 0,
               "trajectories_dropped_unlabelled": 0, "soft_labels_thresholded": 0}
    for t in trajectories:
        summary["trajectories_in"] += 1
        summary["steps_in"] += t.num_steps
        keep: list[bool] = []
        for label in t.labels:
            if label is None:
                break
            if label not in (0, 1):
                summary["soft_labels_thresholded"] += 1
            keep.append(label >= 0.5)
            if not keep[-1]:
                break
        dropped = t.num_steps - len(keep)
        if keep and not keep[-1]:
            summary["steps_dropped_after_error"] += dropped
        else:
            summary["steps_dropped_unlabelled"] += dropped
        if not keep:
            summary["trajectories_dropped_unlabelled"] += 1
            continue
        rows.append({"prompt": t.question, "completions": t.steps[:len(keep)], "labels": keep})
        summary["trajectories_out"] += 1
        summary["steps_out"] += len(keep)
    return rows, summary


def write_trl(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> Summary:
    """Write TRL rows as JSONL, atomically; returns the summary of ``trl_rows``.

    ``datasets.load_dataset("json", data_files=path)`` reads the file back for ``PRMTrainer``.
    """
    rows, summary = trl_rows(trajectories)
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return summary
