import pytest

from prmkit.data.pools import group_pools, majority_correct, pool_stats
from prmkit.metrics import pass_at_k
from prmkit.records import Trajectory, first_error_labels


def test_pass_at_k_and_majority_by_hand():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(16, 0, 16) == 0.0
    assert pass_at_k(5, 4, 2) == 1.0  # n - c < k: every pair holds a right answer
    assert majority_correct(["3", "3", "5"], {"3"}) == 1.0
    assert majority_correct(["3", "3", "5", "5", "7"], {"3"}) == 0.5  # tie of two, random break
    assert majority_correct(["3", "5", "5"], {"3"}) == 0.0


def test_pool_stats_on_a_hand_built_pool():
    def traj(answer: str, first_error: int, n_steps: int = 4) -> Trajectory:
        return Trajectory(question="q", steps=["s"] * n_steps,
                          labels=first_error_labels(n_steps, first_error),
                          outcome=answer == "62", answer=answer)

    pools = [[traj("62", -1), traj("62", 1), traj("64", 2), traj("64", 0)],
             [traj("70", 0), traj("70", 1), traj("71", 3), traj("62", -1)]]
    s = pool_stats(pools, k=2)
    assert s["accuracy"] == pytest.approx(3 / 8)
    assert s["process_correct"] == pytest.approx(2 / 8)
    assert s["mean_distinct_answers"] == pytest.approx((2 + 3) / 2)
    # pool 1: wrong answers 64, 64 -> 1.0; pool 2: 70, 70, 71 -> 2/3
    assert s["top_wrong_share"] == pytest.approx((1 + 2 / 3) / 2)
    # wrong-step trajectories: 6, of which one (pool 1, "62" with first error 1) is right
    assert s["right_answer_given_wrong_step"] == pytest.approx(1 / 6)
    assert s["right_answer_wrong_process"] == pytest.approx(1 / 8)
    # positions 1/4, 2/4, 0, 0, 1/4, 3/4 -> sorted 0, 0, .25, .25, .5, .75 -> median .25
    assert s["median_first_error_position"] == pytest.approx(0.25)
    # groups of 2: pool 1: [62,62] -> 1, [64,64] -> 0; pool 2: [70,70] -> 0, [71,62] -> 1/2
    assert s["majority_at_k"] == pytest.approx(((1 + 0) / 2 + (0 + 0.5) / 2) / 2)
    assert s["majority_gain"] == pytest.approx(0.375 - 3 / 8)
    # pass@2: pool 1 (n=4, c=2): 1 - C(2,2)/C(4,2) = 5/6; pool 2 (c=1): 1 - C(3,2)/C(4,2) = 1/2
    assert s["pass_at_k"] == pytest.approx((5 / 6 + 1 / 2) / 2)


def test_group_pools_by_question():
    a, b = Trajectory("q1", ["x"]), Trajectory("q2", ["y"])
    assert group_pools([a, b, a]) == [[a, a], [b]]
