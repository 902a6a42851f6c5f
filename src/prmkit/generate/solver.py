"""The demo world's noisy solver: candidate solutions with realistic, partly shared errors.

It writes every pool of the synthetic world (``make_world``) and continues any prefix of a
world solution (``continue_from``, ``next_steps``): the offline generator behind Monte-Carlo
labels and step-level search. The step-string contract it reads and writes is
``prmkit.synthetic``'s (see its docstring).

The solver makes the errors real models make: arithmetic slips (small, or digit errors), a wrong
operand (another quantity), a wrong operation, a skipped step. Errors propagate: later steps
compute with the stated wrong value (or, with probability ``recover_rate``, with the value the
written expression really has, as models often do after a typo). Each problem carries a few
seeded misconceptions that many samples share, so wrong answers cluster.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prmkit import synthetic
from prmkit.generate.base import Completion, GenerationError
from prmkit.records import Trajectory, normalize_question


# --- the solver ----------------------------------------------------------------------------------

def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _slip(x: int, gross: bool, rng: random.Random) -> int:
    """A wrong result near ``x``: off by a little, or with one digit wrong (never ``x``)."""
    if gross and abs(x) >= 10:
        digits = list(str(abs(x)))
        how = rng.randrange(3)
        if how == 0:
            i = rng.randrange(len(digits))
            lowest = "1" if i == 0 else "0"
            digits[i] = rng.choice([d for d in "0123456789" if d != digits[i] and d >= lowest])
        elif how == 1:
            i = rng.randrange(len(digits) - 1)
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
        else:
            i = rng.randrange(len(digits))
            digits.insert(i, digits[i]) if rng.random() < 0.5 or len(digits) == 2 \
                else digits.pop(i)
        value = int("".join(digits)) * (1 if x >= 0 else -1)
        if value != x:
            return value
    if rng.random() < 0.5:
        delta = rng.randint(1, 3)
    else:
        delta = max(1, round(abs(x) * rng.uniform(0.01, 0.1)))
    return x + delta if rng.random() < 0.5 or x - delta < 0 else x - delta


@dataclass
class _State:
    """What a (partial) solution holds: stated result and written-expression value per computed
    quantity, and the next reference step to do."""

    held: dict[int, tuple[int, int | None]]
    next_ref: int
    done: bool


def _state_of(problem: synthetic.Problem, records: list[synthetic.StepRecord]) -> _State:
    held: dict[int, tuple[int, int | None]] = {}
    next_ref = 0
    for r in records:
        if r.kind == "compute":
            held[problem.steps[r.ref].target] = (r.result, synthetic.exact_value(r.a, r.op, r.b))
            next_ref = r.ref + 1
    return _State(held, next_ref, bool(records) and records[-1].kind == "answer")


@dataclass
class _Setup:
    """What a solver precomputes once per problem: the per-step error chance, each
    misconception's adoption chance, error-kind weights, and quantity -> reference step."""

    p_error: float
    adopt: list[tuple[synthetic.Misconception, float]]
    weights: list[float]
    targets: dict[int, int]


@dataclass
class NoisySolver:
    """Writes candidate solutions with realistic, partly shared errors.

    ``strength`` is the model's skill: it lowers the log-odds of every spontaneous error and of
    every misconception (0 is the world's default solver; try -1 and 1 for weaker and stronger
    models).

    Example::

        rng = random.Random(0)
        problem = generate_problem(rng)
        pool = NoisySolver().sample_pool(problem, 16, rng)
    """

    config: synthetic.WorldConfig = field(default_factory=synthetic.WorldConfig)
    strength: float = 0.0

    def sample(self, problem: synthetic.Problem, rng: random.Random) -> Trajectory:
        """One complete candidate solution."""
        return self.continue_from(problem, [], 1, rng)[0]

    def sample_pool(self, problem: synthetic.Problem, m: int, rng: random.Random) -> list[Trajectory]:
        """``m`` independent candidate solutions."""
        return self.continue_from(problem, [], m, rng)

    def continue_from(self, problem: synthetic.Problem, prefix_steps: list[str], n: int,
                      rng: random.Random) -> list[Trajectory]:
        """``n`` completions of a prefix; each trajectory's steps are the prefix then the
        continuation, labelled as a whole. A finished prefix (ending in the answer step) comes
        back unchanged ``n`` times. See the module docstring for the step-string contract."""
        prefix = synthetic.parse_steps(problem, prefix_steps)
        setup = self._setup(problem)
        out = []
        for _ in range(n):
            records = prefix + self._roll(problem, prefix, rng, None, setup)
            steps = list(prefix_steps) + [synthetic.render_step(problem, r) for r in records[len(prefix):]]
            out.append(synthetic.trajectory_of(problem, records, self.config.label_policy, steps))
        return out

    def next_steps(self, problem: synthetic.Problem, prefix_steps: list[str], k: int,
                   rng: random.Random) -> list[str]:
        """``k`` sampled candidates for the step after a prefix (duplicates possible); an empty
        list when the prefix already ends with the answer step."""
        prefix = synthetic.parse_steps(problem, prefix_steps)
        if prefix and prefix[-1].kind == "answer":
            return []
        setup = self._setup(problem)
        return [synthetic.render_step(problem, self._roll(problem, prefix, rng, 1, setup)[0])
                for _ in range(k)]

    def _setup(self, problem: synthetic.Problem) -> _Setup:
        cfg = self.config
        return _Setup(
            p_error=_sigmoid(_logit(cfg.step_error_rate) + problem.hardness - self.strength),
            adopt=[(m, _sigmoid(_logit(m.rate) + problem.hardness - self.strength))
                   for m in problem.misconceptions],
            weights=[cfg.error_weights.get(k, 0.0) for k in synthetic.STEP_ERROR_KINDS],
            targets={s.target: j for j, s in enumerate(problem.steps)})

    def _roll(self, problem: synthetic.Problem, prefix: list[synthetic.StepRecord], rng: random.Random,
              max_new: int | None, setup: _Setup) -> list[synthetic.StepRecord]:
        cfg = self.config
        state = _state_of(problem, prefix)
        if state.done:
            return []
        p_error, targets = setup.p_error, setup.targets
        # Each sample decides up front which shared wrong moves it makes (as a model that holds
        # a misconception holds it for the whole solution).
        adopted = {m.step: m for m, p in setup.adopt if rng.random() < p}
        held = state.held
        out: list[synthetic.StepRecord] = []

        def value(q: int) -> int:
            while q in targets and q not in held:  # a skipped step: use what it stood in for
                q = problem.steps[targets[q]].skip_alias
            if q not in held:
                return problem.values[q]
            stated, written = held[q]
            if written is not None and written != stated and rng.random() < cfg.recover_rate:
                return written
            return stated

        # A check may follow a compute step whose arithmetic is right. It is drawn once, right
        # after that step (also when the step ends the prefix), so a continuation from any
        # prefix follows the same process as a whole sample.
        last = prefix[-1] if prefix else None
        pending = last if last is not None and last.kind == "compute" else None
        j = state.next_ref
        while max_new is None or len(out) < max_new:
            if pending is not None:
                check = None
                if synthetic.exact_value(pending.a, pending.op, pending.b) == pending.result \
                        and rng.random() < cfg.check_rate:
                    check = self._check(pending, rng)
                pending = None
                if check is not None:
                    out.append(check)
                    continue
            if j == len(problem.steps):
                out.append(synthetic.StepRecord("answer", result=value(problem.steps[-1].target)))
                break
            ref = problem.steps[j]
            args, op = list(ref.args), ref.op
            kind = None
            m = adopted.get(j)
            if m is not None:
                kind = m.kind
                if kind == "wrong_operation":
                    op = m.op
                elif kind == "wrong_operand":
                    args[m.slot] = m.operand
            # Errors grow more likely along a solution (2(j+1)/(S+1), mean 1 over the S steps):
            # later steps work with larger, derived numbers, and real first errors are not
            # mostly in the opening step.
            elif rng.random() < p_error * 2 * (j + 1) / (len(problem.steps) + 1):
                kind = rng.choices(synthetic.STEP_ERROR_KINDS, setup.weights)[0]
                if kind == "wrong_operation":
                    op = rng.choice([o for o in "+-*" if o != ref.op])
                elif kind == "wrong_operand":
                    slot = rng.randrange(2)
                    current = value(args[slot])
                    options = [q for q in synthetic.available_quantities(problem, j)
                               if q != args[slot] and value(q) != current]
                    if options:
                        args[slot] = rng.choice(options)
                    else:
                        kind = "arithmetic"
            j += 1
            if kind == "skipped_step":
                continue
            a, b = value(args[0]), value(args[1])
            exact = synthetic.exact_value(a, op, b)
            if exact is None:
                # An uneven division after an earlier error: the solver rounds (a slip itself).
                result = round(a / b) if b != 0 else 0
            elif kind == "arithmetic":
                result = _slip(exact, rng.random() < cfg.gross_slip_share, rng)
            else:
                result = exact
            held[ref.target] = (result, exact)
            out.append(synthetic.StepRecord("compute", j - 1, a, op, b, result))
            pending = out[-1]
        return out

    def _check(self, r: synthetic.StepRecord, rng: random.Random) -> synthetic.StepRecord | None:
        """A "To check, ..." step that undoes a step's operation (used by nothing), or None
        where the undoing would divide by zero."""
        inverse = {"+": "-", "-": "+", "*": "/", "/": "*"}[r.op]
        result = synthetic.exact_value(r.result, inverse, r.b)
        if result is None:
            return None
        if rng.random() < self.config.check_error_rate:
            result = _slip(result, rng.random() < self.config.gross_slip_share, rng)
        return synthetic.StepRecord("check", -1, r.result, inverse, r.b, result)


def make_world(n_problems: int, pool_size: int, seed: int, config: synthetic.WorldConfig | None = None,
               strength: float = 0.0) -> list[synthetic.ProblemPool]:
    """``n_problems`` problems with ``pool_size`` candidates each, all fixed by ``seed``.

    synthetic.Problem ``i`` and its pool depend only on (seed, i, config, strength, pool_size), so a smaller
    world is a prefix of a larger one.
    """
    config = config or synthetic.WorldConfig()
    solver = NoisySolver(config, strength)
    pools = []
    for i, problem in enumerate(synthetic.generate_problems(n_problems, seed, config)):
        rng = random.Random(f"prmkit-synthetic:{seed}:pool:{i}:{float(strength)!r}")
        pools.append(synthetic.ProblemPool(problem, solver.sample_pool(problem, pool_size, rng)))
    return pools


class SolverGenerator:
    """``NoisySolver`` behind the ``Generator`` interface, for questions of the demo world.

    ``problems`` are the world's problems the generator may be asked about (matched by question
    text); ``problems_for`` rebuilds them from records' ``meta["problem_id"]``. Each call draws
    from its own generator seeded by (seed, question, prefix length), so the same call gives
    the same continuations.
    """

    def __init__(self, problems: Iterable[synthetic.Problem], solver: NoisySolver | None = None):
        self.solver = solver or NoisySolver()
        self.problems = {normalize_question(p.question): p for p in problems}

    def complete(self, question: str, prefix: Sequence[str], n: int,
                 max_steps: int | None = None, seed: int = 0) -> list[Completion]:
        problem = self.problems.get(normalize_question(question))
        if problem is None:
            raise GenerationError("the world's solver knows no problem with this question: "
                                  f"{question[:80]!r}")
        rng = random.Random(f"prmkit-solver:{seed}:{problem.id}:{len(prefix)}:{'|'.join(prefix)}")
        if max_steps == 1:
            return [Completion([step], step.startswith("The answer is"))
                    for step in self.solver.next_steps(problem, list(prefix), n, rng)]
        out = []
        for t in self.solver.continue_from(problem, list(prefix), n, rng):
            steps = t.steps[len(prefix):]
            if max_steps is not None:
                steps = steps[:max_steps]
            out.append(Completion(steps, bool(steps) and steps[-1].startswith("The answer is")))
        return out


def problems_for(trajectories: Iterable[Trajectory],
                 config: synthetic.WorldConfig | None = None) -> list[synthetic.Problem]:
    """The world problems behind records made by ``make_world`` (``meta["problem_id"]`` is
    ``"synthetic-SEED-I"``), rebuilt from their seeds. Raises ``ValueError`` for a record whose
    question is not the rebuilt problem's (another world config)."""
    out: dict[str, synthetic.Problem] = {}
    for t in trajectories:
        pid = t.meta.get("problem_id", "")
        if pid in out:
            continue
        m = re.fullmatch(r"synthetic-(\d+)-(\d+)", str(pid))
        if m is None:
            raise ValueError(f"not a record of the demo world (meta.problem_id {pid!r})")
        problem = synthetic.world_problem(int(m.group(1)), int(m.group(2)), config)
        if normalize_question(problem.question) != normalize_question(t.question):
            raise ValueError(f"{pid}: the question is not the one this world config makes")
        out[pid] = problem
    return list(out.values())
