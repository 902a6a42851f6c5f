"""Scoring solutions step by step: the ``Scorer`` protocol, prmkit's own heads and published
token-classification PRMs (``published.py``) behind it, and ``load_scorer`` for any of them."""

from prmkit.scoring.base import (Partial, Scorer, StepScores, aggregate_all, begin, extend,
                                 rescore, score)
from prmkit.scoring.load import load_scorer
from prmkit.scoring.prm import PRM, HeadScorer, precomputed, score_features
from prmkit.scoring.published import (MathShepherdScorer, QwenPRMScorer,
                                      TokenClassificationScorer)

__all__ = ["PRM", "HeadScorer", "MathShepherdScorer", "Partial", "QwenPRMScorer",
           "TokenClassificationScorer", "Scorer", "StepScores", "aggregate_all", "begin",
           "extend", "load_scorer", "precomputed", "rescore", "score", "score_features"]
