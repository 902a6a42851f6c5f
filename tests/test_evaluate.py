import json
import math

import pytest

from prmkit.cli import main
from prmkit.evaluate import evaluate, split_metrics
from prmkit.records import Trajectory, first_error_labels

from conftest import make_rows

# the four items of tests/test_metrics.py
ITEMS = [[0.9, 0.3, 0.8], [0.6, 0.2], [0.7, 0.9], [0.8, 0.4]]
ERRORS = [1, 0, -1, -1]


class FixedScorer:
    """A scorer that returns given probabilities: the protocol, nothing more."""

    threshold = 0.5

    def __init__(self, probs):
        self.probs = probs

    def score_batch(self, trajectories):
        return [self.probs[t.question] for t in trajectories]


def items():
    return [Trajectory(f"q{i}", [f"s{k}" for k in range(len(p))],
                       labels=first_error_labels(len(p), e)) for i, (p, e) in
            enumerate(zip(ITEMS, ERRORS))]


def test_split_metrics_by_hand():
    m = split_metrics(ITEMS, items(), 0.5)
    # first-error F1 at 0.5 is 0.5 (tests/test_metrics.py); labelled steps: A 1,0 (step 2
    # unlabelled), B 0, C 1,1, D 1,1 -> probs 0.9 0.3 | 0.6 | 0.7 0.9 | 0.8 0.4, labels 1 0 0 1 1 1 1
    assert (m["first_error_f1"], m["acc_erroneous"], m["acc_correct"]) == (0.5, 0.5, 0.5)
    assert m["labelled_steps"] == 7 and m["first_error_items"] == 4
    # wrong steps 0.3, 0.6; right 0.9, 0.7, 0.9, 0.8, 0.4: pairs right > wrong = 4*2 + (0.4 > 0.3)
    # = 9 of 10
    assert m["step_auroc"] == 0.9
    # flagged (< 0.5): 0.3, 0.4; wrong: 0.3, 0.6 -> F1 = 2 * 1 / (2 + 2)
    assert m["step_f1"] == 0.5


def test_evaluate_averages_splits_and_keeps_each_scorers_threshold():
    scorer = FixedScorer({f"q{i}": p for i, p in enumerate(ITEMS)})
    data = items()
    results = evaluate({"fixed": scorer}, {"a": data, "b": data[:2] + data[2:3]},
                       {"fixed": 0.65})
    assert results["best_of_n"] == {}  # every question has one candidate: no pool
    r = results["scorers"]["fixed"]
    assert r["threshold"] == 0.65
    # split a at 0.65: F1 2/3 (tests/test_metrics.py); split b (A, B, C): all right, F1 1
    assert r["splits"]["a"]["first_error_f1"] == pytest.approx(2 / 3)
    assert r["splits"]["b"]["first_error_f1"] == 1.0
    assert r["average"]["first_error_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert sum(r["reliability"]["count"]) == 7 + 5


def test_best_of_n_by_hand():
    from prmkit.evaluate import best_of_n

    # one question, three candidates: answers 5 (right), 7, 7; min step probabilities 0.9,
    # 0.2, 0.3. N = 3: PRM (min) picks the 0.9 one (right); majority picks 7 (wrong); the
    # weighted majority sums 0.9 for 5 against 0.5 for 7 (right); random is right 1/3.
    data = [Trajectory("q", ["a", "b"], outcome=o, answer=a) for o, a in
            ((True, "5"), (False, "7"), (False, "7"))]
    curve = best_of_n(data, {"P": [[0.95, 0.9], [0.2, 0.8], [0.9, 0.3]]}, ns=(1, 3))
    at3 = curve["accuracy"]["3"]
    assert curve["pools"] == 1 and curve["ns"] == [1, 3]
    assert (at3["P (min)"]["mean"], at3["majority vote"]["mean"]) == (1.0, 0.0)
    assert at3["P-weighted majority"]["mean"] == 1.0
    assert at3["random"]["mean"] == pytest.approx(1 / 3)
    assert curve["accuracy"]["1"]["P (min)"]["mean"] == pytest.approx(1 / 3)
    assert best_of_n(data, {"P": [[0.9, 0.9]] * 3}, ns=(16,)) is None  # no pool that large


def test_eval_on_a_processbench_folder_with_baselines(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--baselines", "--cache", cache, "--backbone", "minilm", "--hidden-size", "16",
                 "--num-layers", "1", "--num-heads", "2", "--no-progress",
                 "--val-fraction", "0.25"]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["calibration"]["temperature"] > 0 and "ece_after" in summary["calibration"]
    folder = tmp_path / "pb"
    folder.mkdir()
    for split, seed in (("gsm8k", 1), ("math", 2)):
        data = tmp_path / f"{split}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(4, seed=seed)))
        assert main(["data", "convert", str(data), str(folder / f"{split}.jsonl"), "--from",
                     "jsonl", "--to", "processbench"]) == 0
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["eval", str(tmp_path / "m"), str(folder), "--format", "processbench",
                 "--cache", cache, "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for words in ("## gsm8k: 12 items, 12 with a known first error", "## math:",
                  "## average over splits", "| PRM |", "| length-only |",
                  "| random-features |", "saved with each model"):
        assert words in text, text
    report = json.loads((out / "eval.json").read_text())
    prm = report["results"]["scorers"]["PRM"]
    assert set(prm["splits"]) == {"gsm8k", "math"}
    f1 = [prm["splits"][s]["first_error_f1"] for s in ("gsm8k", "math")]
    assert prm["average"]["first_error_f1"] == pytest.approx(sum(f1) / 2)
    assert (out / "reliability.png").stat().st_size > 1000 and (out / "eval.md").exists()
    # each question has 3 candidates with known outcomes: best-of-N per split, N = 1 and 2
    assert report["results"]["best_of_n"]["gsm8k"]["ns"] == [1, 2]
    assert "## best-of-N on math: 4 questions" in (out / "eval.md").read_text()
    # a threshold chosen on a dev set, and refused when the dev set is the data itself
    assert main(["eval", str(tmp_path / "m"), str(folder / "math.jsonl"), "--format",
                 "processbench", "--cache", cache, "--threshold-from",
                 str(folder / "gsm8k.jsonl"), "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold_source"].startswith("chosen on")
    assert not math.isnan(report["results"]["scorers"]["PRM"]["threshold"])
    assert main(["eval", str(tmp_path / "m"), str(folder), "--format", "processbench",
                 "--threshold-from", str(folder), "--no-progress"]) == 2
    assert "flatters" in capsys.readouterr().err


def test_score_flags_the_first_error_with_the_saved_threshold(tmp_path, small_jsonl, capsys):
    cache = str(tmp_path / "cache")
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--cache", cache, "--backbone", "minilm", "--hidden-size", "16",
                 "--num-layers", "1", "--num-heads", "2", "--no-progress",
                 "--val-fraction", "0.25"]) == 0
    threshold = json.loads((tmp_path / "m" / "config.json").read_text())["calibration"][
        "threshold"]
    capsys.readouterr()
    assert main(["score", str(tmp_path / "m"), str(small_jsonl), "--cache", cache,
                 "--flag-errors", "--json", "--no-progress"]) == 0
    for line in capsys.readouterr().out.splitlines():
        row = json.loads(line)
        below = [i for i, p in enumerate(row["step_probs"]) if p < threshold]
        assert row["first_error"] == (below[0] if below else -1)
