"""The one generator interface. Monte-Carlo labels, the judge and search call only this.

A ``Generator`` continues a solution: given a question and the steps so far, it samples ``n``
continuations, each one step (``max_steps=1``) or to the end (``max_steps=None``). The seed
fixes the samples, so a labelling job killed and run again writes the same labels. Steps are
strings as prmkit records hold them (no separator); a continuation that ends with a final answer
is ``finished``.

Implementations: ``solver.SolverGenerator`` (the demo world's noisy solver, offline, the
default), ``hf.HFGenerator`` (a Hugging Face causal LM), ``openai_http.OpenAIGenerator`` (an
OpenAI-compatible completions endpoint: vLLM, llama.cpp's server, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from prmkit.errors import PrmkitError


class GenerationError(PrmkitError):
    """A generator that could not produce a continuation (an endpoint down, garbage back)."""


@dataclass
class Completion:
    """New steps after a prefix; ``tokens`` generated (0 where the generator does not count)."""

    steps: list[str]
    finished: bool
    tokens: int = 0
    meta: dict = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    def complete(self, question: str, prefix: Sequence[str], n: int,
                 max_steps: int | None = None, seed: int = 0) -> list[Completion]:
        """``n`` sampled continuations of ``prefix`` (one step, or to the end)."""
        ...


def split_steps(text: str, separator: str = "\n\n") -> list[str]:
    """Generated text cut into steps at the separator, blank pieces dropped."""
    return [piece.strip() for piece in text.split(separator) if piece.strip()]


def prompt_of(question: str, prefix: Sequence[str], separator: str = "\n\n") -> str:
    """The text a language model continues: the question and the steps so far, each followed by
    the separator, exactly as the embedding pipeline lays a solution out."""
    return separator.join([question, *prefix]) + separator
