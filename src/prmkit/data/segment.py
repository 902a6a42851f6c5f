"""Split raw solution text into steps.

Sources that ship one block of text per solution (CHAMP, a model's raw output) need steps before a
PRM can label or score them. Four methods, all returning stripped, non-empty steps in order:

    blank     a blank line ends a step (the default: PRM800K, ProcessBench and most chat models
              put one reasoning step per paragraph)
    line      every line break ends a step
    sentence  a sentence end (". ", "! ", "? " before a capital, digit, "$", "\\" or bracket)
              or a line break ends a step; see ``_sentence_cuts`` for what is not a sentence end
    regex     ``pattern`` marks the boundaries: the text it matches is dropped, so use a
              lookahead such as ``r"(?=Step \\d+:)"`` to cut before a marker and keep it

>>> segment("Add them.\\n\\n2 + 3 = 5.\\n\\n# Answer\\n\\n5")
['Add them.', '2 + 3 = 5.', '# Answer', '5']
>>> segment("First, 2 + 3 = 5. Then 5 * 2 = 10.", method="sentence")
['First, 2 + 3 = 5.', 'Then 5 * 2 = 10.']

``segment_spans`` gives the character offsets of the same steps, for mapping annotations that are
character spans (CHAMP's first wrong step) onto steps.
"""

from __future__ import annotations

import re

from prmkit.errors import PrmkitError

Span = tuple[int, int]
SEGMENT_METHODS = ("blank", "line", "sentence", "regex")

_BLANK = re.compile(r"\n[ \t\r\f\v]*\n")
_LINE = re.compile(r"\n")
# A sentence ends at ., ! or ? (plus closing quotes/brackets) followed by whitespace and a token
# that can start a sentence. A lowercase word after the period ("e.g. the") is not a new sentence.
_SENTENCE_END = re.compile(r"""[.!?]["')\]]*(?=\s+["'(\[$\\]?[A-Z0-9$\\(\[])""")
# Words that end in a period without ending the sentence.
_ABBREVIATIONS = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|vs|etc|Fig|Eq|No|approx|cf)|\b[a-z]\.[a-z])\.$", re.IGNORECASE)
# Inline or display maths; a period inside it is not a sentence end.
_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\$[^$]*\$", re.DOTALL)
# A piece that is only an enumerator ("1.", "(a)", "ii)") belongs to the sentence after it.
_ENUMERATOR = re.compile(r"\(?(?:\d{1,3}|[A-Za-z]|[ivxIVX]{2,4})[.)]")


def segment(text: str, method: str = "blank", pattern: str | None = None) -> list[str]:
    """Split ``text`` into steps; never returns an empty or whitespace-only step.

    Args:
        text: the raw solution.
        method: one of ``SEGMENT_METHODS``.
        pattern: the boundary regex, for ``method="regex"`` only.
    """
    return [text[start:end] for start, end in segment_spans(text, method, pattern)]


def segment_spans(text: str, method: str = "blank", pattern: str | None = None) -> list[Span]:
    """``(start, end)`` character offsets in ``text`` of the steps ``segment`` gives."""
    if method not in SEGMENT_METHODS:
        raise PrmkitError(f"unknown segmentation method {method!r} (choose from "
                          f"{', '.join(SEGMENT_METHODS)})")
    if (pattern is not None) != (method == "regex"):
        raise PrmkitError("a pattern is needed with method='regex' and only there")
    if method == "regex":
        try:
            boundary = re.compile(pattern)
        except re.error as e:
            raise PrmkitError(f"bad segmentation pattern {pattern!r}: {e}") from None
        cuts = [(m.start(), m.end()) for m in boundary.finditer(text)]
    elif method == "blank":
        cuts = [(m.start(), m.end()) for m in _BLANK.finditer(text)]
    elif method == "line":
        cuts = [(m.start(), m.end()) for m in _LINE.finditer(text)]
    else:
        cuts = _sentence_cuts(text)
    spans = _pieces(text, cuts)
    if method == "sentence":
        spans = _merge_enumerators(text, spans)
    return spans


def _pieces(text: str, cuts: list[Span]) -> list[Span]:
    """The stripped, non-empty stretches of ``text`` between the cuts (cut text dropped)."""
    spans = []
    start = 0
    for cut_start, cut_end in cuts + [(len(text), len(text))]:
        if cut_start < start:  # overlapping or zero-width-at-start cuts
            continue
        piece = text[start:cut_start]
        left = len(piece) - len(piece.lstrip())
        right = len(piece.rstrip())
        if right > left:
            spans.append((start + left, start + right))
        start = cut_end
    return spans


def _sentence_cuts(text: str) -> list[Span]:
    math = [(m.start(), m.end()) for m in _MATH.finditer(text)]
    cuts = [(m.start(), m.end()) for m in _LINE.finditer(text)]
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        if any(a < end < b for a, b in math):
            continue
        if _ABBREVIATIONS.search(text[max(0, end - 12):end]):
            continue
        cuts.append((end, end))
    return sorted(cuts)


def _merge_enumerators(text: str, spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    pending: int | None = None  # start of an enumerator waiting for its sentence
    for start, end in spans:
        if pending is not None:
            start, pending = pending, None
        if _ENUMERATOR.fullmatch(text[start:end]):
            pending = start
            continue
        merged.append((start, end))
    if pending is not None:
        merged.append((pending, len(text.rstrip())))
    return merged
