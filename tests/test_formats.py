import json
import os
from pathlib import Path

import pytest

from prmkit.data import formats
from prmkit.data.formats import (
    FORMATS,
    convert,
    equation_count,
    load,
    load_located,
    normalize_question,
    overlap,
    save,
    stats,
)
from prmkit.errors import DataError, PrmkitError
from prmkit.records import Trajectory

DATA = Path(__file__).parent / "data"


def test_format_names_and_which_can_be_written():
    assert list(FORMATS) == ["jsonl", "prm800k", "math-shepherd", "trl", "processbench", "champ"]
    assert [name for name, f in FORMATS.items() if f.write is not None] == [
        "jsonl", "trl", "processbench"]


def test_unknown_and_read_only_formats_are_refused(tmp_path):
    with pytest.raises(PrmkitError, match="unknown format 'csv' \\(choose from jsonl, prm800k, "):
        load("csv", DATA / "trl_sample.jsonl")
    with pytest.raises(PrmkitError, match="format 'prm800k' is read-only \\(writable: jsonl, "
                                          "trl, processbench\\)"):
        save("prm800k", tmp_path / "x.jsonl", [])
    # A read-only target is refused before reading (the source here does not even exist).
    with pytest.raises(PrmkitError, match="format 'champ' is read-only"):
        convert("trl", tmp_path / "missing.jsonl", "champ", tmp_path / "out")


def test_native_save_and_load(tmp_path):
    records = [Trajectory("q", ["a", "b"], [1, None], outcome=True, answer="7",
                          meta={"source": "hand"})]
    assert save("jsonl", tmp_path / "out.jsonl", records) == {"trajectories_in": 1,
                                                              "trajectories_out": 1}
    assert [t.to_dict() for t in load("jsonl", tmp_path / "out.jsonl")] == \
        [t.to_dict() for t in records]
    assert os.listdir(tmp_path) == ["out.jsonl"]  # the atomic write left no temporary file


def test_load_located_names_each_record_line_for_jsonl_only(tmp_path):
    records = [Trajectory("q1", ["a"], [1]), Trajectory("q2", ["b", "c"], [1, 0])]
    assert load_located(records) == (records, None)  # a list passes through as it is
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(t.to_dict()) for t in records) + "\n\n")
    found, where = load_located(path)
    assert [t.question for t in found] == ["q1", "q2"]
    assert [line for _, line in where] == [1, 2]
    assert all(Path(p) == path for p, _ in where)
    found, where = load_located(DATA / "trl_sample.jsonl", "trl")  # adapters name lines on error
    assert where is None and [t.num_steps for t in found][:1] == [5]


def test_a_folder_is_read_in_name_order(tmp_path):
    lines = (DATA / "trl_sample.jsonl").read_text().splitlines()
    (tmp_path / "b.jsonl").write_text(lines[0] + "\n")
    (tmp_path / "a.jsonl").write_text(lines[2] + "\n")
    (tmp_path / "notes.txt").write_text("not data")
    records = load("trl", tmp_path)
    assert [t.num_steps for t in records] == [2, 5]  # a.jsonl (2 steps), then b.jsonl (5)


def test_source_errors(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: no such file or folder"):
        load("trl", tmp_path / "missing.jsonl")
    with pytest.raises(PrmkitError, match="split applies to hub data sets, not to a local file"):
        load("trl", DATA / "trl_sample.jsonl", split="train")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: no trajectories in source"):
        load("trl", tmp_path / "empty.jsonl")
    (tmp_path / "broken.json").write_text('[{"prompt": "q",\n  oops]')
    with pytest.raises(DataError, match="broken.json:2: invalid JSON: Expecting property name "
                                        "enclosed in double quotes \\(column 3\\)"):
        load("trl", tmp_path / "broken.json")


def test_convert_prm800k_to_processbench(tmp_path):
    summary = convert("prm800k", DATA / "prm800k_sample.jsonl", "processbench",
                      tmp_path / "pb.jsonl")
    # Lines 1, 3, 4: all steps right and the answer right -> label -1; line 2 (phase 2): first
    # error at step 6, answer wrong; lines 5 (gave up) and 6 (no reference): no outcome.
    assert summary == {"read": 6, "trajectories_in": 6, "trajectories_out": 4,
                       "skipped_no_first_error": 0, "skipped_no_outcome": 2}
    items = [json.loads(line) for line in (tmp_path / "pb.jsonl").read_text().splitlines()]
    assert [(item["label"], item["final_answer_correct"]) for item in items] == [
        (-1, True), (6, False), (-1, True), (-1, True)]


def test_convert_math_shepherd_to_trl(tmp_path):
    summary = convert("math-shepherd", DATA / "math_shepherd_sample.jsonl", "trl",
                      tmp_path / "trl.jsonl")
    # Labels per line: 11110, 000, 00, 00000, 10000, 00, 000 -> kept up to the first 0:
    # 5 + 1 + 1 + 1 + 2 + 1 + 1 = 12 of 5 + 3 + 2 + 5 + 5 + 2 + 3 = 25 steps.
    assert summary["steps_in"] == 25 and summary["steps_out"] == 12
    assert summary["steps_dropped_after_error"] == 13
    assert summary["trajectories_out"] == 7
    first = json.loads((tmp_path / "trl.jsonl").read_text().splitlines()[0])
    assert first["labels"] == [True, True, True, True, False]


def test_convert_passes_reader_options(tmp_path):
    summary = convert("prm800k", DATA / "prm800k_sample.jsonl", "jsonl", tmp_path / "all.jsonl",
                      read_options={"alternatives": True})
    # Alternatives per line: 9 + 3 + 6 + 6 + 6 + 0 (line 1: 5 at step 1, 4 at step 5; ...)
    assert summary["read"] == 6 + 9 + 3 + 6 + 6 + 6


def test_stats_counts_by_hand():
    records = [
        Trajectory("What is 2+3?", ["First 2 + 3 = 5 and then 5 * 2 = 10.", "# Answer 10"],
                   [1, 0.5], outcome=True),
        Trajectory("q2", ["We add.", "It is 7. It is odd. It is prime. It is small.",
                          "So the total is seven apples"], [None, 1, 0]),
    ]
    result = stats(records)
    assert result["items"] == 2 and result["steps"] == 5
    # 2 and 3 steps: mean 2.5, p90 = 2 + 0.9 * (3 - 2) = 2.9
    assert result["steps_per_item"] == {"mean": 2.5, "median": 2.5, "p90": pytest.approx(2.9),
                                        "min": 2.0, "max": 3.0}
    assert result["labels"] == {"1": 2, "0": 1, "soft": 1, "none": 1}
    assert result["outcomes"] == {"true": 1, "false": 0, "none": 1}
    assert result["label_kinds"] == {"correctness": 2}
    # Characters 36, 11, 7, 45, 28: mean 127 / 5 = 25.4; sorted 7 11 28 36 45, median 28,
    # p90 at position 0.9 * 4 = 3.6: 36 + 0.6 * (45 - 36) = 41.4
    assert result["step_chars"] == {"mean": pytest.approx(25.4), "median": 28.0,
                                    "p90": pytest.approx(41.4), "min": 7.0, "max": 45.0}
    # Words 13, 2, 3, 12, 6 (sorted 2 3 6 12 13): mean 36 / 5 = 7.2, p90 12 + 0.6 = 12.6
    assert result["step_words"] == {"mean": pytest.approx(7.2), "median": 6.0,
                                    "p90": pytest.approx(12.6), "min": 2.0, "max": 13.0}
    # Coarse: two equation clauses ("2 + 3 = 5" and "5 * 2 = 10"); four sentences.
    # Fine (< 4 words): "# Answer 10" and "We add.".
    assert (result["coarse_steps"], result["fine_steps"]) == (2, 2)


def test_stats_of_nothing():
    result = stats([])
    assert result["items"] == 0 and result["step_chars"]["mean"] is None


def test_equation_count():
    assert equation_count("The first equation is 3p + e = 124, and the second is 5p + e = 182.") \
        == 2
    assert equation_count("So 2 + 3 = <<2+3=5>>5 = 5.") == 1  # a chain, calculator note ignored
    assert equation_count("If x <= 3 and y >= 2 then x != y.") == 0
    assert equation_count("$x=1$; $y=2$\n$z=3$") == 3


def test_normalize_question():
    assert normalize_question("What is $\\dfrac{1}{2}$ of 40,\\!000?") == "whatis\\frac12of40000"
    assert normalize_question("Costs \\$1.24 in \\left( total \\right)") == "costs124in(total)"


def test_overlap_finds_shared_questions_after_normalisation():
    train = [Trajectory("What is $\\frac{1}{2}$ of $40,\\!000$?", ["a"]),
             Trajectory("What is $x+y$?", ["a"]),
             Trajectory("What is  $\\frac{1}{2}$ of $40,\\!000$ ?", ["b"]),  # the same again
             Trajectory("Find $x^{2}$.", ["a"])]
    test = ["what is \\dfrac12 of 40000?", "What is $x-y$?", "Find $x^2$"]
    assert overlap(train, test) == ["What is $\\frac{1}{2}$ of $40,\\!000$?", "Find $x^{2}$."]
    assert overlap(test, train) == ["what is \\dfrac12 of 40000?", "Find $x^2$"]
    assert overlap(train, []) == []


def test_hub_names_go_to_datasets(monkeypatch):
    calls = []

    def fake_load_dataset(name, split=None):
        calls.append((name, split))
        return [{"prompt": "q", "completions": ["a"], "labels": [True]},
                {"prompt": "q", "completions": ["a"], "labels": ["x"]}]

    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataError) as error:
        formats.load("trl", "trl-lib/math_shepherd", split="train")
    assert calls == [("trl-lib/math_shepherd", "train")]
    assert str(error.value) == "trl-lib/math_shepherd[train]:2: labels[0]: must be true or " \
                               'false, got "x"'
