"""ProcessBench. tests/data/processbench_sample.jsonl: four items in the shape of
Qwen/ProcessBench (ids and generators as there; texts short, written for these tests)."""

import json
from pathlib import Path

import pytest

from prmkit.data import formats
from prmkit.data.processbench import first_error_index, processbench_rows
from prmkit.records import first_error_labels
from prmkit.errors import DataError
from prmkit.records import Trajectory

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "processbench_sample.jsonl"


def test_read():
    records = formats.load("processbench", SAMPLE)
    # label -1 -> every step right; label 1 -> step 0 right, step 1 wrong, later unjudged.
    assert [t.labels for t in records] == [[1, 1, 1, 1], [1, 0, None], [1, 1, 1], [1, 0, None]]
    assert [t.outcome for t in records] == [True, False, True, False]
    assert records[1].meta == {"source": "processbench", "id": "gsm8k-1",
                               "generator": "Llama-3.1-8B-Instruct", "raw_labels": 1}
    assert records[1].steps[1] == "Half that much white fiber is 2 * 2 = 4 bolts."


def test_round_trip_gives_the_same_items(tmp_path):
    summary = formats.convert("processbench", SAMPLE, "processbench", tmp_path / "out.jsonl")
    original = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == original
    assert summary == {"read": 4, "trajectories_in": 4, "trajectories_out": 4,
                       "skipped_no_first_error": 0, "skipped_no_outcome": 0}


def test_export_from_prm800k_phase2():
    (record,) = formats.load("prm800k", DATA / "prm800k_phase2_example.json")
    rows, summary = processbench_rows([record])
    # Labels [1, 1, 1, 1, 1, 1, 0, None x 6]: the first error is step 6; 7200 != 28800.
    assert rows[0]["label"] == 6 and rows[0]["final_answer_correct"] is False
    assert rows[0]["id"] == "cc88bf76-df08-4041-be67-3464279cb3b1:2022-11-22T16:51:29.980606"
    assert rows[0]["generator"] == "unknown" and len(rows[0]["steps"]) == 13
    assert summary["trajectories_out"] == 1


def test_export_skips_records_without_a_first_error_or_an_outcome():
    rows, summary = processbench_rows([
        Trajectory("q", ["a", "b", "c"], [1, None, 0], outcome=False),  # gap before the error
        Trajectory("q", ["a", "b"], [1, 0.6], outcome=True),             # soft before any 0
        Trajectory("q", ["a", "b"], [1, 1]),                             # no outcome
        Trajectory("q", ["a", "b"], [1, 0], outcome=True, meta={"generator": "m"}),
    ])
    assert rows == [{"id": "3", "generator": "m", "problem": "q", "steps": ["a", "b"],
                     "final_answer_correct": True, "label": 1}]
    assert summary == {"trajectories_in": 4, "trajectories_out": 1, "skipped_no_first_error": 2,
                       "skipped_no_outcome": 1}


def test_first_error_helpers():
    assert first_error_labels(3, -1) == [1, 1, 1]
    assert first_error_labels(3, 0) == [0, None, None]
    assert first_error_index([1, 1, 0, 1]) == 2  # what follows the first error is ignored
    assert first_error_index([1, 1]) == -1
    assert first_error_index([None, 0]) is None


@pytest.mark.parametrize("change, where, message", [
    (lambda r: r.update(label=5), "label", "must be -1 or a step index below 3, got 5"),
    (lambda r: r.update(label=True), "label", "must be -1 or a step index below 3, got true"),
    (lambda r: r.update(final_answer_correct="no"), "final_answer_correct",
     "must be true or false"),
    (lambda r: r.pop("generator"), "generator", "missing required field"),
    (lambda r: r["steps"].__setitem__(2, ""), "steps[2]", "must be a non-empty string"),
])
def test_malformed_items_name_file_line_and_field(tmp_path, change, where, message):
    items = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    change(items[1])
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    with pytest.raises(DataError) as error:
        formats.load("processbench", path)
    assert str(error.value) == f"{path}:2: {where}: {message}"


def test_a_json_list_file_locates_the_item(tmp_path):
    items = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    items[2]["label"] = 9
    path = tmp_path / "math.json"
    path.write_text(json.dumps(items, indent=1))
    with pytest.raises(DataError) as error:
        formats.load("processbench", path)
    assert str(error.value) == f"{path}: [2].label: must be -1 or a step index below 3, got 9"
