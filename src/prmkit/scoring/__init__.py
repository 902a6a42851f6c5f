"""Scoring solutions step by step: the ``Scorer`` protocol and prmkit's own heads behind it."""

from prmkit.scoring.base import (Partial, Scorer, StepScores, aggregate_all, begin, extend,
                                 rescore, score)
from prmkit.scoring.load import load_scorer
from prmkit.scoring.prm import PRM, HeadScorer, precomputed, score_features

__all__ = ["PRM", "HeadScorer", "Partial", "Scorer", "StepScores", "aggregate_all", "begin",
           "extend", "load_scorer", "precomputed", "rescore", "score", "score_features"]
