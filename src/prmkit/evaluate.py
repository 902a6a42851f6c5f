"""Evaluation: every metric a data set supports, for a scorer and its content-free baselines.

Reads top to bottom: score every split with every scorer → step metrics on labelled steps (AUROC,
F1 at the threshold, ECE, correlation with the labels) → first-error F1 where an item's first
error is known (ProcessBench's metric) → averages over splits. The threshold for flagging a step
comes from the caller, chosen on a dev set, or saved with each model; never from the items
scored. A figure alone means little: baselines (the same head on step lengths or on noise) sit
beside it in every table.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from prmkit.bestofn import best_of_n_curve, paired_bootstrap
from prmkit.data.pools import group_pools
from prmkit.metrics import (auroc, ece, first_error_f1, first_error_threshold, pearson,
                            reliability, spearman, step_f1)
from prmkit.records import Trajectory, first_error
from prmkit.scoring import Scorer, StepScores, aggregate_all
from prmkit.select import Pool

Splits = Mapping[str, list[Trajectory]]
_COUNTS = ("items", "labelled_steps", "first_error_items")


def _mean(values: list[float]) -> float:
    """Mean of the finite values (ProcessBench averages F1 over splits); NaN when none is."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def split_metrics(probs: list[StepScores], trajectories: list[Trajectory],
                  threshold: float | None) -> dict:
    """Every metric of one scored split (NaN where the data do not support it)."""
    p = np.array([v for ps, t in zip(probs, trajectories) for v, y in zip(ps, t.labels)
                  if y is not None], dtype=np.float64)
    y = np.array([v for t in trajectories for v in t.labels if v is not None], dtype=np.float64)
    out = {"items": len(trajectories), "labelled_steps": len(y), "step_auroc": auroc(p, y),
           "ece": ece(p, y) if len(y) else math.nan, "pearson": pearson(p, y) if len(y) > 1
           else math.nan, "spearman": spearman(p, y) if len(y) > 1 else math.nan,
           "step_f1": step_f1(p, y, threshold) if threshold is not None else math.nan}
    known = [(ps, e) for ps, e in zip(probs, map(first_error, trajectories)) if e is not None]
    out["first_error_items"] = len(known)
    if threshold is not None and known:
        fe = first_error_f1([k[0] for k in known], [k[1] for k in known], threshold)
        out.update(first_error_f1=fe["f1"], acc_erroneous=fe["acc_erroneous"],
                   acc_correct=fe["acc_correct"])
    return out


def choose_threshold(scorer: Scorer, dev: Splits) -> tuple[float, float]:
    """The first-error threshold that maximizes F1 averaged over the dev splits."""
    splits = []
    for trajectories in dev.values():
        probs = scorer.score_batch(trajectories)
        known = [(ps, e) for ps, e in zip(probs, map(first_error, trajectories)) if e is not None]
        if known:
            splits.append(([k[0] for k in known], [k[1] for k in known]))
    if not splits:
        raise ValueError("the dev data has no item whose first error is known")
    return first_error_threshold(splits)


def best_of_n(trajectories: list[Trajectory], probs: Mapping[str, list[StepScores]],
              ns: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict | None:
    """Accuracy at N (the demo's subset averaging, 95% bootstrap intervals over problems) of
    each scorer's best candidate by its minimum step probability and of its weighted majority,
    beside majority vote, random and the oracle; on the questions that have several candidates
    with known outcomes. None when the data form no such pool, or none as large as an N."""
    index = {id(t): i for i, t in enumerate(trajectories)}
    mins = {name: aggregate_all(p, ("min",))["min"] for name, p in probs.items()}
    pools = []
    for group in group_pools(trajectories):
        if len(group) < 2 or any(t.outcome is None for t in group):
            continue
        rows = [index[id(t)] for t in group]
        pools.append(Pool(answers=[t.answer for t in group],
                          correct=np.array([bool(t.outcome) for t in group]),
                          lengths=np.array([t.num_steps for t in group]),
                          scores={name: np.array([m[i] for i in rows])
                                  for name, m in mins.items()}))
    if not pools:
        return None
    ns = tuple(n for n in ns if n <= min(p.size for p in pools))
    if not ns:  # pools smaller than every N asked for
        return None
    methods = {f"{name} (min)": ("prm", name) for name in probs}
    methods.update({f"{name}-weighted majority": ("weighted_majority", name) for name in probs})
    methods.update({"majority vote": ("majority", None), "random": ("random", None)})
    curve = best_of_n_curve(pools, methods, ns)
    return {"pools": len(pools), "ns": list(ns),
            "accuracy": {str(n): paired_bootstrap({m: curve[m][n] for m in curve})
                         for n in ns}}


def evaluate(scorers: Mapping[str, Scorer], splits: Splits,
             thresholds: Mapping[str, float | None]) -> dict:
    """``{scorer: {"threshold", "splits": {split: metrics}, "average": metrics averaged over
    splits, "reliability": pooled bins}}``, and under ``"best_of_n"`` per split the accuracy at
    N where the split forms pools of candidates with known outcomes."""
    results, scored = {}, {split: {} for split in splits}
    for name, scorer in scorers.items():
        threshold = thresholds.get(name)
        per_split, pooled_p, pooled_y = {}, [], []
        for split, trajectories in splits.items():
            probs = scorer.score_batch(trajectories)
            scored[split][name] = probs
            per_split[split] = split_metrics(probs, trajectories, threshold)
            for ps, t in zip(probs, trajectories):
                for v, y in zip(ps, t.labels):
                    if y is not None:
                        pooled_p.append(v)
                        pooled_y.append(y)
        keys = sorted({k for m in per_split.values() for k in m} - set(_COUNTS))
        average = {k: _mean([m.get(k, math.nan) for m in per_split.values()]) for k in keys}
        results[name] = {"threshold": threshold, "splits": per_split, "average": average,
                         "reliability": reliability(pooled_p, pooled_y)}
    curves = {split: best_of_n(splits[split], scored[split]) for split in splits}
    return {"scorers": results, "best_of_n": {s: c for s, c in curves.items() if c is not None}}


def _cell(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(report: dict) -> list[str]:
    """The evaluation as markdown: one table per split and the average, scorers as rows."""
    from prmkit.report import interval, table

    results = report["results"]["scorers"]
    splits = list(next(iter(results.values()))["splits"])
    header = ["scorer", "first-error F1", "acc. erroneous", "acc. correct", "step AUROC",
              "step F1", "ECE", "Spearman", "threshold"]
    lines = [f"# Evaluation of {report['model']} on {report['data']}", "",
             f"Threshold (a step is flagged below it): {report['threshold_source']}.", ""]
    for split in [*splits, "average"] if len(splits) > 1 else splits:
        rows = []
        for name, r in results.items():
            m = r["average"] if split == "average" else r["splits"][split]
            rows.append([name, _cell(m.get("first_error_f1", math.nan)),
                         _cell(m.get("acc_erroneous", math.nan)),
                         _cell(m.get("acc_correct", math.nan)), _cell(m["step_auroc"]),
                         _cell(m["step_f1"]), _cell(m["ece"]), _cell(m["spearman"]),
                         _cell(r["threshold"])])
        first = next(iter(results.values()))
        title = "average over splits" if split == "average" else (
            f"{split}: {first['splits'][split]['items']} items, "
            f"{first['splits'][split]['first_error_items']} with a known first error")
        lines += [f"## {title}", "", *table(header, rows), ""]
    for split, curve in report["results"]["best_of_n"].items():
        ns = curve["ns"]
        lines += [f"## best-of-N on {split}: {curve['pools']} questions with several candidates "
                  "(accuracy in %, 95% interval over questions)", "",
                  *table(["method", *(f"N={n}" for n in ns)],
                         [[m, *(interval(curve["accuracy"][str(n)][m]) for n in ns)]
                          for m in curve["accuracy"][str(ns[0])]]), ""]
    return lines
