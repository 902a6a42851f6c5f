"""The arithmetic checker: claims it reads (true, false), ones it must leave alone, hostile input."""

import builtins
import time

import pytest

from prmkit.label.arithmetic import MAX_CHARS, check_step, claims


@pytest.mark.parametrize("step, verdict", [
    # true claims
    ("Selling them at 2 dollars each, Hana earns 75 * 2 = 150 dollars.", True),
    ("So 3 + 4 = 7 = 14 / 2 apples.", True),                   # a chain: both links hold
    ("20% of 50 = 10", True),                                  # percent "of"
    ("$1,200 - $200 = $1,000", True),                          # currency, thousands commas
    ("\\frac{3}{4} \\times 8 = 6", True),                      # LaTeX
    ("$\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}$", True),     # exact fractions
    ("3 x 4 = 12", True), ("3 × 4 = 12", True), ("12 ÷ 4 = 3", True),
    ("(2 + 3) * 4 = 20", True), ("2^10 = 1024", True), ("2**-1 = 0.5", True),
    ("We get 5 - 7 = -2.", True), ("5 − 7 = −2", True),        # unicode minus
    ("10 / 3 = 3.33", True), ("2/3 = 0.67", True), ("2/3 = 0.66", True),  # rounded or cut
    ("-2/3 = -0.67", True),
    ("8 buckets of 9 seashells, so she has 8 * 9 = 72 seashells.", True),
    # false claims
    ("To check, 72 / 9 = 7.", False),
    ("3 x 4 = 13", False), ("Step 1: 3 + 4 = 8", False),
    ("So 3 + 4 = 7 = 15 / 2.", False),                         # one false link is enough
    ("10 / 3 = 3.4", False), ("-2/3 = 0.67", False),
    ("2 + 3 * 4 = 20", False),                                 # precedence: 14
    # nothing this checker can read
    ("The answer is 150.", None), ("a = 5", None), ("2 = 2", None),
    ("2x + 3 = 7", None), ("f(2) = 5", None), ("x^2 = 9", None),  # sides run into letters
    ("50 + 10% = 55", None),                                   # 10% of what?
    ("1/0 = 5", None), ("0^-1 = 1", None),
    ("3.333 ≈ 10 / 3", None), ("3 < 4", None), ("", None),
])
def test_check_step(step, verdict):
    assert check_step(step) is verdict


def test_claims_name_both_sides():
    found = claims("First 3 + 4 = 7, then 7 * 2 = 15.")
    assert [(c.left, c.right, c.holds) for c in found] == [("3 + 4", "7", True),
                                                          ("7 * 2", "15", False)]


@pytest.mark.parametrize("step", [
    "9**9**9 = 1",                                     # a tower: the exponent is refused
    "9^9^9^9 = 3", "2^100000 = 5",
    "123456789" * 100 + " * 2 = 3",                    # a 900-digit number
    "1+" * 500_000 + "1 = 3",                          # a million characters
    "word " * 200_000 + "2 + 2 = 5",
    "(" * 100_000 + "1" + ")" * 100_000 + " = 1",      # nested 10^5 deep
    "(" * 5_000 + "1" + ")" * 5_000 + " = 1",          # short enough to read, too deep to check
    "99999999999 * " * 1000 + "1 = 1",                 # products past MAX_BITS
    "a=" * 49_000,
])
def test_hostile_input_is_answered_fast_and_without_eval(step, monkeypatch):
    def refuse(*_):
        raise AssertionError("eval/exec called")
    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    started = time.perf_counter()
    assert check_step(step) is None
    assert time.perf_counter() - started < 1.0


def test_a_step_past_the_length_bound_is_not_read():
    assert check_step("2 + 2 = 5. " + "x" * MAX_CHARS) is None
    assert check_step("2 + 2 = 5. " + "x" * 100) is False
