import math

import pytest

from prmkit.ablate import AblateConfig, interval, markdown, run_ablation, value_policy
from prmkit.embed import EmbedConfig
from prmkit.records import Trajectory
from prmkit.train import TrainConfig


def test_interval_by_hand():
    # values 1, 2, 3: mean 2, sd 1, t(0.975, 2 df) = 4.303: half width 4.303 / sqrt(3)
    cell = interval([1.0, 2.0, 3.0])
    assert (cell["mean"], cell["sd"], cell["n"]) == (2.0, 1.0, 3)
    assert cell["high"] == pytest.approx(2 + 4.303 / math.sqrt(3))
    assert math.isnan(interval([1.0, float("nan")])["sd"])


def test_value_policy_labels_every_later_step_wrong():
    t = Trajectory("q", ["a", "b", "c", "d"], labels=[1, 0, None, None])
    assert value_policy([t])[0].labels == [1, 0, 0, 0]
    assert t.labels == [1, 0, None, None]  # the original is left alone


def test_ablation_runs_every_variant_on_a_tiny_world(tmp_path):
    config = AblateConfig(train_problems=12, train_pool=4, test_problems=6, test_pool=4,
                          seeds=(0, 1), n=2, sizes=(0.5, 1.0),
                          head={"hidden_size": 16, "num_layers": 1, "num_heads": 2},
                          train=TrainConfig(epochs=2, lr=1e-3),
                          embed=EmbedConfig(backbone="minilm", context="none"))
    results = run_ablation(config, cache_dir=tmp_path, progress=False, log=lambda _: None)
    assert len(results["runs"]["plain"]) == 2
    assert set(results["differences"]) == set(config.variants)
    for name, cells in results["differences"].items():
        assert cells["step_auroc"]["n"] == 2, name
        # the difference is the per-seed difference of the runs, averaged
        runs, plain = results["runs"][name], results["runs"]["plain"]
        assert cells["step_auroc"]["mean"] == pytest.approx(
            sum(r["step_auroc"] - p["step_auroc"] for r, p in zip(runs, plain)) / 2)
    assert set(results["sizes"]) == {"0.5", "1"}
    assert set(results["baselines"]) == {"length only", "random features"}
    assert results["baselines"]["length only"]["step_auroc"]["n"] == 2
    # pools of 4 candidates with known outcomes: best-of-2 is measured for every run
    assert all(0 <= r["best_of_n"] <= 1 for runs in results["runs"].values() for r in runs)
    text = "\n".join(markdown(results))
    assert "| linear head |" in text and "| training share | transformer | linear |" in text


def test_ablate_command_on_given_files(tmp_path, small_jsonl, capsys):
    import json

    from conftest import make_rows
    from prmkit.cli import main

    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in make_rows(4, seed=7)))
    out = tmp_path / "ablate"
    assert main(["ablate", "--train", str(small_jsonl), "--test", str(test), "--seeds", "2",
                 "--n", "2", "--variants", "linear head", "--sizes", "1", "--epochs", "2",
                 "--backbone", "minilm", "--context",
                 "none", "--cache", str(tmp_path / "cache"), "--out", str(out),
                 "--no-progress"]) == 0
    assert "| linear head |" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert list(results["differences"]) == ["linear head"] and (out / "ablate.md").exists()
    assert main(["ablate", "--train", str(small_jsonl), "--seeds", "2"]) == 2
    assert "give both --train and --test" in capsys.readouterr().err


def test_ablate_on_one_data_set_split_by_question(tmp_path, small_jsonl, capsys):
    import json

    from prmkit.cli import main

    out = tmp_path / "ablate"
    assert main(["ablate", "--data", str(small_jsonl), "--test-share", "0.25", "--seeds", "2",
                 "--n", "2", "--variants", "label smoothing 0.1", "--sizes", "1", "--epochs",
                 "2", "--backbone", "minilm", "--context", "none", "--cache",
                 str(tmp_path / "cache"), "--out", str(out), "--no-progress", "--json"]) == 0
    results = json.loads((out / "results.json").read_text())
    # 8 questions x 3 solutions: 2 questions (6 solutions) held out by split_by_question, whose
    # one-side-only property test_train checks
    assert (results["config"]["train"], results["config"]["test"]) == (18, 6)
    assert main(["ablate", "--data", str(small_jsonl), "--train", str(small_jsonl), "--test",
                 str(small_jsonl)]) == 2
