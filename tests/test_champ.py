"""CHAMP from the installed champ-dataset package, plus tiny hand-made files for the error paths.

champ-dataset and math-verify are optional; tests that need them are skipped without them.
"""

import json
from importlib.util import find_spec

import pytest

from prmkit.data.champ import load_champ, load_champ_pools
from prmkit.answers import judge_answer, judge_answers, vote_answer
from prmkit.errors import DataError
from prmkit.records import read_jsonl, write_jsonl

needs_champ = pytest.mark.skipif(find_spec("champ_dataset") is None,
                                 reason="needs champ-dataset")
needs_math_verify = pytest.mark.skipif(find_spec("math_verify") is None,
                                       reason="needs math-verify")


@needs_champ
def test_what_the_package_holds():
    import champ_dataset

    dataset = champ_dataset.load("v0")
    annotations = [a for p in dataset.problems.values() for a in p.fws_annotations.values()]
    assert len(dataset.problems) == 270
    assert len(annotations) == 540
    assert sum(a.start_idx is None for a in annotations) == 96  # "No mistake"
    # 4 models x 18 prompts per problem
    assert sum(len(p.conversations) for p in dataset.problems.values()) == 270 * 72


@needs_champ
def test_annotated_solutions_of_one_problem():
    wrong, right = load_champ(problems=["P_Combinatorics_1"])
    assert wrong.meta["id"] == "P_Combinatorics_1|GPT-3.5|No C w/o H"
    # The annotated span [319, 469) starts the fifth paragraph ("If the last digit is 1, ..."):
    # paragraphs 0-3 are right, 4 is the first wrong step, 5-11 are not judged.
    assert wrong.meta["raw_labels"] == {"start_idx": 319, "end_idx": 469}
    assert wrong.labels == [1, 1, 1, 1, 0] + [None] * 7
    assert wrong.steps[4].startswith("If the last digit is 1, then the second-to-last digit")
    # The summary says 29; the reference answer is 239. The answer majority vote counts is 29.
    assert wrong.meta["summary"].startswith("There are 29 valid strings of length 6")
    assert wrong.answer == "29"
    assert wrong.outcome is False
    # The second annotation found no mistake: all 16 paragraphs right, and the summary says 239.
    assert right.labels == [1] * 16 and right.outcome is True
    assert right.question.startswith("Let a string consist of digit 1, 2, 3.")
    assert (right.meta["model"], right.meta["prompt"]) == ("GPT-3.5", "Direct C w/ H")


@needs_champ
def test_pools_of_one_problem():
    pools = load_champ_pools(problems=["P_Combinatorics_1"], models=["GPT-4"])
    candidates = pools["P_Combinatorics_1"]
    # 18 prompts less the two partial-solution prompts.
    assert len(candidates) == 16
    assert [t.meta["prompt"] for t in candidates[:3]] == ["0-Shot", "5-Shot", "No C w/o H"]
    assert all(t.labels == [None] * t.num_steps for t in candidates)
    # Summaries: 771 (0-Shot), 771 (No C w/o H) and 240 (Name C w/o H); the other 13 say 239.
    assert [t.outcome for t in candidates].count(True) == 13
    assert [t.meta["prompt"] for t in candidates if t.outcome is False] == [
        "0-Shot", "No C w/o H", "Name C w/o H"]
    # what majority vote counts: the right answers as one, the wrong ones by what they say
    assert [t.answer for t in candidates].count("239") == 13
    assert [t.answer for t in candidates if t.outcome is False] == ["771", "771", "240"]


@needs_champ
def test_round_trip_through_native_jsonl(tmp_path):
    records = load_champ(problems=["P_Combinatorics_1", "P_Sequence_42"])
    write_jsonl(tmp_path / "native.jsonl", records)
    assert [t.to_dict() for t in read_jsonl(tmp_path / "native.jsonl")] == \
        [t.to_dict() for t in records]


SOLUTION = "We add the two.\n\nThen 2 + 3 = 6, so it is 6.\n\nThe answer is 6."


def tiny_dataset(start, end):
    """A CHAMP file with one problem and one annotated solution (the package's JSON shape)."""
    messages = [{"role": "System", "text": "You are an expert on mathematics."},
                {"role": "User", "text": "Solve: what is 2 + 3?"},
                {"role": "Model.M", "text": SOLUTION},
                {"role": "User", "text": "Now, summarize the answer above in one sentence."},
                {"role": "Model.M", "text": "The sum of 2 and 3 is 6."}]
    problem = {"identifier": "P_Test_1", "_raw_text": "What is 2 + 3?", "category": "Test",
               "solution": {"steps": []}, "_raw_answer": "5", "ch_list": [],
               "fws_annotations": {"M|0-Shot": {"text": SOLUTION, "start_idx": start,
                                                "end_idx": end, "author": "M"}},
               "conversations": {"M|0-Shot": {"messages": messages}}}
    return {"problems": {"P_Test_1": problem}, "concepts": {}, "hints": {}}


@needs_champ
def test_a_span_inside_a_step_marks_that_step(tmp_path):
    path = tmp_path / "tiny.json"
    start = SOLUTION.index("so it is 6")  # inside the second paragraph
    path.write_text(json.dumps(tiny_dataset(start, start + 10)))
    (record,) = load_champ(str(path))
    assert record.steps == ["We add the two.", "Then 2 + 3 = 6, so it is 6.", "The answer is 6."]
    assert record.labels == [1, 0, None]
    assert record.outcome is False  # "6" is not the reference 5; 2 and 3 are the question's


@needs_champ
def test_another_segmentation_moves_the_wrong_step(tmp_path):
    path = tmp_path / "tiny.json"
    start = SOLUTION.index("so it is 6")
    path.write_text(json.dumps(tiny_dataset(start, start + 10)))
    (record,) = load_champ(str(path), method="regex", pattern=r",\s|\n\n")
    assert record.steps == ["We add the two.", "Then 2 + 3 = 6", "so it is 6.", "The answer is 6."]
    assert record.labels == [1, 1, 0, None]


@needs_champ
@pytest.mark.parametrize("start, end, message", [
    (50, 10, "span [50, 10) is not inside the 62-character solution"),  # 15 + 2 + 27 + 2 + 16
    (15, 17, "span [15, 17) covers only whitespace"),
])
def test_bad_spans_name_the_annotation(tmp_path, start, end, message):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_dataset(start, end)))
    with pytest.raises(DataError) as error:
        load_champ(str(path))
    assert str(error.value) == f"{path}: problems.P_Test_1.fws_annotations.M|0-Shot.start_idx: " \
                               f"{message}"


@pytest.mark.parametrize("reference, answer, question, verdict", [
    ("29", "29", None, True),
    ("28800", "7200", None, False),
    ("40,\\!000", "40000", None, True),                     # LaTeX spacing, thousands comma
    ("1/2", "0.5", None, True),
    ("239", "There are 239 strings of length 6.", "strings of length 6", True),
    ("239", "There are 29 strings of length 6.", "strings of length 6", False),
    ("6", "There are 6 ways.", "Pick 6 of them.", None),     # 6 may only restate the question
    ("No", "No, it cannot.", None, None),                    # words: no rule reads them
    ("98 values", "There are 98 such values.", None, True),  # a number with a gloss
    ("2^(n-1)", "It is 2^(n-1).", None, None),              # a formula in prose is misread
    pytest.param("1+2\\sqrt{3}", "1+2\\sqrt3", None, True, marks=needs_math_verify),
    pytest.param("\\frac{1}{2}", "\\frac{2}{4}", None, True, marks=needs_math_verify),
    (None, "5", None, None),
])
def test_judge_answer(reference, answer, question, verdict):
    assert judge_answer(reference, answer, question) is verdict


@pytest.mark.parametrize("reference, answer, question, verdict, expected", [
    ("239", "There are 239 strings of length 6.", "strings of length 6", True, "239"),
    ("98 values", "There are 98 such values.", None, True, "98"),          # gloss dropped
    ("239", "There are 29 strings of length 6.", "strings of length 6", False, "29"),
    ("239", "We get 29 or 31 strings of length 6.", "length 6", False, "29, 31"),
    ("28800", "7,200", None, False, "7200"),                               # a plain number
    ("x^2", "$x^3$", None, False, "x^3"),                                  # other text, normalised
    ("239", "No idea.", None, None, None),                                 # undecided
])
def test_vote_answer(reference, answer, question, verdict, expected):
    assert vote_answer(reference, answer, question, verdict) == expected


@needs_math_verify
def test_judge_answers_bounds_the_time_of_each_comparison():
    # Comparing a number with (x+y+z)^1999 makes sympy expand the power, for minutes: the
    # worker is killed after the limit, the item stays undecided, and the next item is judged.
    verdicts = judge_answers(["2001000", "\\frac{1}{2}"], ["(x+y+z)^{1999}", "\\frac{2}{4}"],
                             timeout_s=1.0, processes=1)
    assert verdicts == [None, True]
