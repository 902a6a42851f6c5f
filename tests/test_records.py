import json

import pytest

from prmkit.errors import DataError
from prmkit.records import Trajectory, check_label_kind, read_jsonl, write_jsonl

GOOD = {"question": "q?", "steps": ["a", "b"], "labels": [1, 0]}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip(tmp_path):
    t = Trajectory("What is 2+2?", ["2+2=4.", "The answer is 4."], [1, 0.75], outcome=True,
                   answer="4", meta={"raw_labels": [1, 0], "source": "hand"})
    path = tmp_path / "out.jsonl"
    assert write_jsonl(path, [t, t]) == 2
    assert read_jsonl(path) == [t, t]
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_missing_labels_mean_unlabelled():
    t = Trajectory.from_dict({"question": "q", "steps": ["a", "b", "c"]})
    assert t.labels == [None, None, None] and not t.is_labelled


@pytest.mark.parametrize("line, field, words", [
    ('{"question": 3, "steps": ["a"]}', "question", "must be a string"),
    ('{"question": "q", "steps": "a"}', "steps", "must be a list"),
    ('{"question": "q", "steps": ["a", 5]}', "steps[1]", "must be a string"),
    ('{"question": "q", "steps": ["a", "  "]}', "steps[1]", "empty step"),
    ('{"question": "q", "steps": []}', "steps", "at least one step"),
    ('{"question": "q", "steps": ["a", "b"], "labels": [1]}', "labels", "1 labels for 2 steps"),
    ('{"question": "q", "steps": ["a"], "labels": [2]}', "labels[0]", "must be in [0, 1]"),
    ('{"question": "q", "steps": ["a"], "labels": ["1"]}', "labels[0]", "got str"),
    ('{"question": "q", "steps": ["a"], "labels": [NaN]}', "labels[0]", "NaN"),
    ('{"question": "q", "steps": ["a"], "labels": [Infinity]}', "labels[0]", "Infinity"),
    ('{"question": "q", "steps": ["a"], "labels": [1e999]}', "labels[0]", "1e999"),
    ('{"question": "q", "steps": ["a"], "meta": {"x": [1, -Infinity]}}', "meta.x[1]", "Infinity"),
    ('{"question": "q", "steps": ["a"], "labels": [' + "9" * 5000 + "]}", "labels[0]", "5000 characters"),
    ('{"question": "q", "steps": ["a"], "outcome": 1}', "outcome", "true, false or null"),
    ('{"question": "q", "steps": ["a"], "label_kind": "vibes"}', "label_kind", "must be one of"),
    ('{"question": "q", "steps": ["a"], "lables": [1]}', "lables", "unknown field"),
    ('{"steps": ["a"]}', "question", "missing required field"),
    ('{"question": "q", "steps": ["a"], "steps": ["b"]}', "steps", "duplicate key"),
    ('{"question": "q", "steps": ["a\\ud800b"]}', "steps[0]", "lone surrogate ('\\ud800'"),
    ('{"question": "q", "steps": ["a"], "meta": {"\\udfff": 1}}', "meta.'\\udfff'", "key holds a lone"),
    ('{"question": "\\u200b\\u2060\\ufeff", "steps": ["a"]}', "question", "invisible"),
    ('{"question": "q", "steps": ["a", "\\u200b \\u200d"]}', "steps[1]", "invisible"),
    ('{"question": "q", "steps": ["a"], "meta": ' + "[" * 70 + "]" * 70 + "}", "meta" + "[0]" * 64,
     "nested more than 64"),
])
def test_malformed_line_names_file_line_field(tmp_path, line, field, words):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD), "", line])
    with pytest.raises(DataError) as info:
        read_jsonl(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)  # line 2 is blank, still counted
    assert str(err).startswith(f"{path}:3: {field}: ")
    assert words in str(err)


def test_json_nested_100000_deep_is_a_clear_error(tmp_path):
    path = write_lines(tmp_path / "deep.jsonl", [json.dumps(GOOD), "[" * 100_000 + "]" * 100_000])
    with pytest.raises(DataError, match=f"^{path}:2: JSON nested more than 64 levels deep$"):
        read_jsonl(path)


def test_records_built_in_python_are_checked_like_files():
    with pytest.raises(DataError, match="steps\\[1\\]: holds a lone surrogate"):
        Trajectory("q", ["a", "b\ud800"])
    with pytest.raises(DataError, match="question: must not be empty"):
        Trajectory("\u200b", ["a"])


def test_true_and_false_labels_are_1_and_0():
    t = Trajectory.from_dict({"question": "q", "steps": ["a", "b"], "labels": [True, False]})
    assert t.labels == [1, 0] and type(t.labels[0]) is int


def test_a_fifo_is_refused_at_once(tmp_path):
    import os

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_jsonl(fifo)


def test_invalid_json_names_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD), '{"question": "q", "steps": [}'])
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_label_kinds_are_never_mixed():
    a = Trajectory("q", ["s"], [1])
    b = Trajectory("q", ["s"], [0.4], label_kind="value")
    assert check_label_kind([a, a]) == "correctness"
    with pytest.raises(DataError, match="mixes label kinds"):
        check_label_kind([a, b])


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"question": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not UTF-8 text"):
        read_jsonl(path)
