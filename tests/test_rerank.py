"""``prmkit rerank``: picks and accuracy computed by hand with a scorer built by hand, then a real
PRM (a tiny head on the bundled MiniLM) through the API and the CLI, and bad inputs."""

import json

import numpy as np
import pytest

from prmkit.cli import main
from prmkit.generate.solver import make_world
from prmkit.records import Trajectory, write_jsonl
from prmkit.rerank import RerankConfig, rerank, rerank_file, vote_ids
from prmkit.select import weighted_majority

FAST = ["--backbone", "minilm", "--hidden-size", "16", "--num-layers", "1", "--num-heads", "2",
        "--epochs", "1", "--no-progress"]
PRM, WEIGHTED = "PRM (min)", "PRM-weighted majority (min)"


class TableScorer:
    """A scorer by hand: each record's step probabilities are its ``meta["probs"]``."""

    threshold = None

    def __init__(self):
        self.calls: list[int] = []  # trajectories per score_batch call

    def score_batch(self, trajectories: list[Trajectory]) -> list[list[float]]:
        self.calls.append(len(trajectories))
        return [list(t.meta["probs"]) for t in trajectories]


def cand(question: str, steps: list[str], probs: list[float], **fields) -> Trajectory:
    return Trajectory(question=question, steps=steps, meta={"probs": probs,
                                                            **fields.pop("meta", {})}, **fields)


Q1, Q2, Q3 = "What is 3 + 4?", "What is half of 1?", "Name a prime."
# file order interleaves the questions; "what is 3+4 ?" is Q1 after normalize_question
THREE = [
    cand(Q1, ["3 + 4 = 7.", "The answer is 7."], [0.9, 0.8]),               # 0: 7, min .8, 26 ch
    cand(Q2, ["1 / 2 = 0.5.", "The answer is 0.5."], [0.9, 0.4]),           # 1: 0.5, min .4
    cand("what is 3+4 ?", ["3 + 4 = 5.", "The answer is 5."], [0.95, 0.85]),  # 2: 5, min .85
    cand(Q2, ["Half of 1 is 1/2.", "The answer is 1/2."], [0.35, 0.9]),     # 3: 1/2, min .35
    cand(Q1, ["3 + 4 = 7.", "So 7."], [0.6, 0.5], answer="7"),              # 4: 7, min .5, 15 ch
    cand(Q2, ["1 / 2 = 3.", "The answer is 3."], [0.7, 0.9]),               # 5: 3, min .7
    cand(Q1, ["First, 3 + 4 = 7.", "The answer is 7."], [0.7, 0.3]),        # 6: 7, min .3, 33 ch
    cand(Q3, ["2 is prime.", "The answer is 2."], [0.1, 0.2]),              # 7: alone
]


def test_hand_computed_picks_on_three_questions():
    scorer = TableScorer()
    rows, summary = rerank(THREE, scorer, RerankConfig(seed=3))
    assert scorer.calls == [8]  # every candidate in one call
    q1, q2, q3 = rows
    assert [r["candidates"] for r in rows] == [[0, 2, 4, 6], [1, 3, 5], [7]]
    assert q1["answers"] == ["7", "5", "7", "7"] and q1["votes"] == [0, 1, 0, 0]
    assert q1["scores"] == pytest.approx([0.8, 0.85, 0.5, 0.3])
    # Q1: the PRM takes the best single score, 5 (.85); by weight 7 has .8 + .5 + .3 = 1.6 > .85
    assert q1["chosen"][PRM] == {"index": 2, "answer": "5"}
    assert q1["chosen"][WEIGHTED]["answer"] == "7" and q1["chosen"][WEIGHTED]["index"] in (0, 4, 6)
    assert q1["chosen"]["majority vote"]["answer"] == "7"
    assert q1["chosen"]["longest"]["index"] == 6 and q1["chosen"]["shortest"]["index"] == 4
    # Q2: 0.5 and 1/2 are one vote: by weight .4 + .35 = .75 > .7 (3), and 2 votes against 1
    assert q2["answers"] == ["0.5", "1/2", "3"] and q2["votes"] == [0, 0, 1]
    assert q2["chosen"][PRM] == {"index": 5, "answer": "3"}
    assert q2["chosen"][WEIGHTED]["index"] in (1, 3)
    assert q2["chosen"]["majority vote"]["index"] in (1, 3)
    # ... whereas strings compared as they are would give the weighted vote to 3 (.7 > .4)
    assert weighted_majority(["0.5", "1/2", "3"], [0.4, 0.35, 0.7], np.random.default_rng(0)) == 2
    assert q3["single_candidate"] and q3["n"] == 1
    assert {c["index"] for c in q3["chosen"].values()} == {7}
    assert summary["questions"] == 3 and summary["single_candidate"] == 1
    assert summary["accuracy"] is None and summary["embedding"] is None  # no gold, no backbone
    assert rerank(THREE, TableScorer(), RerankConfig(seed=3))[0] == rows  # seeded ties


def test_vote_ids_pool_equal_answers_and_leave_none_out():
    assert vote_ids([["0.5", None, "1/2", "3"], ["x", "x"], [None]]) == \
        [[0, -1, 0, 1], [0, 0], [-1]]


def pools_of_three(gold: str) -> list[Trajectory]:
    """Two measurable questions (pools of 3), one with a single candidate, one without gold."""
    def make(q, answer, p, right, reference):
        meta = {"reference_answer": reference} if gold == "reference" else {}
        outcome = right if gold == "outcome" else None
        return cand(q, [f"The answer is {answer}."], [p], outcome=outcome, meta=meta)
    return [make("A?", "4", 0.5, True, "4"), make("A?", "4.0", 0.6, True, "4"),
            make("A?", "5", 0.9, False, "4"),
            make("B?", "1", 0.8, True, "1"), make("B?", "2", 0.1, False, "1"),
            make("B?", "2", 0.1, False, "1"),
            make("C?", "9", 0.5, True, "9"),
            cand("D?", ["The answer is 6."], [0.5]), cand("D?", ["The answer is 7."], [0.5])]


@pytest.mark.parametrize("gold", ["outcome", "reference"])
def test_accuracy_equals_a_hand_computation(gold):
    rows, summary = rerank(pools_of_three(gold), TableScorer(), RerankConfig(ns=(1, 2, 3)))
    a = summary["accuracy"]
    assert a["questions"] == 2 and a["left_out"] == 2 and a["ns"] == [1, 2, 3]
    assert rows[0]["votes"] == [0, 0, 1]  # 4 and 4.0 are one vote
    assert rows[0]["correct"] == [True, True, False] and "correct" not in rows[3]
    mean = {name: {n: cell["mean"] for n, cell in by_n.items()}
            for name, by_n in a["best_of_n"].items()}
    # A: right, right, wrong with scores .5 .6 .9; B: right, wrong, wrong with .8 .1 .1.
    # N=1: a random candidate: (2/3 + 1/3) / 2 = .5 for every rule.
    assert [row["1"] for row in mean.values()] == pytest.approx([0.5] * 7)
    # N=3: PRM picks .9 (wrong) and .8 (right): .5. Weighted: A 4 has 1.1 > .9, B 1 has .8 > .2:
    # 1. Majority: A 4 (right), B 2 (wrong): .5. Random .5. Oracle 1.
    assert mean[PRM]["3"] == pytest.approx(0.5) and mean[WEIGHTED]["3"] == pytest.approx(1.0)
    assert mean["majority vote"]["3"] == pytest.approx(0.5)
    assert mean["random"]["3"] == pytest.approx(0.5) and mean["oracle"]["3"] == pytest.approx(1)
    # N=2, all three pairs: PRM A {0,1} right, {0,2} {1,2} wrong: 1/3; B {0,1} {0,2} right: 2/3.
    # Majority A: 1, 1/2, 1/2 -> 2/3; B: 1/2, 1/2, 0 -> 1/3. Oracle A 1, B 1 - 1/3 -> 5/6.
    assert mean[PRM]["2"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert mean["majority vote"]["2"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert mean["oracle"]["2"] == pytest.approx(5 / 6)
    assert a["best_of_n"][WEIGHTED]["3"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert "| PRM-weighted majority (min) | 50.0 [" in a["table"]
    assert a["table"].splitlines()[0] == "| method | N=1 | N=2 | N=3 |"
    assert a["table"].splitlines()[-1].startswith("| oracle | 50.0 [")


def test_default_ns_are_powers_of_two_and_too_large_an_n_is_refused():
    _, summary = rerank(pools_of_three("outcome"), TableScorer())
    assert summary["accuracy"]["ns"] == [1, 2]  # the smallest measured pool holds 3
    with pytest.raises(Exception, match=r"N=4 \(--n\) is more than the smallest pool"):
        rerank(pools_of_three("outcome"), TableScorer(), RerankConfig(ns=(1, 4)))


@pytest.mark.parametrize("aggregation, message", [("median", "unknown aggregation 'median'"),
                                                  ("log_product", "use 'product'")])
def test_config_refuses_an_aggregation_it_cannot_use(aggregation, message):
    with pytest.raises(ValueError, match=message):
        RerankConfig(aggregation=aggregation)


# --- a real PRM: a tiny head trained on the bundled MiniLM ----------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small world (6 questions x 3 candidates, gold known) and a head trained on it."""
    folder = tmp_path_factory.mktemp("rerank")
    data = folder / "world.jsonl"
    write_jsonl(data, [t for p in make_world(6, 3, seed=0) for t in p.trajectories])
    cache = folder / "cache"
    assert main(["train", str(data), "--out", str(folder / "m"), "--cache", str(cache),
                 *FAST]) == 0
    return data, folder / "m", cache


def test_a_trained_prm_scores_every_candidate_once_and_picks_its_best(trained, tmp_path):
    from prmkit.workflows import score_data

    data, model, cache = trained
    out = tmp_path / "o.jsonl"
    summary = rerank_file(data, model, out, cache_dir=cache, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == summary["questions"] == 6 and summary["candidates"] == 18
    # one embedding call for all 18, read from the cache filled by training
    assert summary["embedding"]["trajectories"] == 18 and summary["embedding"]["cached"] == 18
    scored, _ = score_data(model, data, cache_dir=cache, progress=False)
    for row in rows:
        assert row["scores"] == pytest.approx([scored[i]["scores"]["min"]
                                               for i in row["candidates"]])
        best = max(row["scores"])
        assert row["scores"][row["candidates"].index(row["chosen"][PRM]["index"])] == best
    assert summary["accuracy"]["ns"] == [1, 2] and summary["accuracy"]["questions"] == 6


def test_cli_end_to_end(trained, tmp_path, capsys):
    data, model, cache = trained
    out = tmp_path / "o.jsonl"
    argv = ["rerank", str(data), "--scorer", str(model), "--out", str(out), "--cache",
            str(cache), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "reranked 18 candidates of 6 questions, aggregation min" in printed
    assert "| PRM (min) |" in printed and "| oracle |" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(set(r["chosen"]) >= {PRM, WEIGHTED, "majority vote", "random"}
                                  for r in rows)
    assert main(argv) == 2 and "exists; pass overwrite=True" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--json", "--aggregation", "product"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["aggregation"] == "product" and "PRM (product)" in summary["methods"]


def record(**fields) -> str:
    return json.dumps({"question": "What is 2 + 3?", "steps": ["The answer is 5."], **fields})


@pytest.mark.parametrize("content, where", [
    ("", ": no trajectories in file"),
    (record() + "\n" + json.dumps({"question": "What is 2 + 3?"}) + "\n",
     ":2: steps: missing required field"),
    (record() + "\n" + record(steps=[]) + "\n", ":2: steps: must hold at least one step"),
])
def test_bad_input_exits_2_naming_file_line_and_field(trained, tmp_path, capsys, content, where):
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    out = tmp_path / "o.jsonl"
    assert main(["rerank", str(data), "--scorer", str(trained[1]), "--out", str(out),
                 "--no-cache", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{data}{where}" in err and "Traceback" not in err, err
    assert not out.exists()


def test_cli_refuses_a_bad_aggregation_and_too_large_an_n(trained, tmp_path, capsys):
    data, model, cache = trained
    argv = ["rerank", str(data), "--scorer", str(model), "--out", str(tmp_path / "o.jsonl"),
            "--cache", str(cache), "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main(argv + ["--aggregation", "median"])
    assert e.value.code == 2 and "invalid choice: 'median'" in capsys.readouterr().err
    assert main(argv + ["--n", "1", "4"]) == 2
    assert "N=4 (--n) is more than the smallest pool" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
