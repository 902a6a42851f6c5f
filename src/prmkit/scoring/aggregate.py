"""Trajectory scores from step probabilities, as pure functions.

Every function takes ``probs`` (B, T) and ``step_mask`` (B, T) bool (True on real steps) and
returns (B,). Padding never leaks into a score. The product is taken in log space (float64), so
long trajectories do not underflow; ``log_product`` gives the log itself for ranking very long ones.
"""

from __future__ import annotations

import torch

_TINY = 1e-300  # keeps log(0) finite in float64


def _log_probs(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    logp = probs.double().clamp_min(_TINY).log()
    return torch.where(step_mask, logp, torch.zeros_like(logp))  # (B, T)


def log_product(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    return _log_probs(probs, step_mask).sum(dim=1)


def product(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    return log_product(probs, step_mask).exp()


def minimum(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    filled = torch.where(step_mask, probs.double(), torch.full_like(probs, float("inf")).double())
    return filled.min(dim=1).values


def mean(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    return total(probs, step_mask) / step_mask.sum(dim=1).clamp_min(1)


def total(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    return torch.where(step_mask, probs.double(), torch.zeros_like(probs).double()).sum(dim=1)


def last(probs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """The probability of the last *valid* step of each row (not index -1 of a padded row)."""
    last_index = step_mask.long().sum(dim=1).clamp_min(1) - 1  # (B,)
    return probs.double().gather(1, last_index[:, None])[:, 0]


AGGREGATIONS = {
    "product": product,
    "min": minimum,
    "mean": mean,
    "sum": total,
    "last": last,
    "log_product": log_product,
}


def aggregate(probs: torch.Tensor, step_mask: torch.Tensor, how: str) -> torch.Tensor:
    """Apply the aggregation named ``how`` (one of ``AGGREGATIONS``)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose from {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[how](probs, step_mask)


def aggregate_steps(step_probs: list[float], how: str) -> float:
    """One trajectory's score from its list of step probabilities."""
    probs = torch.tensor([step_probs], dtype=torch.float64)
    return float(aggregate(probs, torch.ones_like(probs, dtype=torch.bool), how)[0])
