"""Training losses, as pure functions over tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the labelled steps only.

    Padding and unlabelled steps contribute nothing, whatever their logits or label values.
    Soft labels in [0, 1] are allowed.

    Shape:
        logits, labels: (B, T) float; label_mask: (B, T) bool, True where a step has a label.
        returns: a scalar.
    """
    per_step = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    per_step = torch.where(label_mask, per_step, torch.zeros_like(per_step))
    # clamp: a batch with no labelled step gives 0, not NaN
    return per_step.sum() / label_mask.sum().clamp_min(1)


def smooth_labels(labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Label smoothing as the reference spec writes it: y (1 - 2 eps) + eps, so 0 and 1 become
    eps and 1 - eps (0.1 and 0.9 at eps = 0.1); soft labels move towards 0.5 the same way."""
    return labels * (1 - 2 * epsilon) + epsilon


def step_loss(logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor,
              weights: torch.Tensor | None = None, gamma: float = 0.0) -> torch.Tensor:
    """BCE over the labelled steps, optionally focal and weighted: the weighted mean of
    |y - p|^gamma * BCE(z, y). With soft labels the focal factor uses |y - p|, not the hard-label
    (1 - p_t): a step labelled 0.7 and predicted 0.7 is learned, not a mistake. gamma = 0 and no
    weights give ``masked_bce``.

    Shape: logits, labels, label_mask, weights: (B, T); returns a scalar.
    """
    labels = labels.to(logits.dtype)
    per_step = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if gamma:
        per_step = per_step * (labels - torch.sigmoid(logits)).abs().pow(gamma)
    w = label_mask.to(logits.dtype) if weights is None else weights * label_mask
    return (per_step * w).sum() / w.sum().clamp_min(1e-12)


def balance_weights(labels: torch.Tensor, label_mask: torch.Tensor,
                    groups: torch.Tensor | None = None) -> torch.Tensor:
    """Per-step weights that give right (label >= 0.5) and wrong steps equal total weight,
    within each group (e.g. a step-length bin) when ``groups`` is given: a head then cannot
    score by group (length) alone. Weights average 1 over the labelled steps; a group holding
    one class only keeps weight 1 (there is nothing to balance).

    Shape: labels, label_mask, groups (int): (N,) or (B, T); returns the same shape.
    """
    right = labels >= 0.5
    groups = torch.zeros_like(labels, dtype=torch.long) if groups is None else groups
    weights = torch.zeros_like(labels, dtype=torch.float32)
    for g in torch.unique(groups[label_mask]):
        in_group = label_mask & (groups == g)
        n_right, n_wrong = int((in_group & right).sum()), int((in_group & ~right).sum())
        if n_right and n_wrong:
            n = n_right + n_wrong
            weights[in_group & right] = n / (2 * n_right)
            weights[in_group & ~right] = n / (2 * n_wrong)
        else:
            weights[in_group] = 1.0
    return weights


def outcome_loss(outcome_logits: torch.Tensor, outcomes: torch.Tensor,
                 known: torch.Tensor) -> torch.Tensor:
    """Multi-task: BCE of an outcome head's logit (read at each solution's last step) against the
    final answer's correctness, over the rows whose outcome is known.

    Shape: outcome_logits, outcomes, known (bool): (B,); returns a scalar (0 with none known).
    """
    per_row = F.binary_cross_entropy_with_logits(outcome_logits, outcomes.to(outcome_logits.dtype),
                                                 reduction="none")
    return torch.where(known, per_row, torch.zeros_like(per_row)).sum() / known.sum().clamp_min(1)


def next_step_loss(predicted: torch.Tensor, projected: torch.Tensor,
                   step_mask: torch.Tensor) -> torch.Tensor:
    """Multi-task: mean squared error between each step's prediction of the next step and that
    step's projected features (a fixed target: no gradient flows into it), over the steps that
    have a next step.

    Shape: predicted, projected: (B, T, H); step_mask: (B, T); returns a scalar.
    """
    pairs = step_mask[:, :-1] & step_mask[:, 1:]  # (B, T - 1)
    error = (predicted[:, :-1] - projected[:, 1:].detach()).pow(2).mean(dim=-1)  # (B, T - 1)
    return torch.where(pairs, error, torch.zeros_like(error)).sum() / pairs.sum().clamp_min(1)
