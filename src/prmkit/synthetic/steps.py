"""How the world's solutions are written and read back: step strings to and from ``StepRecord``s.

See ``prmkit.synthetic`` for the step-string contract."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prmkit.synthetic.world import Problem


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



_EQUATION = re.compile(r"(-?\d+) ([-+*/]) (-?\d+) = (-?\d+)")
_ANSWER = re.compile(r"The answer is (-?\d+)\.")
_CHECK = "To check,"



def reference_records(problem: Problem) -> list[StepRecord]:
    """The reference solution as step records (compute steps, then the answer)."""
    v = problem.values
    out = [StepRecord("compute", j, v[s.args[0]], s.op, v[s.args[1]], v[s.target])
           for j, s in enumerate(problem.steps)]
    return out + [StepRecord("answer", result=problem.answer)]


def reference_steps(problem: Problem) -> list[str]:
    """The reference solution's step strings."""
    return [render_step(problem, r) for r in reference_records(problem)]


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

