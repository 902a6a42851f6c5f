"""CHAMP: competition problems, model solutions, and first-wrong-step annotations.

CHAMP (PyPI ``champ-dataset``, MIT; Mao et al. 2024) holds 270 problems. Each problem has model
solutions under 18 prompts x 4 models ("conversations", keyed ``"GPT-4|0-Shot"``) and, for 540 of
those solutions, a human first-wrong-step annotation: a character span into the solution text. One
annotation, trimmed::

    problem.identifier = "P_Combinatorics_1"
    problem.answer     = "239"
    problem.fws_annotations["GPT-3.5|No C w/o H"] = FWSAnnotation(
        text="To solve this problem, we can use the concept of recursion.\\n\\nLet's define ...",
        start_idx=319, end_idx=469, author="GPT-3.5")    # start_idx None: "No mistake"
    problem.conversations["GPT-3.5|No C w/o H"].messages = [
        System, User (the problem), Model.GPT-3.5 (the solution = the annotated text),
        User ("Now, summarize the answer above in one sentence ..."), Model.GPT-3.5 (summary)]

Concept prompts may add a User/Model exchange before the problem, so the solution is the
second-to-last model message and the summary the last. A solution cut by the length limit has
``error="LENGTH_CURRENT"`` and its summary ``text=None`` (``"LENGTH_PREVIOUS"``).

Mapping onto records:
    ``load_champ``: one record per annotation. Steps come from ``segment`` (blank lines by
    default). The first step that overlaps the annotated span is labelled 0, the steps before it
    1, the steps after it None (unlabelled); "No mistake" labels every step 1.
    ``load_champ_pools``: per problem, the model solutions as unlabelled candidates. The prompts
    "1/3 Soln" and "2/3 Soln" are left out by default: there the model continues a partial
    solution given in the prompt, so its text is not a whole solution.
    ``outcome``: the summary judged against the reference answer (``judge_answers``). A
    summary restates the problem, so for a numeric reference the candidates are the numbers of
    the summary that the problem does not mention; formulas go to math-verify. A reference
    that is a number with a gloss ("98 values", "0 is the only possible value") counts as the
    number. None when the reference is words ("No", "The limit does not exist"), when a formula
    answer is written in prose (math-verify misreads "2^(n-1)" in plain text), or when the
    judge cannot decide in time. On v0 this decides 193 of the 540 annotated solutions and
    6,306 of the 17,280 pool candidates (162 of the 270 problems have at least one).
    ``answer``: where judged, the answer in a short form that majority vote can count ("29"
    for "There are 29 valid strings of length 6 ..."; see ``vote_answer``), else the summary;
    the summary itself is kept in ``meta["summary"]``.

Answers are judged by ``prmkit.answers`` (shared with the PRM800K adapter and the labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prmkit.data.segment import segment_spans
from prmkit.errors import DataError, PrmkitError
from prmkit.answers import judge_answers, vote_answer
from prmkit.records import Trajectory

# Prompts whose solutions are whole solutions (see the module docstring).
POOL_PROMPTS = (
    "0-Shot", "5-Shot",
    "No C w/o H", "No C w/ H", "Direct C w/o H", "Direct C w/ H", "Root C w/o H", "Root C w/ H",
    "Name C w/o H", "Name C w/ H", "Example C w/o H", "Example C w/ H",
    "Problem C w/o H", "Problem C w/ H", "Misleading C w/o H", "Misleading C w/ H",
)


def load_champ(source: str = "v0", method: str = "blank", pattern: str | None = None,
               problems: Sequence[str] | None = None, timeout_s: float = 5.0,
               processes: int | None = None) -> list[Trajectory]:
    """The annotated solutions, one record each, with first-wrong-step labels.

    Args:
        source: a dataset file bundled with ``champ_dataset`` ("v0") or a path to a JSON file
            of the same shape.
        method, pattern: how to split a solution into steps (see ``segment``).
        problems: problem identifiers to keep (all when None).
        timeout_s, processes: for judging the final answers (see ``judge_answers``).
    """
    dataset = _load_dataset(source)
    pending: list[dict[str, Any]] = []
    for pid, problem in dataset.problems.items():
        if problems is not None and pid not in problems:
            continue
        for key, annotation in problem.fws_annotations.items():
            where = f"problems.{pid}.fws_annotations.{key}"
            if key not in problem.conversations:
                raise DataError("no conversation for this annotation", path=source, field=where)
            _, summary, truncated = _solution_and_summary(problem.conversations[key], source,
                                                          f"problems.{pid}.conversations.{key}")
            text = annotation.text
            spans = segment_spans(text, method, pattern)
            if not spans:
                raise DataError("empty solution", path=source, field=f"{where}.text")
            labels = _first_wrong_labels(spans, annotation.start_idx, annotation.end_idx,
                                         len(text), source, where)
            model, prompt = key.split("|", 1)
            record = {
                "question": problem.text, "steps": [text[a:b] for a, b in spans],
                "labels": labels, "answer": summary,
                "meta": {"source": "champ", "id": f"{pid}|{key}", "problem_id": pid,
                         "model": model, "prompt": prompt, "category": problem.category,
                         "reference_answer": problem.answer, "truncated": truncated,
                         "raw_labels": {"start_idx": annotation.start_idx,
                                        "end_idx": annotation.end_idx}}}
            pending.append(record)
    if not pending:
        raise DataError("no annotated solutions selected", path=source)
    return _judged(pending, timeout_s, processes)


def load_champ_pools(source: str = "v0", prompts: Sequence[str] = POOL_PROMPTS,
                     models: Sequence[str] | None = None, method: str = "blank",
                     pattern: str | None = None, problems: Sequence[str] | None = None,
                     timeout_s: float = 5.0,
                     processes: int | None = None) -> dict[str, list[Trajectory]]:
    """Per problem identifier, its model solutions as unlabelled candidates with judged outcomes.

    Candidates are ordered as the dataset lists the conversations (model, then prompt). A
    solution with no text after segmentation is left out.
    """
    dataset = _load_dataset(source)
    pending: list[dict[str, Any]] = []
    for pid, problem in dataset.problems.items():
        if problems is not None and pid not in problems:
            continue
        for key, conversation in problem.conversations.items():
            model, prompt = key.split("|", 1)
            if prompt not in prompts or (models is not None and model not in models):
                continue
            solution, summary, truncated = _solution_and_summary(
                conversation, source, f"problems.{pid}.conversations.{key}")
            steps = [solution[a:b] for a, b in segment_spans(solution, method, pattern)]
            if not steps:
                continue
            record = {
                "question": problem.text, "steps": steps, "answer": summary,
                "meta": {"source": "champ", "id": f"{pid}|{key}", "problem_id": pid,
                         "model": model, "prompt": prompt, "category": problem.category,
                         "reference_answer": problem.answer, "truncated": truncated}}
            pending.append(record)
    if not pending:
        raise DataError("no solutions selected", path=source)
    pools: dict[str, list[Trajectory]] = {}
    for trajectory in _judged(pending, timeout_s, processes):
        pools.setdefault(trajectory.meta["problem_id"], []).append(trajectory)
    return pools


def _judged(records: list[dict[str, Any]], timeout_s: float,
            processes: int | None) -> list[Trajectory]:
    """The records with their summaries judged: ``outcome`` the verdict, ``answer`` the judged
    answer in the short form majority vote counts (``vote_answer``; the summary where no
    verdict), ``meta["summary"]`` the summary sentence."""
    references = [r["meta"]["reference_answer"] for r in records]
    questions = [r["question"] for r in records]
    summaries = [r["answer"] for r in records]
    verdicts = judge_answers(references, summaries, questions, timeout_s=timeout_s,
                             processes=processes)
    out = []
    for record, reference, question, summary, verdict in zip(records, references, questions,
                                                               summaries, verdicts):
        answer = summary if verdict is None else vote_answer(reference, summary, question,
                                                             verdict)
        out.append(Trajectory(**{**record, "answer": answer,
                                 "meta": {**record["meta"], "summary": summary}},
                              outcome=verdict))
    return out


def _load_dataset(source: str):
    try:
        import champ_dataset
    except ImportError:
        raise PrmkitError("CHAMP needs the champ-dataset package: pip install champ-dataset") \
            from None
    try:
        return champ_dataset.load(source)
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path=source) from None
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise DataError(f"not a CHAMP dataset file ({type(e).__name__}: {e})", path=source) \
            from None


def _solution_and_summary(conversation, source: str, where: str) -> tuple[str, str | None, bool]:
    """(solution text, summary text or None, whether the solution was cut by the length limit)."""
    model = [m for m in conversation.messages or [] if (m.role or "").startswith("Model.")]
    if len(model) < 2 or model[-2].text is None:
        raise DataError("expected a solution and a summary from the model", path=source,
                        field=f"{where}.messages")
    solution, summary = model[-2], model[-1]
    return solution.text, summary.text, solution.error == "LENGTH_CURRENT"


def _first_wrong_labels(spans: list[tuple[int, int]], start: int | None, end: int | None,
                        length: int, source: str, where: str) -> list[float | None]:
    if start is None:  # "No mistake"
        return [1] * len(spans)
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= length):
        raise DataError(f"span [{start}, {end}) is not inside the {length}-character solution",
                        path=source, field=f"{where}.start_idx")
    for i, (a, b) in enumerate(spans):
        if b > start and a < end:
            return [1] * i + [0] + [None] * (len(spans) - i - 1)
    raise DataError(f"span [{start}, {end}) covers only whitespace", path=source,
                    field=f"{where}.start_idx")
