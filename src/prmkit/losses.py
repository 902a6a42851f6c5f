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
