"""Best-of-N evaluation maths: pass@k, accuracy at N over subsets of a pool, paired bootstrap.

Pure functions over NumPy arrays: no state, no I/O.

How accuracy at N is measured (following Let's Verify Step by Step): each problem has a pool of
M >= N sampled candidates. Accuracy at N is the expectation, over uniformly random N-subsets of the
pool, of whether the selected candidate is correct. One draw of N per problem would be far noisier.

* Small C(M, N) (at most ``num_subsets``): every subset is enumerated, so the number is exact.
* Otherwise ``num_subsets`` random subsets are averaged (unbiased).
* In both cases tie-breaking is not sampled: selectors return the probability of picking each
  candidate (see ``prmkit.select``), and each subset contributes the exact expected correctness.
* The oracle ("any of the N is correct") is the unbiased pass@k estimator, with no sampling at all.

Every method is scored on the same subsets of the same problem, so differences between methods are
paired; ``paired_bootstrap`` and ``bootstrap_diff`` then resample problems (the same resampled
problems for every method) for confidence intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Hashable, Mapping, Sequence

import numpy as np

from prmkit.metrics import pass_at_k
from prmkit.select import SELECTORS, Method, Pool, PoolView, check_method

PerProblem = np.ndarray  # (P,) one accuracy per problem
Curve = dict[str, dict[int, PerProblem]]  # method name -> N -> per-problem accuracy
Interval = dict[str, float]  # {"mean": ..., "low": ..., "high": ...}

ORACLE = "oracle"
_BUDGET = 1 << 22  # elements per gathered (rows, N) array; bounds memory for large pools and N


def all_subsets(m: int, n: int) -> np.ndarray:
    """Every n-subset of range(m), in lexicographic order. Shape: (C(m, n), n) int64."""
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got m={m}, n={n}")
    return np.array(list(combinations(range(m), n)), dtype=np.int64).reshape(-1, n)


def draw_subsets(m: int, n: int, num_subsets: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random n-subsets of range(m), drawn independently (each without replacement).

    Shape: (num_subsets, n) int64.
    """
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got m={m}, n={n}")
    return _random_orders(m, n, num_subsets, rng)


def subset_accuracy(pool: Pool, method: Method, subsets: np.ndarray) -> np.ndarray:
    """Expected correctness of the pick in each subset (exact over tie-breaking).

    Shape: subsets (R, N) pool indices -> (R,) float in [0, 1].
    """
    check_method(method, list(pool.scores))
    subsets = np.asarray(subsets, dtype=np.int64)
    stack = _Stack.of([pool], [method])
    return _expected_correct(stack, {"method": method}, subsets[None])["method"][0]  # (R,)


def exact_accuracy_at_n(pool: Pool, method: Method, n: int) -> float:
    """Accuracy at N averaged over all C(M, N) subsets of the pool (use only when that is small)."""
    return float(subset_accuracy(pool, method, all_subsets(pool.size, n)).mean())


def accuracy_at_n(pool: Pool, method: Method, n: int, num_subsets: int,
                  rng: np.random.Generator) -> float:
    """Accuracy at N for one problem: exact if C(M, N) <= num_subsets, else over random subsets."""
    if math.comb(pool.size, n) <= num_subsets:
        return exact_accuracy_at_n(pool, method, n)
    return float(subset_accuracy(pool, method, draw_subsets(pool.size, n, num_subsets, rng)).mean())


def best_of_n_curve(pools: Sequence[Pool], methods: Mapping[str, Method], ns: Sequence[int],
                    num_subsets: int = 200, seed: int = 0) -> Curve:
    """Per-problem accuracy at every N for every method, plus the pass@k oracle.

    Args:
        pools: one ``Pool`` per problem (P of them); pools may differ in size M, but every N must
            be at most every M.
        methods: display name -> (selector, score), e.g.
            ``{"PRM (min)": ("prm", "prm_min"), "majority": ("majority", None)}``.
        ns: the N values, e.g. (1, 2, 4, 8, 16).
        num_subsets: random N-subsets per problem and N; when C(M, N) is no larger, all subsets
            are enumerated instead.
        seed: problem p draws from its own generator (child p of ``SeedSequence(seed)``), so its
            numbers depend only on the seed and its position p, not on the other problems or on
            which methods are evaluated.

    Returns:
        ``curve[name][n]``: accuracy per problem, shape (P,), for every method name and for
        ``"oracle"`` (pass@N). All methods see the same subsets of a problem for a given N (paired).
        The random subsets for different N are nested (the first N of one random order per draw);
        each is still a uniform N-subset, and nesting makes the curve smoother in N.
    """
    pools = list(pools)
    ns = [int(n) for n in ns]
    if not pools:
        raise ValueError("need at least one pool")
    if not ns:
        raise ValueError("need at least one N")
    if ORACLE in methods:
        raise ValueError(f"the method name {ORACLE!r} is reserved for the pass@k row")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    for p, pool in enumerate(pools):
        for method in methods.values():
            check_method(method, list(pool.scores))
        for n in ns:
            if not 1 <= n <= pool.size:
                raise ValueError(f"N={n} is out of range for problem {p}, whose pool has "
                                 f"{pool.size} candidates")

    num_problems = len(pools)
    curve: Curve = {name: {n: np.empty(num_problems) for n in ns} for name in [*methods, ORACLE]}
    for p, pool in enumerate(pools):
        c = int(pool.correct.sum())
        for n in ns:
            curve[ORACLE][n][p] = pass_at_k(pool.size, c, n)

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(num_problems)]
    sizes = np.array([pool.size for pool in pools])
    for m in np.unique(sizes):
        m = int(m)
        members = np.flatnonzero(sizes == m)  # problems sharing a pool size are batched together
        stack = _Stack.of([pools[i] for i in members], methods.values())
        random_ns = [n for n in ns if math.comb(m, n) > num_subsets]
        if random_ns:
            n_max = max(random_ns)
            orders = np.stack([_random_orders(m, n_max, num_subsets, rngs[i]) for i in members])
        for n in ns:
            if math.comb(m, n) <= num_subsets:
                subsets = np.broadcast_to(all_subsets(m, n), (len(members), math.comb(m, n), n))
            else:
                subsets = orders[:, :, :n]  # (G, S, n)
            for name, accuracy in _expected_correct(stack, methods, subsets).items():
                curve[name][n][members] = accuracy.mean(axis=1)  # (G,)
    return curve


def paired_bootstrap(per_problem: Mapping[str, Sequence[float] | np.ndarray],
                     num_resamples: int = 10_000, seed: int = 0,
                     ci: float = 0.95) -> dict[str, Interval]:
    """Mean and percentile confidence interval of each method's accuracy, resampling problems.

    Every method is resampled with the same problem indices, so intervals are comparable and the
    same seed gives the same resamples as ``bootstrap_diff`` on the same number of problems.

    Args:
        per_problem: method name -> accuracy per problem, each shape (P,) (the same problems).
        ci: coverage of the interval, e.g. 0.95.

    Returns:
        method name -> {"mean": the sample mean, "low": ..., "high": ...}.
    """
    if not per_problem:
        raise ValueError("need at least one method")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    names = list(per_problem)
    columns = [np.asarray(per_problem[name], dtype=np.float64) for name in names]
    sizes = {column.shape for column in columns}
    if len(sizes) != 1 or columns[0].ndim != 1 or columns[0].size == 0:
        raise ValueError(f"every method needs one value per problem (same P >= 1), got shapes "
                         f"{ {name: c.shape for name, c in zip(names, columns)} }")
    values = np.stack(columns, axis=1)  # (P, K)
    if np.isnan(values).any():
        raise ValueError("per-problem values contain NaN")
    means = _bootstrap_means(values, num_resamples, seed)  # (B, K)
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2], axis=0)  # (K,) each
    return {name: {"mean": float(values[:, j].mean()), "low": float(low[j]), "high": float(high[j])}
            for j, name in enumerate(names)}


def curve_intervals(curve: Curve, ns: Sequence[int], num_resamples: int = 10_000,
                    seed: int = 0, ci: float = 0.95) -> dict[str, dict[str, Interval]]:
    """``paired_bootstrap`` at every N of a curve (the same resamples for every method at an N),
    as report tables read it: ``{method: {str(N): {"mean", "low", "high"}}}``."""
    at = {n: paired_bootstrap({name: curve[name][n] for name in curve}, num_resamples, seed, ci)
          for n in ns}
    return {name: {str(n): at[n][name] for n in ns} for name in curve}


def bootstrap_diff(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                   num_resamples: int = 10_000, seed: int = 0, ci: float = 0.95) -> Interval:
    """Mean and interval of (a - b), paired by problem: the per-problem differences are resampled.

    Shape: a, b (P,) -> {"mean", "low", "high"} of mean(a) - mean(b).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must cover the same problems, got shapes {a.shape} and "
                         f"{b.shape}")
    return paired_bootstrap({"diff": a - b}, num_resamples, seed, ci)["diff"]


def group_mean(per_problem: Sequence[float] | np.ndarray,
               groups: Sequence[Hashable] | np.ndarray) -> dict[Hashable, float]:
    """Mean of per-problem values within each group (e.g. difficulty = number of steps).

    Shape: per_problem (P,), groups (P,) -> {group: mean}, in sorted group order.
    """
    values = np.asarray(per_problem, dtype=np.float64)
    groups = np.asarray(groups)
    if values.ndim != 1 or groups.shape != values.shape:
        raise ValueError(f"need one group per problem, got shapes {values.shape} and "
                         f"{groups.shape}")
    keys, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=values, minlength=len(keys))
    counts = np.bincount(inverse.ravel(), minlength=len(keys))
    return {key.item(): float(s / c) for key, s, c in zip(keys, sums, counts)}


# ---------------------------------------------------------------------------------------------


@dataclass
class _Stack:
    """G same-size pools stacked row-wise, so one selector call covers many problems."""

    answer_ids: np.ndarray  # (G, M) int64
    num_answers: int
    correct: np.ndarray  # (G, M) bool
    lengths: np.ndarray  # (G, M)
    scores: dict[str, np.ndarray]  # name -> (G, M), only the scores the methods use

    @classmethod
    def of(cls, pools: list[Pool], methods) -> "_Stack":
        names = {score for _, score in methods if score is not None}
        return cls(answer_ids=np.stack([p.answer_ids for p in pools]),
                   num_answers=max(p.num_answers for p in pools),
                   correct=np.stack([p.correct for p in pools]),
                   lengths=np.stack([p.lengths for p in pools]),
                   scores={name: np.stack([p.scores[name] for p in pools]) for name in names})


def _expected_correct(stack: _Stack, methods: Mapping[str, Method],
                      subsets: np.ndarray) -> dict[str, np.ndarray]:
    """Expected correctness of each method's pick in each subset of each stacked pool.

    Shape: subsets (G, R, N) indices into each pool -> name -> (G, R).
    """
    g, r, n = subsets.shape
    m = stack.correct.shape[1]
    out = {name: np.empty((g, r)) for name in methods}
    step = max(1, _BUDGET // (r * n))  # pools per chunk, to bound memory for large R * N
    for start in range(0, g, step):
        sub = subsets[start:start + step]  # (g', R, N)
        # One flat index per chunk; every array is then gathered with a cheap 1-D take.
        flat = ((np.arange(start, start + len(sub)) * m)[:, None, None] + sub).reshape(-1, n)

        def gather(values: np.ndarray) -> np.ndarray:
            return values.ravel()[flat]  # (g' * R, N)

        base = PoolView(answer_ids=gather(stack.answer_ids), num_answers=stack.num_answers,
                        lengths=gather(stack.lengths))
        correct = gather(stack.correct)
        scores = {score: gather(stack.scores[score]) for _, score in methods.values()
                  if score is not None}
        for name, (selector, score) in methods.items():
            view = base if score is None else replace(base, scores=scores[score])
            probs = SELECTORS[selector](view)  # (g' * R, N)
            out[name][start:start + len(sub)] = (probs * correct).sum(axis=1).reshape(-1, r)
    return out


def _random_orders(m: int, n: int, num_subsets: int, rng: np.random.Generator) -> np.ndarray:
    """The first n of a uniformly random order of range(m), per row. Shape: (num_subsets, n)."""
    # Sorting i.i.d. uniform keys gives a uniform permutation; any prefix is a uniform subset.
    return np.argsort(rng.random((num_subsets, m)), axis=1)[:, :n].astype(np.int64)


def _bootstrap_means(values: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
    """Means over problems of ``num_resamples`` resamples with replacement. Shape: (P, K) -> (B, K).

    A resample is held as counts per problem, so each chunk is one matrix product; the chunks keep
    memory bounded for many problems.
    """
    rng = np.random.default_rng(seed)
    p = values.shape[0]
    step = max(1, _BUDGET // p)
    chunks = []
    for start in range(0, num_resamples, step):
        b = min(step, num_resamples - start)
        idx = rng.integers(0, p, size=(b, p))  # (b, P) resampled problem indices
        counts = np.bincount((np.arange(b)[:, None] * p + idx).ravel(), minlength=b * p)
        chunks.append(counts.reshape(b, p) @ values / p)  # (b, K)
    return np.concatenate(chunks)
