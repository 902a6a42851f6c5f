import json

import pytest

from prmkit.cli import main
from prmkit.demo import PRIMARY, DemoConfig, run_demo
from prmkit.embed import EmbedConfig

from conftest import tiny_causal_lm

SIZES = dict(train_problems=24, train_pool=4, test_problems=12, test_pool=8, ns=(1, 2, 4),
             num_subsets=50, bootstrap=200)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, minilm):
    # the full demo's path, with a tiny causal LM standing in for SmolLM2
    root = tmp_path_factory.mktemp("demo")
    folder = tiny_causal_lm("llama", root / "tiny-llama", minilm.path)
    config = DemoConfig(**SIZES, features="both",
                        context=EmbedConfig(backbone=str(folder), features="both"))
    results = run_demo(root / "out", config, cache_dir=root / "cache", progress=False)
    return root, config, results


def test_demo_writes_report_json_and_plot(demo_run):
    root, _, results = demo_run
    out = root / "out"
    saved = json.loads((out / "results.json").read_text())
    assert (out / "bestofn.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    for heading in ("## Verdict", "## Best-of-N accuracy, final answer", "whole process correct",
                    "## Backbones and feature sets", "## What each PRM catches",
                    "## By difficulty", "## Why", "real 0.20-0.60"):
        assert heading in report
    assert set(saved["best_of_n_answer"]) >= {*PRIMARY, "ORM", "majority vote", "random",
                                              "longest", "shortest", "length only (min)",
                                              "MiniLM, steps alone (min)", "oracle"}
    # every backbone and feature set is a PRM, beside the content-free heads
    assert set(saved["step_auroc"]) == {
        "MiniLM, steps alone", "tiny-llama in context: hidden (layer -1)",
        "tiny-llama in context: surprise", "tiny-llama in context: both", "random features",
        "length only"}
    assert saved["primary_head"] == "tiny-llama in context: both"


def test_demo_heads_load_as_prms_and_score_as_in_the_demo(demo_run):
    from prmkit.scoring import PRM

    root, _, _ = demo_run
    models = root / "out" / "models"
    # the primary PRM and a slice of its features: each finds its backbone again
    for name in ("tiny-llama-in-context--both", "tiny-llama-in-context--surprise",
                 "minilm--steps-alone"):
        prm = PRM.from_pretrained(models / name, cache_dir=root / "cache")
        probs = prm.score("What is 3 * 4?", ["3 * 4 = 12.", "The answer is 12."])
        assert len(probs) == 2 and all(0 < p < 1 for p in probs)
    assert not (models / "length-only" / "config.json").read_text().count("weights_sha256")


def test_demo_numbers_are_consistent(demo_run):
    _, _, r = demo_run
    for target in ("answer", "process"):
        table = r[f"best_of_n_{target}"]
        # N = 1: every method picks the one candidate, so all equal the pool accuracy
        firsts = {name: row["1"]["mean"] for name, row in table.items()}
        assert max(firsts.values()) - min(firsts.values()) < 1e-12
        # the oracle (pass@N) bounds every selection method at every N
        for n in ("2", "4"):
            assert all(row[n]["mean"] <= table["oracle"][n]["mean"] + 1e-12
                       for row in table.values())
        for row in table.values():
            for cell in row.values():
                assert cell["low"] <= cell["mean"] <= cell["high"]
    # a process-correct solution has the right answer: never more often right on the process
    answer, process = r["best_of_n_answer"], r["best_of_n_process"]
    for name in process:
        assert process[name]["4"]["mean"] <= answer[name]["4"]["mean"] + 1e-12


def test_error_kind_table_counts_every_first_error(demo_run):
    _, _, r = demo_run
    for rows in r["error_kinds"].values():
        *kinds, total = rows
        assert total["kind"] == "all errors"
        assert sum(row["count"] for row in kinds) == total["count"] > 0
        assert all(0.0 <= row["recall"] <= 1.0 for row in rows)


def test_second_run_embeds_nothing(demo_run, tmp_path):
    root, config, first = demo_run
    again = run_demo(tmp_path, config, cache_dir=root / "cache", progress=False)
    assert all(e["forward_batches"] == 0 for e in again["embedding"].values())
    assert again["best_of_n_answer"] == first["best_of_n_answer"]  # same seed and cache


def test_quick_demo_reads_steps_alone_with_minilm(tmp_path):
    r = run_demo(tmp_path / "out", DemoConfig.quick(**SIZES), cache_dir=tmp_path / "cache",
                 progress=False)
    assert r["primary_head"] == "MiniLM, steps alone"
    assert list(r["embedding"]) == ["MiniLM, steps alone"]
    assert set(r["step_auroc"]) == {"MiniLM, steps alone", "random features", "length only"}


def test_demo_cli_rejects_n_larger_than_the_pool(capsys):
    assert main(["demo", "--test-pool", "8", "--ns", "1", "16"]) == 2
    assert "every N must be in [1, test_pool=8]" in capsys.readouterr().err


def test_demo_on_hidden_states_alone_trains_one_context_head(tmp_path, minilm):
    # what `prmkit demo --features hidden` runs: the pass stops at the read layer, no surprise
    folder = tiny_causal_lm("llama", tmp_path / "tiny-llama", minilm.path)
    config = DemoConfig(**SIZES, features="hidden",
                        context=EmbedConfig(backbone=str(folder), features="hidden"))
    r = run_demo(tmp_path / "out", config, cache_dir=tmp_path / "cache", progress=False)
    assert r["primary_head"] == "tiny-llama in context: hidden (layer -1)"
    assert set(r["step_auroc"]) == {"MiniLM, steps alone", "tiny-llama in context: hidden "
                                    "(layer -1)", "random features", "length only"}


def test_demo_cli_rejects_features_with_quick(capsys):
    assert main(["demo", "--quick", "--features", "hidden"]) == 2
    assert "--features is for SmolLM2" in capsys.readouterr().err
