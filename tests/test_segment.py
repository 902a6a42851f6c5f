import pytest

from prmkit.data.segment import segment, segment_spans
from prmkit.errors import PrmkitError

SOLUTION = ("Let p be the price of a pencil.\n\nThen 3p + e = 124 and 5p + e = 182.\n"
            "Subtracting gives 2p = 58.\n  \n\n\nSo p = 29.\n\n# Answer\n\n29")


def test_blank_lines_are_the_default_boundary():
    # Three blank-line runs inside the text (one with spaces and three newlines) and two more
    # around "# Answer": six steps, the two-line paragraph kept whole.
    assert segment(SOLUTION) == [
        "Let p be the price of a pencil.",
        "Then 3p + e = 124 and 5p + e = 182.\nSubtracting gives 2p = 58.",
        "So p = 29.", "# Answer", "29"]


def test_line_method_splits_every_line_and_drops_blank_ones():
    assert segment("a = 1\n\n  \nb = 2\r\nc = 3\n", method="line") == ["a = 1", "b = 2", "c = 3"]


def test_sentence_method():
    text = ("1. Let x be 2. We see, e.g. by trying, that x is 2.5 here. So $x = 2. Y$ holds! "
            "Dr. Who agrees? Yes.\n2) next line")
    assert segment(text, method="sentence") == [
        "1. Let x be 2.",                              # the enumerator "1." joins its sentence
        "We see, e.g. by trying, that x is 2.5 here.",  # no cut after "e.g." or inside 2.5
        "So $x = 2. Y$ holds!",                        # no cut inside maths
        "Dr. Who agrees?",                             # no cut after an abbreviation
        "Yes.",
        "2) next line"]                                 # a line break always cuts


def test_regex_method_drops_the_match_and_a_lookahead_keeps_the_marker():
    text = "Step 1: add. Step 2: multiply. Step 3: done."
    assert segment(text, "regex", r"(?=Step \d+:)") == [
        "Step 1: add.", "Step 2: multiply.", "Step 3: done."]
    assert segment("a ки b ки c ки", "regex", r"ки") == ["a", "b", "c"]


def test_no_empty_steps_ever():
    assert segment("") == []
    assert segment(" \n\n \t\n\n") == []
    assert segment("\n\nonly\n\n\n\n", method="line") == ["only"]
    assert segment("ки ки x", "regex", "ки") == ["x"]


def test_spans_locate_the_steps_in_the_text():
    spans = segment_spans(SOLUTION)
    assert spans[0] == (0, 31)  # "Let p be the price of a pencil." is 31 characters
    assert [SOLUTION[a:b] for a, b in spans] == segment(SOLUTION)


@pytest.mark.parametrize("method, pattern, message", [
    ("words", None, "unknown segmentation method 'words'"),
    ("regex", None, "a pattern is needed with method='regex' and only there"),
    ("blank", r"\n", "a pattern is needed with method='regex' and only there"),
    ("regex", "(", "bad segmentation pattern '('"),
])
def test_bad_arguments_are_refused(method, pattern, message):
    with pytest.raises(PrmkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        segment("text", method, pattern)
