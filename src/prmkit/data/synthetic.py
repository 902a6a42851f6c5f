"""A seeded world of multi-step arithmetic word problems, how its solutions are written and read
back, and how they are graded: prmkit's built-in data for offline demos and tests. The noisy
solver that writes its pools of candidate solutions is ``prmkit.generate.solver`` (``NoisySolver``,
``make_world``).

A generated problem (``generate_problem(random.Random(1))``)::

    question: "Hana buys 8 buckets of seashells. Each bucket holds 9 seashells. Hana finds 3 more
               seashells. Hana sells all the seashells for 2 dollars each. How many dollars does
               Hana earn?"
    reference steps:
        "Hana buys 8 buckets of 9 seashells, so she has 8 * 9 = 72 seashells."
        "After finding 3 more, Hana has 72 + 3 = 75 seashells."
        "Selling them at 2 dollars each, Hana earns 75 * 2 = 150 dollars."
        "The answer is 150."
    misconception: step 2 done with "+" ("75 + 2 = 77 dollars"), rate 0.64.

Each reference step computes one quantity from numbers in the question or earlier results, and
ends with the equation ``a op b = result`` (op in ``+ - * /``; ``/`` only where it divides). The
last step is always ``"The answer is N."``.

The solver (``prmkit.generate.solver.NoisySolver``) makes the errors real models make: arithmetic
slips (small, or digit errors), a wrong operand (another quantity), a wrong operation, a skipped
step. Errors propagate: later steps compute with the stated wrong value (or, with probability
``recover_rate``, with the value the written expression really has, as models often do after a
typo). Each problem carries a
few seeded *misconceptions* (one step done with one specific wrong operation/operand, or skipped)
that many samples share, so wrong answers cluster and majority vote can be wrong. Some solutions
add a "To check, ..." step that nothing later uses; when its arithmetic is false it is a wrong step
in a solution whose answer is still right (as are slips that later steps silently correct).

Labels follow PRM800K/ProcessBench (``label_policy="first_error"``): 1 before the first wrong
step, 0 at it, None after it; a correct solution is all 1. ``label_policy="value"`` gives 0 from
the first wrong step on. Both are ``label_kind="correctness"``. ``meta`` holds ``problem_id``,
``difficulty`` (number of reference computations), ``first_error`` (step index or -1),
``error_kinds`` and ``error_steps`` (every local error, in order), ``error_details`` (each error
in ``ERROR_DETAILS``: small slip, digit error, wrong operand, wrong operation, skipped step, false
check), ``error_shared`` (whether each is one of the problem's shared misconceptions),
``process_correct`` and ``label_policy``.

Step-string contract (what ``continue_from`` and ``next_steps`` accept): a prefix is a list of
step strings this module rendered for the same problem, in order: compute steps
``"<narrative> <a> <op> <b> = <result> <unit>."`` where the narrative is the reference step's,
check steps ``"To check, <a> <op> <b> = <result>."`` and the answer step ``"The answer is N."``.
The solver reads the values back from the text (the stated result of each step, and the value of
the written expression), so a prefix edited by a caller (say, a different result) is continued from
the edited values. Anything else raises ``ValueError`` naming the step.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from prmkit.data import pools as pools_lib
from prmkit.records import LABEL_POLICIES, Trajectory, first_error_labels

ERROR_KINDS = ("arithmetic", "wrong_operand", "wrong_operation", "skipped_step", "false_claim")
# Kinds the solver makes by itself in a compute step; "false_claim" comes only from check steps.
STEP_ERROR_KINDS = ("arithmetic", "wrong_operand", "wrong_operation", "skipped_step")
MISCONCEPTION_KINDS = ("wrong_operation", "wrong_operand", "skipped_step")
OPS = ("+", "-", "*", "/")

# Real pools of model solutions to competition problems (CHAMP; GPT-3.5, GPT-4, GPT-4 Turbo,
# PaLM 2), as (low, high) over models; a single reported figure has low == high.
REAL_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.2, 0.6),
    "top_wrong_share": (0.4, 0.6),
    "majority_gain": (0.06, 0.13),
    "pass_at_k": (0.5, 0.87),
    "right_answer_given_wrong_step": (0.29, 0.29),
    "median_first_error_position": (0.33, 0.33),
}


@dataclass
class WorldConfig:
    """How the synthetic world is made and how error-prone its default solver is.

    Defaults put pools of 16 in the ranges of real model pools (``REAL_RANGES``).

    Attributes:
        min_steps, max_steps: range of reference computations per problem (the answer step is
            extra), drawn uniformly.
        step_error_rate: chance that a compute step has a spontaneous error, for a problem of
            average hardness and a solver of strength 0.
        hardness_spread: standard deviation of a problem's hardness, a shift of the log-odds of
            every error and misconception; spread makes some problems (nearly) always solved and
            others never, as in real pools.
        hardness_per_step: added hardness per reference step above the middle of the step range
            (longer problems are harder per step too, not only longer).
        error_weights: relative frequency of each spontaneous error kind (``STEP_ERROR_KINDS``).
        gross_slip_share: share of arithmetic slips that are digit errors (the rest are off by a
            little: 1-3 or 1-10%).
        misconceptions: (low, high) number of shared wrong moves per problem.
        misconception_rate: (low, high) range of the chance that one sample makes a given
            misconception, drawn per misconception.
        recover_rate: chance that a step using a wrongly stated result uses instead the value of
            the expression that was written (a typo the solver then ignores).
        check_rate: chance of a "To check, ..." step after a compute step whose arithmetic is
            right.
        check_error_rate: chance that such a check states a false result.
        label_policy: "first_error" (1, 0, then None) or "value" (1, then 0 from the first error).
    """

    min_steps: int = 2
    max_steps: int = 8
    step_error_rate: float = 0.1
    hardness_spread: float = 2.5
    hardness_per_step: float = 0.25
    error_weights: dict[str, float] = field(default_factory=lambda: {
        "arithmetic": 0.6, "wrong_operand": 0.15, "wrong_operation": 0.1, "skipped_step": 0.15})
    gross_slip_share: float = 0.3
    misconceptions: tuple[int, int] = (1, 2)
    misconception_rate: tuple[float, float] = (0.05, 0.7)
    recover_rate: float = 0.8
    check_rate: float = 0.3
    check_error_rate: float = 0.4
    label_policy: str = "first_error"

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, "
                             f"{self.max_steps}")
        rates = {"step_error_rate": self.step_error_rate,
                 "gross_slip_share": self.gross_slip_share, "recover_rate": self.recover_rate,
                 "check_rate": self.check_rate, "check_error_rate": self.check_error_rate}
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.step_error_rate in (0.0, 1.0):
            # Hardness shifts the log-odds, which do not exist at 0 or 1.
            raise ValueError(f"step_error_rate must be strictly between 0 and 1, got "
                             f"{self.step_error_rate!r}")
        if self.hardness_spread < 0:
            raise ValueError(f"hardness_spread must be >= 0, got {self.hardness_spread!r}")
        if self.hardness_per_step < 0:
            raise ValueError(f"hardness_per_step must be >= 0, got {self.hardness_per_step!r}")
        unknown = sorted(set(self.error_weights) - set(STEP_ERROR_KINDS))
        if unknown:
            raise ValueError(f"unknown error kind {unknown[0]!r} in error_weights "
                             f"(allowed: {', '.join(STEP_ERROR_KINDS)})")
        if any(w < 0 for w in self.error_weights.values()) or \
                sum(self.error_weights.values()) <= 0:
            raise ValueError("error_weights must be >= 0 with a positive sum")
        lo, hi = self.misconceptions
        if not 0 <= lo <= hi:
            raise ValueError(f"misconceptions must be (low, high) with 0 <= low <= high, got "
                             f"{self.misconceptions!r}")
        lo_r, hi_r = self.misconception_rate
        if not 0.0 <= lo_r <= hi_r <= 1.0:
            raise ValueError(f"misconception_rate must be (low, high) in [0, 1], got "
                             f"{self.misconception_rate!r}")
        if self.label_policy not in LABEL_POLICIES:
            raise ValueError(f"label_policy must be one of {LABEL_POLICIES}, got "
                             f"{self.label_policy!r}")


# --- problems ------------------------------------------------------------------------------------

@dataclass
class RefStep:
    """One computation of a reference solution.

    ``args`` and ``target`` index ``Problem.values``; ``skip_alias`` is the quantity a solver that
    skips this step uses in its place (for "X - part", X: it forgot to subtract).
    """

    narrative: str
    op: str
    args: tuple[int, int]
    target: int
    unit: str
    skip_alias: int


@dataclass
class Misconception:
    """A tempting wrong move on one reference step, shared by the samples that make it.

    ``kind`` is "wrong_operation" (use ``op``), "wrong_operand" (put quantity ``operand`` in
    argument slot ``slot``) or "skipped_step"; ``rate`` is the chance that a sample makes it on a
    problem of hardness 0 by a solver of strength 0 (both shift its log-odds).
    """

    step: int
    kind: str
    rate: float
    op: str = ""
    slot: int = 0
    operand: int = -1


@dataclass
class Problem:
    """A word problem and its reference step program.

    ``values`` holds every quantity's correct value: the numbers stated in the question and each
    reference step's result (``steps[j].target``). ``hardness`` is added to the log-odds of the
    solver's spontaneous errors and of its misconceptions on this problem.
    """

    id: str
    question: str
    values: list[int]
    steps: list[RefStep]
    misconceptions: list[Misconception]
    hardness: float

    @property
    def answer(self) -> int:
        return self.values[self.steps[-1].target]

    @property
    def difficulty(self) -> int:
        """The number of reference computations."""
        return len(self.steps)

    @property
    def reference_steps(self) -> list[str]:
        return [render_step(self, r) for r in reference_records(self)]

    def reference_trajectory(self, label_policy: str = "first_error") -> Trajectory:
        """The reference solution as a trajectory (all labels 1)."""
        return trajectory_of(self, reference_records(self), label_policy)


@dataclass
class StepRecord:
    """The structured view of one step string (what ``parse_step`` returns).

    ``kind``: "compute" (reference step ``ref``), "check" or "answer" (``result`` is N; the other
    fields are unused).
    """

    kind: str
    ref: int = -1
    a: int = 0
    op: str = "+"
    b: int = 0
    result: int = 0


@dataclass
class ProblemPool:
    """One problem and the candidate solutions sampled for it."""

    problem: Problem
    trajectories: list[Trajectory]


# Story material. A problem is a chain of "moves" on a running quantity (items, then possibly
# money); each move adds question sentences and one or two reference steps.
_NAMES = [("Tom", "he"), ("Mia", "she"), ("Ava", "she"), ("Liam", "he"), ("Noah", "he"),
          ("Emma", "she"), ("Sofia", "she"), ("Lucas", "he"), ("Zoe", "she"), ("Omar", "he"),
          ("Priya", "she"), ("Kenji", "he"), ("Lena", "she"), ("Carlos", "he"), ("Aisha", "she"),
          ("Ben", "he"), ("Grace", "she"), ("Ravi", "he"), ("Hana", "she"), ("Maya", "she")]
# (item, items, container, containers)
_GOODS = [("pen", "pens", "box", "boxes"), ("apple", "apples", "bag", "bags"),
          ("sticker", "stickers", "sheet", "sheets"), ("cookie", "cookies", "tray", "trays"),
          ("marble", "marbles", "jar", "jars"), ("egg", "eggs", "carton", "cartons"),
          ("trading card", "trading cards", "pack", "packs"),
          ("seashell", "seashells", "bucket", "buckets"), ("cupcake", "cupcakes", "box", "boxes"),
          ("balloon", "balloons", "bundle", "bundles"), ("pencil", "pencils", "case", "cases"),
          ("bead", "beads", "bag", "bags")]
_GROUPS = ["friends", "cousins", "teammates", "neighbors", "classmates"]
_THINGS = ["a new backpack", "lunch", "a movie ticket", "art supplies", "a board game",
           "a plant", "a kite", "a puzzle"]
_CHORES = ["mowing the lawn", "washing the car", "babysitting", "raking leaves", "tutoring"]
# (verb, gerund, plural noun) for "also washes 4 cars for 6 dollars each"
_JOBS = [("washes", "Washing", "cars"), ("walks", "Walking", "dogs"),
         ("tutors", "Tutoring", "students"), ("paints", "Painting", "fences"),
         ("mows", "Mowing", "lawns")]
_FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}
_MAX_ITEMS = 1000
_MAX_MONEY = 5000


class _Builder:
    """Collects quantities, question sentences and reference steps while a problem is drawn."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.values: list[int] = []
        self.sentences: list[str] = []
        self.steps: list[RefStep] = []
        people = rng.sample(_NAMES, 4)
        self.holder, self.pronoun = people[0]
        self.others = [name for name, _ in people[1:]]
        self.item, self.items, self.container, self.containers = rng.choice(_GOODS)
        self.running = -1  # index of the running quantity
        self.stage = "items"
        self.ask = ""

    def given(self, value: int) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def step(self, narrative: str, op: str, a: int, b: int, unit: str,
             skip_alias: int | None = None) -> int:
        result = exact_value(self.values[a], op, self.values[b])
        assert result is not None and result > 0  # moves only draw numbers that keep this true
        target = self.given(result)
        self.steps.append(RefStep(self._unique(narrative), op, (a, b), target, unit,
                                  a if skip_alias is None else skip_alias))
        return target

    def _unique(self, narrative: str) -> str:
        """``narrative``, reworded if an earlier step has it: a step is found again from its
        narrative (``parse_step``), so no two steps of a problem may share one."""
        used = {s.narrative for s in self.steps}
        first, rest = narrative.split(" ", 1)
        if first not in {name for name, _ in _NAMES}:
            first = first.lower()
        for lead in ("", "Then ", "Next, ", "After that, "):
            candidate = narrative if not lead else f"{lead}{first} {rest}"
            if candidate not in used:
                return candidate
        return f"In step {len(self.steps) + 1}, {first} {rest}"

    @property
    def x(self) -> int:
        return self.values[self.running]

    def other(self) -> str:
        return self.rng.choice(self.others)


def _divisors(x: int, choices) -> list[int]:
    return [k for k in choices if x % k == 0 and x // k >= 2]


def _start(b: _Builder) -> None:
    r = b.rng
    if r.random() < 0.65:
        if r.random() < 0.6:
            b.running = b.given(r.randint(12, 90))
            b.sentences.append(f"{b.holder} has {b.x} {b.items}.")
        else:
            b.stage = "money"
            b.running = b.given(r.randint(20, 150))
            b.sentences.append(f"{b.holder} has {b.x} dollars saved.")
        return
    if r.random() < 0.65:
        n, per = b.given(r.randint(2, 9)), b.given(r.randint(3, 24))
        b.sentences.append(f"{b.holder} buys {b.values[n]} {b.containers} of {b.items}. "
                           f"Each {b.container} holds {b.values[per]} {b.items}.")
        b.running = b.step(f"{b.holder} buys {b.values[n]} {b.containers} of {b.values[per]} "
                           f"{b.items}, so {b.pronoun} has", "*", n, per, b.items)
    else:
        b.stage = "money"
        per, n = b.given(r.randint(3, 25)), b.given(r.randint(2, 12))
        b.sentences.append(f"{b.holder} saves {b.values[per]} dollars every week for "
                           f"{b.values[n]} weeks.")
        b.running = b.step(f"Saving {b.values[per]} dollars a week for {b.values[n]} weeks, "
                           f"{b.holder} has", "*", per, n, "dollars", skip_alias=per)
    b.ask = (f"How many {b.items} does {b.holder} have?" if b.stage == "items"
             else f"How many dollars does {b.holder} have?")


def _moves(b: _Builder, remaining: int) -> list[tuple[str, float]]:
    """The moves that fit the current state, with their weights."""
    x = b.x
    out: list[tuple[str, float]] = []
    if b.stage == "items":
        out += [("add", 1.0), ("times", 0.6 if x * 2 <= _MAX_ITEMS else 0.0)]
        if x >= 4:
            out.append(("sub", 1.2))
        if remaining >= 2:
            out.append(("add_groups", 1.0))
            if _divisors(x, _FRACTIONS):
                out.append(("fraction", 1.0))
        if x * 2 <= _MAX_MONEY:
            out.append(("price", 0.8))
    else:
        out += [("earn", 1.0)]
        if x >= 4:
            out.append(("spend", 1.2))
        if remaining >= 2:
            out.append(("earn_groups", 1.0))
            if _divisors(x, _FRACTIONS):
                out.append(("fraction", 1.0))
    if remaining == 1 and _divisors(x, range(2, 9)):
        out.append(("share", 1.5))
    return [(name, w) for name, w in out if w > 0]


def _apply(b: _Builder, move: str) -> None:
    r, h = b.rng, b.holder
    money = b.stage == "money"
    unit = "dollars" if money else b.items
    if move == "add":
        a = b.given(r.randint(2, 40))
        n, f = b.values[a], b.other()
        sentence, lead = r.choice([
            (f"Then {f} gives {h} {n} more {b.items}.",
             f"After getting {n} more from {f}, {h} has"),
            (f"{h} finds {n} more {b.items}.", f"After finding {n} more, {h} has"),
            (f"{h} buys {n} more {b.items}.", f"After buying {n} more, {h} has")])
        b.sentences.append(sentence)
        b.running = b.step(lead, "+", b.running, a, b.items)
        b.ask = f"How many {b.items} does {h} have now?"
    elif move == "sub":
        a = b.given(r.randint(1, min(b.x - 1, 60)))
        n, f = b.values[a], b.other()
        sentence, lead = r.choice([
            (f"{h} gives {n} {b.items} to {f}.", f"After giving {n} to {f}, {h} has"),
            (f"{h} loses {n} {b.items}.", f"After losing {n}, {h} has"),
            (f"{h} uses {n} {b.items} for a school project.",
             f"After using {n} for the project, {h} has")])
        b.sentences.append(sentence)
        b.running = b.step(lead, "-", b.running, a, b.items)
        b.ask = f"How many {b.items} does {h} have left?"
    elif move == "times":
        k = b.given(r.randint(2, max(2, min(5, _MAX_ITEMS // b.x))))
        f = b.other()
        b.sentences.append(f"{f} has {b.values[k]} times as many {b.items} as {h}.")
        b.running = b.step(f"{f} has {b.values[k]} times as many as {h}, so {f} has", "*",
                           b.running, k, b.items)
        b.others = [name for name in b.others if name != f] + [h]
        b.holder = f
        b.ask = f"How many {b.items} does {f} have?"
    elif move == "add_groups":
        n, per = b.given(r.randint(2, 6)), b.given(r.randint(3, 15))
        b.sentences.append(f"Then {h} buys {b.values[n]} more {b.containers} with "
                           f"{b.values[per]} {b.items} in each.")
        new = b.step(f"The {b.values[n]} new {b.containers} hold", "*", n, per, b.items,
                     skip_alias=per)
        b.running = b.step(f"Adding the {b.values[n]} new {b.containers}, {h} has", "+",
                           b.running, new, b.items)
        b.ask = f"How many {b.items} does {h} have now?"
    elif move == "fraction":
        k = b.given(r.choice(_divisors(b.x, _FRACTIONS)))
        frac = _FRACTIONS[b.values[k]]
        if money:
            thing = r.choice(_THINGS)
            b.sentences.append(f"{h} spends {frac} of the money on {thing}.")
            # Skipping the division means subtracting the bare 2 of "half"; skipping the
            # subtraction means answering with the part instead of what is left.
            part = b.step(f"{frac[0].upper()}{frac[1:]} of the money is", "/", b.running, k,
                          "dollars", skip_alias=k)
            b.running = b.step(f"After buying {thing}, {h} has", "-", b.running, part,
                               "dollars left", skip_alias=part)
            b.ask = f"How many dollars does {h} have left?"
        else:
            f = b.other()
            b.sentences.append(f"{h} gives {frac} of the {b.items} to {f}.")
            part = b.step(f"{frac[0].upper()}{frac[1:]} of them is", "/", b.running, k, b.items,
                          skip_alias=k)
            b.running = b.step(f"After giving them to {f}, {h} has", "-", b.running, part,
                               f"{b.items} left", skip_alias=part)
            b.ask = f"How many {b.items} does {h} have left?"
    elif move == "price":
        p = b.given(r.randint(2, max(2, min(12, _MAX_MONEY // b.x))))
        b.sentences.append(f"{h} sells all the {b.items} for {b.values[p]} dollars each.")
        b.running = b.step(f"Selling them at {b.values[p]} dollars each, {h} earns", "*",
                           b.running, p, "dollars")
        b.stage = "money"
        b.ask = f"How many dollars does {h} earn?"
    elif move == "earn":
        e = b.given(r.randint(5, 50))
        chore = r.choice(_CHORES)
        b.sentences.append(f"{h} also earns {b.values[e]} dollars for {chore}.")
        b.running = b.step(f"Adding the {b.values[e]} dollars for {chore}, {h} has", "+",
                           b.running, e, "dollars")
        b.ask = f"How many dollars does {h} have now?"
    elif move == "spend":
        c = b.given(r.randint(1, min(b.x - 1, 80)))
        thing = r.choice(_THINGS)
        b.sentences.append(f"{h} spends {b.values[c]} dollars on {thing}.")
        b.running = b.step(f"After spending {b.values[c]} dollars on {thing}, {h} has", "-",
                           b.running, c, "dollars left")
        b.ask = f"How many dollars does {h} have left?"
    elif move == "earn_groups":
        verb, gerund, noun = r.choice(_JOBS)
        n, per = b.given(r.randint(2, 8)), b.given(r.randint(3, 20))
        b.sentences.append(f"{h} also {verb} {b.values[n]} {noun} for {b.values[per]} dollars "
                           f"each.")
        pay = b.step(f"{gerund} {b.values[n]} {noun} at {b.values[per]} dollars each pays", "*",
                     n, per, "dollars", skip_alias=per)
        b.running = b.step(f"Adding the money from the {b.values[n]} {noun}, {h} has", "+",
                           b.running, pay, "dollars")
        b.ask = f"How many dollars does {h} have now?"
    elif move == "share":
        k = b.given(r.choice(_divisors(b.x, range(2, 9))))
        group = r.choice(_GROUPS)
        what = "the money" if money else f"the {b.items}"
        b.sentences.append(f"{h} shares {what} equally among {b.values[k]} {group}.")
        b.running = b.step(f"Each of the {b.values[k]} {group} gets", "/", b.running, k, unit)
        b.ask = f"How many {unit} does each of the {group} get?"
    else:
        raise ValueError(f"unknown move {move!r}")


def generate_problem(rng: random.Random, config: WorldConfig | None = None,
                     problem_id: str = "synthetic-0") -> Problem:
    """Draw one problem (question, reference program, misconceptions, hardness) from ``rng``."""
    config = config or WorldConfig()
    n_steps = rng.randint(config.min_steps, config.max_steps)
    b = _Builder(rng)
    _start(b)
    while len(b.steps) < n_steps:
        options = _moves(b, n_steps - len(b.steps))
        _apply(b, rng.choices([n for n, _ in options], [w for _, w in options])[0])
    middle = (config.min_steps + config.max_steps) / 2
    hardness = (rng.gauss(0.0, config.hardness_spread)
                + config.hardness_per_step * (n_steps - middle))
    problem = Problem(id=problem_id, question=" ".join(b.sentences + [b.ask]), values=b.values,
                      steps=b.steps, misconceptions=[], hardness=hardness)
    problem.misconceptions = _draw_misconceptions(problem, rng, config)
    return problem


def _draw_misconceptions(problem: Problem, rng: random.Random,
                         config: WorldConfig) -> list[Misconception]:
    """Draw the problem's shared wrong moves; each must lead to its own wrong answer."""
    lo, hi = config.misconceptions
    wanted = rng.randint(lo, hi)
    out: list[Misconception] = []
    answers = {problem.answer}
    for _ in range(20 * wanted):
        if len(out) == wanted:
            break
        # Weighted towards later steps like spontaneous errors (see NoisySolver._roll).
        j = rng.choices(range(len(problem.steps)), range(1, len(problem.steps) + 1))[0]
        if any(m.step == j for m in out):
            continue
        ref = problem.steps[j]
        kind = rng.choice(MISCONCEPTION_KINDS)
        rate = rng.uniform(*config.misconception_rate)
        if kind == "wrong_operation":
            m = Misconception(j, kind, rate, op=rng.choice([o for o in "+-*" if o != ref.op]))
        elif kind == "wrong_operand":
            slot = rng.randrange(2)
            current = problem.values[ref.args[slot]]
            options = [q for q in available_quantities(problem, j) if problem.values[q] != current]
            if not options:
                continue
            m = Misconception(j, kind, rate, slot=slot, operand=rng.choice(options))
        else:
            m = Misconception(j, kind, rate)
        final = _final_with(problem, m)
        if final is None or final in answers:
            continue
        answers.add(final)
        out.append(m)
    return out


def available_quantities(problem: Problem, j: int) -> list[int]:
    """Quantities a solver could use at reference step ``j``: the givens and earlier results."""
    later = {s.target for s in problem.steps[j:]}
    return [q for q in range(len(problem.values)) if q not in later]


def _final_with(problem: Problem, m: Misconception) -> int | None:
    """The final answer of an otherwise correct solution that makes misconception ``m``."""
    values = list(problem.values)
    for j, ref in enumerate(problem.steps):
        if j < m.step:
            continue
        if j == m.step and m.kind == "skipped_step":
            values[ref.target] = values[ref.skip_alias]
            continue
        args = list(ref.args)
        op = ref.op
        if j == m.step and m.kind == "wrong_operand":
            args[m.slot] = m.operand
        if j == m.step and m.kind == "wrong_operation":
            op = m.op
        value = exact_value(values[args[0]], op, values[args[1]])
        if value is None:
            return None
        values[ref.target] = value
    return values[problem.steps[-1].target]


def generate_problems(n: int, seed: int, config: WorldConfig | None = None) -> list[Problem]:
    """``n`` problems; problem ``i`` depends only on (seed, i), not on ``n``."""
    return [world_problem(seed, i, config) for i in range(n)]


def world_problem(seed: int, i: int, config: WorldConfig | None = None) -> Problem:
    """Problem ``i`` of the world with this seed, id ``"synthetic-SEED-I"``."""
    return generate_problem(random.Random(f"prmkit-synthetic:{seed}:problem:{i}"), config,
                            problem_id=f"synthetic-{seed}-{i}")


# --- step strings --------------------------------------------------------------------------------

_EQUATION = re.compile(r"(-?\d+) ([-+*/]) (-?\d+) = (-?\d+)")
_ANSWER = re.compile(r"The answer is (-?\d+)\.")
_CHECK = "To check,"


def exact_value(a: int, op: str, b: int) -> int | None:
    """The integer value of ``a op b``; None for a division that does not come out even."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b if b != 0 and a % b == 0 else None


def reference_records(problem: Problem) -> list[StepRecord]:
    """The reference solution as step records (compute steps, then the answer)."""
    v = problem.values
    out = [StepRecord("compute", j, v[s.args[0]], s.op, v[s.args[1]], v[s.target])
           for j, s in enumerate(problem.steps)]
    return out + [StepRecord("answer", result=problem.answer)]


def render_step(problem: Problem, record: StepRecord) -> str:
    """The step string of a record, e.g. ``"Omar buys 4 boxes of 9 pens, so he has 4 * 9 = 36
    pens."``."""
    if record.kind == "answer":
        return f"The answer is {record.result}."
    equation = f"{record.a} {record.op} {record.b} = {record.result}"
    if record.kind == "check":
        return f"{_CHECK} {equation}."
    ref = problem.steps[record.ref]
    return f"{ref.narrative} {equation} {ref.unit}."


def parse_step(problem: Problem, step: str) -> StepRecord:
    """Read a step string rendered by this module for ``problem`` back into a record.

    Raises ``ValueError`` for a string this module would not write for the problem.
    """
    m = _ANSWER.fullmatch(step)
    if m:
        return StepRecord("answer", result=int(m.group(1)))
    m = _EQUATION.search(step)
    if m is None:
        raise ValueError(f"not a step of this solver (no 'a op b = c' equation): {step!r}")
    a, op, b, result = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    narrative, tail = step[:m.start()].rstrip(), step[m.end():]
    if narrative == _CHECK and tail == ".":
        return StepRecord("check", -1, a, op, b, result)
    for j, ref in enumerate(problem.steps):
        if ref.narrative == narrative and tail == f" {ref.unit}.":
            return StepRecord("compute", j, a, op, b, result)
    raise ValueError(f"not a step of problem {problem.id}: {step!r}")


def parse_steps(problem: Problem, steps: list[str]) -> list[StepRecord]:
    """Parse a solution prefix; compute steps must follow the reference order (a step may be
    missing), and nothing may follow the answer step."""
    records = [parse_step(problem, s) for s in steps]
    last = -1
    for i, r in enumerate(records):
        if r.kind == "answer" and i != len(records) - 1:
            raise ValueError(f"step {i} is the answer step but more steps follow it")
        if r.kind == "compute":
            if r.ref <= last:
                raise ValueError(f"step {i} computes reference step {r.ref} out of order")
            last = r.ref
    return records


# --- grading and labels --------------------------------------------------------------------------

# What a PRM must catch, finer than ``ERROR_KINDS``: an arithmetic error close to the right value
# (within 3, or 10%) is a small slip, a farther one a digit error (a changed, swapped, doubled or
# dropped digit); a false check is a "To check" step whose arithmetic is false.
ERROR_DETAILS = ("small_slip", "digit_error", "wrong_operand", "wrong_operation", "skipped_step",
                 "false_check")


@dataclass
class Grade:
    """Where a solution goes wrong: ``first_error`` is a step index or -1; ``error_steps`` and
    ``error_kinds`` list every local error (a step wrong given the values before it);
    ``error_details`` names each in ``ERROR_DETAILS``, and ``error_shared`` says whether it is one
    of the problem's misconceptions (shared by many samples, where majority vote fails) rather
    than a spontaneous error."""

    first_error: int
    error_steps: list[int]
    error_kinds: list[str]
    error_details: list[str] = field(default_factory=list)
    error_shared: list[bool] = field(default_factory=list)


def _slip_detail(stated: int, expected: int) -> str:
    return "small_slip" if abs(stated - expected) <= max(3, 0.1 * abs(expected)) \
        else "digit_error"


def grade(problem: Problem, records: list[StepRecord]) -> Grade:
    """Find the local errors of a solution.

    A compute step is locally right when it uses the reference operation on values the solution
    holds for the reference operands (a stated result, or the value its written expression really
    has) and its result is exact. Before the first error those values are the correct ones, so the
    first local error is the first wrong step. A check step is wrong when its arithmetic is false.
    """
    steps, values = problem.steps, problem.values
    targets = {s.target: j for j, s in enumerate(steps)}
    # quantity -> the values the solution may use for it: its stated result and, when they
    # differ, the value of the expression written for it
    held: dict[int, tuple[int, ...]] = {}
    missing_reported: set[int] = set()
    steps_out: list[int] = []
    kinds_out: list[str] = []
    details: list[str] = []
    shared: list[bool] = []
    misconceptions = {(m.step, m.kind): m for m in problem.misconceptions}

    def resolve(q: int) -> tuple[int, ...]:
        while q not in held and q in targets:  # a skipped step: what it stood in for
            q = steps[targets[q]].skip_alias
        return held[q] if q in held else (values[q],)

    for i, r in enumerate(records):
        kind, detail, is_shared = None, "", False
        if r.kind == "check":
            if exact_value(r.a, r.op, r.b) != r.result:
                kind, detail = "false_claim", "false_check"
        else:
            ref = steps[r.ref] if r.kind == "compute" else None
            wanted = ref.args if ref is not None else (steps[-1].target,)
            skipped = [q for q in wanted
                       if q in targets and q not in held and q not in missing_reported]
            exact = exact_value(r.a, r.op, r.b) if ref is not None else None
            if skipped:
                kind = "skipped_step"
                missing_reported.update(skipped)
                is_shared = any((targets[q], kind) in misconceptions for q in skipped)
            elif ref is None:
                if r.result not in resolve(wanted[0]):
                    kind = "arithmetic"  # the answer does not repeat the last result
                    detail = _slip_detail(r.result, resolve(wanted[0])[0])
            elif r.op != ref.op:
                kind = "wrong_operation"
                m = misconceptions.get((r.ref, kind))
                is_shared = m is not None and m.op == r.op
            elif not _operands_ok(r, ref, resolve(wanted[0]), resolve(wanted[1])):
                kind = "wrong_operand"
                is_shared = (r.ref, kind) in misconceptions
            elif exact != r.result:
                kind = "arithmetic"
                detail = _slip_detail(r.result, exact) if exact is not None else "digit_error"
            if ref is not None:
                held[ref.target] = (r.result,) if exact is None or exact == r.result \
                    else (r.result, exact)
        if kind is not None:
            steps_out.append(i)
            kinds_out.append(kind)
            details.append(detail or kind)
            shared.append(is_shared)
    return Grade(steps_out[0] if steps_out else -1, steps_out, kinds_out, details, shared)


def _operands_ok(r: StepRecord, ref: RefStep, va: tuple[int, ...], vb: tuple[int, ...]) -> bool:
    if r.a in va and r.b in vb:
        return True
    return ref.op in "+*" and r.a in vb and r.b in va


def label_solution(problem: Problem, steps: list[str],
                   label_policy: str = "first_error") -> Trajectory:
    """Grade and label a complete solution written in this module's step strings (for instance
    one edited by hand); it must end with ``"The answer is N."``."""
    records = parse_steps(problem, steps)
    if not records or records[-1].kind != "answer":
        raise ValueError("a complete solution ends with the step 'The answer is N.'")
    return trajectory_of(problem, records, label_policy, list(steps))


def trajectory_of(problem: Problem, records: list[StepRecord], label_policy: str,
                steps: list[str] | None = None) -> Trajectory:
    g = grade(problem, records)
    steps = steps if steps is not None else [render_step(problem, r) for r in records]
    final = records[-1].result
    return Trajectory(
        question=problem.question, steps=steps,
        labels=first_error_labels(len(steps), g.first_error, label_policy),
        label_kind="correctness", outcome=final == problem.answer, answer=str(final),
        meta={"source": "synthetic", "problem_id": problem.id, "difficulty": problem.difficulty,
              "reference_answer": str(problem.answer),
              "first_error": g.first_error, "error_steps": g.error_steps,
              "error_kinds": g.error_kinds, "error_details": g.error_details,
              "error_shared": g.error_shared, "process_correct": g.first_error < 0,
              "label_policy": label_policy})


# --- pool statistics -----------------------------------------------------------------------------

def pool_stats(pools: list[ProblemPool], k: int = 16) -> dict[str, float]:
    """``prmkit.data.pools.pool_stats`` over the world's pools (see there for the keys)."""
    return pools_lib.pool_stats([p.trajectories for p in pools], k)


def format_comparison(stats: dict[str, float],
                      ranges: dict[str, tuple[float, float]] = REAL_RANGES) -> list[str]:
    """Lines that set measured pool stats beside the real ranges, e.g.
    ``"accuracy                          0.412   real 0.20-0.60"``."""
    lines = []
    for key, value in stats.items():
        real = ranges.get(key)
        if real is None:
            note = ""
        elif real[0] == real[1]:
            note = f"   real ~{real[0]:.2f}"
        else:
            note = f"   real {real[0]:.2f}-{real[1]:.2f}"
        lines.append(f"{key:<32}{value:>7.3f}{note}")
    return lines
