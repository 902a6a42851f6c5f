"""The one record type, ``Trajectory``, and its JSONL reading and writing.

Every data adapter produces ``Trajectory`` objects; nothing downstream knows where a record came
from. One JSONL line holds one trajectory::

    {"question": "Tom has 3 apples and buys 4 more. How many?",
     "steps": ["3 + 4 = 7.", "The answer is 7."],
     "labels": [1, 1],
     "label_kind": "correctness",
     "outcome": true, "answer": "7", "meta": {"source": "hand"}}

Only ``question`` and ``steps`` are required. ``labels`` defaults to all-null (unlabelled).

Labels:
    ``label_kind="correctness"``: each label is 1 (step correct), 0 (wrong), a float in [0, 1]
    (a soft label), or null (unlabelled: no loss on that step); true and false mean 1 and 0.
    ``label_kind="value"``: each label is a Monte-Carlo estimate in [0, 1] of reaching a correct
    answer from that step. The two kinds are never mixed silently (see ``check_label_kind``).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from prmkit._io import atomic_open, open_input
from prmkit.errors import DataError

Label = float | None
LABEL_KINDS = ("correctness", "value")
LABEL_POLICIES = ("first_error", "value")
FIELDS = ("question", "steps", "labels", "label_kind", "outcome", "answer", "meta")


@dataclass(slots=True)
class Trajectory:
    """A question and its solution steps, with optional per-step labels.

    Attributes:
        question: the problem text.
        steps: the solution, one string per step (non-empty).
        labels: one per step: 1, 0, a float in [0, 1], or None (unlabelled); true and false
            (as TRL writes them) are read as 1 and 0.
        label_kind: "correctness" (PRM800K-style) or "value" (Monte-Carlo estimates).
        outcome: whether the final answer is correct, when known.
        answer: the final answer text, when known.
        meta: anything else; adapters keep the source's raw labels here (``meta["raw_labels"]``).
    """

    question: str
    steps: list[str]
    labels: list[Label] = None  # type: ignore[assignment]  # filled with None per step
    label_kind: str = "correctness"
    outcome: bool | None = None
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.labels is None:
            self.labels = [None] * len(self.steps) if isinstance(self.steps, list) else None
        _validate(self)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def is_labelled(self) -> bool:
        return any(label is not None for label in self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "steps": list(self.steps), "labels": list(self.labels),
                "label_kind": self.label_kind, "outcome": self.outcome, "answer": self.answer,
                "meta": self.meta}

    @classmethod
    def from_dict(cls, obj: Any) -> "Trajectory":
        """Build from a parsed JSON object; errors are ``DataError`` naming the field."""
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {typename(obj)}")
        unknown = sorted(set(obj) - set(FIELDS))
        if unknown:
            raise DataError(f"unknown field (allowed: {', '.join(FIELDS)}; put extras in meta)",
                            field=unknown[0])
        for name in ("question", "steps"):
            if name not in obj:
                raise DataError("missing required field", field=name)
        bad = find_bad_value(obj)
        if bad is not None:
            raise DataError(bad[1], field=bad[0] or None)
        return cls(**obj)


def typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _validate(t: Trajectory) -> None:
    if not isinstance(t.question, str):
        raise DataError(f"must be a string, got {typename(t.question)}", field="question")
    for name, text in (("question", t.question), ("answer", t.answer)):
        problem = text_problem(text) if isinstance(text, str) else None
        if problem is not None:
            raise DataError(problem, field=name)
    if is_invisible(t.question):
        raise DataError("must not be empty (or only invisible characters)", field="question")
    if not isinstance(t.steps, list):
        raise DataError(f"must be a list of strings, got {typename(t.steps)}", field="steps")
    if not t.steps:
        raise DataError("must hold at least one step", field="steps")
    for i, step in enumerate(t.steps):
        if not isinstance(step, str):
            raise DataError(f"must be a string, got {typename(step)}", field=f"steps[{i}]")
        if text_problem(step) is not None:
            raise DataError(text_problem(step), field=f"steps[{i}]")
        if is_invisible(step):
            raise DataError("empty step (or only invisible characters)", field=f"steps[{i}]")
    if not isinstance(t.labels, list):
        raise DataError(f"must be a list, got {typename(t.labels)}", field="labels")
    if len(t.labels) != len(t.steps):
        raise DataError(f"has {len(t.labels)} labels for {len(t.steps)} steps", field="labels")
    if t.label_kind not in LABEL_KINDS:
        raise DataError(f"must be one of {LABEL_KINDS}, got {t.label_kind!r}", field="label_kind")
    for i, label in enumerate(t.labels):
        if label is None:
            continue
        if isinstance(label, bool):  # TRL's stepwise data writes true/false: 1 and 0
            t.labels[i] = label = int(label)
        if not isinstance(label, (int, float)):
            raise DataError(f"must be 1, 0, a number in [0, 1] or null, got {typename(label)}",
                            field=f"labels[{i}]")
        if not (math.isfinite(label) and 0.0 <= label <= 1.0):
            raise DataError(f"must be in [0, 1], got {label!r}", field=f"labels[{i}]")
    if t.outcome is not None and not isinstance(t.outcome, bool):
        raise DataError(f"must be true, false or null, got {typename(t.outcome)}",
                        field="outcome")
    if t.answer is not None and not isinstance(t.answer, str):
        raise DataError(f"must be a string or null, got {typename(t.answer)}", field="answer")
    if not isinstance(t.meta, dict):
        raise DataError(f"must be an object, got {typename(t.meta)}", field="meta")


# --- JSON parsing that refuses what JSON lets through ---------------------------------------------
# json.loads accepts NaN and Infinity, turns 1e999 into inf, raises a location-free error on
# integers longer than sys.get_int_max_str_digits(), keeps the last of duplicate keys, accepts lone
# surrogates ("\ud800", which no UTF-8 writer can write back) and recurses without bound. We parse
# bad numbers into a marker, refuse duplicate keys and deep nesting, and report the field.

MAX_DEPTH = 64  # nesting of JSON arrays and objects in one record (meta may nest)


class BadNumber:
    def __init__(self, text: str):
        self.text = text


def _parse_float(text: str) -> float | BadNumber:
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text)


def _parse_int(text: str) -> int | BadNumber:
    if len(text.lstrip("-")) > sys.get_int_max_str_digits():
        return BadNumber(f"{text[:12]}... ({len(text)} characters)")
    return int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DataError("duplicate key in one JSON object (JSON readers disagree on which "
                            "wins)", field=key)
        out[key] = value
    return out


def loads(text: str) -> Any:
    """``json.loads`` with NaN, infinities and giant integers turned into markers, duplicate keys
    and nesting beyond ``MAX_DEPTH`` refused (``DataError``)."""
    try:
        return json.loads(text, parse_float=_parse_float, parse_int=_parse_int,
                          parse_constant=BadNumber, object_pairs_hook=_no_duplicates)
    except RecursionError:  # the C parser stops at the interpreter's recursion limit
        raise DataError(f"JSON nested more than {MAX_DEPTH} levels deep") from None


def find_bad_value(obj: Any) -> tuple[str, str] | None:
    """The first value a record must not hold, as (field, problem): a bad number (NaN,
    infinite, too many digits), a string (or key) with a lone surrogate, or nesting deeper than
    ``MAX_DEPTH``. Iterative: any depth ``loads`` lets through is safe here."""
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where, f"JSON nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, BadNumber):
            return where, (f"number {value.text} is not allowed (NaN, infinite, or over "
                           f"{sys.get_int_max_str_digits()} digits)")
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                return where, problem
        elif isinstance(value, dict):
            for k in value:
                problem = text_problem(k)
                if problem is not None:
                    return f"{where}.{k!a}" if where else ascii(k), "key " + problem
            stack.extend(reversed([(f"{where}.{k}" if where else str(k), v, depth + 1)
                                   for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{where}[{i}]", v, depth + 1)
                                   for i, v in enumerate(value)]))
    return None


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored as UTF-8 text (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"holds a lone surrogate ({text[e.start]!a} at character {e.start}), which is "
                "not Unicode text")
    return None


def is_invisible(text: str) -> bool:
    """True when ``text`` has no visible character: only whitespace, zero-width and other
    format or control characters (U+200B, U+2060, U+FEFF, ...)."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")
               for ch in text)


# --- JSONL files -------------------------------------------------------------------------------

def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)`` for each non-blank line, 1-based.

    Raises ``DataError`` with file and line on malformed JSON.
    """
    path = str(path)
    with open_input(path) as f:  # decoded line by line, so a bad byte is reported with its line
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                yield line_no, loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path,
                                line=line_no) from None
            except UnicodeDecodeError as e:
                raise DataError(f"not UTF-8 text: {e.reason}", path=path, line=line_no) from None
            except DataError as e:  # from loads: duplicate keys, deep nesting
                raise DataError(e.message, path=path, line=line_no, field=e.field) from None


Location = tuple[str, int]  # (file, line), for errors found after reading


def read_jsonl_located(path: str | os.PathLike) -> tuple[list[Trajectory], list[Location]]:
    """``read_jsonl`` and the (file, line) of each record, so that later stages (tokenization,
    say) can still name the line of a record they refuse."""
    out, where = [], []
    for line_no, obj in iter_jsonl(path):
        try:
            out.append(Trajectory.from_dict(obj))
        except DataError as e:
            raise DataError(e.message, path=str(path), line=line_no, field=e.field) from None
        except TypeError as e:  # a dataclass argument problem not caught above
            raise DataError(str(e), path=str(path), line=line_no) from None
        where.append((str(path), line_no))
    if not out:
        raise DataError("no trajectories in file", path=str(path))
    return out, where


def read_jsonl(path: str | os.PathLike) -> list[Trajectory]:
    """Read trajectories from a JSONL file; any problem is a ``DataError`` with file:line:field."""
    return read_jsonl_located(path)[0]


def write_jsonl(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> int:
    """Write trajectories atomically (temporary file, then rename). Returns the count."""
    n = 0
    with atomic_open(path) as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
            n += 1
    return n


_LATEX_NOISE = re.compile(r"\\(?:left|right|displaystyle|q?quad)(?![A-Za-z])|\\[!,;: ]|~")
_BACKSLASH_BEFORE_SYMBOL = re.compile(r"\\(?![A-Za-z])")
_PUNCTUATION = re.compile(r"[$.,;:!?'\"`{}]|\s")


def normalize_question(text: str) -> str:
    """The form in which two questions count as the same (data overlap checks, splits by question).

    >>> normalize_question("What is $\\\\dfrac{1}{2}$ of 40,\\\\!000?")
    'whatis\\\\frac12of40000'
    """
    text = _LATEX_NOISE.sub("", text.lower())
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _PUNCTUATION.sub("", _BACKSLASH_BEFORE_SYMBOL.sub("", text))


def first_error_labels(n_steps: int, first_error: int, label_policy: str = "first_error") \
        -> list[Label]:
    """Per-step labels from the index of the first wrong step (-1: none wrong).

    ``"first_error"`` (PRM800K, ProcessBench): right before it, wrong at it, unlabelled after.
    ``"value"``: every step from the first error on is labelled wrong.

    >>> first_error_labels(4, 1)
    [1, 0, None, None]
    >>> first_error_labels(4, 1, "value")
    [1, 0, 0, 0]
    >>> first_error_labels(3, -1)
    [1, 1, 1]
    """
    if label_policy not in LABEL_POLICIES:
        raise ValueError(f"label_policy must be one of {LABEL_POLICIES}, got {label_policy!r}")
    if first_error < 0:
        return [1] * n_steps
    after: Label = None if label_policy == "first_error" else 0
    return [1] * first_error + [0] + [after] * (n_steps - first_error - 1)


def first_error(t: Trajectory) -> int | None:
    """The index of the first wrong step (label < 0.5), -1 when every step is labelled right,
    None when that cannot be told (no wrong step, but some step unlabelled). The inverse of
    ``first_error_labels``.

    >>> first_error(Trajectory("q", ["a", "b", "c"], labels=[1, 0, None]))
    1
    >>> first_error(Trajectory("q", ["a", "b"], labels=[1, 1]))
    -1
    >>> first_error(Trajectory("q", ["a", "b"], labels=[1, None])) is None
    True
    """
    for i, label in enumerate(t.labels):
        if label is None:
            return None
        if label < 0.5:
            return i
    return -1


def check_label_kind(trajectories: list[Trajectory]) -> str:
    """The one label kind of a labelled data set; mixing kinds is an error, never silent."""
    kinds = {t.label_kind for t in trajectories if t.is_labelled}
    if len(kinds) > 1:
        raise DataError(f"the data mixes label kinds {sorted(kinds)}; train on one kind at a time "
                        "(convert or filter first)")
    return kinds.pop() if kinds else "correctness"


def check_steps(trajectories: list[Trajectory], locations: list[Location] | None,
                max_steps: int, hint: str) -> None:
    """Refuse, before any embedding, a trajectory longer than a head takes, by file and line (or
    by index in a list)."""
    for i, t in enumerate(trajectories):
        if t.num_steps > max_steps:
            path, line = locations[i] if locations else (None, None)
            raise DataError(f"{t.num_steps} steps, more than max_steps={max_steps}; {hint}",
                            path=path, line=line, field="steps" if locations else f"[{i}].steps")
