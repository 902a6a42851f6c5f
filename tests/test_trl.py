"""TRL stepwise supervision. tests/data/trl_sample.jsonl: two rows in the shape of
trl-lib/math_shepherd made from the Math-Shepherd sample lines 1 and 5 (the second cut after its
first false step), and one hand-written all-true row."""

import json
from pathlib import Path

import pytest

from prmkit.data import formats
from prmkit.data.trl import trl_from_row, trl_rows
from prmkit.errors import DataError
from prmkit.records import Trajectory

SAMPLE = Path(__file__).parent / "data" / "trl_sample.jsonl"


def test_read():
    records = formats.load("trl", SAMPLE)
    assert [t.labels for t in records] == [[1, 1, 1, 1, 0], [1, 0], [1, 1]]
    assert records[2].question == "Tom has 3 apples and buys 4 more. How many apples does he have?"
    assert records[2].steps == ["Step 1: He has 3 + 4 = <<3+4=7>>7 apples.",
                                "Step 2: The answer is: 7"]
    assert records[0].meta == {"source": "trl", "raw_labels": [True, True, True, True, False]}
    assert all(t.outcome is None and t.answer is None for t in records)


def test_round_trip_gives_the_same_rows(tmp_path):
    summary = formats.convert("trl", SAMPLE, "trl", tmp_path / "out.jsonl")
    original = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == original
    assert summary == {"read": 3, "trajectories_in": 3, "trajectories_out": 3, "steps_in": 9,
                       "steps_out": 9, "steps_dropped_after_error": 0,
                       "steps_dropped_unlabelled": 0, "trajectories_dropped_unlabelled": 0,
                       "soft_labels_thresholded": 0}


def test_export_cuts_what_trl_cannot_say():
    records = [
        Trajectory("q1", ["a", "b", "c", "d"], [1, 0, None, None]),  # cut after the error: -2
        Trajectory("q2", ["a", "b", "c"], [1, None, 1]),             # cut at the gap: -2
        Trajectory("q3", ["a", "b"], [None, 1]),                     # nothing labelled first
        Trajectory("q4", ["a", "b", "c"], [0.7, 0.2, 1], label_kind="value"),  # 0.7 -> true,
    ]                                                                # 0.2 -> false, then -1
    rows, summary = trl_rows(records)
    assert rows == [
        {"prompt": "q1", "completions": ["a", "b"], "labels": [True, False]},
        {"prompt": "q2", "completions": ["a"], "labels": [True]},
        {"prompt": "q4", "completions": ["a", "b"], "labels": [True, False]},
    ]
    # steps in: 4 + 3 + 2 + 3 = 12; out: 2 + 1 + 2 = 5; after an error: 2 (q1) + 1 (q4);
    # unlabelled: 2 (q2) + 2 (q3, the whole record).
    assert summary == {"trajectories_in": 4, "trajectories_out": 3, "steps_in": 12,
                       "steps_out": 5, "steps_dropped_after_error": 3,
                       "steps_dropped_unlabelled": 4, "trajectories_dropped_unlabelled": 1,
                       "soft_labels_thresholded": 2}


def test_integer_labels_are_read_as_booleans():
    (record,) = trl_from_row({"prompt": "q", "completions": ["a", "b"], "labels": [1, 0]})
    assert record.labels == [1, 0]


@pytest.mark.parametrize("row, where, message", [
    ({"prompt": "q", "completions": ["a", "b"], "labels": [True, "yes"]}, "labels[1]",
     'must be true or false, got "yes"'),
    ({"prompt": "q", "completions": ["a", "b"], "labels": [True, 0.5]}, "labels[1]",
     "must be true or false, got 0.5"),
    ({"prompt": "q", "completions": ["a", "b"], "labels": [True]}, "labels",
     "must be a list with one label per completion (2)"),
    ({"prompt": [{"role": "user", "content": "q"}], "completions": ["a"], "labels": [True]},
     "prompt", "must be a string (conversational prompts are not supported)"),
    ({"prompt": "q", "completions": ["a", "  "], "labels": [True, True]}, "completions[1]",
     "empty step"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path, row, where, message):
    lines = SAMPLE.read_text().splitlines()
    lines[1] = json.dumps(row)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        formats.load("trl", path)
    assert str(error.value) == f"{path}:2: {where}: {message}"
