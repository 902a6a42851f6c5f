"""The world's problems: how they are made (a seeded chain of story moves, each adding question
sentences and reference steps), their shared misconceptions, and the world's integer arithmetic."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from prmkit.records import LABEL_POLICIES, Trajectory

ERROR_KINDS = ("arithmetic", "wrong_operand", "wrong_operation", "skipped_step", "false_claim")
# Kinds the solver makes by itself in a compute step; "false_claim" comes only from check steps.
STEP_ERROR_KINDS = ("arithmetic", "wrong_operand", "wrong_operation", "skipped_step")
MISCONCEPTION_KINDS = ("wrong_operation", "wrong_operand", "skipped_step")
OPS = ("+", "-", "*", "/")


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


@dataclass
class ProblemPool:
    """One problem and the candidate solutions sampled for it."""

    problem: Problem
    trajectories: list[Trajectory]



def exact_value(a: int, op: str, b: int) -> int | None:
    """The integer value of ``a op b``; None for a division that does not come out even."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b if b != 0 and a % b == 0 else None



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

