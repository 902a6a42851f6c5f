"""Best-of-N on CHAMP's pools: the pool choice, the folds, and one small run through the CLI."""

import json
from importlib.util import find_spec

import pytest

from prmkit.champ_bestofn import ChampConfig, problem_folds, run_champ, select_pools
from prmkit.cli import main
from prmkit.records import Trajectory


def candidate(pid: str, outcome, i: int) -> Trajectory:
    return Trajectory(question=f"q {pid}", steps=[f"step {i}"], outcome=outcome,
                      meta={"problem_id": pid, "id": f"{pid}|{i}"})


def test_select_pools_keeps_judged_candidates_of_big_enough_pools():
    pools = {"a": [candidate("a", [True, False, None][i % 3], i) for i in range(9)],  # 6 judged
             "b": [candidate("b", True, i) for i in range(3)],                       # too few
             "c": [candidate("c", False, i) for i in range(12)]}                      # capped
    chosen = select_pools(pools, min_pool=4, max_pool=8)
    assert sorted(chosen) == ["a", "c"]
    assert [t.meta["id"] for t in chosen["a"]] == ["a|0", "a|1", "a|3", "a|4", "a|6", "a|7"]
    ids = [int(t.meta["id"].split("|")[1]) for t in chosen["c"]]
    assert len(ids) == 8 and ids == sorted(ids) and len(set(ids)) == 8
    # the choice is fixed by the seed and the problem alone
    assert select_pools({"c": pools["c"]}, 4, 8)["c"] == chosen["c"]
    assert select_pools(pools, 4, 8, seed=1)["c"] != chosen["c"]


def test_problem_folds_partition_the_problems():
    problems = [f"p{i}" for i in range(11)]
    folds = problem_folds(problems, 5, seed=3)
    assert sorted(len(f) for f in folds) == [2, 2, 2, 2, 3]
    assert set().union(*folds) == set(problems)
    assert sum(len(f) for f in folds) == len(problems)  # disjoint
    assert problem_folds(problems, 5, seed=3) == folds


@pytest.mark.parametrize("overrides", [{"folds": 1}, {"ns": (1, 32)}, {"min_pool": 30}])
def test_config_refuses_what_cannot_run(overrides):
    with pytest.raises(ValueError):
        ChampConfig(**overrides)


def test_cli_refuses_world_options_with_champ(capsys):
    assert main(["demo", "--data", "champ", "--quick"]) == 2
    assert "--quick is for the synthetic world" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(find_spec("champ_dataset") is None, reason="needs champ-dataset")
def test_a_small_run_end_to_end(tmp_path):
    from prmkit.embed import EmbedConfig
    from prmkit.train import TrainConfig

    problems = ("P_Combinatorics_1", "P_Combinatorics_10", "P_Combinatorics_11",
                "P_Combinatorics_12")
    config = ChampConfig(folds=2, seeds=(0, 1), min_pool=4, max_pool=6, ns=(1, 2, 4),
                         bootstrap=200, head={"hidden_size": 32, "num_layers": 1, "num_heads": 2},
                         train=TrainConfig(epochs=2),
                         embed=EmbedConfig(backbone="minilm", context="none"), problems=problems)
    out = tmp_path / "champ"
    results = run_champ(out, config, cache_dir=tmp_path / "cache", progress=False)
    assert json.loads((out / "results.json").read_text())["candidates"] == results["candidates"]
    assert (out / "bestofn.png").stat().st_size > 0
    assert "## Verdict" in (out / "report.md").read_text()
    assert results["problems"] <= len(problems) and results["annotated"] == 2 * len(problems)
    row = results["best_of_n"]
    assert set(row) >= {"PRM (min)", "PRM-weighted majority (min)", "ORM", "majority vote",
                        "random", "length only (min)", "oracle"}
    # at N = 1 every method picks one random candidate: each equals the per-sample accuracy
    assert row["PRM (min)"]["1"]["mean"] == pytest.approx(results["pool_stats"]["accuracy"])
    assert row["ORM"]["1"]["mean"] == pytest.approx(results["pool_stats"]["accuracy"])
    assert row["oracle"]["4"]["mean"] >= max(r["4"]["mean"] for r in row.values())
    assert len(results["step_auroc"]["PRM"]["seeds"]) == 2
