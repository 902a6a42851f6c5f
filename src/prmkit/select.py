"""Selection rules for best-of-N: pick one of N candidate solutions to a problem.

Pure functions over NumPy arrays: no state, no I/O.

Two layers:

* **Scalar rules** for one set of N candidates, returning the chosen index:
  ``best_of_n(scores, rng)``, ``majority_vote(answers, rng)``,
  ``weighted_majority(answers, scores, rng)``, ``random_choice(n, rng)``, ``longest(lengths, rng)``,
  ``shortest(lengths, rng)``. Ties are broken uniformly at random with ``rng``.
* **Batched rules** (``SELECTORS``) used by evaluation. Each maps a ``PoolView`` (R rows, each one
  N-subset of a ``Pool``) to the *selection probabilities* (R, N) of every candidate under uniform
  random tie-breaking. Returning probabilities instead of one sampled index lets evaluation take the
  exact expectation over tie-breaking (no tie-breaking noise at all), while ``sample`` draws an
  index from them when one pick is wanted. All rules are written this way, so a scalar pick and an
  evaluated accuracy can never disagree about how ties are handled.

A method is a pair ``(selector, score)``: a key of ``SELECTORS`` and, for the selectors that use a
score (``SCORED``), the name of one of the pool's score arrays. For example::

    pool = Pool(answers=["7", "7", "5", None], correct=[True, True, False, False],
                lengths=[3, 4, 2, 6], scores={"prm_min": [0.9, 0.2, 0.8, 0.1]})
    select(pool, ("weighted_majority", "prm_min"), rng)   # -> 0 or 1 (answer "7", sum 1.1)
    select(pool, ("majority", None), rng)                 # -> 0 or 1

Answers are compared as exact strings: normalise them (e.g. with math-verify) before building a
pool.
``None`` means "no answer": such a candidate never wins a vote unless every candidate has no answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

Answer = str | None
Method = tuple[str, str | None]  # (key of SELECTORS, key of Pool.scores or None)


@dataclass
class Pool:
    """The M candidate solutions sampled for one problem, with everything a selector may use.

    Attributes:
        answers: final answer of each candidate, or None when it gave none. Length M.
        correct: whether each candidate's final answer is correct. Shape: (M,) bool.
        lengths: size of each candidate (number of steps, or characters). Shape: (M,).
        scores: named score arrays, one per scoring method (e.g. "prm_min", "prm_product", "orm"),
            so one pool serves every method. Each shape: (M,), no NaN.
        answer_ids: derived: index of each candidate's answer among the pool's distinct answers in
            order of first appearance, -1 for None. Shape: (M,) int64.
        num_answers: derived: number of distinct (non-None) answers.
    """

    answers: Sequence[Answer]
    correct: np.ndarray
    lengths: np.ndarray
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    answer_ids: np.ndarray = field(init=False, repr=False)
    num_answers: int = field(init=False, repr=False)

    def __post_init__(self):
        self.answers = list(self.answers)
        m = len(self.answers)
        if m == 0:
            raise ValueError("a pool needs at least one candidate")
        self.correct = np.asarray(self.correct)
        if self.correct.dtype != bool or self.correct.shape != (m,):
            raise ValueError(f"correct must be {m} booleans (one per answer), "
                             f"got dtype {self.correct.dtype} shape {self.correct.shape}")
        self.lengths = np.asarray(self.lengths, dtype=np.float64)
        if self.lengths.shape != (m,) or np.isnan(self.lengths).any():
            raise ValueError(f"lengths must be {m} numbers (one per answer), got shape "
                             f"{self.lengths.shape}")
        self.scores = {name: _as_scores(values, f"scores[{name!r}]", m)
                       for name, values in self.scores.items()}
        self.answer_ids, self.num_answers = encode_answers(self.answers)

    @property
    def size(self) -> int:
        """M, the number of candidates."""
        return len(self.answers)

    def view(self, subsets: np.ndarray | None = None, score: str | None = None) -> "PoolView":
        """The candidates of each subset, as a selector sees them.

        Args:
            subsets: candidate indices, one row per subset. Shape: (R, N). Default: the whole pool
                as one row, (1, M).
            score: which of ``scores`` the view carries (None: no score).
        """
        if subsets is None:
            subsets = np.arange(self.size)[None, :]
        subsets = np.asarray(subsets)
        if score is not None and score not in self.scores:
            raise ValueError(f"unknown score {score!r}; this pool has {sorted(self.scores)}")
        return PoolView(answer_ids=self.answer_ids[subsets], num_answers=self.num_answers,
                        lengths=self.lengths[subsets],
                        scores=None if score is None else self.scores[score][subsets])


@dataclass
class PoolView:
    """R subsets of N candidates each (from one pool, or stacked from several), for a selector.

    Rows are independent: a selector decides each row on its own.

    Attributes:
        answer_ids: answer of each candidate as an id in [0, num_answers), -1 for no answer.
            Shape: (R, N) int.
        num_answers: an upper bound on the answer ids + 1.
        lengths: Shape: (R, N) float.
        scores: the one score the method uses, or None for selectors without a score.
            Shape: (R, N) float.
    """

    answer_ids: np.ndarray
    num_answers: int
    lengths: np.ndarray
    scores: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------
# Selection probabilities. Each helper returns (R, N) rows summing to 1: the chance that uniform
# random tie-breaking picks each candidate.


def _uniform_over(mask: np.ndarray) -> np.ndarray:
    return mask / mask.sum(axis=1, keepdims=True)  # (R, N)


def _argmax_probs(values: np.ndarray) -> np.ndarray:
    """Uniform over the candidates holding the row maximum (exact float ties only)."""
    return _uniform_over(values == values.max(axis=1, keepdims=True))


def _vote_probs(ids: np.ndarray, num_answers: int, weights: np.ndarray | None) -> np.ndarray:
    """Votes (or summed weights) per answer; uniform over winning answers, then over their holders.

    "Uniform over winning answers, then over the candidates with that answer" matters for weighted
    votes, where two answers can tie on summed score while held by different numbers of candidates;
    for plain votes tied answers have equal counts and it is uniform over all their holders.
    """
    r, n = ids.shape
    k = max(num_answers, 1)
    has = ids >= 0  # (R, N)
    rows = np.broadcast_to(np.arange(r)[:, None], (r, n))
    flat = (rows * k + ids)[has]
    counts = np.bincount(flat, minlength=r * k).reshape(r, k)  # (R, K)
    totals = counts.astype(np.float64) if weights is None else \
        np.bincount(flat, weights=weights[has], minlength=r * k).reshape(r, k)
    # An absent answer must not win on a zero total (e.g. every present answer scored 0).
    totals = np.where(counts > 0, totals, -np.inf)
    winners = totals == totals.max(axis=1, keepdims=True)  # (R, K)
    num_winners = winners.sum(axis=1, keepdims=True)  # (R, 1)
    safe = np.where(has, ids, 0)
    holders = counts[rows, safe]  # (R, N) candidates sharing each one's answer
    probs = np.where(has & winners[rows, safe], 1.0 / (num_winners * np.maximum(holders, 1)), 0.0)
    no_answer = ~has.any(axis=1)  # every candidate of the row gave no answer: plain random pick
    probs[no_answer] = 1.0 / n
    return probs


def prm_probs(view: PoolView) -> np.ndarray:
    """Highest score wins (best-of-N with a PRM's aggregated score, or an ORM score)."""
    return _argmax_probs(_need_scores(view, "prm"))


def weighted_majority_probs(view: PoolView) -> np.ndarray:
    """The answer with the largest summed score wins (Math-Shepherd, Let's Verify "weighted")."""
    return _vote_probs(view.answer_ids, view.num_answers,
                       _non_negative(_need_scores(view, "weighted_majority")))


def majority_probs(view: PoolView) -> np.ndarray:
    """The most frequent answer wins (self-consistency)."""
    return _vote_probs(view.answer_ids, view.num_answers, None)


def random_probs(view: PoolView) -> np.ndarray:
    """Any candidate, uniformly: the expected accuracy of one sample."""
    r, n = view.answer_ids.shape
    return np.full((r, n), 1.0 / n)


def longest_probs(view: PoolView) -> np.ndarray:
    """The longest candidate wins."""
    return _argmax_probs(view.lengths)


def shortest_probs(view: PoolView) -> np.ndarray:
    """The shortest candidate wins."""
    return _argmax_probs(-view.lengths)


Selector = Callable[[PoolView], np.ndarray]  # PoolView (R rows of N) -> probabilities (R, N)

SELECTORS: dict[str, Selector] = {
    "prm": prm_probs,
    "weighted_majority": weighted_majority_probs,
    "majority": majority_probs,
    "random": random_probs,
    "longest": longest_probs,
    "shortest": shortest_probs,
}
SCORED = frozenset({"prm", "weighted_majority"})  # the selectors that need a score


def check_method(method: Method, score_names: Sequence[str] | None = None) -> None:
    """Raise ValueError unless ``method`` names a selector and gives a score iff it needs one.

    Args:
        method: (selector, score).
        score_names: the scores available; None skips checking that the score exists.
    """
    selector, score = method
    if selector not in SELECTORS:
        raise ValueError(f"unknown selector {selector!r}; choose from {sorted(SELECTORS)}")
    if selector in SCORED and score is None:
        raise ValueError(f"selector {selector!r} needs a score name, "
                         f"e.g. ({selector!r}, 'prm_min')")
    if selector not in SCORED and score is not None:
        raise ValueError(f"selector {selector!r} uses no score, but got score {score!r}; pass None")
    if score is not None and score_names is not None and score not in score_names:
        raise ValueError(f"unknown score {score!r}; the pool has {sorted(score_names)}")


def selection_probs(pool: Pool, method: Method, subsets: np.ndarray | None = None) -> np.ndarray:
    """Chance that ``method`` picks each candidate of each subset (random tie-breaking).

    Shape: subsets (R, N) pool indices (default: the whole pool, (1, M)) -> (R, N), rows sum to 1.
    """
    check_method(method, list(pool.scores))
    selector, score = method
    return SELECTORS[selector](pool.view(subsets, score))


def sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one column per row from selection probabilities.

    Gumbel-max: argmax(log p + Gumbel noise) is distributed exactly as p, and a zero-probability
    candidate (log p = -inf) can never be drawn, whatever the rounding.

    Shape: probs (R, N) -> (R,) int64 column indices.
    """
    probs = np.asarray(probs, dtype=np.float64)
    log_p = np.full(probs.shape, -np.inf)
    np.log(probs, out=log_p, where=probs > 0)
    return np.argmax(log_p + rng.gumbel(size=probs.shape), axis=1)


def select(pool: Pool, method: Method, rng: np.random.Generator) -> int:
    """Index (in 0..M-1) of the candidate ``method`` picks from the whole pool."""
    return int(sample(selection_probs(pool, method), rng)[0])


# ---------------------------------------------------------------------------------------------
# Scalar rules over one set of N candidates.


def best_of_n(scores: Sequence[float] | np.ndarray, rng: np.random.Generator) -> int:
    """Index of the highest score; exact ties broken uniformly at random. Shape: scores (N,)."""
    scores = _as_scores(scores, "scores")
    return _pick(_argmax_probs(scores[None, :]), rng)


def majority_vote(answers: Sequence[Answer], rng: np.random.Generator) -> int:
    """Index of a candidate holding the most frequent answer (None never wins unless all are None).

    Ties between answers are broken uniformly at random, then a holder is picked at random.
    """
    ids, k = encode_answers(answers)
    return _pick(_vote_probs(ids[None, :], k, None), rng)


def weighted_majority(answers: Sequence[Answer], scores: Sequence[float] | np.ndarray,
                      rng: np.random.Generator) -> int:
    """Index of a candidate holding the answer with the largest summed score.

    Scores must be non-negative (probabilities): summing log-scores would favour rare answers.
    Shape: answers length N, scores (N,).
    """
    ids, k = encode_answers(answers)
    scores = _non_negative(_as_scores(scores, "scores", len(ids)))
    return _pick(_vote_probs(ids[None, :], k, scores[None, :]), rng)


def random_choice(n: int, rng: np.random.Generator) -> int:
    """A uniformly random index in 0..n-1."""
    if n < 1:
        raise ValueError(f"need at least one candidate, got n={n}")
    return int(rng.integers(n))


def longest(lengths: Sequence[float] | np.ndarray, rng: np.random.Generator) -> int:
    """Index of the longest candidate, ties at random. Shape: lengths (N,)."""
    return _pick(_argmax_probs(_as_scores(lengths, "lengths")[None, :]), rng)


def shortest(lengths: Sequence[float] | np.ndarray, rng: np.random.Generator) -> int:
    """Index of the shortest candidate, ties at random. Shape: lengths (N,)."""
    return _pick(_argmax_probs(-_as_scores(lengths, "lengths")[None, :]), rng)


def encode_answers(answers: Sequence[Answer]) -> tuple[np.ndarray, int]:
    """Answers as ids in order of first appearance (-1 for None), and the number of distinct ones.

    >>> encode_answers(["7", None, "5", "7"])
    (array([ 0, -1,  1,  0]), 2)
    """
    if len(answers) == 0:
        raise ValueError("need at least one candidate")
    index: dict[str, int] = {}
    ids = [-1 if a is None else index.setdefault(a, len(index)) for a in answers]
    return np.asarray(ids, dtype=np.int64), len(index)


def _pick(probs: np.ndarray, rng: np.random.Generator) -> int:
    return int(sample(probs, rng)[0])


def _as_scores(values, name: str, size: int | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or (size is not None and values.size != size):
        want = "a non-empty 1-D array" if size is None else f"{size} values"
        raise ValueError(f"{name} must be {want}, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(values))[0])}")
    return values


def _need_scores(view: PoolView, selector: str) -> np.ndarray:
    if view.scores is None:
        raise ValueError(f"selector {selector!r} needs scores, but the view carries none")
    return view.scores


def _non_negative(scores: np.ndarray) -> np.ndarray:
    if (scores < 0).any():
        raise ValueError("weighted majority sums scores per answer, so scores must be "
                         f"non-negative (probabilities); got a minimum of {scores.min():.4g} "
                         "(a log-score such as log_product?)")
    return scores
