"""Monte-Carlo step labels (Math-Shepherd), and a binary search for the first bad step (OmegaPRM).

From each prefix ``steps[:t + 1]`` a generator writes ``k`` completions; the prefix's value is
the share whose final answer is right (answers judged against the reference).

* **hard** estimation: a step is good (1) when any completion from it reaches the right answer,
  else bad (0); every step is labelled. A solution whose own answer is right is one such
  completion from every prefix, so all its steps are good without a rollout.
* **soft** estimation: the label is the share itself, a float in [0, 1] kept end to end
  (``label_kind="value"``).
* **binary** search (hard): assuming a prefix that cannot reach the right answer is not rescued
  by more steps, the first bad step is found by rolling out from about log2(T) prefixes instead
  of T, and from each only until one completion is right (at most ``k``; a hard label needs no
  more). Labels follow the first-error rule: 1 before it, 0 at it, None after.

A prefix that already ends in the final answer needs no rollout: its value is whether that
answer is right. Rollouts of record ``i`` at prefix ``t`` are seeded by (seed, i, t), so a job
killed and run again writes the same labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prmkit.answers import final_answer
from prmkit.generate.base import Generator
from prmkit.records import Trajectory, first_error_labels

ESTIMATES = ("hard", "soft")
SEARCHES = ("linear", "binary")

Judge = Callable[[list[str | None]], list[bool | None]]  # answers -> right?


@dataclass
class MonteCarlo:
    """How Monte-Carlo labels are made (``k`` completions per prefix)."""

    k: int = 8
    estimate: str = "hard"
    search: str = "linear"
    seed: int = 0

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.estimate not in ESTIMATES:
            raise ValueError(f"estimate must be one of {ESTIMATES}, got {self.estimate!r}")
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {self.search!r}")
        if self.search == "binary" and self.estimate != "hard":
            raise ValueError("the binary search finds a first bad step: it needs hard "
                             "estimation")


def prefix_value(t: Trajectory, step: int, generator: Generator, judge: Judge, k: int,
                 seed: int, until_right: bool = False) -> tuple[float, int]:
    """(share of ``k`` completions from ``steps[:step + 1]`` that end right, rollouts spent).
    A prefix ending in a final answer is judged as it is, with no rollout. ``until_right``
    draws completions one at a time and stops at the first right one (value 1: all a hard
    label needs)."""
    prefix = t.steps[:step + 1]
    if step == t.num_steps - 1 or final_answer(prefix) is not None:
        right = judge([final_answer(prefix) or t.answer])[0]
        return float(bool(right)), 0
    if until_right:
        for j in range(k):
            [c] = generator.complete(t.question, prefix, 1, max_steps=None,
                                     seed=hash_seed(seed, j))
            if judge([final_answer(prefix + c.steps)])[0]:
                return 1.0, j + 1
        return 0.0, k
    completions = generator.complete(t.question, prefix, k, max_steps=None, seed=seed)
    verdicts = judge([final_answer(prefix + c.steps) for c in completions])
    return sum(bool(v) for v in verdicts) / k, k


def label_montecarlo(t: Trajectory, index: int, generator: Generator, judge: Judge,
                     config: MonteCarlo) -> Trajectory:
    """The record with Monte-Carlo labels; ``meta["labeling"]`` says how they were made."""
    seed = lambda step: hash_seed(config.seed, index, step)  # noqa: E731
    right = judge([final_answer(t.steps) or t.answer])[0]
    values: list[float | None] = [None] * t.num_steps
    rollouts = 0

    def value(step: int) -> float:
        nonlocal rollouts
        if values[step] is None:
            values[step], spent = prefix_value(t, step, generator, judge, config.k, seed(step),
                                               until_right=config.search == "binary")
            rollouts += spent
        return values[step]

    if config.search == "binary":
        if right:
            labels: list[float | None] = [1.0] * t.num_steps
        else:
            lo, hi = 0, t.num_steps - 1  # the last step is bad: the answer is wrong
            while lo < hi:
                mid = (lo + hi) // 2
                if value(mid) > 0:
                    lo = mid + 1
                else:
                    hi = mid
            labels = first_error_labels(t.num_steps, lo, "first_error")
    else:
        labels = []
        for step in range(t.num_steps):
            share = 1.0 if right and config.estimate == "hard" else value(step)
            labels.append(share if config.estimate == "soft" else float(share > 0))
    meta = {**t.meta, "labeling": {"strategy": "montecarlo", "k": config.k,
                                   "estimate": config.estimate, "search": config.search,
                                   "seed": config.seed, "rollouts": rollouts,
                                   "values": values}}
    return Trajectory(question=t.question, steps=list(t.steps), labels=labels,
                      label_kind="value" if config.estimate == "soft" else "correctness",
                      outcome=t.outcome if t.outcome is not None else right, answer=t.answer,
                      meta=meta)


def hash_seed(*parts: int) -> int:
    """A 31-bit seed from integers, the same in every process (no ``hash()`` salt)."""
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p) + 1) % (2 ** 61 - 1)
    return h % (2 ** 31)

