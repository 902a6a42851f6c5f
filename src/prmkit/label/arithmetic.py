"""Checking the arithmetic a step claims, without ``eval``: a small parser over exact rationals.

A step claims arithmetic when it writes a relation between expressions of numbers::

    "Selling them at 2 dollars each, Hana earns 75 * 2 = 150 dollars."   75 * 2 = 150: holds
    "To check, 72 / 9 = 7."                                              72 / 9 = 7: false
    "So 3 + 4 = 7 = 14 / 2 apples."                                      a chain: both hold
    "20% of 50 = 10", "$1,200 - $200 = $1,000", "\\frac{3}{4} \\times 8 = 6"

``check_step`` returns True when it found claims and all hold, False when one is false, None
when there is nothing it can check. What it reads:

* numbers: integers, decimals, thousands commas ("1,200"), percentages ("20%" is 1/5; "20% of
  50" multiplies; a percentage added or taken away, "50 + 10%", is not read), a currency sign;
* operators ``+ - * / ^ **``, ``×`` ``·`` ``÷`` ``−``, an ``x`` between two numbers, LaTeX
  ``\\times \\cdot \\div \\frac{a}{b}``, parentheses and braces;
* a word right after a number (a unit: "72 seashells =") is dropped; any other word ends the
  expression. A relation whose side runs into a word ("2x + 3 = 7", "f(2) = 5") is not a claim
  this checker can read, and is skipped, as is one between two plain numbers ("2 = 2");
* a right-hand side written as a decimal is compared up to its last written digit ("10 / 3 =
  3.33" holds), everything else exactly. "≈" is not a claim.

Bounds keep hostile input cheap (each is answered "cannot check", never by running long): at
most ``MAX_TOKENS`` tokens per expression, ``MAX_DEPTH`` nested parentheses, ``MAX_DIGITS``
digits per number, exponents up to ``MAX_EXPONENT`` and results up to ``MAX_BITS`` bits, and a
step longer than ``MAX_CHARS`` characters is not read at all (real steps are a few hundred). The
parser is iterative (shunting-yard), so no input reaches Python's recursion limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from prmkit.records import Trajectory, first_error_labels

MAX_CHARS = 20_000
MAX_TOKENS = 2000
MAX_DEPTH = 64
MAX_DIGITS = 60
MAX_EXPONENT = 256
MAX_BITS = 4096
MAX_CLAIMS = 64

Token = tuple[str, str]  # (kind, text)


class _CannotCheck(Exception):
    pass


@dataclass(frozen=True)
class Claim:
    """One checked relation: the text of both sides and whether it holds."""

    left: str
    right: str
    holds: bool


# --- tokens ------------------------------------------------------------------------------------

_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX = [(re.compile(r"\\(?:times|cdot)(?![A-Za-z])"), " * "),
          (re.compile(r"\\div(?![A-Za-z])"), " / "),
          (re.compile(r"\\left|\\right|\\[,;:! ]|\\q?quad(?![A-Za-z])|\\[()\[\]]"), " ")]
_TOKEN = re.compile(r"""
    (?P<num>\d{1,3}(?:,\d{3})+(?![\d,])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<glued>[A-Za-z_])?
  | (?P<op>\*\*|[-+*/^×·÷−–])
  | (?P<open>[({])
  | (?P<close>[)}])
  | (?P<eq>=)
  | (?P<pct>%)
  | (?P<word>[A-Za-z_\\][A-Za-z_0-9']*\(?)
  | (?P<skip>[\s$])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_OPS = {"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-", "**": "^"}


def _tokens(text: str) -> list[Token]:
    """Kinds: num, op, open, close, eq, pct, word (a function name takes its "(" along, so
    "f(2)" never reads as "(2)"), glued (a number run into letters: "2x"), break (anything else
    that ends an expression: punctuation, other symbols). Spaces and "$" carry nothing."""
    for _ in range(8):  # \frac{a}{b} -> ((a)/(b)), innermost first
        text, found = _FRAC.subn(r"((\1)/(\2))", text)
        if not found:
            break
    for pattern, repl in _LATEX:
        text = pattern.sub(repl, text)
    out: list[Token] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "glued" or (kind == "num" and m.group("glued")):
            out.append(("glued", m.group(0)))
        elif kind == "num":
            out.append(("num", m.group("num")))
        elif kind == "op":
            out.append(("op", _OPS.get(m.group(0), m.group(0))))
        elif kind == "other":
            out.append(("break", m.group(0)))
        elif kind != "skip":
            out.append((kind, m.group(0)))
    return out


def _relations(tokens: list[Token]) -> list[list[list[Token] | None]]:
    """Maximal runs of arithmetic tokens that hold a "=", each split at "=" into sides; a side
    cut short by a word or a glued number is None."""
    runs: list[tuple[list[Token], bool, bool]] = []  # (tokens, cut at start, cut at end)
    run: list[Token] = []
    cut_before = False
    for i, (kind, text) in enumerate(tokens):
        if kind == "word":
            nxt = tokens[i + 1][0] if i + 1 < len(tokens) else "break"
            last = run[-1][0] if run else None
            if last in ("num", "pct", "close") and nxt in ("op", "eq", "close", "break"):
                continue  # a unit after a number: "72 seashells ="
            if text == "of" and last == "pct":
                run.append(("op", "*"))
                continue
            if text == "x" and last in ("num", "close") and nxt in ("num", "open"):
                run.append(("op", "*"))
                continue
            runs.append((run, cut_before, True))
            run, cut_before = [], True
        elif kind in ("break", "glued"):
            runs.append((run, cut_before, kind == "glued"))
            run, cut_before = [], kind == "glued"
        else:
            run.append((kind, text))
    runs.append((run, cut_before, False))
    out = []
    for run, cut_start, cut_end in runs:
        if not any(kind == "eq" for kind, _ in run):
            continue
        sides: list[list[Token] | None] = [[]]
        for token in run:
            if token[0] == "eq":
                sides.append([])
            else:
                sides[-1].append(token)
        # a side that starts or ends at a word is only part of an expression
        if cut_start and (not sides[0] or sides[0][0][0] in ("op", "close")):
            sides[0] = None
        if cut_end and (not sides[-1] or sides[-1][-1][0] in ("op", "open")):
            sides[-1] = None
        out.append(sides)
    return out


# --- parsing and evaluating --------------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4}


def _number(text: str) -> Fraction:
    digits = text.replace(",", "")
    if len(digits) > MAX_DIGITS:
        raise _CannotCheck("number too long")
    return Fraction(digits)


def _bounded(x: Fraction) -> Fraction:
    if x.numerator.bit_length() > MAX_BITS or x.denominator.bit_length() > MAX_BITS:
        raise _CannotCheck("result too large")
    return x


def _apply(op: str, stack: list[Fraction]) -> None:
    if op == "neg":
        if not stack:
            raise _CannotCheck("dangling minus")
        stack.append(-stack.pop())
        return
    if len(stack) < 2:
        raise _CannotCheck("missing operand")
    b, a = stack.pop(), stack.pop()
    if op == "/" and b == 0:
        raise _CannotCheck("division by zero")
    if op == "^":
        if b.denominator != 1 or abs(b.numerator) > MAX_EXPONENT:
            raise _CannotCheck("exponent out of bounds")
        if a == 0 and b < 0:
            raise _CannotCheck("division by zero")
        size = max(a.numerator.bit_length(), a.denominator.bit_length())
        if size * abs(b.numerator) > MAX_BITS:
            raise _CannotCheck("result too large")
        stack.append(a ** int(b))
        return
    result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
              "/": lambda: a / b}[op]()
    stack.append(_bounded(result))


def evaluate(tokens: list[Token]) -> Fraction:
    """The exact value of one side (shunting-yard); raises ``_CannotCheck`` where it cannot."""
    if not tokens or len(tokens) > MAX_TOKENS:
        raise _CannotCheck("empty or too long")
    if any(k == "pct" for k, _ in tokens) and any(k == "op" and t in "+-" for k, t in tokens):
        raise _CannotCheck("a percentage added or taken away (of what?)")
    values: list[Fraction] = []
    ops: list[str] = []  # operators and "("
    depth, expect_operand = 0, True
    for kind, text in tokens:
        if kind == "num":
            if not expect_operand:
                raise _CannotCheck("two numbers in a row")
            values.append(_number(text))
            expect_operand = False
        elif kind == "pct":
            if expect_operand:
                raise _CannotCheck("a percent sign without a number")
            values.append(values.pop() / 100)
        elif kind == "open":
            if not expect_operand:
                raise _CannotCheck("implicit multiplication")
            depth += 1
            if depth > MAX_DEPTH:
                raise _CannotCheck("nested too deep")
            ops.append("(")
        elif kind == "close":
            if expect_operand:
                raise _CannotCheck("empty parentheses")
            while ops and ops[-1] != "(":
                _apply(ops.pop(), values)
            if not ops:
                raise _CannotCheck("unbalanced parenthesis")
            ops.pop()
            depth -= 1
        elif kind == "op":
            if expect_operand:
                if text == "-":
                    ops.append("neg")
                    continue
                if text == "+":
                    continue
                raise _CannotCheck("an operator without a left operand")
            right_assoc = text == "^"
            while ops and ops[-1] != "(" and (
                    _PRECEDENCE[ops[-1]] > _PRECEDENCE[text]
                    or (_PRECEDENCE[ops[-1]] == _PRECEDENCE[text] and not right_assoc)):
                _apply(ops.pop(), values)
            ops.append(text)
            expect_operand = True
        else:
            raise _CannotCheck(f"unexpected {text!r}")
    if expect_operand:
        raise _CannotCheck("ends with an operator")
    while ops:
        op = ops.pop()
        if op == "(":
            raise _CannotCheck("unbalanced parenthesis")
        _apply(op, values)
    if len(values) != 1:
        raise _CannotCheck("malformed expression")
    return values[0]


def _close_enough(left: Fraction, right: Fraction, right_tokens: list[Token]) -> bool:
    """Equal, or, when the right side is one decimal, the left side rounded or cut to its
    digits ("10 / 3 = 3.33", "2 / 3 = 0.67" and "0.66" hold; "10 / 3 = 3.4" does not)."""
    if left == right:
        return True
    if right_tokens[:1] == [("op", "-")]:
        right_tokens = right_tokens[1:]
    if len(right_tokens) == 1 and right_tokens[0][0] == "num" and "." in right_tokens[0][1]:
        unit = Fraction(1, 10 ** len(right_tokens[0][1].split(".")[1]))
        rounded = abs(left - right) <= unit / 2
        truncated = left * right > 0 and 0 <= abs(left) - abs(right) < unit
        return rounded or truncated
    return False


def claims(text: str) -> list[Claim]:
    """Every relation in ``text`` that can be checked, in order (at most ``MAX_CLAIMS``)."""
    out: list[Claim] = []
    if len(text) > MAX_CHARS:
        return out
    for sides in _relations(_tokens(text)):
        values: list[Fraction | None] = []
        for side in sides:
            try:
                values.append(None if side is None else evaluate(side))
            except _CannotCheck:
                values.append(None)
        for k in range(len(sides) - 1):
            left, right = values[k], values[k + 1]
            if left is None or right is None:
                continue
            if len(sides[k]) == 1 and len(sides[k + 1]) == 1:
                continue  # two plain numbers state no computation
            out.append(Claim(" ".join(t for _, t in sides[k]),
                             " ".join(t for _, t in sides[k + 1]),
                             _close_enough(left, right, sides[k + 1])))
            if len(out) >= MAX_CLAIMS:
                return out
    return out


def check_step(text: str) -> bool | None:
    """True when the step's arithmetic claims all hold, False when one does not, None when it
    makes none that can be checked."""
    found = claims(text)
    if not found:
        return None
    return all(c.holds for c in found)


def label_arithmetic(t: Trajectory) -> Trajectory:
    """The record labelled by ``check_step`` under the first-error rule: a step whose arithmetic
    is false is the first error (0), checked steps before it 1, steps it cannot check None."""
    verdicts = [check_step(step) for step in t.steps]
    first = next((i for i, v in enumerate(verdicts) if v is False), -1)
    labels = first_error_labels(t.num_steps, first) if first >= 0 else [1] * t.num_steps
    labels = [label if (v is not None or i == first) else None
              for i, (label, v) in enumerate(zip(labels, verdicts))]
    return Trajectory(question=t.question, steps=list(t.steps), labels=list(labels),
                      label_kind="correctness", outcome=t.outcome, answer=t.answer,
                      meta={**t.meta, "labeling": {"strategy": "arithmetic",
                                                   "checked": verdicts}})
