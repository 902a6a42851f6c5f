"""Choosing and steering generations with a PRM: best-of-N, step-level beam search and DVTS.

Everything here talks to a ``Scorer`` and a ``Generator`` only (the world's solver, a Hugging
Face causal LM, an OpenAI-compatible endpoint; prmkit's PRM or a published one).

**Beam search** (``beam_search``) keeps ``width`` partial solutions (beams). At each depth every
beam is continued by ``expansions`` sampled next steps; equal steps from one beam are kept once
(duplicate-step pruning); every new step is scored, and each candidate's score is the spec's

    score(beam + step) = score(beam) + log p(step) + lam * log PRM(step),

with ``p`` the generator's probability of the step (``Completion.meta["logprob"]``; absent for
generators that do not report it, when the term is 0) and ``PRM(step)`` the scorer's
P(step correct | question, steps so far). ``lam = 0`` is plain likelihood beam search. Those
of the ``width`` best candidates that state a final answer leave as finished solutions, and the
``width`` best open ones are the next beams, so every depth spends the same budget (as in
Hugging Face's search-and-learn). The search stops once ``width`` solutions have finished, or at
``max_depth``, where the open beams finish without an answer if none has finished. Every beam at one depth has the
same number of steps, so raw scores compare fairly there; finished solutions of different
lengths are compared by their score per step (a sum would favour short solutions), and the best
of them is the answer.

**Incremental scoring**: a beam holds a ``scoring.Partial``; prmkit's PRM on a causal backbone
keeps the key/value states of each beam's prefix there, so scoring a new step runs only the
step's own tokens (tokenized on its own with its separator, exactly as in training). Any other
scorer is asked for the whole prefix again (``scoring.rescore``).

**DVTS** (diverse verifier tree search): ``n // width`` independent subtrees, each a beam search
of width 1 with ``width`` expansions per step (greedy within the subtree, seeded apart), so the
subtrees do not collapse onto one prefix. The answer is the best finished solution over all.

**Best-of-N** samples ``n`` whole solutions and picks one by the PRM (any aggregation), by
PRM-weighted majority or by majority vote (``select.py``): the same-budget baseline.

Budgets are counted in generated tokens: ``Completion.tokens`` where the generator counts them,
else the step texts (with their separator) through ``count_tokens``. At width B, expansions E
and best-of-N with N = B * E, each method generates about N steps per depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from prmkit.answers import final_answer
from prmkit.generate.base import Completion, Generator
from prmkit.scoring import Partial, Scorer, aggregate_all, begin, extend
from prmkit.scoring.aggregate import AGGREGATIONS

METHODS = ("beam", "dvts", "best_of_n")
_TINY = 1e-12  # keeps log PRM finite for a step scored 0


@dataclass
class SearchConfig:
    """How to search. ``width`` B beams (DVTS: B expansions in each of ``n // B`` subtrees),
    ``expansions`` E next steps per beam and depth, ``n`` whole samples for best-of-N and the
    DVTS budget, ``lam`` the PRM's weight against the generator's log-probability."""

    width: int = 4
    expansions: int = 4
    n: int = 16
    max_depth: int = 12
    lam: float = 1.0
    prune_duplicates: bool = True
    aggregation: str = "min"  # best-of-N's PRM pick
    seed: int = 0

    def __post_init__(self):
        if min(self.width, self.expansions, self.n, self.max_depth) < 1:
            raise ValueError("width, expansions, n and max_depth must be at least 1")
        if self.n < self.width:
            raise ValueError(f"DVTS splits n = {self.n} into subtrees of width {self.width}: "
                             "n must be at least width")
        if self.lam < 0 or not math.isfinite(self.lam):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose from "
                             f"{sorted(AGGREGATIONS)}")


@dataclass
class Beam:
    """A partial (or finished) solution in a search, with its accumulated score."""

    partial: Partial
    score: float = 0.0
    logp: float = 0.0  # the generator's log-probability of its steps, where reported
    finished: bool = False

    @property
    def steps(self) -> list[str]:
        return list(self.partial.steps)

    @property
    def per_step(self) -> float:
        """The score compared across lengths."""
        return self.score / max(len(self.partial.steps), 1)


@dataclass
class SearchResult:
    """One question's search: the chosen solution, every finished candidate, the budget spent."""

    question: str
    chosen: Beam | None  # None when nothing was generated
    finished: list[Beam]
    generated_tokens: int
    generated_steps: int
    meta: dict = field(default_factory=dict)
    scored_tokens: int = 0  # of the steps scored (duplicates pruned first), counted alike

    @property
    def answer(self) -> str | None:
        return final_answer(self.chosen.steps) if self.chosen is not None else None


def word_count(text: str) -> int:
    """A token count for generators that report none (whitespace words)."""
    return len(text.split())


class _Budget:
    """Generated tokens and steps, counted as completions arrive."""

    def __init__(self, count_tokens: Callable[[str], int], separator: str):
        self.count, self.separator = count_tokens, separator
        self.tokens = self.steps = self.scored = 0

    def add(self, completions: Sequence[Completion]) -> None:
        for c in completions:
            self.steps += len(c.steps)
            self.tokens += c.tokens or sum(self.count(s + self.separator) for s in c.steps)


def beam_search(question: str, scorer: Scorer, generator: Generator,
                config: SearchConfig = SearchConfig(),
                count_tokens: Callable[[str], int] = word_count, separator: str = "\n\n",
                width: int | None = None, expansions: int | None = None, seed: int | None = None
                ) -> SearchResult:
    """Step-level beam search for one question (see the module docstring).

    ``width``, ``expansions`` and ``seed`` override the config's (DVTS runs its subtrees so).
    """
    width = width or config.width
    expansions = expansions or config.expansions
    seed = config.seed if seed is None else seed
    budget = _Budget(count_tokens, separator)
    beams = [Beam(begin(scorer, question))]
    finished: list[Beam] = []
    for depth in range(config.max_depth):
        parents, steps, news = [], [], []
        for b, beam in enumerate(beams):
            completions = generator.complete(question, beam.steps, expansions, max_steps=1,
                                             seed=_seed(seed, depth, b))
            budget.add(completions)
            seen = set()
            for c in completions:
                if not c.steps or (config.prune_duplicates and c.steps[0] in seen):
                    continue
                seen.add(c.steps[0])
                parents.append(beam)
                steps.append(c.steps[0])
                news.append(c)
        if not steps:
            break
        budget.scored += sum(budget.count(step + separator) for step in steps)
        scored = extend(scorer, [beam.partial for beam in parents], steps)
        candidates = []
        for beam, c, partial in zip(parents, news, scored):
            logp = float(c.meta.get("logprob", 0.0))
            prm = math.log(max(partial.probs[-1], _TINY))
            candidates.append(Beam(partial, beam.score + logp + config.lam * prm,
                                   beam.logp + logp, c.finished))
        ranked = sorted(candidates, key=lambda beam: -beam.score)  # stable
        finished.extend(beam for beam in ranked[:width] if beam.finished)
        beams = [beam for beam in ranked if not beam.finished][:width]  # refilled to width
        if len(finished) >= width or not beams:
            break
    if not finished:  # nothing stated an answer by max_depth: the open beams, unanswered
        finished.extend(beams)
    chosen = max(finished, key=lambda beam: beam.per_step, default=None)
    return SearchResult(question, chosen, finished, budget.tokens, budget.steps,
                        scored_tokens=budget.scored)


def dvts(question: str, scorer: Scorer, generator: Generator,
         config: SearchConfig = SearchConfig(),
         count_tokens: Callable[[str], int] = word_count, separator: str = "\n\n"
         ) -> SearchResult:
    """Diverse verifier tree search: ``n // width`` greedy subtrees, each expanding ``width``
    next steps and keeping the best one."""
    runs = [beam_search(question, scorer, generator, config, count_tokens, separator,
                        width=1, expansions=config.width, seed=_seed(config.seed, -1, tree))
            for tree in range(max(config.n // config.width, 1))]
    finished = [beam for run in runs for beam in run.finished]
    chosen = max(finished, key=lambda beam: beam.per_step, default=None)
    return SearchResult(question, chosen, finished, sum(r.generated_tokens for r in runs),
                        sum(r.generated_steps for r in runs), {"subtrees": len(runs)},
                        sum(r.scored_tokens for r in runs))


def best_of_n(question: str, scorer: Scorer, generator: Generator,
              config: SearchConfig = SearchConfig(),
              count_tokens: Callable[[str], int] = word_count, separator: str = "\n\n"
              ) -> SearchResult:
    """``n`` whole solutions, each scored; ``chosen`` is the PRM's pick by ``aggregation``
    (first of the best on ties). ``meta`` holds every sample's answer and aggregate scores,
    for majority vote and PRM-weighted majority (``select.py``)."""
    from prmkit.records import Trajectory

    budget = _Budget(count_tokens, separator)
    completions = generator.complete(question, [], config.n, max_steps=None, seed=config.seed)
    budget.add(completions)
    samples = [c for c in completions if c.steps][:config.n]
    if not samples:
        return SearchResult(question, None, [], budget.tokens, budget.steps)
    probs = scorer.score_batch([Trajectory(question, c.steps) for c in samples])
    scores = aggregate_all(probs)
    beams = [Beam(Partial(question, tuple(c.steps), tuple(p)),
                  score=scores[config.aggregation][i], finished=c.finished)
             for i, (c, p) in enumerate(zip(samples, probs))]
    chosen = beams[int(np.argmax([beam.score for beam in beams]))]
    return SearchResult(question, chosen, beams, budget.tokens, budget.steps,
                        {"answers": [final_answer(c.steps) for c in samples],
                         "scores": scores})


SEARCHES = {"beam": beam_search, "dvts": dvts, "best_of_n": best_of_n}


def search(method: str, question: str, scorer: Scorer, generator: Generator,
           config: SearchConfig = SearchConfig(),
           count_tokens: Callable[[str], int] = word_count, separator: str = "\n\n"
           ) -> SearchResult:
    """Run the search named ``method`` (one of ``METHODS``)."""
    if method not in SEARCHES:
        raise ValueError(f"unknown search {method!r}; choose from {list(SEARCHES)}")
    return SEARCHES[method](question, scorer, generator, config, count_tokens, separator)


def _seed(seed: int, depth: int, beam: int) -> int:
    """A generator seed per (search seed, depth, beam): siblings never share samples."""
    return (seed * 1_000_003 + (depth + 1) * 1009 + beam) % (2 ** 31)
