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

Modules: ``world`` (problems and their misconceptions), ``steps`` (step strings), ``grade``
(errors and labels), ``stats`` (pools beside real ones).
"""

from prmkit.synthetic.grade import (ERROR_DETAILS, Grade, grade, label_solution,
                                    reference_trajectory, trajectory_of)
from prmkit.synthetic.stats import REAL_RANGES, format_comparison, pool_stats
from prmkit.synthetic.steps import (StepRecord, parse_step, parse_steps, reference_records,
                                    reference_steps, render_step)
from prmkit.synthetic.world import (ERROR_KINDS, MISCONCEPTION_KINDS, OPS, STEP_ERROR_KINDS,
                                    Misconception, Problem, ProblemPool, RefStep, WorldConfig,
                                    available_quantities, exact_value, generate_problem,
                                    generate_problems, world_problem)

__all__ = ["ERROR_DETAILS", "ERROR_KINDS", "MISCONCEPTION_KINDS", "OPS", "REAL_RANGES",
           "STEP_ERROR_KINDS", "Grade", "Misconception", "Problem", "ProblemPool", "RefStep",
           "StepRecord", "WorldConfig", "available_quantities", "exact_value", "format_comparison",
           "generate_problem", "generate_problems", "grade", "label_solution", "parse_step",
           "parse_steps", "pool_stats", "reference_records", "reference_steps",
           "reference_trajectory", "render_step", "trajectory_of", "world_problem"]
