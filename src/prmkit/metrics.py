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


def step_f1(probs, labels, threshold: float) -> float:
    """F1 of finding wrong steps (label < 0.5) by flagging those with probability strictly below
    ``threshold``. NaN when there is neither a flagged nor a wrong step.

    Shape: probs, labels: (N,).
    """
    flagged = np.asarray(probs, dtype=np.float64) < threshold
    bad = np.asarray(labels, dtype=np.float64) < 0.5
    denominator = flagged.sum() + bad.sum()
    return float(2 * (flagged & bad).sum() / denominator) if denominator else float("nan")


def first_flagged(probs, threshold: float) -> int:
    """The predicted first error: the first step with probability strictly below ``threshold``,
    or -1 when none is."""
    below = np.flatnonzero(np.asarray(probs, dtype=np.float64) < threshold)
    return int(below[0]) if len(below) else -1


def first_error_f1(step_probs: list, first_errors: list[int], threshold: float) -> dict:
    """ProcessBench's score of one split. An erroneous item (``first_errors[i]`` >= 0) is right
    when the first flagged step is its first error; a correct item (-1) is right when no step is
    flagged. F1 is the harmonic mean of the two accuracies (NaN when a side has no item).

    Returns {"f1", "acc_erroneous", "acc_correct", "erroneous", "correct"}.
    """
    predicted = np.array([first_flagged(p, threshold) for p in step_probs])
    labels = np.asarray(first_errors)
    wrong, right = labels >= 0, labels < 0
    acc_err = float((predicted[wrong] == labels[wrong]).mean()) if wrong.any() else float("nan")
    acc_ok = float((predicted[right] == -1).mean()) if right.any() else float("nan")
    return {"f1": _harmonic(acc_err, acc_ok), "acc_erroneous": acc_err, "acc_correct": acc_ok,
            "erroneous": int(wrong.sum()), "correct": int(right.sum())}


def _harmonic(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(a + b > 0, 2 * a * b / np.where(a + b > 0, a + b, 1), 0.0)
        out = np.where(np.isnan(a) | np.isnan(b), np.nan, out)  # a side without items
    return float(out) if out.ndim == 0 else out


def _right_intervals(step_probs: list, first_errors: list[int]):
    """Each item is right for thresholds t in (low, high]: an erroneous item when its first error
    is flagged (t > p[error]) and nothing before it (t <= min p[:error]); a correct item when
    nothing is flagged (t <= min p). Returns (low, high, erroneous) arrays."""
    low, high, erroneous = [], [], []
    for p, e in zip(step_probs, first_errors):
        p = np.asarray(p, dtype=np.float64)
        if e >= 0:
            low.append(p[e])
            high.append(p[:e].min(initial=np.inf))
        else:
            low.append(-np.inf)
            high.append(p.min(initial=np.inf))
        erroneous.append(e >= 0)
    return np.array(low), np.array(high), np.array(erroneous, dtype=bool)


def _f1_curve(step_probs, first_errors, thresholds: np.ndarray) -> np.ndarray:
    """First-error F1 at each threshold, O((items + thresholds) log items)."""
    low, high, erroneous = _right_intervals(step_probs, first_errors)
    accuracies = []
    for side in (erroneous, ~erroneous):
        if not side.any():
            accuracies.append(np.full(len(thresholds), np.nan))
            continue
        lo, hi = low[side], high[side]
        keep = lo < hi  # an empty interval is never right
        lo, hi = np.sort(lo[keep]), np.sort(hi[keep])
        right = np.searchsorted(lo, thresholds, "left") - np.searchsorted(hi, thresholds, "left")
        accuracies.append(right / side.sum())
    return _harmonic(accuracies[0], accuracies[1])


def first_error_threshold(splits: list[tuple[list, list[int]]]) -> tuple[float, float]:
    """The threshold that maximizes first-error F1 averaged over ``splits`` ((step_probs,
    first_errors) pairs, e.g. difficulty levels), and that average. Candidates lie midway between
    consecutive distinct step probabilities (and beyond both ends); the lowest best one wins.
    Choose it on dev data, never on the items it will score."""
    values = np.unique(np.concatenate([np.asarray(p, dtype=np.float64)
                                       for probs, _ in splits for p in probs]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2,
                                 [values[-1] + 1e-6]])
    curves = np.stack([_f1_curve(probs, errors, candidates) for probs, errors in splits])
    mean = np.nanmean(curves, axis=0) if np.isfinite(curves).any() else np.zeros(len(candidates))
    best = int(np.nanargmax(mean)) if np.isfinite(mean).any() else 0
    return float(candidates[best]), float(mean[best])


def reliability(probs, labels, bins: int = 10) -> dict:
    """Calibration by equal-width bins of predicted probability over [0, 1] (the last bin holds
    1.0): per bin the count, mean probability and mean label (NaN for an empty bin).

    Shape: probs, labels: (N,) -> each list of length ``bins``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    index = np.minimum((probs * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(index, probs, minlength=bins) / counts
        mean_y = np.bincount(index, labels, minlength=bins) / counts
    return {"edges": np.linspace(0, 1, bins + 1).tolist(), "count": counts.tolist(),
            "mean_prob": mean_p.tolist(), "mean_label": mean_y.tolist()}


def ece(probs, labels, bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (share of items) x |mean probability - mean
    label|, on ``reliability``'s equal-width bins. NaN for no items."""
    table = reliability(probs, labels, bins)
    counts = np.asarray(table["count"], dtype=np.float64)
    if counts.sum() == 0:
        return float("nan")
    gap = np.abs(np.asarray(table["mean_prob"]) - np.asarray(table["mean_label"]))
    return float(np.nansum(counts / counts.sum() * gap))


def pearson(x, y) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def _mid_ranks(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    _, starts, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson on mid-ranks, so ties are handled)."""
    return pearson(_mid_ranks(x), _mid_ranks(y))
