"""``prmkit rerank``: best-of-N over your own candidate solutions, with any ``Scorer``.

Reads top to bottom: candidates (one record per solution) → grouped by question
(``normalize_question``) → every candidate scored in ONE ``score_batch`` call (a prmkit ``PRM``
then encodes each question and each shared step prefix once, through the embedding cache) →
per question, the pick of each method (``prmkit.select``; ties broken by a seeded generator) →
where gold answers are known, accuracy at N with the demo's subset averaging and paired
bootstrap intervals (``prmkit.bestofn``) → one JSONL row per question.

Answers are a record's ``answer``, else the one its last step states (``final_answer``). Votes
pool answers that math-verify judges equal ("0.5" and "1/2" are one vote). A candidate is right
when its record says so (``outcome``), else when its answer matches ``meta["reference_answer"]``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prmkit import bestofn
from prmkit._io import atomic_open, check_output
from prmkit.answers import final_answer, judge_answers
from prmkit.data.formats import load_located
from prmkit.embed import open_cache
from prmkit.errors import PrmkitError
from prmkit.records import Location, Trajectory, check_steps, normalize_question
from prmkit.report import curve_table
from prmkit.scoring import PRM, Scorer, StepScores, aggregate_all, load_scorer
from prmkit.scoring.aggregate import AGGREGATIONS
from prmkit.select import Method, Pool, select

PathLike = str | os.PathLike
Answer = str | None
# Weighted majority sums scores per answer, so they must be probabilities (or sums of them);
# log_product is refused: it ranks exactly as product does.
RANKING = tuple(name for name in AGGREGATIONS if name != "log_product")


@dataclass
class RerankConfig:
    """How to choose and how to measure.

    Attributes:
        aggregation: step scores → one score per solution (a key of ``RANKING``).
        seed: tie-breaking, and the random N-subsets and bootstrap resamples of accuracy.
        ns: N values for accuracy (None: powers of two up to the smallest pool).
        num_subsets: random N-subsets per question and N (all of them when C(M, N) is smaller).
        bootstrap: resamples of questions for the 95% intervals.
        judge_timeout_s: time bound of one math-verify comparison.
    """

    aggregation: str = "min"
    seed: int = 0
    ns: tuple[int, ...] | None = None
    num_subsets: int = 200
    bootstrap: int = 2000
    judge_timeout_s: float = 5.0

    def __post_init__(self):
        if self.aggregation == "log_product":
            raise ValueError("aggregation 'log_product' ranks as 'product' does, and weighted "
                             "majority needs probabilities: use 'product'")
        if self.aggregation not in RANKING:
            raise ValueError(f"unknown aggregation {self.aggregation!r} (--aggregation); "
                             f"choose from {', '.join(RANKING)}")
        if self.ns is not None and (not self.ns or min(self.ns) < 1):
            raise ValueError(f"every N (--n) must be at least 1, got {list(self.ns)}")
        if self.num_subsets < 1 or self.bootstrap < 1 or self.judge_timeout_s <= 0:
            raise ValueError("num_subsets, bootstrap and judge_timeout_s must be positive")


def methods(aggregation: str) -> dict[str, Method]:
    """Display name → (selector, score) of every rule, named as in the demo's tables."""
    return {f"PRM ({aggregation})": ("prm", "prm"),
            f"PRM-weighted majority ({aggregation})": ("weighted_majority", "prm"),
            "majority vote": ("majority", None),
            "random": ("random", None),
            "longest": ("longest", None),
            "shortest": ("shortest", None)}


def group_questions(trajectories: list[Trajectory]) -> list[list[int]]:
    """Record indices per question (``normalize_question``), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(trajectories):
        groups.setdefault(normalize_question(t.question), []).append(i)
    return list(groups.values())


def candidate_answer(t: Trajectory) -> Answer:
    """The record's ``answer``, else the one its last step states."""
    return t.answer if t.answer is not None else final_answer(t.steps)


def vote_ids(groups: list[list[Answer]], timeout_s: float = 5.0) -> list[list[int]]:
    """Per question, a vote id per answer: answers judged equal share one (the union of equal
    pairs, every pair of distinct texts judged), ids in order of first appearance, -1 for none.

    >>> vote_ids([["0.5", None, "1/2", "3"]])
    [[0, -1, 0, 1]]
    """
    texts = [list(dict.fromkeys(a for a in answers if a is not None)) for answers in groups]
    pairs = [(g, i, j) for g, distinct in enumerate(texts)
             for i in range(len(distinct)) for j in range(i + 1, len(distinct))]
    # one batch for every question: the few pairs that need math-verify share its workers
    verdicts = judge_answers([texts[g][i] for g, i, _ in pairs],
                             [texts[g][j] for g, _, j in pairs], timeout_s=timeout_s)
    parents = [list(range(len(distinct))) for distinct in texts]

    def root(g: int, i: int) -> int:
        while parents[g][i] != i:
            i = parents[g][i]
        return i

    for (g, i, j), equal in zip(pairs, verdicts):
        if equal:
            a, b = sorted((root(g, i), root(g, j)))
            parents[g][b] = a
    out = []
    for g, answers in enumerate(groups):
        index = {text: k for k, text in enumerate(texts[g])}
        ids: dict[int, int] = {}
        out.append([-1 if a is None else ids.setdefault(root(g, index[a]), len(ids))
                    for a in answers])
    return out


def gold(trajectories: list[Trajectory], answers: list[Answer],
         timeout_s: float = 5.0) -> list[bool | None]:
    """Whether each candidate is right: its ``outcome``, else its answer judged against
    ``meta["reference_answer"]``; None when neither tells."""
    out: list[bool | None] = [t.outcome for t in trajectories]
    todo = [i for i, t in enumerate(trajectories)
            if t.outcome is None and t.meta.get("reference_answer") is not None]
    verdicts = judge_answers([str(trajectories[i].meta["reference_answer"]) for i in todo],
                             [answers[i] for i in todo], [trajectories[i].question for i in todo],
                             timeout_s=timeout_s)
    for i, verdict in zip(todo, verdicts):
        out[i] = verdict
    return out


def score_candidates(trajectories: list[Trajectory], scorer: Scorer,
                     locations: list[Location] | None = None,
                     progress: bool = False) -> tuple[list[StepScores], dict | None]:
    """Step probabilities of every candidate, in one ``score_batch`` call, and a ``PRM``'s
    embedding report (None for other scorers). One call matters: the backbone shares a
    question's prefixes only among the candidates it is given together."""
    if isinstance(scorer, PRM):
        check_steps(trajectories, locations, scorer.head.config.max_steps,
                    "this model cannot score it: split the solution")
        return scorer.score_batch(trajectories, progress, locations), scorer.last_embed_report
    return scorer.score_batch(trajectories), None


def rerank(trajectories: list[Trajectory], scorer: Scorer,
           config: RerankConfig = RerankConfig(), locations: list[Location] | None = None,
           progress: bool = False) -> tuple[list[dict], dict]:
    """Score, choose per question, measure. Returns (one row per question, summary).

    A row: ``question``, ``n``, ``single_candidate``, ``candidates`` (record indices),
    ``answers``, ``votes`` (vote ids), ``scores`` (the aggregation), ``step_probs``, ``correct``
    (where known) and ``chosen``: method → {"index": record index, "answer"}.
    """
    groups = group_questions(trajectories)
    answers = [candidate_answer(t) for t in trajectories]
    correct = gold(trajectories, answers, config.judge_timeout_s)
    # measured: at least two candidates, each right or wrong; N is checked before any scoring
    measured = [len(g) > 1 and all(correct[i] is not None for i in g) for g in groups]
    ns = (accuracy_ns(config.ns, [len(g) for g, m in zip(groups, measured) if m])
          if any(measured) else None)
    votes = vote_ids([[answers[i] for i in g] for g in groups], config.judge_timeout_s)
    step_probs, embedding = score_candidates(trajectories, scorer, locations, progress)
    scores = aggregate_all(step_probs, (config.aggregation,))[config.aggregation]
    rules = methods(config.aggregation)
    # question q draws from its own generator: its picks do not depend on the other questions
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(
        len(groups))]
    rows, pools = [], []
    for g, ids, rng, m in zip(groups, votes, rngs, measured):
        pool = Pool(answers=[None if v < 0 else str(v) for v in ids],
                    correct=np.array([correct[i] is True for i in g]),  # read if m only
                    lengths=np.array([sum(len(s) for s in trajectories[i].steps) for i in g]),
                    scores={"prm": np.array([scores[i] for i in g])})
        picks = {name: g[select(pool, method, rng)] for name, method in rules.items()}
        rows.append(_row(trajectories, g, answers, ids, scores, step_probs, correct, picks))
        if m:
            pools.append(pool)
    summary = {"questions": len(groups), "candidates": len(trajectories),
               "single_candidate": sum(len(g) == 1 for g in groups),
               "aggregation": config.aggregation, "methods": list(rules),
               "embedding": embedding,
               "accuracy": accuracy(pools, rules, ns, config, len(groups)) if pools else None}
    return rows, summary


def _row(trajectories: list[Trajectory], g: list[int], answers: list[Answer], ids: list[int],
         scores: list[float], step_probs: list[StepScores], correct: list[bool | None],
         picks: dict[str, int]) -> dict:
    row = {"question": trajectories[g[0]].question, "n": len(g), "single_candidate": len(g) == 1,
           "candidates": g, "answers": [answers[i] for i in g], "votes": ids,
           "scores": [scores[i] for i in g], "step_probs": [step_probs[i] for i in g]}
    if any(correct[i] is not None for i in g):
        row["correct"] = [correct[i] for i in g]
    row["chosen"] = {name: {"index": i, "answer": answers[i]} for name, i in picks.items()}
    return row


def accuracy_ns(ns: tuple[int, ...] | None, sizes: list[int]) -> list[int]:
    """The N values to measure: ``ns`` (each at most the smallest pool), else powers of two up
    to the smallest pool."""
    smallest = min(sizes)
    if ns is None:
        return [2 ** k for k in range(int(math.log2(smallest)) + 1)]
    if max(ns) > smallest:
        raise PrmkitError(f"N={max(ns)} (--n) is more than the smallest pool with gold answers "
                          f"holds ({smallest} candidates)")
    return sorted(set(ns))


def accuracy(pools: list[Pool], rules: dict[str, Method], ns: list[int], config: RerankConfig,
             questions: int) -> dict:
    """Accuracy at N of every rule and the oracle (pass@N), over the questions whose candidates
    all have a known correctness (at least two each), with 95% paired bootstrap intervals."""
    curve = bestofn.best_of_n_curve(pools, rules, ns, config.num_subsets, config.seed)
    best_of_n = bestofn.curve_intervals(curve, ns, config.bootstrap, config.seed)
    return {"questions": len(pools), "left_out": questions - len(pools), "ns": ns,
            "smallest_pool": min(pool.size for pool in pools), "best_of_n": best_of_n,
            "table": "\n".join(curve_table(best_of_n, ns))}


def rerank_file(data: PathLike, scorer: str | PathLike | Scorer, out: PathLike,
                config: RerankConfig = RerankConfig(), format: str = "jsonl",
                cache_dir: PathLike | None | bool = None, batch_size: int = 64,
                overwrite: bool = False, progress: bool = True, device="cpu") -> dict:
    """``prmkit rerank``: ``rerank`` on a file of candidates, rows written to ``out`` (JSONL,
    atomically; an existing file is replaced only with ``overwrite``). ``scorer`` is a
    ``Scorer`` or what ``load_scorer`` loads (on ``device``); a ``PRM`` embeds through the cache
    in ``cache_dir`` (None: the default folder; False: none). Returns the summary."""
    inputs = [data] + ([scorer] if isinstance(scorer, (str, os.PathLike)) else [])
    check_output(out, inputs, overwrite)
    trajectories, locations = load_located(data, format)
    if isinstance(scorer, (str, os.PathLike)):
        name, scorer = str(scorer), load_scorer(scorer, batch_size=batch_size, device=device)
    else:
        name = type(scorer).__name__
    if isinstance(scorer, PRM):
        scorer.cache = open_cache(scorer.backbone, cache_dir)
    rows, summary = rerank(trajectories, scorer, config, locations, progress)
    with atomic_open(Path(out)) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    return {**summary, "data": str(data), "scorer": name, "out": str(out)}
