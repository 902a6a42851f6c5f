"""Math-Shepherd on real lines: tests/data/math_shepherd_sample.jsonl holds seven lines of the
public data (all GSM8K)."""

import json
from pathlib import Path

import pytest

from prmkit.data import formats
from prmkit.data.math_shepherd import math_shepherd_from_row
from prmkit.errors import DataError
from prmkit.records import iter_jsonl, read_jsonl, write_jsonl

SAMPLE = Path(__file__).parent / "data" / "math_shepherd_sample.jsonl"


def rows():
    return [row for _, row in iter_jsonl(SAMPLE)]


def row_from(text: str, signs: str, task: str = "MATH") -> dict:
    """A line in Math-Shepherd's shape: the label is the input with each tag replaced."""
    label = text
    for sign in signs:
        label = label.replace("ки", sign, 1)
    return {"input": text, "label": label, "task": task}


def test_first_line():
    records = formats.load("math-shepherd", SAMPLE)
    first = records[0]
    assert first.question == (
        "Janet pays $40/hour for 3 hours per week of clarinet lessons and $28/hour for 5 hours a "
        "week of piano lessons. How much more does she spend on piano lessons than clarinet "
        "lessons in a year?")
    assert len(first.steps) == 5
    assert first.steps[0] == ("Step 1: Janet spends 3 hours + 5 hours = <<3+5=8>>8 hours per week "
                              "on music lessons.")
    # Label text: "+" after steps 1-4, "-" after step 5 -> 1, 1, 1, 1, 0.
    assert first.labels == [1, 1, 1, 1, 0]
    assert first.meta == {"source": "math-shepherd", "task": "GSM8K",
                          "raw_labels": ["+", "+", "+", "+", "-"]}
    # Step 5 says "The answer is: 13520" and is labelled "-": the final answer is wrong.
    assert first.answer == "13520" and first.outcome is False


def test_all_lines():
    records = formats.load("math-shepherd", SAMPLE)
    assert [t.labels for t in records] == [
        [1, 1, 1, 1, 0], [0, 0, 0], [0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0], [0, 0, 0]]
    assert [t.answer for t in records] == ["13520", "16000", "40", "900", "52", "2.2", "210"]


def test_lowercase_marker_and_a_right_answer():
    text = "What is 2+3? step 1: 2+3=5 ки\nstep 2: The answer is: 5 ки"
    (record,) = math_shepherd_from_row(row_from(text, "++"))
    assert record.question == "What is 2+3?"
    assert record.steps == ["step 1: 2+3=5", "step 2: The answer is: 5"]
    assert record.labels == [1, 1] and record.outcome is True and record.answer == "5"
    assert record.meta["task"] == "MATH"


def test_a_tag_inside_the_question_is_dropped_with_its_label():
    # A few public lines carry a tag before "Step 1:"; it is an annotation slip, not a step.
    text = "Round 2.5 to the nearest integer. ки Step 1: It rounds to 3. ки\nStep 2: 3 ки"
    (record,) = math_shepherd_from_row(row_from(text, "+-+"))
    assert record.question == "Round 2.5 to the nearest integer."
    assert record.steps == ["Step 1: It rounds to 3.", "Step 2: 3"]
    assert record.labels == [0, 1] and record.meta["dropped_labels"] == 1
    assert record.outcome is None  # no "The answer is" in the last step


def test_without_a_step_marker_the_question_ends_at_its_last_question_mark():
    text = "Is 7 prime? Why? It has no divisors but 1 and 7. ки So yes. ки"
    (record,) = math_shepherd_from_row(row_from(text, "+-"))
    assert record.question == "Is 7 prime? Why?"
    assert record.steps == ["It has no divisors but 1 and 7.", "So yes."]


def test_round_trip_through_native_jsonl(tmp_path):
    records = formats.load("math-shepherd", SAMPLE)
    write_jsonl(tmp_path / "native.jsonl", records)
    assert [t.to_dict() for t in read_jsonl(tmp_path / "native.jsonl")] == \
        [t.to_dict() for t in records]


@pytest.mark.parametrize("change, where, message", [
    # Line 2's input has 380 characters and 3 tags, the first at character 210; its label
    # has 380 - 3 = 377 characters, the first sign at 210 (no tag before it).
    (lambda r: r.update(label=r["label"][:210] + "x" + r["label"][211:]), "label",
     "character 210 is 'x' where tag 1 of the input stands; expected + or -"),
    (lambda r: r.update(label=r["label"] + "+"), "label",
     "is not the input with each tag replaced by one character (378 characters, expected 377)"),
    (lambda r: r.update(input=r["input"].replace("ки", "")), "input", "no step tags 'ки'"),
    (lambda r: r.update(label=r["label"].replace("Step 2", "Step X")), "label",
     "differs from the input outside the tags"),
    (lambda r: r.update({key: r[key].replace("Step 1:", "First,").replace("?", ".")
                         for key in ("input", "label")}),
     "input", ("no 'Step 1:' marker and no '?' before the first tag: cannot tell the question "
               "from the steps")),
    (lambda r: r.pop("label"), "label", "must be a string, got null"),
])
def test_malformed_lines_name_file_line_and_field(tmp_path, change, where, message):
    lines = rows()
    change(lines[1])  # line 2: "Val cuts a single watermelon into 40 slices ..."
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lines))
    with pytest.raises(DataError) as error:
        formats.load("math-shepherd", path)
    assert str(error.value) == f"{path}:2: {where}: {message}"
