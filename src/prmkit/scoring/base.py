"""The one scorer interface. Best-of-N, evaluation, search and serving call only this.

A ``Scorer`` turns solutions into per-step probabilities, P(step t correct | question, steps <= t),
batched: ``score_batch(trajectories) -> list[StepScores]``. prmkit's own heads implement it
(``prm.py``); published PRMs will sit behind the same protocol. ``threshold`` is the probability
below which a step is flagged as the first error (None when the scorer has none).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
