"""Temperature scaling of step logits, scikit-learn style: ``fit`` returns self, the learned
``temperature_`` is set by it.

A PRM trained with BCE is often over- or under-confident. Dividing every step logit by one
temperature T > 0, before any aggregation, fixes the probabilities without changing their order:
step AUROC, rankings and a threshold re-fitted on the same data are unchanged (a threshold fitted
before scaling moves with it, which is why prmkit fits the first-error threshold on calibrated
probabilities). T is the minimizer of the BCE on held-out steps (soft labels allowed), found by a
golden-section search over log T: deterministic, no optimizer state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG_T_RANGE = (-4.0, 4.0)  # T in [0.018, 55]
# Fewer labelled validation steps than this, and the temperature stays 1: fitted on the
# quick start's 20-odd steps it came out 0.28, a sharpening that said more about those few steps
# than about the model.
MIN_TEMPERATURE_STEPS = 100


def _bce(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + e^z) - y z, stable for large |z|
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


class TemperatureScaler:
    """Learns one temperature for step logits on validation data.

    >>> scaler = TemperatureScaler().fit(np.array([4.0, -4.0, 4.0, -4.0]), np.array([1, 0, 0, 1]))
    >>> scaler.temperature_ > 10  # a coin flip called with confidence: flatten it
    True
    """

    def __init__(self, tol: float = 1e-6):
        self.tol = tol

    def fit(self, logits, labels) -> "TemperatureScaler":
        """``logits``, ``labels``: (N,) step logits and labels in [0, 1] (labelled steps only)."""
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        if len(logits) == 0:
            raise ValueError("no labelled steps to fit a temperature on")
        a, b = _LOG_T_RANGE
        ratio = (math.sqrt(5) - 1) / 2
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        fc, fd = _bce(logits, labels, math.exp(c)), _bce(logits, labels, math.exp(d))
        while b - a > self.tol:
            if fc <= fd:
                b, d, fd = d, c, fc
                c = b - ratio * (b - a)
                fc = _bce(logits, labels, math.exp(c))
            else:
                a, c, fc = c, d, fd
                d = a + ratio * (b - a)
                fd = _bce(logits, labels, math.exp(d))
        self.temperature_ = math.exp((a + b) / 2)
        return self

    def transform(self, logits):
        """Scaled logits, the same shape (numpy arrays or torch tensors)."""
        return logits / self.temperature_

    def predict_proba(self, logits) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / self.temperature_))


@dataclass
class Calibration:
    """What travels with a saved model to turn its logits into calibrated probabilities and
    first-error predictions: ``temperature`` divides every step logit; a step is flagged when its
    calibrated probability is strictly below ``threshold`` (None: no threshold was chosen)."""

    temperature: float = 1.0
    threshold: float | None = None

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold}")


def fit_calibration(step_logits: list[np.ndarray], step_labels: list[list],
                    first_errors: list[int | None], splits: list[str]) -> tuple[Calibration, dict]:
    """Fit the temperature on every labelled step (kept at 1 below ``MIN_TEMPERATURE_STEPS``),
    then the first-error threshold on the
    calibrated probabilities of the items whose first error is known, averaging F1 over
    ``splits`` (one name per item: difficulty levels or sources; one split is fine).

    Returns the calibration and a report: ECE before and after, the threshold's average F1, and
    per split its F1 at the shared threshold and at its own best one (what one threshold costs).
    """
    from prmkit.metrics import ece, first_error_f1, first_error_threshold

    z = np.concatenate([np.asarray(l, dtype=np.float64)[[y is not None for y in ys]]
                        for l, ys in zip(step_logits, step_labels)])
    y = np.array([v for ys in step_labels for v in ys if v is not None], dtype=np.float64)
    scaler = TemperatureScaler().fit(z, y)
    report = {"calibration_steps": len(z)}
    if len(z) < MIN_TEMPERATURE_STEPS:
        scaler.temperature_ = 1.0
        report["temperature_skipped"] = (f"{len(z)} labelled validation steps, fewer than "
                                         f"{MIN_TEMPERATURE_STEPS}")
    report.update(temperature=scaler.temperature_, ece_before=ece(1 / (1 + np.exp(-z)), y),
                  ece_after=ece(scaler.predict_proba(z), y))
    by_split: dict[str, tuple[list, list]] = {}
    for logits, error, split in zip(step_logits, first_errors, splits):
        if error is not None:
            probs, errors = by_split.setdefault(split, ([], []))
            probs.append(scaler.predict_proba(logits))
            errors.append(error)
    usable = {name: v for name, v in by_split.items()
              if min(v[1]) < 0 <= max(v[1])}  # both correct and erroneous items
    threshold = None
    if usable:
        threshold, f1 = first_error_threshold(list(usable.values()))
        report.update(threshold=threshold, threshold_f1=f1, threshold_splits={
            name: {"f1": first_error_f1(probs, errors, threshold)["f1"],
                   "best_f1": first_error_threshold([(probs, errors)])[1]}
            for name, (probs, errors) in sorted(usable.items())})
    return Calibration(temperature=scaler.temperature_, threshold=threshold), report
