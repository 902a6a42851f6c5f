"""PRM800K on real lines: tests/data/prm800k_sample.jsonl holds six lines of the public data
(phase 1 and phase 2), prm800k_phase2_example.json the phase-2 example pretty-printed (the same
solution as line 2)."""

import json
from pathlib import Path

import pytest

from prmkit.data import formats
from prmkit.data.prm800k import prm800k_from_row
from prmkit.errors import DataError
from prmkit.records import iter_jsonl, read_jsonl, write_jsonl

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "prm800k_sample.jsonl"


def rows():
    return [row for _, row in iter_jsonl(SAMPLE)]


def test_first_line_labels_worked_out_from_the_ratings():
    records = formats.load("prm800k", SAMPLE)
    first = records[0]
    # Line 1 (phase 1, "solution"), the path step by step:
    #   step 0: chosen 0, rating +1                         -> 1
    #   step 1: chosen null, all 5 completions rated -1, human completion (rating null)
    #           -> the human step is on the path, README: a labeller's own +1 step -> 1
    #   steps 2-4: chosen 0, rating +1                      -> 1, 1, 1
    #   step 5: chosen 4, rating +1 ("... 29 cents.\n\n# Answer\n\n29") -> 1
    assert first.labels == [1, 1, 1, 1, 1, 1]
    assert first.meta["raw_labels"] == [1, None, 1, 1, 1, 1]
    assert first.meta["human_steps"] == [1]
    assert first.steps[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
    assert first.answer == "29" and first.outcome is True  # ground truth "29"
    assert first.question.startswith("Three pencils and a jumbo eraser cost $\\$1.24$.")
    assert first.meta["source"] == "prm800k"
    assert first.meta["id"] == "e90a38f3-3135-4465-87af-3e6322e3d772:2022-07-30T23:23:32.118856"
    assert (first.meta["phase"], first.meta["finish_reason"]) == (1, "solution")


def test_all_lines():
    records = formats.load("prm800k", SAMPLE)
    assert [len(t.steps) for t in records] == [6, 13, 5, 7, 8, 12]
    assert [t.outcome for t in records] == [True, False, True, True, None, None]
    # Line 5 gave up after a human step (step 7), then an empty step record ends the path.
    give_up = records[4]
    assert give_up.meta["finish_reason"] == "give_up"
    assert give_up.labels == [1] * 8 and give_up.meta["human_steps"] == [7]
    assert give_up.answer is None
    # Line 6 is a screening question with no ground-truth answer: outcome unknown.
    screening = records[5]
    assert screening.meta["screening"] is True and screening.meta["generation"] == -1
    assert screening.answer == "8, 3, 1" and screening.meta["reference_answer"] is None


@pytest.mark.parametrize("neutral, second", [("positive", 1), ("negative", 0), ("skip", None)])
def test_phase2_first_error_and_the_neutral_policy(neutral, second):
    (record,) = prm800k_from_row(rows()[1], neutral=neutral)
    # Ratings on the path: +1, 0, +1, +1, +1, +1, then step 6 (no chosen completion) holds the
    # pre-generated step rated -1; the other 6 pre-generated steps follow, unlabelled.
    assert record.labels == [1, second, 1, 1, 1, 1, 0] + [None] * 6
    assert record.meta["raw_labels"] == [1, 0, 1, 1, 1, 1, -1] + [None] * 6
    assert record.steps == json.loads(SAMPLE.read_text().splitlines()[1])["question"][
        "pre_generated_steps"]
    assert record.answer == "7200"  # pre_generated_answer; the ground truth is 28800


def test_human_steps_can_be_left_unlabelled():
    (record,) = prm800k_from_row(rows()[0], human_steps="skip")
    assert record.labels == [1, None, 1, 1, 1, 1]


def test_steps_after_the_first_minus_one_are_unlabelled():
    row = rows()[2]  # 5 steps, chosen completions all rated +1
    row["label"]["steps"][1]["completions"][0]["rating"] = -1
    (record,) = prm800k_from_row(row)
    assert record.labels == [1, 0, None, None, None]


def test_alternatives_become_extra_records():
    records = prm800k_from_row(rows()[0], alternatives=True)
    # Step 1: five alternatives rated -1 -> [1, 0] each; step 5: the four completions not
    # chosen, rated 0, +1, +1, +1 -> 1 each (neutral is positive by default).
    assert len(records) == 1 + 5 + 4
    alternatives = records[1:]
    assert [t.labels for t in alternatives[:5]] == [[1, 0]] * 5
    assert [t.labels[-1] for t in alternatives[5:]] == [1, 1, 1, 1]
    assert [t.meta["raw_labels"][-1] for t in alternatives[5:]] == [0, 1, 1, 1]
    assert alternatives[0].steps[-1] == ("The first equation is 3p + e = 124, and the second "
                                         "equation is 5p + e = 182.")
    assert alternatives[0].meta["id"] == records[0].meta["id"] + "/1.0"
    assert alternatives[0].meta["alternative_of"] == records[0].meta["id"]
    # Completion 3 of step 5 ends in "# Answer\n\n29": a finished alternative gets an answer.
    assert [t.answer for t in alternatives[5:]] == [None, None, None, "29"]
    assert alternatives[5].steps[:5] == records[0].steps[:5]


def test_phase2_alternatives_after_the_error():
    records = prm800k_from_row(rows()[1], alternatives=True)
    # Step 6 has the pre-generated step (-1, on the path) and three alternatives rated +1.
    assert [t.labels for t in records[1:]] == [[1, 1, 1, 1, 1, 1, 1]] * 3


def test_json_file_with_one_object():
    (record,) = formats.load("prm800k", DATA / "prm800k_phase2_example.json")
    assert record.to_dict() == formats.load("prm800k", SAMPLE)[1].to_dict()


def test_bad_problem_lines_are_dropped_unless_asked_for():
    row = rows()[2]
    row["label"]["finish_reason"] = "bad_problem"
    assert prm800k_from_row(row) == []
    (kept,) = prm800k_from_row(row, bad_problems=True)
    assert kept.meta["finish_reason"] == "bad_problem"


def test_round_trip_through_native_jsonl(tmp_path):
    records = formats.load("prm800k", SAMPLE, alternatives=True)
    write_jsonl(tmp_path / "native.jsonl", records)
    assert [t.to_dict() for t in read_jsonl(tmp_path / "native.jsonl")] == \
        [t.to_dict() for t in records]


def _write_lines(path, changed_rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in changed_rows))
    return str(path)


@pytest.mark.parametrize("change, where, message", [
    (lambda r: r["label"]["steps"][2]["completions"][0].update(rating=7),
     "label.steps[2].completions[0].rating", "must be -1, 0, 1 or null, got 7"),
    (lambda r: r["label"]["steps"][0].update(chosen_completion=3),
     "label.steps[0].chosen_completion", "must be null or an index into the 1 completions, got 3"),
    (lambda r: r["label"].update(finish_reason="done"),
     "label.finish_reason",
     "must be one of solution, found_error, give_up, bad_problem, got 'done'"),
    (lambda r: r["question"].pop("problem"), "question.problem", "must be a string, got null"),
    (lambda r: r["label"]["steps"][1]["completions"][0].update(text=" "),
     "label.steps[1].completions[0].text", "empty step text"),
])
def test_malformed_lines_name_file_line_and_field(tmp_path, change, where, message):
    lines = rows()
    change(lines[2])
    path = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as error:
        formats.load("prm800k", path)
    assert str(error.value) == f"{path}:3: {where}: {message}"


def test_nan_rating_is_reported_at_its_field(tmp_path):
    text = SAMPLE.read_text().splitlines()
    text[1] = text[1].replace('"rating": 0,', '"rating": NaN,', 1)
    path = tmp_path / "nan.jsonl"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as error:
        formats.load("prm800k", path)
    assert str(error.value) == (f"{path}:2: label.steps[1].completions[0].rating: number NaN is "
                                "not allowed (NaN, infinite, or over 4300 digits)")
