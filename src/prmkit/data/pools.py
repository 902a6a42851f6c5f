"""Candidate pools: the solutions sampled for one question, and what their shape says.

A pool is every trajectory of a data set with the same question. Its statistics say how hard
selection is: how often a sample is right, how clustered the wrong answers are (majority vote's
enemy), and how often a wrong process still ends at the right answer (where a PRM and an ORM
must disagree).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

from prmkit.metrics import pass_at_k
from prmkit.records import Trajectory, first_error, normalize_question

TrajectoryPool = list[Trajectory]


def group_pools(trajectories: list[Trajectory]) -> list[TrajectoryPool]:
    """Trajectories grouped by question (after ``normalize_question``, as for splits and
    overlap checks), in order of first appearance."""
    groups: dict[str, TrajectoryPool] = defaultdict(list)
    for t in trajectories:
        groups[normalize_question(t.question)].append(t)
    return list(groups.values())


def majority_correct(answers: list[str | None], right: set[str | None]) -> float:
    """1 if the most common answer is right, 1/t for a t-way tie holding it (a random tie-break,
    in expectation), else 0.

    >>> majority_correct(["3", "3", "5", "5", "7"], {"3"})
    0.5
    """
    counts = Counter(answers)
    top = max(counts.values())
    winners = [a for a, c in counts.items() if c == top]
    return sum(a in right for a in winners) / len(winners)


def pool_stats(pools: list[TrajectoryPool], k: int = 16) -> dict[str, float]:
    """Shape of candidate pools with known outcomes (trajectories without one are skipped).

    Keys: ``accuracy`` (per sample), ``process_correct`` (share with no step labelled wrong),
    ``mean_distinct_answers`` (per pool), ``top_wrong_share`` (share of a pool's wrong answers
    taken by its most common wrong answer, over pools with >= 2 wrong answers),
    ``right_answer_given_wrong_step`` and ``right_answer_wrong_process`` (right answer with a step
    labelled wrong, among trajectories with such a step and among all),
    ``median_first_error_position`` (first wrong step index / number of steps),
    ``majority_at_k`` (over disjoint groups of k in each pool, ties split), ``majority_gain``
    (majority_at_k - accuracy), ``pass_at_k`` (unbiased) and ``k`` (capped at the smallest pool).
    """
    pools = [[t for t in pool if t.outcome is not None] for pool in pools]
    pools = [pool for pool in pools if pool]
    if not pools:
        raise ValueError("pool_stats needs trajectories with a known outcome")
    k = min(k, min(len(pool) for pool in pools))
    n_total = n_right = n_process = n_wrong_step = n_rawp = 0
    distinct, top_share, majority, passes, positions = [], [], [], [], []
    for pool in pools:
        answers = [t.answer for t in pool]
        right_answers = {t.answer for t in pool if t.outcome}
        right = sum(t.outcome for t in pool)
        n_total += len(pool)
        n_right += right
        distinct.append(len(set(answers)))
        wrong = Counter(t.answer for t in pool if not t.outcome)
        if sum(wrong.values()) >= 2:
            top_share.append(max(wrong.values()) / sum(wrong.values()))
        for t in pool:
            fe = first_error(t)
            if fe is None or fe < 0:  # no step labelled wrong
                n_process += 1
            else:
                n_wrong_step += 1
                n_rawp += t.outcome
                positions.append(fe / t.num_steps)
        groups = [answers[s:s + k] for s in range(0, len(answers) - k + 1, k)]
        majority.append(sum(majority_correct(g, right_answers) for g in groups) / len(groups))
        passes.append(pass_at_k(len(pool), right, k))
    accuracy = n_right / n_total
    majority_at_k = sum(majority) / len(majority)
    nan = float("nan")
    return {
        "accuracy": accuracy,
        "process_correct": n_process / n_total,
        "mean_distinct_answers": sum(distinct) / len(distinct),
        "top_wrong_share": sum(top_share) / len(top_share) if top_share else nan,
        "right_answer_given_wrong_step": n_rawp / n_wrong_step if n_wrong_step else nan,
        "right_answer_wrong_process": n_rawp / n_total,
        "median_first_error_position": statistics.median(positions) if positions else nan,
        "majority_at_k": majority_at_k,
        "majority_gain": majority_at_k - accuracy,
        "pass_at_k": sum(passes) / len(passes),
        "k": float(k),
    }
