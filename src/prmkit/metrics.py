"""Evaluation metrics, as pure functions over arrays."""

from __future__ import annotations

import numpy as np


def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative).

    Ties count one half (the Mann-Whitney U statistic with mid-ranks). Returns NaN when only one
    class is present. Labels are thresholded at 0.5 so soft labels can be passed.

    Shape: scores, labels: (N,).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels, dtype=np.float64) >= 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # mid-ranks for ties: every member of a tie group gets the group's average rank
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mid = starts + (counts + 1) / 2.0  # 1-based average rank of each group
    ranks[order] = np.repeat(mid, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: chance that k of n samples, drawn without replacement, hold a correct one.

    1 - C(n-c, k) / C(n, k), computed as a product (Chen et al. 2021, "Codex") so that large n
    neither overflows nor loses precision.

    Args:
        n: samples in the pool. c: correct samples among them. k: samples drawn.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset must contain a correct sample
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def flag_threshold(probs, labels) -> float:
    """The threshold that best finds wrong steps: a step is flagged when its probability is below
    it, and the threshold maximizes F1 of flagged steps against wrong ones (label < 0.5).

    Candidates lie midway between consecutive distinct probabilities (and below/above all), so a
    tie is flagged whole or not at all. Choose it on data other than what it is applied to.

    Shape: probs, labels: (N,).
    """
    probs = np.asarray(probs, dtype=np.float64)
    bad = np.asarray(labels, dtype=np.float64) < 0.5
    if not bad.any():
        return float(probs.min()) if len(probs) else 0.5  # nothing to find: flag nothing
    order = np.argsort(probs, kind="mergesort")
    p, b = probs[order], bad[order]
    # flagging the k lowest: only k at the end of a tie group (or 0) are possible
    ends = np.flatnonzero(np.r_[p[1:] != p[:-1], True]) + 1  # k values, increasing
    true_pos = np.cumsum(b)[ends - 1]
    f1 = 2 * true_pos / (ends + b.sum())
    k = int(ends[np.argmax(f1)])
    return float((p[k - 1] + p[k]) / 2) if k < len(p) else float(p[-1] + 1e-9)


def recall_below(probs, threshold: float) -> float:
    """Share of (wrong) steps flagged: probability below ``threshold``. NaN for none."""
    probs = np.asarray(probs, dtype=np.float64)
    return float((probs < threshold).mean()) if len(probs) else float("nan")
