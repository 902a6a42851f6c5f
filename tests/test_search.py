import math

import numpy as np
import pytest
import torch

from prmkit.baselines import length_features
from prmkit.generate.base import Completion
from prmkit.generate.solver import SolverGenerator
from prmkit import synthetic
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.scoring import HeadScorer
from prmkit.search import SearchConfig, beam_search, best_of_n, dvts, search


class TableGenerator:
    """A generator written out by hand: prefix -> the next steps it samples, in order."""

    def __init__(self, table: dict[tuple[str, ...], list[str]], logprobs=None):
        self.table, self.logprobs, self.calls = table, logprobs or {}, []

    def complete(self, question, prefix, n, max_steps=None, seed=0):
        self.calls.append((tuple(prefix), n, max_steps, seed))
        if max_steps != 1:
            raise AssertionError("the hand-written generator only writes single steps")
        return [Completion([s], s.startswith("The answer is"), tokens=len(s),
                           meta={"logprob": self.logprobs[s]} if s in self.logprobs else {})
                for s in self.table[tuple(prefix)][:n]]


class TableScorer:
    """A scorer that knows each step's probability by its text (a step's probability does not
    depend on the steps before it, which keeps the hand computation short)."""

    threshold = None

    def __init__(self, probs: dict[str, float]):
        self.probs, self.scored = probs, []

    def score_batch(self, trajectories):
        self.scored.extend(tuple(t.steps) for t in trajectories)
        return [[self.probs[s] for s in t.steps] for t in trajectories]


TABLE = {
    (): ["a", "b", "b", "c"],
    ("a",): ["The answer is 1.", "a2"],
    ("b",): ["b2", "The answer is 2."],
    ("a", "a2"): ["The answer is 3."],
    ("b", "b2"): ["The answer is 4."],
}
PROBS = {"a": 0.9, "b": 0.6, "c": 0.1, "The answer is 1.": 0.2, "a2": 0.8, "b2": 0.9,
         "The answer is 2.": 0.7, "The answer is 3.": 0.9, "The answer is 4.": 0.95}


def test_beam_search_by_hand():
    gen, scorer = TableGenerator(TABLE), TableScorer(PROBS)
    result = beam_search("q", scorer, gen, SearchConfig(width=2, expansions=4, n=4, lam=1.0))
    # depth 1: a (log .9), b (log .6) kept; the second b was pruned before scoring, c dropped
    assert [call[0] for call in gen.calls[:1]] == [()]
    assert ("b",) in scorer.scored and scorer.scored.count(("b",)) == 1
    # depth 2: a+a2 = log .72, b+b2 = log .54, b+ans2 = log .42, a+ans1 = log .18: the first
    # two stay open; depth 3: both finish
    ends = {tuple(beam.steps): beam.score for beam in result.finished}
    assert set(ends) == {("a", "a2", "The answer is 3."), ("b", "b2", "The answer is 4.")}
    assert ends[("a", "a2", "The answer is 3.")] == pytest.approx(math.log(0.9 * 0.8 * 0.9))
    assert result.chosen.steps == ["a", "a2", "The answer is 3."]
    assert result.answer == "3"
    # 4 + 2 + 2 + 1 + 1 steps generated; the table generator counts characters as tokens
    assert result.generated_steps == 10
    assert result.generated_tokens == sum(len(s) for s in ["a", "b", "b", "c", "The answer is 1.",
                                                             "a2", "b2", "The answer is 2.",
                                                             "The answer is 3.",
                                                             "The answer is 4."])


def test_open_beams_are_refilled_until_width_solutions_finish():
    table = {(): ["x", "y", "z"], ("x",): ["The answer is 1.", "x2"], ("y",): ["y2", "y3"],
             ("y", "y2"): ["The answer is 2."], ("x", "x2"): ["The answer is 3."]}
    probs = {"x": 0.9, "y": 0.8, "z": 0.7, "The answer is 1.": 0.9, "x2": 0.7, "y2": 0.9,
             "y3": 0.5, "The answer is 2.": 0.9, "The answer is 3.": 0.9}
    gen = TableGenerator(table)
    result = beam_search("q", TableScorer(probs), gen, SearchConfig(width=2, expansions=3, n=2))
    # depth 2 ranks x+answer (.81, finished), y+y2 (.72), x+x2 (.63), y+y3 (.40): the finished
    # one leaves, and the open beams are refilled to two with x+x2
    assert ("x", "x2") in [call[0] for call in gen.calls]
    assert {tuple(b.steps) for b in result.finished} == {
        ("x", "The answer is 1."), ("y", "y2", "The answer is 2."),
        ("x", "x2", "The answer is 3.")}
    assert len(gen.calls) == 1 + 2 + 2  # stopped at depth 3: two solutions had finished
    assert result.answer == "1"  # per step: (log .9 + log .9) / 2 is the best


def test_finished_beams_of_different_lengths_compare_per_step():
    # summed, the short answer wins (log .9 + log .7 = -0.46 > -0.66); per step the long one
    # does: (log .9 + log .7) / 2 = -0.231 < (log .6 + log .9 + log .95) / 3 = -0.222
    table = {(): ["a", "b"], ("a",): ["The answer is 1."], ("b",): ["b2"],
             ("b", "b2"): ["The answer is 2."]}
    probs = {"a": 0.9, "b": 0.6, "The answer is 1.": 0.7, "b2": 0.9, "The answer is 2.": 0.95}
    result = beam_search("q", TableScorer(probs), TableGenerator(table),
                         SearchConfig(width=2, expansions=2, n=2))
    means = {beam.steps[-1]: beam.per_step for beam in result.finished}
    assert means["The answer is 1."] == pytest.approx((math.log(.9) + math.log(.7)) / 2)
    assert means["The answer is 2."] == pytest.approx((math.log(.6) + math.log(.9)
                                                      + math.log(.95)) / 3)
    assert result.answer == "2"


def test_lam_zero_is_likelihood_beam_search():
    # the PRM favours a (0.9); the generator's log-probability favours c (-0.1): lam = 0 follows
    # the generator alone, lam = 1 adds log PRM (a: -2 + log .9 = -2.1, c: -0.1 + log .1 = -2.4)
    table = {**TABLE, ("c",): ["The answer is 5."]}
    logprobs = {"a": -2.0, "b": -3.0, "c": -0.1, "The answer is 1.": -0.1, "a2": -1.0,
                "The answer is 5.": -0.2}
    plain = beam_search("q", TableScorer({**PROBS, "The answer is 5.": 0.5}),
                        TableGenerator(table, logprobs),
                        SearchConfig(width=1, expansions=4, n=4, lam=0.0))
    assert plain.chosen.steps == ["c", "The answer is 5."]
    assert plain.chosen.score == pytest.approx(-0.3) and plain.chosen.logp == pytest.approx(-0.3)
    guided = beam_search("q", TableScorer({**PROBS, "The answer is 5.": 0.5}),
                         TableGenerator(table, logprobs),
                         SearchConfig(width=1, expansions=4, n=4, lam=1.0))
    assert guided.chosen.steps[0] == "a"


def test_max_depth_finishes_open_beams_without_an_answer():
    result = beam_search("q", TableScorer(PROBS), TableGenerator(TABLE),
                         SearchConfig(width=2, expansions=4, n=4, max_depth=1))
    assert result.answer is None and {tuple(b.steps) for b in result.finished} == {("a",), ("b",)}


def test_config_errors():
    with pytest.raises(ValueError, match="width"):
        SearchConfig(width=0)
    with pytest.raises(ValueError, match="at least width"):
        SearchConfig(width=8, n=4)
    with pytest.raises(ValueError, match="aggregation"):
        SearchConfig(aggregation="median")
    with pytest.raises(ValueError, match="unknown search"):
        search("greedy", "q", TableScorer(PROBS), TableGenerator(TABLE))


@pytest.fixture(scope="module")
def world():
    problems = synthetic.generate_problems(3, seed=11)
    return problems, SolverGenerator(problems)


def length_scorer() -> HeadScorer:
    torch.manual_seed(0)
    return HeadScorer(PRMHead(PRMConfig(input_dim=2, hidden_size=8, num_layers=1, num_heads=2)),
                      length_features)


def test_every_search_runs_on_the_world(world):
    problems, gen = world
    config = SearchConfig(width=2, expansions=2, n=4, max_depth=12)
    for problem in problems:
        beam = beam_search(problem.question, length_scorer(), gen, config)
        tree = dvts(problem.question, length_scorer(), gen, config)
        best = best_of_n(problem.question, length_scorer(), gen, config)
        assert tree.meta["subtrees"] == 2 and len(best.finished) == 4
        for result in (beam, tree, best):
            assert result.chosen is not None and result.generated_tokens > 0
            assert result.answer is not None  # the world's solver always finishes in 12 steps
        assert best.meta["answers"] == [best.finished[i].steps and
                                        best.meta["answers"][i] for i in range(4)]
        # best-of-N's pick is the best by the aggregation
        assert best.chosen.score == max(b.score for b in best.finished)


def test_incremental_beam_scores_equal_scores_from_scratch(world, tmp_path, minilm):
    from dataclasses import replace

    from prmkit.embed import Backbone, EmbedConfig
    from prmkit.scoring import PRM
    from conftest import tiny_causal_lm

    problems, gen = world
    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    config = EmbedConfig(backbone=str(folder), features="both", layer=(1, -1), max_length=256)
    backbone = Backbone(config)
    torch.manual_seed(0)
    head = PRMHead(PRMConfig(input_dim=backbone.hidden_size, hidden_size=16, num_layers=2,
                             num_heads=2, dropout=0.0))
    prm = PRM(head, backbone)
    recorder = Recorder(gen)
    result = beam_search(problems[0].question, prm, recorder,
                         SearchConfig(width=2, expansions=3, n=6, max_depth=8, lam=1.0))
    alone = Backbone(replace(config, share_prefixes=False))
    alone._model = backbone.model
    fresh = PRM(head, alone).score_batch([Trajectory(problems[0].question, b.steps)
                                          for b in result.finished])
    logit = lambda p: np.log(np.asarray(p)) - np.log1p(-np.asarray(p))  # noqa: E731
    scale = max(np.abs(logit(p)).max() for p in fresh)
    for beam, probs in zip(result.finished, fresh):
        assert np.abs(logit(beam.partial.probs) - logit(probs)).max() <= 1e-5 * scale
        assert beam.score == pytest.approx(sum(math.log(p) for p in probs), rel=1e-5)
    # the PRM ran the question once and each scored step (unique within its beam) once
    scored = [s for call in recorder.calls for s in dict.fromkeys(c.steps[0] for c in call)]
    step_tokens = [len(backbone.tokenize("q", [s]).ids) - len(backbone.tokenize("q", []).ids)
                   for s in scored]
    question = len(backbone.prefix_ids) + len(backbone.tokenize(problems[0].question, []).ids)
    assert prm.incremental_stats.real_tokens == question + sum(step_tokens)


class Recorder:
    """Keeps what a real generator returned."""

    def __init__(self, generator):
        self.generator, self.calls = generator, []

    def complete(self, *args, **kwargs):
        out = self.generator.complete(*args, **kwargs)
        self.calls.append(out)
        return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A head trained on MiniLM over a small world, and a questions file of other problems."""
    import json

    from prmkit.cli import main
    from prmkit.generate.solver import make_world
    from prmkit.records import write_jsonl

    folder = tmp_path_factory.mktemp("search")
    data = folder / "world.jsonl"
    write_jsonl(data, [t for p in make_world(6, 3, seed=0) for t in p.trajectories])
    assert main(["train", str(data), "--out", str(folder / "m"), "--cache", str(folder / "c"),
                 "--backbone", "minilm", "--epochs", "1", "--hidden-size", "16",
                 "--num-layers", "1", "--num-heads", "2", "--no-progress", "-q"]) == 0
    questions = folder / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": t.question, "meta": t.meta}) + "\n"
                                 for p in make_world(3, 1, seed=7) for t in p.trajectories))
    return folder / "m", questions


@pytest.mark.parametrize("method", ["beam", "dvts", "best_of_n"])
def test_search_cli_writes_one_row_per_question(trained, tmp_path, method):
    import json

    from prmkit.cli import main

    model, questions = trained
    out = tmp_path / "o.jsonl"
    assert main(["search", str(questions), "--scorer", str(model), "--method", method,
                 "--width", "2", "--expansions", "2", "--n", "4", "--out", str(out),
                 "--no-progress", "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row["answer"] is not None and len(row["step_probs"]) == len(row["steps"])
        assert row["generated_tokens"] > 0 and row["finished"]
    assert main(["search", str(questions), "--scorer", str(model), "--out", str(out),
                 "--no-progress", "-q"]) == 2  # exists: refused without --overwrite


def test_search_cli_names_bad_input(trained, tmp_path, capsys):
    from prmkit.cli import main

    model, _ = trained
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "What is 2 + 2?"}\n{"question": ""}\n')
    out = str(tmp_path / "o.jsonl")
    assert main(["search", str(bad), "--scorer", str(model), "--out", out]) == 2
    assert f"{bad}:2: question: must be a non-empty string" in capsys.readouterr().err
    bad.write_text('{"question": "What is 2 + 2?"}\n')
    assert main(["search", str(bad), "--scorer", str(model), "--out", out]) == 2
    assert "solver continues only demo-world records" in capsys.readouterr().err
    assert main(["search", "--scorer", str(model)]) == 2
    assert main(["search", "--compare", str(bad), "--scorer", str(model)]) == 2
    assert main(["search", str(bad), "--scorer", str(model), "--out", out, "--width", "0"]) == 2


def test_compare_searches_on_the_world_with_a_content_free_baseline():
    from prmkit.search_jobs import CompareConfig, compare_searches, render

    config = CompareConfig(problems=3, train_problems=5, bootstrap=50,
                           search=SearchConfig(width=2, expansions=2, n=4, max_depth=12))
    results = compare_searches(length_scorer(), config, progress=False,
                               baselines={"length only": length_scorer()})
    names = list(results["accuracy"])
    assert names == ["beam search", "DVTS", "best-of-N (PRM min)", "PRM-weighted majority",
                     "majority vote", "one sample", "oracle (pass@N)",
                     "beam search (length only)", "best-of-N (length only, min)"]
    # the same head as the PRM: the baseline rows repeat the PRM's
    assert results["accuracy"]["beam search (length only)"] == results["accuracy"]["beam search"]
    for name in names:
        assert 0 <= results["accuracy"][name]["mean"] <= results["accuracy"]["oracle (pass@N)"][
            "mean"] or name == "oracle (pass@N)"
        assert results["process_correct"][name]["mean"] <= results["accuracy"][name]["mean"]
    assert "| beam search (length only) |" in "\n".join(render(results))
