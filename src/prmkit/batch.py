"""Padding variable-length trajectories into batches."""

from __future__ import annotations

import numpy as np
import torch

from prmkit.records import Label


def collate(features: list[np.ndarray], labels: list[list[Label]] | None,
            indices) -> dict[str, torch.Tensor]:
    """Pad a batch. Shape: features (B, T, D) float32; step_mask, label_mask (B, T) bool;
    labels (B, T) float32 (0 where unlabelled)."""
    lengths = [len(features[i]) for i in indices]
    batch, width, dim = len(lengths), max(lengths), features[indices[0]].shape[1]
    x = torch.zeros(batch, width, dim)
    for row, i in enumerate(indices):
        x[row, :lengths[row]] = torch.from_numpy(np.asarray(features[i], dtype=np.float32))
    y, label_mask = pad_labels(labels, indices, width)
    step_mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return {"features": x, "step_mask": step_mask, "labels": y, "label_mask": label_mask}


def pad_labels(labels: list[list[Label]] | None, indices, width: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The labels of rows ``indices``, padded: labels (B, width) float32 (0 where unlabelled)
    and label_mask (B, width) bool (True where a label is known; all False without labels)."""
    y = torch.zeros(len(indices), width)
    known = torch.zeros(len(indices), width, dtype=torch.bool)
    for row, i in enumerate(indices if labels is not None else []):
        for t, label in enumerate(labels[i]):
            if label is not None:
                y[row, t], known[row, t] = label, True
    return y, known
