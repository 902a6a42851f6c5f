"""Scoring solutions step by step: the ``Scorer`` protocol and prmkit's own heads behind it."""

from prmkit.scoring.base import Scorer, StepScores, aggregate_all, score
from prmkit.scoring.prm import PRM, HeadScorer, precomputed, score_features

__all__ = ["PRM", "HeadScorer", "Scorer", "StepScores", "aggregate_all", "precomputed", "score",
           "score_features"]
