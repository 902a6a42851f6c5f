import json
import subprocess
import sys

import pytest

from prmkit.cli import main

SMALL_HEAD = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--no-progress"]


def test_train_then_score_and_second_run_uses_the_cache(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m1"), "--epochs", "3",
                 "--cache", cache, *SMALL_HEAD]) == 0
    first = capsys.readouterr().out
    assert "24 computed" in first and "saved to" in first
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m2"), "--epochs", "3",
                 "--cache", cache, *SMALL_HEAD]) == 0
    assert "all 24 trajectories from the cache (no forward pass)" in capsys.readouterr().out

    assert main(["score", str(tmp_path / "m1"), str(small_jsonl), "--cache", cache,
                 "--no-progress", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 24 and len(rows[0]["step_probs"]) == 3
    assert set(rows[0]["scores"]) >= {"product", "min", "mean", "sum", "last"}
    p = rows[0]["step_probs"]
    assert rows[0]["scores"]["min"] == pytest.approx(min(p))
    assert rows[0]["scores"]["product"] == pytest.approx(p[0] * p[1] * p[2])


def test_score_writes_jsonl(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "1", "--cache",
          cache, *SMALL_HEAD])
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(tmp_path / "m"), str(small_jsonl), "--out", str(out),
                 "--cache", cache, "--no-progress"]) == 0
    assert len(out.read_text().splitlines()) == 24


def test_malformed_data_exits_2_with_location_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "steps": ["a"], "labels": [1]}\n'
                   '{"question": "q", "steps": ["a", "b"], "labels": [1, NaN]}\n')
    proc = subprocess.run([sys.executable, "-m", "prmkit.cli", "train", str(bad), "--out",
                           str(tmp_path / "m")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{bad}:2: labels[1]: number NaN is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_option_value_exits_2(tmp_path, small_jsonl, capsys):
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--val-fraction",
                 "1.5"]) == 2
    assert "val_fraction must be in [0, 1)" in capsys.readouterr().err


def test_scoring_with_a_model_folder_that_is_not_one(tmp_path, small_jsonl, capsys):
    assert main(["score", str(tmp_path), str(small_jsonl)]) == 2
    assert "is not a saved prmkit model" in capsys.readouterr().err
