"""The training tricks of the reference spec, each opt-in (``TrainConfig``), as small functions
the loop calls: which trajectories an epoch sees (curriculum), what a batch looks like (prefix
truncation), and how much each labelled step weighs (class balance, length balance, hard
negatives). Label smoothing, focal loss and the multi-task losses are in ``prmkit.losses``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from prmkit.losses import balance_weights


def curriculum_indices(lengths: list[int], epoch: int, epochs: int) -> list[int]:
    """Positions (into ``lengths``) an epoch trains on under the length curriculum: the
    shortest trajectories first, by the data's own length distribution. Epoch 0 takes those up
    to the median length, and the quantile rises linearly to the whole set by the middle epoch,
    after which every trajectory is used.

    >>> curriculum_indices([1, 2, 3, 4, 5, 6, 7, 8], 0, 4)
    [0, 1, 2, 3]
    >>> curriculum_indices([1, 2, 3, 4, 5, 6, 7, 8], 2, 4)
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    ramp = max(1, math.ceil(epochs / 2))
    quantile = min(1.0, 0.5 + 0.5 * epoch / ramp)
    limit = np.quantile(np.asarray(lengths, dtype=np.float64), quantile, method="lower")
    return [i for i, n in enumerate(lengths) if n <= limit]


def truncate_prefixes(batch: dict[str, torch.Tensor], generator: torch.Generator
                      ) -> dict[str, torch.Tensor]:
    """Prefix-truncation augmentation: each row keeps a uniformly drawn prefix of its steps
    (1..T), the rest becomes padding. Under causal attention a prefix's step logits equal the
    full solution's (later steps are never seen), so this only drops later steps' loss terms:
    with the default causal head it changes nothing a model can learn about a step, only how
    often each position is trained. With ``--bidirectional`` it teaches scoring of unfinished
    solutions, which search needs.

    Shape: batch["features"] (B, T, D), "step_mask", "labels", "label_mask" (B, T).
    """
    lengths = batch["step_mask"].sum(dim=1)  # (B,)
    keep = (torch.rand(len(lengths), generator=generator) * lengths).floor().long() + 1
    inside = torch.arange(batch["step_mask"].shape[1])[None, :] < keep[:, None]  # (B, T)
    return {**batch, "step_mask": batch["step_mask"] & inside,
            "label_mask": batch["label_mask"] & inside}


def length_bins(step_lengths: np.ndarray, bins: int = 5) -> np.ndarray:
    """Quantile bins (0..bins-1) of step lengths: the groups length balancing equalizes."""
    edges = np.quantile(step_lengths, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, step_lengths, side="right")


def step_weights(labels: list[list], step_chars: list[list[int]], balance: bool,
                 length_balance: bool) -> list[np.ndarray]:
    """Per-step loss weights over a training set (1 where no trick is on; unlabelled steps 0):
    ``balance`` gives right and wrong steps equal total weight; ``length_balance`` does so
    within each step-length bin, so that length alone no longer tells right from wrong."""
    flat_y = np.array([y if y is not None else 0.0 for ys in labels for y in ys])
    flat_mask = np.array([y is not None for ys in labels for y in ys])
    weights = flat_mask.astype(np.float32)
    if balance or length_balance:
        groups = None
        if length_balance:
            groups = torch.from_numpy(length_bins(np.array([c for cs in step_chars
                                                            for c in cs], dtype=np.float64)))
        weights = balance_weights(torch.from_numpy(flat_y), torch.from_numpy(flat_mask),
                                  groups).numpy()
    return np.split(weights.astype(np.float32), np.cumsum([len(ys) for ys in labels])[:-1])


def hard_negative_weights(probs: list[np.ndarray], labels: list[list], weights: list[np.ndarray],
                          factor: float) -> list[np.ndarray]:
    """Hard-negative mining: steps the model got confidently wrong (|label - p| > 0.5) weigh
    ``factor`` times as much in the next round."""
    out = []
    for p, ys, w in zip(probs, labels, weights):
        y = np.array([v if v is not None else np.nan for v in ys], dtype=np.float64)
        wrong = np.abs(y - np.asarray(p, dtype=np.float64)) > 0.5  # NaN compares False
        out.append(np.where(wrong, w * factor, w).astype(np.float32))
    return out
