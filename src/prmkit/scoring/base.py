"""The one scorer interface. Best-of-N, evaluation, search and serving call only this.

A ``Scorer`` turns solutions into per-step probabilities, P(step t correct | question, steps <= t),
batched: ``score_batch(trajectories) -> list[StepScores]``. prmkit's own heads implement it
(``prm.py``); published PRMs will sit behind the same protocol. ``threshold`` is the probability
below which a step is flagged as the first error (None when the scorer has none).

Search scores partial solutions a step at a time: ``begin(scorer, question)`` and
``extend(scorer, partials, steps)``. A scorer that can continue from kept state (prmkit's ``PRM``
on a causal backbone keeps each prefix's key/value states) implements ``begin``/``extend`` and a
new step costs only its own tokens; any other scorer is asked for the whole prefix again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch

from prmkit.records import Trajectory
from prmkit.scoring.aggregate import AGGREGATIONS, aggregate

StepScores = list[float]


@runtime_checkable
class Scorer(Protocol):
    threshold: float | None

    def score_batch(self, trajectories: list[Trajectory]) -> list[StepScores]:
        """Per-step probabilities of each trajectory, in order."""
        ...


@dataclass(frozen=True)
class Partial:
    """A partial solution under a scorer: its steps, the probability of each, and what the
    scorer keeps to extend it cheaply (``state``; None for a scorer that re-scores)."""

    question: str
    steps: tuple[str, ...]
    probs: tuple[float, ...]
    state: object = None


def begin(scorer: Scorer, question: str) -> Partial:
    """The empty solution to ``question``, ready to ``extend``."""
    if hasattr(scorer, "begin"):
        return scorer.begin(question)
    return Partial(question, (), ())


def extend(scorer: Scorer, partials: Sequence[Partial], steps: Sequence[str]) -> list[Partial]:
    """Each partial solution with one more step, scored; ``partials[i]`` may repeat (one beam,
    several expansions). A scorer without ``extend`` re-scores each whole prefix."""
    if hasattr(scorer, "extend"):
        return scorer.extend(partials, steps)
    return rescore(scorer, partials, steps)


def rescore(scorer: Scorer, partials: Sequence[Partial], steps: Sequence[str]) -> list[Partial]:
    """``extend`` by scoring every extended prefix from scratch."""
    grown = [Trajectory(p.question, [*p.steps, step]) for p, step in zip(partials, steps)]
    return [Partial(t.question, tuple(t.steps), tuple(probs))
            for t, probs in zip(grown, scorer.score_batch(grown))]


def score(scorer: Scorer, question: str, steps: list[str]) -> StepScores:
    """Per-step probabilities of one solution."""
    return scorer.score_batch([Trajectory(question=question, steps=list(steps))])[0]


def aggregate_all(step_probs: list[StepScores], aggregations=tuple(AGGREGATIONS)
                  ) -> dict[str, list[float]]:
    """Every aggregation of every trajectory: ``{name: [score per trajectory]}``."""
    width = max(len(p) for p in step_probs)
    probs = torch.zeros(len(step_probs), width, dtype=torch.float64)
    mask = torch.zeros(len(step_probs), width, dtype=torch.bool)
    for row, p in enumerate(step_probs):
        probs[row, :len(p)] = torch.tensor(p, dtype=torch.float64)
        mask[row, :len(p)] = True
    return {name: aggregate(probs, mask, name).tolist() for name in aggregations}
