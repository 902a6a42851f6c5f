"""Grading the world's solutions: every local error, its kind and detail, whether it is a shared
misconception, and the labels that follow (``records.first_error_labels``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prmkit.records import Trajectory, first_error_labels
from prmkit.synthetic.steps import StepRecord, parse_steps, reference_records, render_step
from prmkit.synthetic.world import Problem, RefStep, exact_value

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


def reference_trajectory(problem: Problem, label_policy: str = "first_error") -> Trajectory:
    """The reference solution as a trajectory (all labels 1)."""
    return trajectory_of(problem, reference_records(problem), label_policy)


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

