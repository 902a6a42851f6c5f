import json

import pytest

from prmkit.cli import main
from prmkit.demo import DemoConfig, run_demo

TINY = DemoConfig(train_problems=24, train_pool=4, test_problems=12, test_pool=8, ns=(1, 2, 4),
                  num_subsets=50, bootstrap=200)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    results = run_demo(root / "out", TINY, cache_dir=root / "cache", progress=False)
    return root, results


def test_demo_writes_report_json_and_plot(demo_run):
    root, results = demo_run
    out = root / "out"
    saved = json.loads((out / "results.json").read_text())
    assert (out / "bestofn.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    for heading in ("## Best-of-N accuracy", "## By difficulty", "## Verdict", "## Why",
                    "real 0.20-0.60"):
        assert heading in report
    assert set(saved["best_of_n"]) >= {"PRM (min)", "ORM", "majority vote", "random", "longest",
                                       "shortest", "length-only head (min)", "oracle"}


def test_demo_numbers_are_consistent(demo_run):
    _, r = demo_run
    table = r["best_of_n"]
    # N = 1: every method picks the one candidate, so all equal the pool accuracy
    firsts = {name: row["1"]["mean"] for name, row in table.items()}
    assert max(firsts.values()) - min(firsts.values()) < 1e-12
    # the oracle (pass@N) bounds every selection method at every N
    for n in ("2", "4"):
        assert all(row[n]["mean"] <= table["oracle"][n]["mean"] + 1e-12 for row in table.values())
    # random selection's accuracy does not depend on N (exact expectation per subset)
    assert table["random"]["4"]["mean"] == pytest.approx(table["random"]["1"]["mean"], abs=0.02)
    for row in table.values():
        for cell in row.values():
            assert cell["low"] <= cell["mean"] <= cell["high"]


def test_second_run_embeds_nothing(demo_run, tmp_path):
    root, first = demo_run
    again = run_demo(tmp_path, TINY, cache_dir=root / "cache", progress=False)
    assert again["embedding"]["forward_batches"] == 0
    assert again["best_of_n"] == first["best_of_n"]  # same seed, same cache: same numbers


def test_demo_cli_rejects_n_larger_than_the_pool(capsys):
    assert main(["demo", "--test-pool", "8", "--ns", "1", "16"]) == 2
    assert "every N must be in [1, test_pool=8]" in capsys.readouterr().err
