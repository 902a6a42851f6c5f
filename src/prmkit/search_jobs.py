"""Search jobs: a file of questions searched with any scorer and generator (``search_file``),
and beam search, DVTS and best-of-N side by side at one generator budget on the demo world
(``compare_searches``).

``compare_searches`` runs every method on the same held-out world problems with the world's
noisy solver as the generator and a PRM as the scorer, and reports per method: final-answer
accuracy and process-correctness (every step of the chosen solution right, graded by the world)
with 95% intervals over problems, the paired difference from majority vote, and the generated
tokens per problem. Majority vote, PRM-weighted majority and the one-sample baseline are read
from best-of-N's own samples, so the voting methods and the PRM pick see the same N solutions.
Ties in a vote count as the expected accuracy over uniform tie-breaking (``select.py``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from prmkit import bestofn
from prmkit import synthetic
from prmkit.generate.solver import SolverGenerator
from prmkit.report import interval, log_stage, table
from prmkit.scoring import Scorer
from prmkit.search import (SearchConfig, SearchResult, beam_search, best_of_n, dvts, search,
                           word_count)
from prmkit.select import Pool, selection_probs

MAJORITY = "majority vote"


@dataclass
class CompareConfig:
    """Which world problems (``problems`` from world ``seed``, leaving out any question of the
    training world ``train_seed`` x ``train_problems``, the demo's) and how to search them."""

    problems: int = 100
    seed: int = 1
    train_seed: int = 0
    train_problems: int = 400
    search: SearchConfig = field(default_factory=SearchConfig)
    bootstrap: int = 2000

    def __post_init__(self):
        if self.problems < 1:
            raise ValueError("need at least one problem")


@dataclass
class Question:
    """One line of a questions file: ``{"question": ..., "meta": {...}}`` (a prmkit record's
    other fields, steps included, may be there and are ignored)."""

    question: str
    meta: dict
    line: int


def read_questions(path: str | os.PathLike) -> list[Question]:
    """The questions of a JSONL file, each line an object with a non-empty ``question``
    string; errors name the file, line and field."""
    from prmkit._io import open_input
    from prmkit.errors import DataError
    from prmkit.records import find_bad_value, loads

    out = []
    with open_input(path) as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("not UTF-8 text", path=str(path), line=number) from None
            if not text.strip():
                continue
            try:
                row = loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"not JSON ({e.msg})", path=str(path), line=number) from None
            except DataError as e:
                raise DataError(e.message, path=str(path), line=number) from None
            if not isinstance(row, dict):
                raise DataError("a line must be a JSON object", path=str(path), line=number)
            bad = find_bad_value(row)
            if bad is not None:
                raise DataError(bad[1], path=str(path), line=number, field=bad[0] or None)
            question, meta = row.get("question"), row.get("meta", {})
            if not isinstance(question, str) or not question.strip():
                raise DataError("must be a non-empty string", path=str(path), line=number,
                                field="question")
            if not isinstance(meta, dict):
                raise DataError("must be an object", path=str(path), line=number, field="meta")
            out.append(Question(question, meta, number))
    if not out:
        raise DataError("no questions in the file", path=str(path))
    return out


def search_file(data: str | os.PathLike, scorer: Scorer | str, out: str | os.PathLike,
                method: str = "beam", config: SearchConfig = SearchConfig(),
                generator: str = "solver", model: str | None = None, url: str | None = None,
                overwrite: bool = False, progress: bool = True, device="cpu") -> dict:
    """Search every question of ``data`` (``read_questions``) and write one JSONL row per
    question to ``out``: the chosen solution with its step probabilities, answer and score,
    every finished candidate, and the generated tokens. Returns a summary. ``device``: where
    the scorer (when named) and a Hugging Face generator run."""
    from prmkit._io import atomic_open, check_output
    from prmkit.errors import PrmkitError
    from prmkit.scoring import load_scorer
    from prmkit.workflows import make_generator

    out = check_output(out, [data], overwrite)
    questions = read_questions(data)
    if isinstance(scorer, str):
        scorer = load_scorer(scorer, device=device)
    try:
        gen = make_generator(generator, questions if generator == "solver" else None,
                             model, url, device=device)
    except PrmkitError as e:
        raise PrmkitError(f"{data}: {e}") from None
    count = token_counter(scorer)
    started = time.perf_counter()
    rows, tokens = [], 0
    for q in tqdm(questions, desc=method, unit="question", disable=not progress):
        result = search(method, q.question, scorer, gen, config, count)
        tokens += result.generated_tokens
        chosen = result.chosen
        rows.append({"line": q.line, "question": q.question, "method": method,
                     "steps": chosen.steps if chosen else None,
                     "step_probs": list(chosen.partial.probs) if chosen else None,
                     "score": chosen.score if chosen else None, "answer": result.answer,
                     "generated_tokens": result.generated_tokens,
                     "finished": [{"steps": b.steps, "step_probs": list(b.partial.probs),
                                   "score": b.score} for b in result.finished]})
    with atomic_open(out) as f:
        for row in rows:
            f.write(json.dumps(row, allow_nan=False) + "\n")
    return {"questions": len(rows), "method": method, "out": str(out),
            "answered": sum(row["answer"] is not None for row in rows),
            "generated_tokens_per_question": tokens / len(rows),
            "seconds": round(time.perf_counter() - started, 1), "config": asdict(config)}


def held_out_problems(config: CompareConfig) -> list[synthetic.Problem]:
    """The first ``config.problems`` problems of world ``seed`` whose question the training
    world does not hold."""
    seen = {p.question for p in synthetic.generate_problems(config.train_problems,
                                                            config.train_seed)}
    out, n = [], config.problems
    while len(out) < config.problems:
        n *= 2
        out = [p for p in synthetic.generate_problems(n, config.seed)
               if p.question not in seen][:config.problems]
    return out


def token_counter(scorer: Scorer):
    """Generated steps counted in the scorer's backbone tokens where it has one."""
    backbone = getattr(scorer, "backbone", None)
    if backbone is None:
        return word_count
    tokenizer = backbone.tokenizer
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def compare_searches(scorer: Scorer, config: CompareConfig = CompareConfig(),
                     progress: bool = True, baselines: dict[str, Scorer] | None = None) -> dict:
    """Every method on the held-out world problems (see the module docstring). ``baselines``:
    content-free scorers (``workflows.baseline_scorers``) that guide beam search and pick
    best-of-N's sample in their own rows."""
    started = time.perf_counter()
    problems = held_out_problems(config)
    generator = SolverGenerator(problems)
    count = token_counter(scorer)
    s = config.search
    correct: dict[str, list[float]] = {}
    process: dict[str, list[float]] = {}
    tokens: dict[str, list[int]] = {}
    prm_tokens = {"beam search": 0, "DVTS": 0}
    stats = getattr(scorer, "incremental_stats", None)
    for problem in tqdm(problems, desc="search", unit="problem", disable=not progress):
        q = problem.question
        runs: dict[str, SearchResult] = {}
        for name, run in (("beam search", beam_search), ("DVTS", dvts)):
            before = stats.real_tokens if stats is not None else 0
            runs[name] = run(q, scorer, generator, s, count)
            prm_tokens[name] += (stats.real_tokens - before) if stats is not None else 0
        best = best_of_n(q, scorer, generator, s, count)
        for name, other in (baselines or {}).items():  # content-free, after the PRM's rows
            runs[f"beam search ({name})"] = beam_search(q, other, generator, s, count)
            runs[f"best-of-N ({name}, {s.aggregation})"] = best_of_n(q, other, generator, s,
                                                                     count)
        for name in ("beam search", "DVTS"):
            _add_run(correct, process, tokens, name, problem, runs.pop(name))
        pool, steps = _pool(problem, best, s.aggregation)
        for name, method in ((f"best-of-N (PRM {s.aggregation})", ("prm", "prm")),
                             ("PRM-weighted majority", ("weighted_majority", "prm")),
                             (MAJORITY, ("majority", None)), ("one sample", ("random", None))):
            chance = selection_probs(pool, method)[0]  # (N,)
            _add(correct, process, tokens, name, float(chance @ pool.correct),
                 float(chance @ steps), best.generated_tokens)
        _add(correct, process, tokens, "oracle (pass@N)", float(pool.correct.any()),
             float(steps.any()), best.generated_tokens)
        for name, result in runs.items():
            _add_run(correct, process, tokens, name, problem, result)
    intervals = bestofn.paired_bootstrap(correct, config.bootstrap, config.search.seed)
    process_intervals = bestofn.paired_bootstrap(process, config.bootstrap, config.search.seed)
    versus = {name: bestofn.bootstrap_diff(correct[name], correct[MAJORITY], config.bootstrap,
                                           config.search.seed)
              for name in correct if name != MAJORITY}
    results = {"config": {**asdict(config), "search": asdict(s)}, "problems": len(problems),
               "accuracy": intervals, "process_correct": process_intervals,
               "vs_majority": versus,
               "generated_tokens": {name: float(np.mean(v)) for name, v in tokens.items()},
               "prm_tokens": {name: v / len(problems) for name, v in prm_tokens.items()},
               "seconds": round(time.perf_counter() - started, 1)}
    log_stage(f"{len(problems)} problems searched", started)
    return results


def _grade(problem: synthetic.Problem, steps: list[str] | None) -> tuple[float, float]:
    """(final answer right, every step right) for one chosen solution."""
    if not steps:
        return 0.0, 0.0
    try:
        records = synthetic.parse_steps(problem, steps)
    except ValueError:
        return 0.0, 0.0
    final = steps[-1].startswith("The answer is") and records[-1].result == problem.answer
    g = synthetic.grade(problem, records)
    return float(final), float(final and g.first_error < 0)


def _pool(problem: synthetic.Problem, best: SearchResult, aggregation: str
          ) -> tuple[Pool, np.ndarray]:
    """Best-of-N's samples as a selection pool, and which are right all the way through."""
    graded = [_grade(problem, beam.steps) for beam in best.finished]
    pool = Pool(answers=best.meta["answers"], correct=np.array([g[0] > 0 for g in graded]),
                lengths=[len(beam.steps) for beam in best.finished],
                scores={"prm": best.meta["scores"][aggregation]})
    return pool, np.array([g[1] for g in graded])


def _add_run(correct, process, tokens, name, problem, result: SearchResult) -> None:
    ok, right = _grade(problem, result.chosen.steps if result.chosen else None)
    _add(correct, process, tokens, name, ok, right, result.generated_tokens)


def _add(correct, process, tokens, name, ok, right, spent) -> None:
    correct.setdefault(name, []).append(ok)
    process.setdefault(name, []).append(right)
    tokens.setdefault(name, []).append(spent)


def render(results: dict) -> list[str]:
    """The comparison as a markdown table and a line on the budget."""
    s = results["config"]["search"]
    rows = []
    for name, cell in results["accuracy"].items():
        diff = results["vs_majority"].get(name)
        rows.append([name, interval(cell), interval(results["process_correct"][name]),
                     "" if diff is None else f"{100 * diff['mean']:+.1f} "
                     f"[{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]",
                     f"{results['generated_tokens'][name]:.0f}"])
    return [f"{results['problems']} held-out world problems; beam search width {s['width']} x "
            f"{s['expansions']} expansions, DVTS {s['n'] // s['width']} subtrees x "
            f"{s['width']}, best-of-N N = {s['n']}; lam = {s['lam']}, max depth "
            f"{s['max_depth']}.", ""] + table(
        ["method", "accuracy %", "process-correct %", "vs majority vote", "generated tokens"],
        rows)
