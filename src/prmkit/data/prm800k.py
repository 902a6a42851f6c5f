"""PRM800K (Lightman et al. 2023, "Let's Verify Step by Step"): human ratings of MATH steps.

One JSONL line per labelled solution (phase 1 and phase 2 share the shape), trimmed::

    {"labeler": "e90a38f3-...", "timestamp": "2022-07-30T23:23:32.118856", "generation": null,
     "is_quality_control_question": false, "is_initial_screening_question": false,
     "question": {"problem": "Three pencils and a jumbo eraser cost $\\\\$1.24$. ...",
                  "ground_truth_answer": "29"},
     "label": {"steps": [
        {"completions": [{"text": "Let's call the price of a pencil p ...", "rating": 1,
                          "flagged": false}],
         "human_completion": null, "chosen_completion": 0},
        {"completions": [{"text": "The first equation is 3p + e = 124, ...", "rating": -1, ...},
                         ...4 more, all rated -1...],
         "human_completion": {"text": "We have $3p+e=1.24$ and $5p+e=1.82$.", "rating": null,
                              "source": "human", "flagged": false},
         "chosen_completion": null},
        ...],
      "total_time": 293250, "finish_reason": "solution"}}

Phase 2 adds ``question.pre_generated_steps`` (the whole model solution being rated),
``pre_generated_answer`` and ``pre_generated_verifier_score``; its labellers stop at the first
error, so the last labelled step usually has ``chosen_completion: null`` and holds the
pre-generated step (rated -1) plus rated alternatives.

Mapping onto records (``prm800k_from_row``):
    The main record follows the solution path: at each step the chosen completion, else the
    human completion, else (phase 2) the completion whose text is the pre-generated step, which
    ends the path. A step with none of these ends the path before it.
    Ratings: +1 -> 1, -1 -> 0, 0 (neutral: fine but no progress) -> ``neutral`` ("positive": 1,
    as the paper trains; "negative": 0; "skip": None), null -> None. A human completion carries
    no rating; PRM800K's README calls it the labeller's own +1 step, so ``human_steps``
    "positive" labels it 1 ("skip": None, it stays as context only). Steps after the first -1 on
    the path are unlabelled (None): their ratings assumed an earlier error.
    Phase 2: when the labelled path is a prefix of ``pre_generated_steps``, the rest of the
    pre-generated solution is appended unlabelled, so the record is the whole solution with its
    first-error label (what ProcessBench stores).
    ``finish_reason``: "solution" and "found_error" are kept; "give_up" is kept (the ratings
    given are still valid; the path just stops); "bad_problem" (the labeller reported the
    problem broken) is dropped unless ``bad_problems=True``.
    ``alternatives=True`` adds a record per rated completion off the path: the path before that
    step plus the alternative, labelled like the path (skipped when its own label ends up None).
    ``outcome``: the final answer (after "# Answer" in the last step, or
    ``pre_generated_answer`` for a whole phase-2 solution) judged against
    ``ground_truth_answer`` by ``judge_outcomes``; None for unfinished paths, null references,
    and answers the judge cannot decide.
    meta: source "prm800k", id "<labeler>:<timestamp>", phase, labeler, timestamp, generation,
    finish_reason, quality_control, screening (these two kinds of questions were served to
    every labeller, so they repeat), reference_answer, raw_labels (the raw rating of each step,
    null for human and unlabelled steps), human_steps (indices); alternatives add
    alternative_of and id "<parent id>/<step>.<completion>".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prmkit.answers import judge_answers
from prmkit.errors import DataError
from prmkit.records import Label, Trajectory, BadNumber

NEUTRAL_POLICIES: dict[str, Label] = {"positive": 1, "negative": 0, "skip": None}
HUMAN_STEP_POLICIES: dict[str, Label] = {"positive": 1, "skip": None}
FINISH_REASONS = ("solution", "found_error", "give_up", "bad_problem")
ANSWER_MARK = "# Answer"


def prm800k_from_row(row: Any, neutral: str = "positive", alternatives: bool = False,
                     human_steps: str = "positive",
                     bad_problems: bool = False) -> list[Trajectory]:
    """The records of one PRM800K line (outcomes unset: see ``judge_outcomes``).

    Errors are ``DataError`` naming the field, e.g. ``label.steps[2].completions[0].rating``.
    """
    if neutral not in NEUTRAL_POLICIES:
        raise ValueError(f"neutral must be one of {sorted(NEUTRAL_POLICIES)}, got {neutral!r}")
    if human_steps not in HUMAN_STEP_POLICIES:
        raise ValueError(f"human_steps must be one of {sorted(HUMAN_STEP_POLICIES)}, "
                         f"got {human_steps!r}")
    _need(row, dict, "", "an object")
    question = _need(row.get("question"), dict, "question", "an object")
    problem = _need(question.get("problem"), str, "question.problem", "a string")
    reference = _need(question.get("ground_truth_answer"), (str, type(None)),
                      "question.ground_truth_answer", "a string or null")
    pre_steps = question.get("pre_generated_steps")
    if pre_steps is not None:
        _need(pre_steps, list, "question.pre_generated_steps", "a list")
        for i, text in enumerate(pre_steps):
            _need(text, str, f"question.pre_generated_steps[{i}]", "a string")
    label = _need(row.get("label"), dict, "label", "an object")
    finish = label.get("finish_reason")
    if finish not in FINISH_REASONS:
        raise DataError(f"must be one of {', '.join(FINISH_REASONS)}, got {finish!r}",
                        field="label.finish_reason")
    if finish == "bad_problem" and not bad_problems:
        return []
    raw_steps = _need(label.get("steps"), list, "label.steps", "a list")

    to_label = {1: 1, -1: 0, 0: NEUTRAL_POLICIES[neutral], None: None}
    path: list[str] = []
    raw: list[int | None] = []       # raw rating of each path step
    labels: list[Label] = []
    human: list[int] = []
    offs: list[tuple[int, int, str, int]] = []  # (step, completion, text, rating) off the path
    for i, step in enumerate(raw_steps):
        where = f"label.steps[{i}]"
        _need(step, dict, where, "an object")
        completions = step.get("completions")
        chosen = step.get("chosen_completion")
        human_completion = step.get("human_completion")
        if completions is None and chosen is None and human_completion is None:
            break  # an empty step record: the labeller stopped here
        _need(completions, list, f"{where}.completions", "a list")
        texts, ratings = [], []
        for j, completion in enumerate(completions):
            at = f"{where}.completions[{j}]"
            _need(completion, dict, at, "an object")
            texts.append(_step_text(completion.get("text"), f"{at}.text"))
            ratings.append(_rating(completion.get("rating"), f"{at}.rating"))
        if chosen is not None and (type(chosen) is not int or not 0 <= chosen < len(texts)):
            raise DataError(f"must be null or an index into the {len(texts)} completions, "
                            f"got {chosen!r}", field=f"{where}.chosen_completion")
        on_path: int | None = chosen
        ends = False
        if chosen is not None:
            text, rating, value = texts[chosen], ratings[chosen], to_label[ratings[chosen]]
        elif human_completion is not None:
            at = f"{where}.human_completion"
            if isinstance(human_completion, str):  # the README's older shape: the text itself
                text, rating = _step_text(human_completion, at), None
            else:
                _need(human_completion, dict, at, "an object or a string")
                text = _step_text(human_completion.get("text"), f"{at}.text")
                rating = _rating(human_completion.get("rating"), f"{at}.rating")
            value = to_label[rating] if rating is not None else HUMAN_STEP_POLICIES[human_steps]
            human.append(len(path))
        elif pre_steps is not None and i < len(pre_steps) and pre_steps[i] in texts:
            on_path = texts.index(pre_steps[i])
            text, rating, value = texts[on_path], ratings[on_path], to_label[ratings[on_path]]
            ends = True
        else:
            on_path, ends = None, True
        offs.extend((i, j, texts[j], ratings[j]) for j in range(len(texts))
                    if j != on_path and ratings[j] is not None)
        if on_path is None and ends:
            break
        path.append(text)
        raw.append(rating)
        labels.append(value)
        if ends:
            break

    meta = {"source": "prm800k", "id": f"{row.get('labeler')}:{row.get('timestamp')}",
            "phase": 2 if pre_steps is not None else 1, "labeler": row.get("labeler"),
            "timestamp": row.get("timestamp"), "generation": row.get("generation"),
            "finish_reason": finish,
            "quality_control": bool(row.get("is_quality_control_question")),
            "screening": bool(row.get("is_initial_screening_question")),
            "reference_answer": reference}
    answer = _answer(path[-1]) if path else None
    if pre_steps is not None and path and len(path) <= len(pre_steps) \
            and pre_steps[:len(path)] == path:
        rest = pre_steps[len(path):]
        path, raw, labels = path + rest, raw + [None] * len(rest), labels + [None] * len(rest)
        answer = question.get("pre_generated_answer") if rest else answer

    out = []
    if path:
        out.append(Trajectory(question=problem, steps=path, labels=_after_error(raw, labels),
                              answer=answer, meta={**meta, "raw_labels": raw,
                                                   "human_steps": human}))
    if alternatives:
        for i, j, text, rating in offs:
            alt_raw = raw[:i] + [rating]
            alt_labels = _after_error(alt_raw, labels[:i] + [to_label[rating]])
            if alt_labels[-1] is None:
                continue
            out.append(Trajectory(
                question=problem, steps=path[:i] + [text], labels=alt_labels,
                answer=_answer(text),
                meta={**meta, "id": f"{meta['id']}/{i}.{j}", "alternative_of": meta["id"],
                      "raw_labels": alt_raw, "human_steps": [h for h in human if h < i]}))
    return out


def judge_outcomes(trajectories: Sequence[Trajectory], timeout_s: float = 5.0,
                   processes: int | None = None) -> None:
    """Set ``outcome`` in place from ``answer`` and ``meta["reference_answer"]``.

    Batched so that the few answers needing math-verify share one pool of time-bounded workers
    (see ``prmkit.answers.judge_answers``); records without both stay None.
    """
    todo = [t for t in trajectories
            if t.answer is not None and t.meta.get("reference_answer") is not None]
    verdicts = judge_answers([t.meta["reference_answer"] for t in todo],
                             [t.answer for t in todo], [t.question for t in todo],
                             timeout_s=timeout_s, processes=processes)
    for t, verdict in zip(todo, verdicts):
        t.outcome = verdict


def _need(value: Any, kind: type | tuple[type, ...], field: str, what: str) -> Any:
    if not isinstance(value, kind):
        shown = "null" if value is None else type(value).__name__
        raise DataError(f"must be {what}, got {shown}", field=field or None)
    return value


def _step_text(value: Any, field: str) -> str:
    _need(value, str, field, "a string")
    if not value.strip():
        raise DataError("empty step text", field=field)
    return value


def _rating(value: Any, field: str) -> int | None:
    if value is None or (type(value) is int and value in (-1, 0, 1)):
        return value
    shown = value.text if isinstance(value, BadNumber) else repr(value)
    raise DataError(f"must be -1, 0, 1 or null, got {shown}", field=field)


def _after_error(raw: list[int | None], labels: list[Label]) -> list[Label]:
    """Labels with every step after the first -1 rating set to None."""
    if -1 in raw:
        first = raw.index(-1)
        return labels[:first + 1] + [None] * (len(labels) - first - 1)
    return list(labels)


def _answer(step: str) -> str | None:
    """The text after "# Answer" in a step, or None when the step gives no final answer."""
    if ANSWER_MARK not in step:
        return None
    answer = step.rsplit(ANSWER_MARK, 1)[1].strip()
    return answer or None
