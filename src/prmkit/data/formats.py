"""Read and write PRM data formats by name, convert between them, and describe a data set.

``FORMATS`` maps each format name to its reader and writer (None: read-only)::

    jsonl         prmkit's own records (``prmkit.records``)          read, write
    prm800k       PRM800K phase 1 and 2 labels                        read
    math-shepherd Math-Shepherd                                       read
    trl           TRL stepwise supervision                            read, write
    processbench  ProcessBench                                        read, write
    champ         CHAMP (from the champ-dataset package)              read

A source is a local JSONL file, a JSON file (one object, or a list of objects), a folder of
such files (read in name order, not recursively), or, when no such path exists, the name of a
Hugging Face hub data set, read with ``datasets.load_dataset(source, split=split)`` (all splits
in order when ``split`` is None). For CHAMP the source is the name of a bundled dataset file
("v0") or a path to one.

Errors in a source are ``DataError`` with file:line:field, e.g.
``train.jsonl:3: label.steps[2].completions[0].rating: must be -1, 0, 1 or null, got 7``
(JSON list items are located by field, ``[4].label``; hub rows by their 1-based row number).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from prmkit.data.champ import load_champ
from prmkit.data.math_shepherd import math_shepherd_from_row
from prmkit.data.prm800k import judge_outcomes, prm800k_from_row
from prmkit.data.processbench import processbench_from_row, write_processbench
from prmkit.data.segment import segment
from prmkit.data.trl import trl_from_row, write_trl
from prmkit._io import check_output, open_input
from prmkit.errors import DataError, PrmkitError
from prmkit.records import (Location, Trajectory, find_bad_value, iter_jsonl, loads,
                            normalize_question, read_jsonl_located, write_jsonl)

FromRow = Callable[[Any], list[Trajectory]]


class Format(NamedTuple):
    read: Callable[..., list[Trajectory]]  # read(source, split=None, **options)
    write: Callable[..., dict[str, int]] | None  # write(path, trajectories) -> summary


# --- sources -----------------------------------------------------------------------------------

def iter_rows(source: str | os.PathLike,
              split: str | None = None) -> Iterator[tuple[str, int | None, str, Any]]:
    """Yield ``(path, line, field_prefix, row)`` for each row of a source (see module docstring)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if split is not None:
            raise PrmkitError("split applies to hub data sets, not to a local folder")
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json"))
        # (each is opened with open_input: a FIFO named a.jsonl is refused, not read)
        if not files:
            raise DataError("no .jsonl or .json files in folder", path=str(source))
        for file in files:
            yield from _file_rows(file)
    elif path.is_file():
        if split is not None:
            raise PrmkitError("split applies to hub data sets, not to a local file")
        yield from _file_rows(path)
    elif path.exists():
        raise DataError("not a regular file or folder (a FIFO, device or socket)",
                        path=str(source))
    elif str(source).endswith((".jsonl", ".json")) or str(source).startswith(("/", ".", "~")):
        raise DataError("no such file or folder", path=str(source))
    else:
        yield from _hub_rows(str(source), split)


def _file_rows(path: Path) -> Iterator[tuple[str, int | None, str, Any]]:
    if path.suffix != ".json":
        for line, row in iter_jsonl(path):
            yield str(path), line, "", row
        return
    try:
        with open_input(path) as f:
            obj = loads(f.read().decode("utf-8"))
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", path=str(path)) from None
    except DataError as e:  # from loads: duplicate keys, deep nesting
        raise DataError(e.message, path=str(path), field=e.field) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e.reason}", path=str(path)) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=str(path),
                        line=e.lineno) from None
    if isinstance(obj, list):
        for i, row in enumerate(obj):
            yield str(path), None, f"[{i}]", row
    else:
        yield str(path), None, "", obj


def _hub_rows(name: str, split: str | None) -> Iterator[tuple[str, int | None, str, Any]]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise PrmkitError(f"{name!r} is not a local file or folder, and reading it from the "
                          "Hugging Face hub needs the datasets package: pip install datasets") \
            from None
    try:
        loaded = load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, bad split: all end the same way for the user
        raise PrmkitError(f"{name!r} is not a local file or folder, and loading it from the "
                          f"Hugging Face hub failed ({type(e).__name__}: {e})") from None
    splits = {split: loaded} if split is not None else dict(loaded)
    for split_name, rows in splits.items():
        for i, row in enumerate(rows):
            yield f"{name}[{split_name}]", i + 1, "", row


def _read_rows(source: str | os.PathLike, split: str | None, from_row: FromRow,
               **options: Any) -> list[Trajectory]:
    out: list[Trajectory] = []
    for path, line, prefix, row in iter_rows(source, split):
        try:
            bad = find_bad_value(row)
            if bad is not None:
                raise DataError(bad[1], field=bad[0] or None)
            out.extend(from_row(row, **options))
        except DataError as e:
            field = f"{prefix}.{e.field}" if prefix and e.field else (prefix or e.field)
            raise DataError(e.message, path=path, line=line, field=field) from None
    if not out:
        raise DataError("no trajectories in source", path=str(source))
    return out


# --- readers and writers -----------------------------------------------------------------------

def read_native(source: str | os.PathLike, split: str | None = None) -> list[Trajectory]:
    """prmkit's own JSONL records."""
    return _read_rows(source, split, lambda row: [Trajectory.from_dict(row)])


def read_prm800k(source: str | os.PathLike, split: str | None = None, neutral: str = "positive",
                 alternatives: bool = False, human_steps: str = "positive",
                 bad_problems: bool = False, timeout_s: float = 5.0,
                 processes: int | None = None) -> list[Trajectory]:
    """PRM800K lines (options: see ``prm800k_from_row``), with outcomes judged."""
    records = _read_rows(source, split, prm800k_from_row, neutral=neutral,
                         alternatives=alternatives, human_steps=human_steps,
                         bad_problems=bad_problems)
    judge_outcomes(records, timeout_s=timeout_s, processes=processes)
    return records


def read_math_shepherd(source: str | os.PathLike, split: str | None = None) -> list[Trajectory]:
    """Math-Shepherd lines (see ``math_shepherd_from_row``)."""
    return _read_rows(source, split, math_shepherd_from_row)


def read_trl(source: str | os.PathLike, split: str | None = None) -> list[Trajectory]:
    """TRL stepwise-supervision rows (see ``trl_from_row``)."""
    return _read_rows(source, split, trl_from_row)


def read_processbench(source: str | os.PathLike, split: str | None = None) -> list[Trajectory]:
    """ProcessBench items (see ``processbench_from_row``)."""
    return _read_rows(source, split, processbench_from_row)


def read_champ(source: str | os.PathLike = "v0", split: str | None = None,
               **options: Any) -> list[Trajectory]:
    """CHAMP's annotated solutions (options: see ``prmkit.data.champ.load_champ``)."""
    if split is not None:
        raise PrmkitError("CHAMP has no splits")
    return load_champ(str(source), **options)


def write_native(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> dict[str, int]:
    """prmkit's own JSONL records, atomically; nothing is dropped."""
    n = write_jsonl(path, trajectories)
    return {"trajectories_in": n, "trajectories_out": n}


FORMATS: dict[str, Format] = {
    "jsonl": Format(read_native, write_native),
    "prm800k": Format(read_prm800k, None),
    "math-shepherd": Format(read_math_shepherd, None),
    "trl": Format(read_trl, write_trl),
    "processbench": Format(read_processbench, write_processbench),
    "champ": Format(read_champ, None),
}


def _format(name: str) -> Format:
    if name not in FORMATS:
        raise PrmkitError(f"unknown format {name!r} (choose from {', '.join(FORMATS)})")
    return FORMATS[name]


def load(format: str, source: str | os.PathLike, split: str | None = None,
         **options: Any) -> list[Trajectory]:
    """Read ``source`` in ``format`` into records; ``options`` go to that format's reader."""
    return _format(format).read(source, split, **options)


def load_located(source: str | os.PathLike | list[Trajectory], format: str = "jsonl"
                 ) -> tuple[list[Trajectory], list[Location] | None]:
    """Records, and the (file, line) of each when they come from a JSONL file of records (so a
    later check can name where a bad one is). A list of records passes through unchanged;
    any other ``format`` goes to its adapter, whose reader names the file and line of whatever
    it refuses."""
    if isinstance(source, list):
        return source, None
    if format == "jsonl":
        return read_jsonl_located(source)
    return load(format, source), None


def _writer(name: str) -> Callable[..., dict[str, int]]:
    writer = _format(name).write
    if writer is None:
        writable = ", ".join(n for n, f in FORMATS.items() if f.write is not None)
        raise PrmkitError(f"format {name!r} is read-only (writable: {writable})")
    return writer


def save(format: str, path: str | os.PathLike,
         trajectories: Iterable[Trajectory]) -> dict[str, int]:
    """Write records in ``format`` atomically; returns the writer's summary (what it dropped)."""
    return _writer(format)(path, trajectories)


def convert(src_format: str, src_path: str | os.PathLike, dst_format: str,
            dst_path: str | os.PathLike, split: str | None = None,
            read_options: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Read one format and write another; returns the records read plus the writer's summary.
    An existing ``dst_path`` is replaced only with ``overwrite``, and never when it is the
    source."""
    writer = _writer(dst_format)  # a read-only target fails before the (maybe long) read
    check_output(dst_path, [src_path], overwrite)
    records = load(src_format, src_path, split, **(read_options or {}))
    return {"read": len(records), **writer(dst_path, records)}


# --- describing a data set ---------------------------------------------------------------------

# A bare "=" (not part of <=, >=, !=, ==, =>) and GSM8K's calculator notes <<3+5=8>>.
_EQUALS = re.compile(r"(?<![<>!=])=(?![=>])")
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# Clause boundaries: a sentence end, a semicolon, a comma before a space, "and", a line break.
_CLAUSE = re.compile(r"[.;](?=\s)|,\s|\band\b|\n")


def equation_count(step: str) -> int:
    """How many clauses of a step state an equation; a chain "a = b = c" is one.

    >>> equation_count("The first equation is 3p + e = 124, and the second is 5p + e = 182.")
    2
    >>> equation_count("So 2 + 3 = <<2+3=5>>5 = 5.")
    1
    """
    return sum(bool(_EQUALS.search(clause))
               for clause in _CLAUSE.split(_CALCULATOR.sub("", step)))


def stats(trajectories: Sequence[Trajectory], max_equations: int = 1, max_sentences: int = 3,
          min_words: int = 4) -> dict[str, Any]:
    """Counts and distributions that say what a data set is before training on it.

    Returns items, steps, steps_per_item / step_chars / step_words ({mean, median, p90, min,
    max}; words split on whitespace), labels (counts of "1", "0", "soft" (strictly between 0
    and 1), "none"), label_kinds, outcomes ({"true", "false", "none"}), and two step-size
    warnings:
        coarse_steps: steps holding several claims: more than ``max_equations`` equation
            clauses (``equation_count``) or more than ``max_sentences`` sentences (``segment``
            with method "sentence"). A PRM label on such a step cannot say which claim failed.
        fine_steps: steps under ``min_words`` words ("So", "# Answer 5"): too little to judge.
    """
    steps = [step for t in trajectories for step in t.steps]
    labels = [label for t in trajectories for label in t.labels]
    kinds: dict[str, int] = {}
    for t in trajectories:
        kinds[t.label_kind] = kinds.get(t.label_kind, 0) + 1
    return {
        "items": len(trajectories),
        "steps": len(steps),
        "steps_per_item": _distribution([t.num_steps for t in trajectories]),
        "labels": {"1": sum(label == 1 for label in labels if label is not None),
                   "0": sum(label == 0 for label in labels if label is not None),
                   "soft": sum(label is not None and 0 < label < 1 for label in labels),
                   "none": sum(label is None for label in labels)},
        "label_kinds": kinds,
        "outcomes": {"true": sum(t.outcome is True for t in trajectories),
                     "false": sum(t.outcome is False for t in trajectories),
                     "none": sum(t.outcome is None for t in trajectories)},
        "step_chars": _distribution([len(step) for step in steps]),
        "step_words": _distribution([len(step.split()) for step in steps]),
        "coarse_steps": sum(equation_count(step) > max_equations
                            or len(segment(step, "sentence")) > max_sentences for step in steps),
        "fine_steps": sum(len(step.split()) < min_words for step in steps),
    }


def _distribution(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "p90": None, "min": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "median": float(np.median(array)),
            "p90": float(np.percentile(array, 90)), "min": float(array.min()),
            "max": float(array.max())}


# --- questions shared between data sets --------------------------------------------------------

def overlap(a: Iterable[Trajectory | str], b: Iterable[Trajectory | str]) -> list[str]:
    """The questions of ``a`` that also appear in ``b``, each once, in ``a``'s order.

    Questions match after ``normalize_question``: lowercased; LaTeX spacing (``\\!``, ``\\,``,
    ``\\;``, ``\\:``, ``\\ ``, ``~``, ``\\quad``), ``\\left``/``\\right``/``\\displaystyle`` and
    the backslash of escaped symbols (``\\$``) dropped; ``\\dfrac``/``\\tfrac`` read as ``\\frac``;
    ``$``, braces, ``.,;:!?'"``` and all whitespace removed. Dropping braces can in principle
    merge different questions (``\\frac{12}{3}`` and ``\\frac{1}{23}``); a match is worth a look,
    not proof. Use it to check that no evaluation problem is in the training data (PRM800K's
    training labels cover 4,500 MATH test problems).
    """
    seen_b = {normalize_question(_question(item)) for item in b}
    found, seen_a = [], set()
    for item in a:
        question = _question(item)
        key = normalize_question(question)
        if key in seen_b and key not in seen_a:
            found.append(question)
        seen_a.add(key)
    return found


def _question(item: Trajectory | str) -> str:
    return item if isinstance(item, str) else item.question
