"""The step-end contract: how a (question, steps) pair becomes token ids and step spans.

Each piece (the question, then every step) is tokenized on its own, with the step separator
appended, and the ids are concatenated. Tokenizers merge across boundaries (``"a.\\n\\n"`` and
``"a.\\n\\nThe"`` share no prefix in SmolLM2's tokenizer), so tokenizing the joined text would move
step boundaries depending on what follows. With per-piece ids, a step's tokens are the same whether
a solution is encoded whole, prefix by prefix, or step by step.

A step's span is its own tokens, separator included (when the tokenizer keeps it: WordPiece
drops whitespace); its *end* is the last of them. Every mode
(per-prefix encoders, single-pass causal models, scoring, search, serving) uses these spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from prmkit.errors import DataError


@dataclass(frozen=True)
class StepTokens:
    """Token ids of a question and its steps (no special tokens) and where each step ends.

    ``ids[:question_len]`` is the question; step ``t`` is ``ids[starts[t]:ends[t]]``.
    """

    ids: tuple[int, ...]
    question_len: int
    ends: tuple[int, ...]  # exclusive end of each step in ``ids``

    @property
    def starts(self) -> tuple[int, ...]:
        return (self.question_len,) + self.ends[:-1]

    @property
    def num_steps(self) -> int:
        return len(self.ends)


def tokenize_steps(encode, question: str, steps: list[str], separator: str) -> StepTokens:
    """Tokenize the question and each step separately (separator appended) and concatenate.

    ``encode`` maps one text to its ids without special tokens (``plain_ids(tokenizer)``, or
    a memo in front of it).
    """
    pieces = [question + separator] + [step + separator for step in steps]
    encoded = [encode(piece) for piece in pieces]
    ids: list[int] = list(encoded[0])
    if not ids:
        raise DataError("the question produces no tokens", field="question")
    ends = []
    for i, piece_ids in enumerate(encoded[1:]):
        if not piece_ids:
            raise DataError("the step produces no tokens", field=f"steps[{i}]")
        ids.extend(piece_ids)
        ends.append(len(ids))
    return StepTokens(ids=tuple(ids), question_len=len(encoded[0]), ends=tuple(ends))


def plain_ids(tokenizer) -> Callable[[str], list[int]]:
    """A Hugging Face tokenizer as a text -> ids function, without special tokens."""
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text (e.g. [CLS] ... [SEP] for BERT).

    Found by comparing a text encoded with and without special tokens, which works for any
    tokenizer without knowing its template.
    """
    plain = tokenizer("x y z", add_special_tokens=False)["input_ids"]
    full = tokenizer("x y z", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain):])
    return [], []
