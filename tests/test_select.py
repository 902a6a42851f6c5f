import numpy as np
import pytest

from prmkit.select import (SCORED, SELECTORS, Pool, best_of_n, check_method, encode_answers,
                           longest, majority_vote, random_choice, sample, select,
                           selection_probs, shortest, weighted_majority)

DRAWS = 10_000
# A binomial proportion over 10,000 draws has sd <= sqrt(0.25 / 10,000) = 0.005; 0.02 is 4 sd.
TOL = 0.02


def _freq(picks, n):
    return np.bincount(np.asarray(picks), minlength=n) / len(picks)


def test_encode_answers_numbers_by_first_appearance_and_none_is_minus_one():
    ids, k = encode_answers(["7", None, "5", "7"])
    assert ids.tolist() == [0, -1, 1, 0] and k == 2


def test_best_of_n_picks_the_unique_highest_score():
    rng = np.random.default_rng(0)
    assert {best_of_n([0.2, 0.9, 0.5], rng) for _ in range(50)} == {1}


def test_best_of_n_two_way_tie_is_unbiased():
    # Scores [0.9, 0.3, 0.9]: 0 and 2 tie, so each is picked with probability 1/2, index 1 never.
    rng = np.random.default_rng(1)
    freq = _freq([best_of_n([0.9, 0.3, 0.9], rng) for _ in range(DRAWS)], 3)
    assert freq[1] == 0.0
    assert abs(freq[0] - 0.5) < TOL and abs(freq[2] - 0.5) < TOL


def test_three_way_tie_is_a_third_each():
    # Lengths [5, 5, 2, 5]: the longest is a three-way tie, 1/3 each; index 2 never.
    pool = Pool(answers=["1", "2", "3", "4"], correct=[True, False, False, False],
                lengths=[5, 5, 2, 5])
    probs = selection_probs(pool, ("longest", None))
    np.testing.assert_allclose(probs, [[1 / 3, 1 / 3, 0.0, 1 / 3]])
    rng = np.random.default_rng(2)
    freq = _freq(sample(np.repeat(probs, DRAWS, axis=0), rng), 4)
    assert freq[2] == 0.0
    for i in (0, 1, 3):
        assert abs(freq[i] - 1 / 3) < TOL
    # The scalar rule gives the same third-each split.
    freq = _freq([longest([5, 5, 2, 5], rng) for _ in range(3000)], 4)
    assert freq[2] == 0.0 and all(abs(freq[i] - 1 / 3) < 0.04 for i in (0, 1, 3))


def test_shortest_and_longest_without_ties():
    rng = np.random.default_rng(0)
    assert shortest([4, 1, 9], rng) == 1  # 1 is the smallest length
    assert longest([4, 1, 9], rng) == 2  # 9 is the largest


def test_majority_is_wrong_and_weighted_majority_flips_it():
    # "5" is held by 3 candidates, "7" (correct) by 2, candidate 5 gave no answer.
    answers = ["5", "5", "5", "7", "7", None]
    scores = [0.1, 0.2, 0.1, 0.9, 0.8, 1.0]
    pool = Pool(answers, correct=[False, False, False, True, True, False],
                lengths=[3, 3, 3, 3, 3, 3], scores={"prm": scores})
    rng = np.random.default_rng(0)
    # Majority: "5" (3 votes) beats "7" (2 votes); its three holders are equally likely.
    np.testing.assert_allclose(selection_probs(pool, ("majority", None)),
                               [[1 / 3, 1 / 3, 1 / 3, 0, 0, 0]])
    assert majority_vote(answers, rng) in (0, 1, 2)
    # Weighted: "5" sums 0.1 + 0.2 + 0.1 = 0.4, "7" sums 0.9 + 0.8 = 1.7, so "7" wins. The
    # no-answer candidate's 1.0 counts for nothing.
    np.testing.assert_allclose(selection_probs(pool, ("weighted_majority", "prm")),
                               [[0, 0, 0, 0.5, 0.5, 0]])
    assert weighted_majority(answers, scores, rng) in (3, 4)
    # Plain best-of-N takes the highest score, 1.0, even though that candidate has no answer.
    assert select(pool, ("prm", "prm"), rng) == 5


def test_majority_tie_between_answers_is_uniform_over_their_holders():
    # "a" and "b" both have 2 votes: 1/2 per answer, then 1/2 per holder = 1/4 each.
    probs = SELECTORS["majority"](Pool(["a", "b", "a", "b"], np.zeros(4, bool), np.ones(4)).view())
    np.testing.assert_allclose(probs, [[0.25, 0.25, 0.25, 0.25]])
    rng = np.random.default_rng(3)
    freq = _freq([majority_vote(["a", "b", "a", "b"], rng) for _ in range(4000)], 4)
    assert all(abs(f - 0.25) < 0.03 for f in freq)  # sd sqrt(.25 * .75 / 4000) = 0.007


def test_no_answer_loses_votes_unless_everyone_has_none():
    rng = np.random.default_rng(0)
    # One "x" beats two None.
    assert {majority_vote([None, "x", None], rng) for _ in range(50)} == {1}
    # All None: a uniform pick among the 3.
    pool = Pool([None, None, None], np.zeros(3, bool), np.ones(3), scores={"s": [0.5, 0.1, 0.2]})
    np.testing.assert_allclose(selection_probs(pool, ("majority", None)), [[1 / 3] * 3])
    np.testing.assert_allclose(selection_probs(pool, ("weighted_majority", "s")), [[1 / 3] * 3])


def test_weighted_tie_splits_by_answer_then_by_holder():
    # "a" sums 0.5; "b" sums 0.25 + 0.25 = 0.5: a tie. 1/2 to "a" (one holder), 1/2 to "b" split
    # over its two holders = 1/4 each. (Uniform over all three would wrongly give "a" only 1/3.)
    pool = Pool(["a", "b", "b"], np.array([True, False, False]), np.ones(3),
                scores={"s": [0.5, 0.25, 0.25]})
    np.testing.assert_allclose(selection_probs(pool, ("weighted_majority", "s")),
                               [[0.5, 0.25, 0.25]])
    rng = np.random.default_rng(4)
    freq = _freq([weighted_majority(["a", "b", "b"], [0.5, 0.25, 0.25], rng)
                  for _ in range(3000)], 3)
    # sd sqrt(0.25 / 3000) = 0.009 at most
    assert abs(freq[0] - 0.5) < 0.04 and abs(freq[1] - 0.25) < 0.04


def test_weighted_majority_zero_scores_still_needs_a_present_answer():
    rng = np.random.default_rng(0)
    # "a" sums 0.0, but it is the only answer present: the None candidate cannot win.
    assert {weighted_majority(["a", None], [0.0, 0.9], rng) for _ in range(50)} == {0}
    # All scores 0: "a" (0.0) and "b" (0.0) tie: 1/2 to "b", 1/2 split over the two "a" = 1/4.
    pool = Pool(["a", "b", "a"], np.zeros(3, bool), np.ones(3), scores={"s": [0.0, 0.0, 0.0]})
    np.testing.assert_allclose(selection_probs(pool, ("weighted_majority", "s")),
                               [[0.25, 0.5, 0.25]])


def test_weighted_majority_refuses_negative_scores():
    with pytest.raises(ValueError, match="non-negative"):
        weighted_majority(["a", "b"], [-0.1, -2.3], np.random.default_rng(0))


def test_random_choice_range_and_uniformity():
    rng = np.random.default_rng(5)
    assert random_choice(1, rng) == 0
    freq = _freq([random_choice(4, rng) for _ in range(DRAWS)], 4)
    assert all(abs(f - 0.25) < TOL for f in freq)
    with pytest.raises(ValueError, match="at least one"):
        random_choice(0, rng)
    pool = Pool(["a", "b", "c", "d"], np.zeros(4, bool), np.ones(4))
    np.testing.assert_allclose(selection_probs(pool, ("random", None)), [[0.25] * 4])


def test_sample_never_draws_a_zero_probability_candidate():
    probs = np.tile([0.0, 1.0, 0.0], (DRAWS, 1))
    assert set(sample(probs, np.random.default_rng(0)).tolist()) == {1}


def test_view_gathers_subsets_row_by_row():
    pool = Pool(["7", None, "5", "7"], np.array([True, False, False, True]), [1, 2, 3, 4],
                scores={"orm": [0.1, 0.2, 0.3, 0.4]})
    view = pool.view(np.array([[0, 2], [3, 1]]), "orm")
    assert view.answer_ids.tolist() == [[0, 1], [0, -1]]  # "7" -> 0, "5" -> 1, None -> -1
    assert view.lengths.tolist() == [[1, 3], [4, 2]]
    assert view.scores.tolist() == [[0.1, 0.3], [0.4, 0.2]]
    assert view.num_answers == 2
    # prm over these rows: row 0 picks column 1 (0.3 > 0.1), row 1 column 0 (0.4 > 0.2).
    np.testing.assert_allclose(SELECTORS["prm"](view), [[0, 1], [1, 0]])


def test_check_method_rejects_inconsistent_methods():
    assert SCORED == {"prm", "weighted_majority"}
    with pytest.raises(ValueError, match="unknown selector 'best'"):
        check_method(("best", "s"))
    with pytest.raises(ValueError, match="needs a score name"):
        check_method(("prm", None))
    with pytest.raises(ValueError, match="uses no score"):
        check_method(("majority", "s"))
    with pytest.raises(ValueError, match="unknown score 'orm'"):
        check_method(("prm", "orm"), ["prm_min"])


def test_pool_validates_its_arrays():
    with pytest.raises(ValueError, match="correct must be 2 booleans"):
        Pool(["a", "b"], [1, 0], [1, 1])
    with pytest.raises(ValueError, match="correct must be 2 booleans"):
        Pool(["a", "b"], [True], [1, 1])
    with pytest.raises(ValueError, match="lengths must be 2 numbers"):
        Pool(["a", "b"], [True, False], [1, 1, 1])
    with pytest.raises(ValueError, match=r"scores\['s'\] contains NaN at index 1"):
        Pool(["a", "b"], [True, False], [1, 1], scores={"s": [0.5, float("nan")]})
    with pytest.raises(ValueError, match=r"scores\['s'\] must be 2 values"):
        Pool(["a", "b"], [True, False], [1, 1], scores={"s": [0.5]})
    with pytest.raises(ValueError, match="at least one candidate"):
        Pool([], [], [])
