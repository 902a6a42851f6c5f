"""Tests for the synthetic world: determinism, reference programs, labels, pool shape and
continuation."""

import pickle
import random

import pytest

from prmkit.synthetic import (
    REAL_RANGES,
    ProblemPool,
    Problem,
    RefStep,
    WorldConfig,
    format_comparison,
    generate_problem,
    generate_problems,
    label_solution,
    parse_step,
    parse_steps,
    pool_stats,
    reference_steps,
    reference_trajectory,
)
from prmkit.generate.solver import NoisySolver, make_world
from prmkit.records import first_error_labels

# A solver that (almost surely) never errs: no misconceptions, no checks, error log-odds pushed
# far down by the strength.
QUIET = NoisySolver(WorldConfig(step_error_rate=1e-6, misconceptions=(0, 0), check_rate=0.0),
                    strength=20.0)


def pens_problem() -> Problem:
    """(3 * 12 - 5) * 2 = 62, built by hand so the label tests do not depend on the generator."""
    # quantities: 0:3 boxes, 1:12 per box, 2:36 pens, 3:5 given away, 4:31 left, 5:2 dollars, 6:62
    return Problem(
        id="pens",
        question="Tom buys 3 boxes of pens. Each box holds 12 pens. Tom gives 5 pens to Mia. "
                 "Tom sells all the pens for 2 dollars each. How many dollars does Tom earn?",
        values=[3, 12, 36, 5, 31, 2, 62],
        steps=[RefStep("Tom buys 3 boxes of 12 pens, so he has", "*", (0, 1), 2, "pens", 0),
               RefStep("After giving 5 to Mia, Tom has", "-", (2, 3), 4, "pens", 2),
               RefStep("Selling them at 2 dollars each, Tom earns", "*", (4, 5), 6, "dollars", 4)],
        misconceptions=[], hardness=0.0)


S0 = "Tom buys 3 boxes of 12 pens, so he has 3 * 12 = 36 pens."
S1 = "After giving 5 to Mia, Tom has 36 - 5 = 31 pens."
S2 = "Selling them at 2 dollars each, Tom earns 31 * 2 = 62 dollars."
ANSWER = "The answer is 62."


def test_reference_of_hand_problem_renders_and_is_all_correct():
    p = pens_problem()
    assert reference_steps(p) == [S0, S1, S2, ANSWER]
    t = reference_trajectory(p)
    assert t.labels == [1, 1, 1, 1]
    assert (t.outcome, t.answer, p.answer, p.difficulty) == (True, "62", 62, 3)
    assert t.meta["first_error"] == -1 and t.meta["process_correct"] is True


def test_same_seed_same_world_and_other_seed_differs():
    a = make_world(20, 8, seed=3)
    b = make_world(20, 8, seed=3)
    c = make_world(20, 8, seed=4)
    def dump(pools: list[ProblemPool]) -> list:
        return [(p.problem, [t.to_dict() for t in p.trajectories]) for p in pools]

    assert dump(a) == dump(b)
    # strength 0 (int) and 0.0 (the default) are the same solver, so the same pools
    assert dump(make_world(20, 8, seed=3, strength=0)) == dump(a)
    assert [p.problem.question for p in a] != [p.problem.question for p in c]
    # Problem i depends only on (seed, i): a smaller world is a prefix of a larger one.
    assert [p.problem for p in make_world(5, 8, seed=3)] == [p.problem for p in a[:5]]


def test_reference_programs_compute_their_answers():
    problems = generate_problems(300, seed=11)
    step_counts = set()
    for p in problems:
        step_counts.add(p.difficulty)
        refs = reference_steps(p)
        assert refs[-1] == f"The answer is {p.answer}."
        for j, text in enumerate(refs[:-1]):
            r = parse_step(p, text)
            ref = p.steps[j]
            # Recompute each step from the "a op b = c" it states.
            assert r.ref == j and r.op == ref.op
            assert (r.a, r.b) == (p.values[ref.args[0]], p.values[ref.args[1]])
            recomputed = {"+": r.a + r.b, "-": r.a - r.b, "*": r.a * r.b}.get(r.op)
            if r.op == "/":
                assert r.a % r.b == 0
                recomputed = r.a // r.b
            assert recomputed == r.result == p.values[ref.target]
            assert 0 < r.result <= 5000
        # Every number a step takes from the question is written in the question (a fraction's
        # denominator as its word: "half" is the 2 of "x / 2").
        targets = {s.target for s in p.steps}
        words = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}
        for s in p.steps:
            for q in s.args:
                if q not in targets:
                    v = p.values[q]
                    assert str(v) in p.question or (s.op == "/" and words[v] in p.question)
        assert reference_trajectory(p).labels == [1] * len(refs)
    assert step_counts == set(range(2, 9))


def test_first_error_labels_policy():
    # an error at step 1 of 4: 1 before, 0 at, None (first_error) or 0 (value) after
    assert first_error_labels(4, 1) == [1, 0, None, None]
    assert first_error_labels(4, 1, "value") == [1, 0, 0, 0]
    assert first_error_labels(3, -1, "value") == [1, 1, 1]
    assert first_error_labels(2, 0) == [0, None]
    with pytest.raises(ValueError, match="label_policy must be one of"):
        first_error_labels(2, 0, "soft")


def test_arithmetic_slip_that_propagates():
    p = pens_problem()
    # 36 - 5 written as 32; the next step uses 32: (32 * 2 = 64) is right given 32.
    steps = [S0, "After giving 5 to Mia, Tom has 36 - 5 = 32 pens.",
             "Selling them at 2 dollars each, Tom earns 32 * 2 = 64 dollars.", "The answer is 64."]
    t = label_solution(p, steps)
    assert t.labels == [1, 0, None, None]
    assert (t.outcome, t.answer) == (False, "64")
    assert t.meta["first_error"] == 1 and t.meta["error_kinds"] == ["arithmetic"]
    assert t.meta["error_steps"] == [1] and t.meta["process_correct"] is False
    assert label_solution(p, steps, "value").labels == [1, 0, 0, 0]
    assert t.label_kind == "correctness"


def test_wrong_process_right_answer_cases():
    p = pens_problem()
    # A slip the next step ignores (it uses 31, the value of "36 - 5"): right answer, wrong step.
    recovered = label_solution(p, [S0, "After giving 5 to Mia, Tom has 36 - 5 = 32 pens.", S2,
                                   ANSWER])
    assert recovered.labels == [1, 0, None, None] and recovered.outcome is True
    assert recovered.meta["error_kinds"] == ["arithmetic"]
    # A false check that nothing uses: 36 / 12 is 3, not 4.
    false_check = label_solution(p, [S0, "To check, 36 / 12 = 4.", S1, S2, ANSWER])
    assert false_check.labels == [1, 0, None, None, None] and false_check.outcome is True
    assert false_check.meta["error_kinds"] == ["false_claim"]
    # A true check is a correct step.
    good_check = label_solution(p, [S0, "To check, 36 / 12 = 3.", S1, S2, ANSWER])
    assert good_check.labels == [1, 1, 1, 1, 1] and good_check.meta["process_correct"] is True


def test_wrong_operation_operand_and_skipped_step():
    p = pens_problem()
    wrong_op = label_solution(p, ["Tom buys 3 boxes of 12 pens, so he has 3 + 12 = 15 pens.",
                                  "After giving 5 to Mia, Tom has 15 - 5 = 10 pens.",
                                  "Selling them at 2 dollars each, Tom earns 10 * 2 = 20 dollars.",
                                  "The answer is 20."])
    assert wrong_op.labels == [0, None, None, None]
    assert wrong_op.meta["error_kinds"] == ["wrong_operation"]
    # 36 - 3 uses the number of boxes instead of the 5 pens given away.
    wrong_operand = label_solution(p, [S0, "After giving 5 to Mia, Tom has 36 - 3 = 33 pens.",
                                       "Selling them at 2 dollars each, Tom earns 33 * 2 = 66 "
                                       "dollars.", "The answer is 66."])
    assert wrong_operand.labels == [1, 0, None, None]
    assert wrong_operand.meta["error_kinds"] == ["wrong_operand"]
    # Skipping "gives 5 away": the sale uses 36, so the step after the gap is the wrong one.
    skipped = label_solution(p, [S0, "Selling them at 2 dollars each, Tom earns 36 * 2 = 72 "
                                     "dollars.", "The answer is 72."])
    assert skipped.labels == [1, 0, None]
    assert skipped.meta["error_kinds"] == ["skipped_step"] and skipped.answer == "72"


def test_parse_refuses_foreign_and_disordered_steps():
    p = pens_problem()
    with pytest.raises(ValueError, match="not a step of problem pens"):
        parse_step(p, "Mia buys 3 boxes of 12 pens, so she has 3 * 12 = 36 pens.")
    with pytest.raises(ValueError, match="no 'a op b = c' equation"):
        parse_step(p, "Tom is happy.")
    with pytest.raises(ValueError, match="out of order"):
        parse_steps(p, [S1, S0])
    with pytest.raises(ValueError, match="ends with the step 'The answer is N.'"):
        label_solution(p, [S0, S1])


def test_continue_from_keeps_prefix_and_computes_from_its_values():
    p = pens_problem()
    prefix = ["Tom buys 3 boxes of 12 pens, so he has 3 * 12 = 40 pens."]  # 36 misstated as 40
    stubborn = NoisySolver(WorldConfig(step_error_rate=1e-6, misconceptions=(0, 0),
                                       check_rate=0.0, recover_rate=0.0), strength=20.0)
    out = stubborn.continue_from(p, prefix, 5, random.Random(0))
    for t in out:
        # recover_rate 0: the stated 40 is used; (40 - 5) * 2 = 70
        assert t.steps == prefix + ["After giving 5 to Mia, Tom has 40 - 5 = 35 pens.",
                                    "Selling them at 2 dollars each, Tom earns 35 * 2 = 70 "
                                    "dollars.", "The answer is 70."]
        assert t.labels == [0, None, None, None] and t.outcome is False
    # With the default recover_rate (0.8) most continuations use 36, the value of "3 * 12".
    firsts = [parse_step(p, t.steps[1]).a for t in QUIET.continue_from(p, prefix, 200,
                                                                       random.Random(1))]
    assert set(firsts) == {36, 40}
    assert 0.7 < firsts.count(36) / 200 < 0.9
    # A finished prefix comes back as it is.
    done = QUIET.continue_from(p, [S0, S1, S2, ANSWER], 2, random.Random(0))
    assert [t.steps for t in done] == [[S0, S1, S2, ANSWER]] * 2


def test_continue_from_a_generated_reference_prefix_finishes_the_reference():
    problem = next(p for p in generate_problems(50, seed=5) if p.difficulty >= 5)
    ref = reference_steps(problem)
    out = QUIET.continue_from(problem, ref[:2], 3, random.Random(0))
    assert [t.steps for t in out] == [ref] * 3
    assert all(t.labels == [1] * len(ref) and t.outcome for t in out)


def test_next_steps_proposes_single_steps():
    p = pens_problem()
    assert QUIET.next_steps(p, [S0], 3, random.Random(0)) == [S1, S1, S1]
    assert QUIET.next_steps(p, [S0, S1, S2], 2, random.Random(0)) == [ANSWER, ANSWER]
    assert QUIET.next_steps(p, [S0, S1, S2, ANSWER], 2, random.Random(0)) == []
    noisy = NoisySolver(WorldConfig(step_error_rate=0.5, misconceptions=(0, 0)))
    proposals = noisy.next_steps(p, [S0], 40, random.Random(0))
    assert len(proposals) == 40 and S1 in proposals and len(set(proposals)) > 3


def test_pool_labels_answers_and_strings_are_consistent():
    for pool in make_world(40, 16, seed=2):
        p = pool.problem
        for t in pool.trajectories:
            fe = t.meta["first_error"]
            assert t.labels == first_error_labels(t.num_steps, fe)
            assert t.outcome == (t.answer == str(p.answer))
            assert t.meta["process_correct"] == (fe == -1)
            assert t.steps[-1] == f"The answer is {t.answer}."
            assert label_solution(p, t.steps).to_dict() == t.to_dict()


def test_default_world_lands_in_real_ranges():
    stats = pool_stats(make_world(300, 16, seed=0), k=16)
    assert 0.2 <= stats["accuracy"] <= 0.6
    assert 0.35 <= stats["top_wrong_share"] <= 0.65
    assert 0.03 <= stats["majority_gain"] <= 0.15
    assert 0.5 <= stats["pass_at_k"] <= 0.9
    assert 0.15 <= stats["right_answer_given_wrong_step"] <= 0.40
    assert stats["median_first_error_position"] <= 0.5
    assert stats["process_correct"] < stats["accuracy"]
    assert stats["k"] == 16.0


def test_solver_strength_orders_accuracy():
    weak = pool_stats(make_world(100, 16, seed=0, strength=-1.0))["accuracy"]
    strong = pool_stats(make_world(100, 16, seed=0, strength=1.0))["accuracy"]
    assert weak + 0.15 < strong


def test_format_comparison_sets_real_ranges_beside():
    lines = format_comparison({"accuracy": 0.4123, "right_answer_given_wrong_step": 0.25,
                               "mean_distinct_answers": 5.5})
    assert lines[0] == "accuracy                          0.412   real 0.20-0.60"
    assert lines[1].endswith("0.250   real ~0.29")
    assert lines[2] == "mean_distinct_answers             5.500"
    assert REAL_RANGES["pass_at_k"] == (0.5, 0.87)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="min_steps <= max_steps"):
        WorldConfig(min_steps=5, max_steps=3)
    with pytest.raises(ValueError, match="recover_rate must be in"):
        WorldConfig(recover_rate=1.5)
    with pytest.raises(ValueError, match="unknown error kind 'typo'"):
        WorldConfig(error_weights={"typo": 1.0})
    with pytest.raises(ValueError, match="label_policy must be one of"):
        WorldConfig(label_policy="soft")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        WorldConfig(step_error_rate=0.0)


def test_value_policy_world_and_step_range_config():
    cfg = WorldConfig(min_steps=3, max_steps=3, label_policy="value")
    pools = make_world(10, 8, seed=1, config=cfg)
    assert {p.problem.difficulty for p in pools} == {3}
    for t in (t for p in pools for t in p.trajectories):
        fe = t.meta["first_error"]
        assert None not in t.labels
        assert t.labels == first_error_labels(t.num_steps, fe, "value")


def test_problems_and_solver_pickle():
    problem = generate_problem(random.Random(1))
    solver = NoisySolver(strength=0.5)
    assert pickle.loads(pickle.dumps(problem)) == problem
    assert pickle.loads(pickle.dumps(solver)) == solver
    # The module docstring's example.
    assert reference_steps(problem)[0] == ("Hana buys 8 buckets of 9 seashells, so she has "
                                           "8 * 9 = 72 seashells.")
    assert problem.answer == 150


def test_error_details_and_shared_misconceptions():
    from prmkit.synthetic import Misconception

    p = pens_problem()
    # 36 - 5 = 32 is off by one: a small slip; 36 - 5 = 13 swaps digits: a digit error
    small = label_solution(p, [S0, "After giving 5 to Mia, Tom has 36 - 5 = 32 pens.", S2, ANSWER])
    digit = label_solution(p, [S0, "After giving 5 to Mia, Tom has 36 - 5 = 13 pens.", S2, ANSWER])
    check = label_solution(p, [S0, "To check, 36 / 12 = 4.", S1, S2, ANSWER])
    assert (small.meta["error_details"], digit.meta["error_details"],
            check.meta["error_details"]) == (["small_slip"], ["digit_error"], ["false_check"])
    assert small.meta["error_shared"] == [False]
    wrong_op = ["Tom buys 3 boxes of 12 pens, so he has 3 + 12 = 15 pens.",
                "After giving 5 to Mia, Tom has 15 - 5 = 10 pens.",
                "Selling them at 2 dollars each, Tom earns 10 * 2 = 20 dollars.", "The answer is 20."]
    assert label_solution(p, wrong_op).meta["error_shared"] == [False]  # spontaneous here
    p.misconceptions = [Misconception(0, "wrong_operation", 0.5, op="+"),
                        Misconception(1, "skipped_step", 0.5)]
    t = label_solution(p, wrong_op)
    assert t.meta["error_details"] == ["wrong_operation"] and t.meta["error_shared"] == [True]
    skipped = label_solution(p, [S0, "Selling them at 2 dollars each, Tom earns 36 * 2 = 72 "
                                     "dollars.", "The answer is 72."])
    assert skipped.meta["error_details"] == ["skipped_step"]
    assert skipped.meta["error_shared"] == [True]  # the misconception skips step 1
    # another wrong operation at the same step is not the shared one
    other = label_solution(p, [wrong_op[0].replace("3 + 12 = 15", "3 - 12 = -9")] + [
        "After giving 5 to Mia, Tom has -9 - 5 = -14 pens.",
        "Selling them at 2 dollars each, Tom earns -14 * 2 = -28 dollars.", "The answer is -28."])
    assert other.meta["error_shared"] == [False]
