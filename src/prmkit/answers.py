"""Final answers: reading the one a solution states (``final_answer``), judging it against a
reference (``judge_answer(s)``), and its short form for majority vote (``vote_answer``).

Simple cases are settled without math-verify (equal after normalising, or two plain numbers);
formulas go to math-verify with its SIGALRM timeouts disabled (they fail outside the main thread)
and each call runs in a worker process that is killed after ``timeout_s``: some inputs make
math-verify run for minutes and use gigabytes. Scripts that call ``judge_answers`` need an
``if __name__ == "__main__":`` guard (workers are spawned).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from importlib.util import find_spec

from prmkit.errors import PrmkitError

# Longer answers are not judged: sympy time grows with the input, and a final answer is short.
MAX_ANSWER_CHARS = 300

# --- judging final answers --------------------------------------------------------------------
# math-verify bounds its own time with SIGALRM, which raises outside the main thread and cannot
# interrupt long C-level sympy work; some CHAMP summaries make sympy run for minutes and take GBs.
# So its timeouts are turned off and each comparison runs in a worker process that is killed when
# it overruns. Cases that need no sympy are settled in this process first.
#
# A CHAMP summary is a sentence that restates the problem ("There are 239 strings of length 6 of
# the digits 1, 2, 3 ... differing by at most 1."); math-verify reads its last number (1). So when
# the reference is a number and the answer is a sentence, the numbers of the sentence that do not
# occur in the question are the candidates, and any of them equal to the reference makes it right.

_UNDECIDED = object()
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)(/\d+)?")
# A number standing alone in prose: not part of x_1, 2^n, n-1, 3.5 or a word.
_NUMBER_IN_TEXT = re.compile(r"(?<![\w^_.\-/])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+|/\d+)?"
                             r"(?![\w^_/]|\.\d)")
# Every number the question mentions, subscripts included (a_50 mentions 50).
_NUMBER_ANYWHERE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(\D|$))")
_LATEX_SPACE = re.compile(r"\\[!,;: ]|\\q?quad\b|~")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
# A reference that is a number and a gloss: "98 values", "0 is the only possible value",
# "100 (i.e., all values)". ("At least 1 number" is not: the words change the claim.)
_NUMBER_AND_GLOSS = re.compile(r"(-?\d+(?:[./]\d+)?)(?:\s*\(.*\)|\s+[A-Za-z][A-Za-z ,-]*)")
_HAS_LATEX = re.compile(r"\$|\\\(|\\\[|\\boxed")
_FUNCTION = re.compile(r"sqrt|floor|ceil|log|ln|sin|cos|tan|exp|max|min|gcd|lcm|mod|pi|infty|inf")


def judge_answer(reference: str | None, answer: str | None,
                 question: str | None = None) -> bool | None:
    """Whether ``answer`` matches ``reference``; None when that cannot be decided.

    ``question`` lets a number that the answer merely restates from the question be set aside.
    Runs in this process with no time bound: use ``judge_answers`` for untrusted or many answers.
    """
    verdict = _quick_judge(reference, answer, question)
    return _math_verify_judge(reference, answer) if verdict is _UNDECIDED else verdict


def judge_answers(references: Sequence[str | None], answers: Sequence[str | None],
                  questions: Sequence[str | None] | None = None, timeout_s: float = 5.0,
                  processes: int | None = None) -> list[bool | None]:
    """``judge_answer`` for each item, each math-verify call bounded by ``timeout_s`` seconds.

    A comparison that runs past the limit gets None and its worker is replaced. Workers are
    started with "spawn" (no fork of a process that may hold torch threads), so a script that
    calls this must guard its entry point with ``if __name__ == "__main__":``.

    Args:
        processes: worker processes (default: up to 4, at most the CPU count).
    """
    if len(references) != len(answers) or (questions is not None
                                            and len(questions) != len(answers)):
        raise ValueError("references, answers and questions must have the same length")
    questions = questions if questions is not None else [None] * len(answers)
    verdicts: list[bool | None] = []
    todo: deque[int] = deque()
    for i, (reference, answer, question) in enumerate(zip(references, answers, questions)):
        verdict = _quick_judge(reference, answer, question)
        verdicts.append(None if verdict is _UNDECIDED else verdict)
        if verdict is _UNDECIDED:
            todo.append(i)
    if todo:
        if find_spec("math_verify") is None:  # fail here, not in a worker that cannot start
            raise PrmkitError("judging these answers needs math-verify: pip install math-verify")
        n = min(processes or min(4, os.cpu_count() or 1), len(todo))
        _judge_in_workers(references, answers, todo, verdicts, timeout_s, n)
    return verdicts


def _normal(text: str) -> str:
    text = text.strip().rstrip(".").replace("$", "")
    text = _THOUSANDS.sub("", _LATEX_SPACE.sub("", text))
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return re.sub(r"\s+", "", text)


def _is_words(text: str) -> bool:
    """True when the text holds a word ("No", "values"), which math-verify would misread."""
    return re.search(r"[A-Za-z]{2,}", _FUNCTION.sub("", _LATEX_COMMAND.sub("", text))) is not None


def _value(number: str) -> Fraction | None:
    try:
        return Fraction(number.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def _quick_judge(reference: str | None, answer: str | None, question: str | None):
    if not reference or not answer or not reference.strip() or not answer.strip():
        return None
    if len(reference) > MAX_ANSWER_CHARS or len(answer) > MAX_ANSWER_CHARS:
        return None
    gloss = _NUMBER_AND_GLOSS.fullmatch(reference.strip().rstrip("."))
    if gloss:
        reference = gloss.group(1)
    ref, ans = _normal(reference), _normal(answer)
    if ref == ans:
        return True
    if _is_words(reference):
        return None  # "No", "0 is the only possible value": no rule-based judge reads these
    if _NUMBER.fullmatch(ref):
        if _NUMBER.fullmatch(ans):
            gold, pred = _value(ref), _value(ans)
            return None if gold is None or pred is None else gold == pred
        if _is_words(answer):
            return _number_in_sentence(_value(ref), answer, question or "")
    if _is_words(answer) and not _HAS_LATEX.search(answer):
        return None  # a formula written in prose ("is 2^(n-1) ways") is misread by math-verify
    return _UNDECIDED


def vote_answer(reference: str | None, answer: str | None, question: str | None,
                verdict: bool | None) -> str | None:
    """A judged answer in a short form that majority vote can count: equal answers, equal strings.

    Every right answer (``verdict`` True) reads as the normalised reference. A wrong sentence
    answering a numeric reference reads as the numbers it states that the question does not
    (the ones ``judge_answer`` compared): "There are 29 valid strings of length 6." -> "29". A
    wrong plain number reads as its value, any other wrong answer as its normalised text. None
    when the verdict is None.

    Wrong answers that differ only in wording may still read differently, which splits their
    votes: if anything, majority vote is flattered.

    >>> vote_answer("239", "There are 29 valid strings of length 6.", "strings of length 6", False)
    '29'
    """
    if verdict is None or answer is None or reference is None:
        return None
    gloss = _NUMBER_AND_GLOSS.fullmatch(reference.strip().rstrip("."))
    ref = _normal(gloss.group(1) if gloss else reference)
    if verdict:
        return ref
    if _NUMBER.fullmatch(_normal(answer)):
        value = _value(_normal(answer))
        return _normal(answer) if value is None else str(value)
    if _NUMBER.fullmatch(ref) and _is_words(answer):
        fresh = _said_and_given(answer, question or "")[0]
        if fresh:
            return ", ".join(str(v) for v in dict.fromkeys(fresh))
    return _normal(answer)


def _said_and_given(answer: str, question: str) -> tuple[list[Fraction], list[Fraction],
                                                          set[Fraction]]:
    """(numbers the answer states that the question does not, all it states, the question's)."""
    said = [v for v in map(_value, _NUMBER_IN_TEXT.findall(answer)) if v is not None]
    given = {v for v in map(_value, _NUMBER_ANYWHERE.findall(question)) if v is not None}
    return [v for v in said if v not in given], said, given


def _number_in_sentence(gold: Fraction | None, answer: str, question: str) -> bool | None:
    if gold is None:
        return None
    fresh, said, given = _said_and_given(answer, question)
    if gold in fresh:
        return True
    if gold in given and gold in said:
        return None  # the sentence may restate the question's number or answer with it
    return False if fresh else None


def _parse_whole(text: str, parse) -> list:
    """math-verify's parse of ``text`` if it read all of it (plain, then as $maths$), else []."""
    wanted = re.sub(r"[^0-9A-Za-z]", "", text)
    for candidate in (text, f"${text.strip().strip('$')}$"):
        result = parse(candidate, parsing_timeout=None)
        if len(result) == 2 and re.sub(r"[^0-9A-Za-z]", "", str(result[1])) == wanted:
            return result
    return []


def _math_verify_judge(reference: str, answer: str) -> bool | None:
    try:
        from math_verify import parse, verify
    except ImportError:
        raise PrmkitError("judging answers needs math-verify: pip install math-verify") from None
    gold = _parse_whole(reference, parse)
    if not gold:
        return None  # math-verify did not read the whole reference: it would judge a fragment
    # A bare answer ("1+2\\sqrt{3}") is read whole. In a sentence math-verify takes the boxed or
    # last maths; wrapping a sentence in $...$ would read its words as a product of symbols.
    pred = [] if _is_words(answer) else _parse_whole(answer, parse)
    pred = pred or parse(answer, parsing_timeout=None)
    if not pred:
        return None
    return bool(verify(gold, pred, timeout_seconds=None))


def _judge_worker(conn) -> None:
    """Worker process: judge ``(index, reference, answer)`` items until told to stop (None)."""
    # Our caller bounds the time, so math-verify's "timeout is disabled" warning is noise here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (imported before "ready" so start-up is not billed to an item)
    conn.send("ready")
    while True:
        item = conn.recv()
        if item is None:
            return
        i, reference, answer = item
        try:
            verdict = _math_verify_judge(reference, answer)
        except Exception:  # noqa: BLE001  sympy fails in many ways; one answer is "undecided"
            verdict = None
        conn.send((i, verdict))


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_judge_worker, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.item: int | None = None
        self.deadline = 0.0

    def wait_ready(self) -> None:
        try:
            if self.conn.poll(120):
                self.conn.recv()
                return
        except EOFError:  # it died while starting
            pass
        raise PrmkitError("an answer-judging worker process did not start")

    def stop(self, kill: bool) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                self.process.kill()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _judge_in_workers(references: Sequence[str | None], answers: Sequence[str | None],
                      todo: deque[int], verdicts: list[bool | None], timeout_s: float,
                      n: int) -> None:
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    workers = [_Worker(ctx) for _ in range(n)]
    try:
        for w in workers:
            w.wait_ready()
        while todo or any(w.item is not None for w in workers):
            for w in workers:
                if w.item is None and todo:
                    w.item = todo.popleft()
                    w.conn.send((w.item, references[w.item], answers[w.item]))
                    w.deadline = time.monotonic() + timeout_s
            busy = [w for w in workers if w.item is not None]
            left = min(w.deadline for w in busy) - time.monotonic()
            ready = wait([w.conn for w in busy], timeout=max(0.0, left))
            for k, w in enumerate(workers):
                if w.item is None:
                    continue
                if w.conn in ready:
                    try:
                        i, verdict = w.conn.recv()
                        verdicts[i] = verdict
                        w.item = None
                        continue
                    except EOFError:  # the worker died (e.g. out of memory): verdict stays None
                        pass
                elif time.monotonic() < w.deadline:
                    continue
                w.stop(kill=True)
                workers[k] = _Worker(ctx)
                workers[k].wait_ready()
    finally:
        for w in workers:
            w.stop(kill=False)


# --- reading the final answer a solution states ------------------------------------------------

# "The answer is 42.", "the final answer is $\boxed{42}$", "Answer: 42"
_ANSWER = re.compile(r"(?:final answer|the answer|answer)\s*(?:is\s*:?|:)\s*(.+?)\s*\.?\s*$"
                     r"|^####\s*(.+?)\s*$", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


def final_answer(steps: Sequence[str]) -> str | None:
    """The final answer a solution states in its last step: ``\\boxed{...}`` where present,
    else what follows "the answer is" / "answer:" / "####" on its last line; None when the
    last step states none."""
    if not steps:
        return None
    last = steps[-1].strip()
    boxed = _BOXED.findall(last)
    if boxed:
        return boxed[-1].strip()
    m = _ANSWER.search(last.splitlines()[-1] if last else "")
    return (m.group(1) or m.group(2)).strip().strip("$").strip() if m else None
