from itertools import combinations
from math import comb

import numpy as np
import pytest

from prmkit.bestofn import (accuracy_at_n, all_subsets, best_of_n_curve, bootstrap_diff,
                            curve_intervals, draw_subsets, exact_accuracy_at_n, group_mean, paired_bootstrap,
                            pass_at_k, subset_accuracy)
from prmkit.select import Pool

PRM = ("prm", "s")

# Pool A: scores [0.9, 0.8, 0.3, 0.1], correct [F, T, T, F]. The hand worked example.
POOL_A = Pool(answers=["3", "4", "4", "3"], correct=np.array([False, True, True, False]),
              lengths=[2, 7, 3, 7], scores={"s": [0.9, 0.8, 0.3, 0.1]})
# Pool B: majority is tricky: "5" is common and wrong, "7" is right.
POOL_B = Pool(answers=["5", "5", "7", "9"], correct=np.array([False, False, True, False]),
              lengths=[1, 2, 3, 4], scores={"s": [0.1, 0.2, 0.3, 0.4]})


# --- pass@k ----------------------------------------------------------------------------------


def test_pass_at_k_closed_form():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-12)
    # n=4, c=2, k=2: 1 - C(2,2)/C(4,2) = 1 - 1/6 = 5/6
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6, abs=1e-12)
    # k=1 is the fraction correct: 3/10
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3, abs=1e-12)
    # Large n stays exact where C(n, k) would be astronomically large: 1 - C(1999,1000)/C(2000,1000)
    # = 1 - (2000-1000)/2000 = 0.5
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5, abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(5, 0, 3) == 0.0  # nothing correct
    assert pass_at_k(5, 4, 2) == 1.0  # n - c = 1 < k = 2: every pair holds a correct one
    assert pass_at_k(3, 3, 3) == 1.0
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_pass_at_k_equals_enumeration_of_k_subsets():
    # n=6, correct = {0, 1}, k=3: subsets with no correct one are the C(4,3) = 4 drawn from
    # {2, 3, 4, 5}; 1 - 4/20 = 0.8.
    correct = [True, True, False, False, False, False]
    subsets = list(combinations(range(6), 3))
    hits = [any(correct[i] for i in s) for s in subsets]
    assert len(subsets) == 20 and sum(hits) == 16
    assert pass_at_k(6, 2, 3) == pytest.approx(16 / 20, abs=1e-12)


# --- accuracy at N over subsets ---------------------------------------------------------------


def test_all_subsets_lists_every_subset_in_order():
    assert all_subsets(4, 2).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert all_subsets(3, 3).tolist() == [[0, 1, 2]]


def test_exact_best_of_n_by_hand():
    # Pool A, N=2, the higher score is picked:
    #   {0,1} -> 0 (F)   {0,2} -> 0 (F)   {0,3} -> 0 (F)
    #   {1,2} -> 1 (T)   {1,3} -> 1 (T)   {2,3} -> 2 (T)        accuracy = 3/6 = 0.5
    per_subset = subset_accuracy(POOL_A, PRM, all_subsets(4, 2))
    assert per_subset.tolist() == [0, 0, 0, 1, 1, 1]
    assert exact_accuracy_at_n(POOL_A, PRM, 2) == 0.5
    # N=1 is the fraction correct, 2/4; N=4 always picks candidate 0 (F).
    assert exact_accuracy_at_n(POOL_A, PRM, 1) == 0.5
    assert exact_accuracy_at_n(POOL_A, PRM, 4) == 0.0
    # N=3: {0,1,2} -> 0 F, {0,1,3} -> 0 F, {0,2,3} -> 0 F, {1,2,3} -> 1 T: 1/4
    assert exact_accuracy_at_n(POOL_A, PRM, 3) == 0.25


def test_exact_accuracy_takes_the_expectation_over_ties():
    # Scores [0.9, 0.9, 0.3, 0.1], correct [F, T, T, F], N=2:
    #   {0,1} -> tie of F and T: 1/2   {0,2} -> 0 F   {0,3} -> 0 F
    #   {1,2} -> 1 T   {1,3} -> 1 T   {2,3} -> 2 T    accuracy = (0.5 + 3) / 6 = 7/12
    pool = Pool(["a", "b", "b", "a"], np.array([False, True, True, False]), [1, 1, 1, 1],
                scores={"s": [0.9, 0.9, 0.3, 0.1]})
    assert subset_accuracy(pool, PRM, all_subsets(4, 2)).tolist() == [0.5, 0, 0, 1, 1, 1]
    assert exact_accuracy_at_n(pool, PRM, 2) == pytest.approx(7 / 12, abs=1e-12)
    # Monte-Carlo over random subsets agrees (per-subset sd <= 0.5, over 20,000: 0.0035).
    subsets = draw_subsets(4, 2, 20_000, np.random.default_rng(0))
    assert subset_accuracy(pool, PRM, subsets).mean() == pytest.approx(7 / 12, abs=0.02)


def test_monte_carlo_accuracy_is_unbiased():
    # C(4,2) = 6 > 5 subsets, so accuracy_at_n samples. Each call averages 5 subsets (variance
    # <= 0.25/5 = 0.05); over 2,000 calls the mean has sd <= sqrt(0.05/2000) = 0.005.
    rng = np.random.default_rng(1)
    estimates = [accuracy_at_n(POOL_A, PRM, 2, 5, rng) for _ in range(2000)]
    assert len(set(estimates)) > 1  # really sampled
    assert np.mean(estimates) == pytest.approx(0.5, abs=0.02)
    # With room for all 6 subsets it is exact.
    assert accuracy_at_n(POOL_A, PRM, 2, 6, rng) == 0.5


def test_draw_subsets_is_uniform_over_subsets():
    subsets = draw_subsets(4, 2, 12_000, np.random.default_rng(2))
    assert subsets.shape == (12_000, 2)
    assert (subsets[:, 0] != subsets[:, 1]).all()
    codes = np.sort(subsets, axis=1) @ [4, 1]  # {i<j} -> 4i + j, one code per subset
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 6
    # Each of the 6 subsets ~1/6; sd sqrt(1/6 * 5/6 / 12000) = 0.0034
    assert np.all(np.abs(counts / 12_000 - 1 / 6) < 0.015)


def test_majority_and_longest_accuracy_by_hand():
    # Pool B, majority, N=3 (answers 5, 5, 7, 9; only "7" is correct):
    #   {0,1,2}: 5,5,7 -> "5" wins: 0      {0,1,3}: 5,5,9 -> "5": 0
    #   {0,2,3}: 5,7,9 -> 3-way tie: 1/3   {1,2,3}: 5,7,9 -> 1/3     accuracy = (2/3)/4 = 1/6
    assert exact_accuracy_at_n(POOL_B, ("majority", None), 3) == pytest.approx(1 / 6, abs=1e-12)
    # Random picks are correct c/M = 1/4 of the time at any N.
    assert exact_accuracy_at_n(POOL_B, ("random", None), 3) == pytest.approx(0.25, abs=1e-12)
    # Pool A, longest, N=2 (lengths 2, 7, 3, 7; correct F, T, T, F):
    #   {0,1} -> 1 T   {0,2} -> 2 T   {0,3} -> 3 F   {1,2} -> 1 T   {1,3} -> tie T/F: 1/2
    #   {2,3} -> 3 F                                          accuracy = 3.5/6 = 7/12
    assert exact_accuracy_at_n(POOL_A, ("longest", None), 2) == pytest.approx(7 / 12, abs=1e-12)


# --- the curve --------------------------------------------------------------------------------


METHODS = {"prm": PRM, "majority": ("majority", None), "random": ("random", None),
           "longest": ("longest", None)}


def test_curve_matches_the_hand_numbers():
    curve = best_of_n_curve([POOL_A, POOL_B], METHODS, ns=[1, 2, 3], num_subsets=200, seed=0)
    assert set(curve) == {"prm", "majority", "random", "longest", "oracle"}
    # N=1: every method is the fraction correct, 2/4 for A and 1/4 for B.
    for name in curve:
        np.testing.assert_allclose(curve[name][1], [0.5, 0.25])
    assert curve["prm"][2][0] == 0.5  # worked out above
    assert curve["prm"][3][0] == 0.25
    assert curve["longest"][2][0] == pytest.approx(7 / 12)
    assert curve["majority"][3][1] == pytest.approx(1 / 6)
    # Pool B, prm, N=2: the highest score is 0.4 (index 3, F) when present, else 0.3 (index 2, T)
    # when present: subsets {0,2} and {1,2} are correct -> 2/6 = 1/3.
    assert curve["prm"][2][1] == pytest.approx(1 / 3)
    # Oracle = pass@N: A (c=2): N=2: 1 - C(2,2)/C(4,2) = 5/6; B (c=1): N=3: 1 - C(3,3)/C(4,3) = 3/4
    assert curve["oracle"][2][0] == pytest.approx(5 / 6)
    assert curve["oracle"][3][1] == pytest.approx(3 / 4)


def _random_pools(num, m, seed):
    rng = np.random.default_rng(seed)
    pools = []
    for _ in range(num):
        answers = [str(a) for a in rng.integers(0, 3, m)]
        pools.append(Pool(answers, np.array([a == "0" for a in answers]), rng.integers(1, 5, m),
                          scores={"s": rng.random(m), "t": np.round(rng.random(m), 1)}))
    return pools


def test_curve_is_paired_reproducible_and_independent_of_other_methods():
    pools = _random_pools(5, 10, seed=0)  # C(10,3) = 120 > 50: random subsets
    both = {"a": PRM, "b": PRM, "w": ("weighted_majority", "t")}
    curve = best_of_n_curve(pools, both, ns=[3], num_subsets=50, seed=7)
    # Same subsets for every method: two names for the same method give identical numbers.
    np.testing.assert_array_equal(curve["a"][3], curve["b"][3])
    # Same seed -> same numbers; the numbers of "a" do not depend on the other methods.
    alone = best_of_n_curve(pools, {"a": PRM}, ns=[3], num_subsets=50, seed=7)
    np.testing.assert_array_equal(alone["a"][3], curve["a"][3])
    # ... nor on which other problems are evaluated.
    first = best_of_n_curve(pools[:1], {"a": PRM}, ns=[3], num_subsets=50, seed=7)
    assert first["a"][3][0] == curve["a"][3][0]
    other = best_of_n_curve(pools, {"a": PRM}, ns=[3], num_subsets=50, seed=8)
    assert not np.array_equal(other["a"][3], curve["a"][3])


def test_curve_monte_carlo_is_unbiased():
    # 1,000 copies of pool A, N=2 with 5 random subsets each (C(4,2) = 6 > 5). The mean over
    # problems has sd <= sqrt(0.25/5/1000) = 0.007 around the exact 0.5.
    curve = best_of_n_curve([POOL_A] * 1000, {"prm": PRM}, ns=[2], num_subsets=5, seed=0)
    assert len(set(curve["prm"][2].tolist())) > 1
    assert curve["prm"][2].mean() == pytest.approx(0.5, abs=0.03)


def test_curve_mixes_pool_sizes_and_validates():
    pools = [POOL_A, _random_pools(1, 5, seed=1)[0]]
    curve = best_of_n_curve(pools, {"prm": PRM}, ns=[2, 4], num_subsets=3, seed=0)
    assert curve["prm"][4].shape == (2,)
    assert curve["prm"][4][0] == 0.0  # C(4,4) = 1 <= 3: exact, candidate 0 (F) always wins
    with pytest.raises(ValueError, match="N=5 is out of range for problem 0"):
        best_of_n_curve(pools, {"prm": PRM}, ns=[5])
    with pytest.raises(ValueError, match="reserved"):
        best_of_n_curve(pools, {"oracle": PRM}, ns=[1])
    with pytest.raises(ValueError, match="unknown score 'x'"):
        best_of_n_curve(pools, {"prm": ("prm", "x")}, ns=[1])


# --- bootstrap and groups ---------------------------------------------------------------------


def test_bootstrap_of_identical_methods_is_exactly_zero():
    a = [0.0, 0.25, 1.0, 0.5, 0.75]
    assert bootstrap_diff(a, a, num_resamples=2000, seed=0) == {"mean": 0.0, "low": 0.0,
                                                               "high": 0.0}


def test_bootstrap_of_a_constant_shift_is_exactly_that_shift():
    b = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.5])
    a = b + 1  # exact in binary floating point
    assert bootstrap_diff(a, b, num_resamples=2000, seed=0) == {"mean": 1.0, "low": 1.0,
                                                               "high": 1.0}
    # paired_bootstrap resamples the same problems for both: every bound shifts by exactly 1.
    out = paired_bootstrap({"a": a, "b": b}, num_resamples=2000, seed=0)
    assert out["a"]["mean"] == out["b"]["mean"] + 1 == 1.5  # mean(b) = 3/6 = 0.5
    assert out["a"]["low"] == out["b"]["low"] + 1
    assert out["a"]["high"] == out["b"]["high"] + 1


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    x = [0, 1, 1, 0, 1, 1, 1, 0]  # mean 5/8 = 0.625
    out = paired_bootstrap({"m": x}, num_resamples=5000, seed=3)["m"]
    assert out["mean"] == 0.625
    # Resampled means are k/8 with k ~ Binomial(8, 0.625): P(k <= 1) = 0.006, P(k <= 2) = 0.037,
    # so the 2.5% point is 2/8 (give or take an eighth); P(k = 8) = 0.023, so the 97.5% point is
    # 7/8 or 8/8.
    assert 0.125 <= out["low"] <= 0.375 and 0.875 <= out["high"] <= 1.0
    assert out["low"] < out["mean"] < out["high"]
    # Same seed, same output; with continuous values another seed moves the bounds.
    y = {"m": [0.13, 0.92, 0.41, 0.66, 0.05, 0.78, 0.37]}
    same = paired_bootstrap(y, num_resamples=5000, seed=3)
    assert paired_bootstrap(y, num_resamples=5000, seed=3) == same
    assert paired_bootstrap(y, num_resamples=5000, seed=4) != same


def test_bootstrap_validates_inputs():
    with pytest.raises(ValueError, match="same P"):
        paired_bootstrap({"a": [1.0, 0.0], "b": [1.0]})
    with pytest.raises(ValueError, match="ci must be in"):
        paired_bootstrap({"a": [1.0]}, ci=95)
    with pytest.raises(ValueError, match="same problems"):
        bootstrap_diff([1.0, 0.0], [1.0])


def test_group_mean_by_hand():
    # Group 2: (1 + 0.5) / 2 = 0.75; group 3: (0 + 1) / 2 = 0.5
    assert group_mean([1.0, 0.0, 0.5, 1.0], [2, 3, 2, 3]) == {2: 0.75, 3: 0.5}
    assert list(group_mean([1, 0, 1], ["hard", "easy", "easy"]).items()) == [("easy", 0.5),
                                                                            ("hard", 1.0)]
    with pytest.raises(ValueError, match="one group per problem"):
        group_mean([1.0, 0.0], [1])


def test_curve_speed_is_reasonable_at_demo_scale():
    # Guards against losing the vectorisation: 60 problems x 64 candidates x 5 N x 4 methods
    # x 200 subsets runs in well under a second when vectorised (minutes per-subset in Python).
    import time
    pools = _random_pools(60, 64, seed=2)
    start = time.perf_counter()
    curve = best_of_n_curve(pools, {"prm": PRM, "maj": ("majority", None),
                                    "w": ("weighted_majority", "t"), "short": ("shortest", None)},
                            ns=[1, 2, 4, 8, 16], num_subsets=200, seed=0)
    assert time.perf_counter() - start < 3.0
    assert comb(64, 2) > 200 and curve["prm"][16].shape == (60,)


def test_curve_intervals_is_paired_bootstrap_at_each_n():
    curve = {"a": {1: np.array([1.0, 0.0, 1.0]), 2: np.array([1.0, 1.0, 1.0])},
             "b": {1: np.array([0.0, 0.0, 1.0]), 2: np.array([0.5, 0.0, 1.0])}}
    table = curve_intervals(curve, [1, 2], num_resamples=50, seed=4)
    assert list(table) == ["a", "b"] and list(table["a"]) == ["1", "2"]
    for n in (1, 2):
        at = paired_bootstrap({k: v[n] for k, v in curve.items()}, 50, seed=4)
        assert table["a"][str(n)] == at["a"] and table["b"][str(n)] == at["b"]
    assert table["a"]["2"] == {"mean": 1.0, "low": 1.0, "high": 1.0}  # every problem right
