"""prmkit label: the strategies on demo-world records, resuming after a kill, the CLI."""

import json
import signal
import subprocess
import sys
import time

import pytest

from prmkit.cli import main
from prmkit.generate.solver import SolverGenerator, make_world, problems_for
from prmkit.label.arithmetic import label_arithmetic
from prmkit.label.job import label_records
from prmkit.label.outcome import judge_for, label_outcome
from prmkit.label.montecarlo import MonteCarlo, label_montecarlo
from prmkit.records import Trajectory, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def world():
    return [t for p in make_world(12, 4, seed=5) for t in p.trajectories]


def test_outcome_labels_every_step_with_the_answer():
    right = Trajectory(question="Q", steps=["a", "The answer is 7."], answer="7",
                       meta={"reference_answer": "7"})
    wrong = Trajectory(question="Q", steps=["a", "The answer is 8."], answer="8",
                       meta={"reference_answer": "7"})
    unknown = Trajectory(question="Q", steps=["a"])
    assert label_outcome(right).labels == [1.0, 1.0] and label_outcome(right).outcome is True
    assert label_outcome(wrong).labels == [0.0, 0.0]
    assert label_outcome(unknown).labels == [None]


def test_arithmetic_labels_follow_the_first_error_rule():
    t = Trajectory(question="Q", steps=["We start.", "3 + 4 = 7.", "7 * 2 = 15.", "15 - 1 = 14.",
                                        "The answer is 14."])
    labelled = label_arithmetic(t)
    assert labelled.labels == [None, 1, 0, None, None]
    assert labelled.meta["labeling"] == {"strategy": "arithmetic",
                                         "checked": [None, True, False, True, None]}
    clean = label_arithmetic(Trajectory(question="Q", steps=["3 + 4 = 7.", "So 7."]))
    assert clean.labels == [1, None]


def test_montecarlo_hard_soft_and_binary(world):
    generator = SolverGenerator(problems_for(world))
    wrong = next(t for t in world if t.outcome is False and t.num_steps >= 4)
    right = next(t for t in world if t.outcome is True)
    hard = label_montecarlo(wrong, 0, generator, judge_for(wrong), MonteCarlo(k=4))
    soft = label_montecarlo(wrong, 0, generator, judge_for(wrong),
                            MonteCarlo(k=4, estimate="soft"))
    binary = label_montecarlo(wrong, 0, generator, judge_for(wrong),
                              MonteCarlo(k=4, search="binary"))
    assert hard.labels[-1] == 0.0 and soft.labels[-1] == 0.0  # the wrong answer itself
    assert all(label in (0.0, 1.0) for label in hard.labels)
    assert soft.label_kind == "value" and all(0 <= v <= 1 for v in soft.labels)
    # hard is soft > 0: the same rollouts, the same seed
    assert hard.labels == [float(v > 0) for v in soft.labels]
    first = binary.labels.index(0.0)
    assert binary.labels == [1.0] * first + [0.0] + [None] * (wrong.num_steps - first - 1)
    assert binary.meta["labeling"]["rollouts"] <= hard.meta["labeling"]["rollouts"]
    # the last step's verdict costs no rollout
    assert hard.meta["labeling"]["rollouts"] == 4 * (wrong.num_steps - 1)
    # a right answer is a completion that reaches it from every prefix
    done = label_montecarlo(right, 1, generator, judge_for(right), MonteCarlo(k=4))
    assert done.labels == [1.0] * right.num_steps and done.meta["labeling"]["rollouts"] == 0


def test_a_killed_job_resumes_to_the_same_output(world, tmp_path):
    data = tmp_path / "world.jsonl"
    write_jsonl(data, world)
    whole = tmp_path / "whole.jsonl"
    label_records(world, whole, "montecarlo", SolverGenerator(problems_for(world)),
                  MonteCarlo(k=2), progress=False)
    # kill -9 a labelling process mid-way, then run it again
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    args = ["label", str(data), "--strategy", "montecarlo", "--k", "2", "--out", str(out),
            "--no-progress"]
    # the same command, each rollout slowed down so that the kill lands part way
    slowed = (f"import time, prmkit.generate.solver as s\n"
              f"complete = s.SolverGenerator.complete\n"
              f"def slow(*a, **k):\n    time.sleep(0.02)\n    return complete(*a, **k)\n"
              f"s.SolverGenerator.complete = slow\n"
              f"from prmkit.cli import main\nmain({args!r})\n")
    process = subprocess.Popen([sys.executable, "-c", slowed])
    deadline = time.time() + 60
    while time.time() < deadline and (not partial.exists() or
                                      partial.read_bytes().count(b"\n") < 5):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not out.exists() and 5 <= partial.read_bytes().count(b"\n") < len(world)
    with open(partial, "ab") as f:
        f.write(b'{"question": "cut short')  # a line the crash left half-written
    assert main(args) == 0
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists()


def test_cli_label_errors(tmp_path, capsys):
    data = tmp_path / "plain.jsonl"
    write_jsonl(data, [Trajectory(question="Q?", steps=["2 + 2 = 4.", "The answer is 4."])])
    assert main(["label", str(data), "--strategy", "montecarlo", "--out",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "continues only demo-world records" in capsys.readouterr().err
    assert main(["label", str(data), "--strategy", "montecarlo", "--generator", "http",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "needs --url" in capsys.readouterr().err
    assert main(["label", str(data), "--strategy", "montecarlo", "--estimate", "soft",
                 "--search", "binary", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert main(["label", str(data), "--strategy", "arithmetic", "--out",
                 str(tmp_path / "o.jsonl")]) == 0
    [labelled] = read_jsonl(tmp_path / "o.jsonl")
    assert labelled.labels == [1, None]
    assert json.loads((tmp_path / "o.jsonl").read_text())["meta"]["labeling"]["strategy"] == \
        "arithmetic"


def test_bad_step_scores_by_hand():
    from prmkit.label.compare import bad_step_scores, first_error_form

    truth = [Trajectory(question="Q", steps=["a", "b", "c"], labels=[1, 0, None]),
             Trajectory(question="Q", steps=["a", "b"], labels=[1, 1])]
    source = [Trajectory(question="Q", steps=["a", "b", "c"], labels=[0, 0, 0]),
              Trajectory(question="Q", steps=["a", "b"], labels=[None, 0.4])]
    # truth-labelled steps: (1, 0) a false flag, (0, 0) a catch, (1, None) not flagged,
    # (1, 0.4) a false flag; step c is not judged (the truth leaves it unlabelled)
    scores = bad_step_scores(truth, source)
    assert (scores["flagged"], scores["bad"]) == (3, 1)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 0))
    assert [t.labels for t in first_error_form(source)] == [[0, None, None], [1, 0]]


@pytest.mark.slow
def test_compare_runs_small(tmp_path):
    from prmkit.embed import EmbedConfig
    from prmkit.label.compare import SOURCES, CompareConfig, markdown, run_compare
    from prmkit.train import TrainConfig

    config = CompareConfig(train_problems=20, test_problems=10, study_problems=8, ks=(1, 4),
                           ns=(1, 4), head={"hidden_size": 32, "num_layers": 1, "num_heads": 2},
                           train=TrainConfig(epochs=2), bootstrap=200,
                           embed=EmbedConfig(backbone="minilm", context="none"))
    r = run_compare(config, cache_dir=tmp_path, progress=False)
    assert list(r["quality"]) == list(SOURCES)
    assert r["quality"]["true labels"]["f1"] == 1.0
    assert r["quality"]["outcome"]["rollouts"] == 0 < r["quality"]["Monte-Carlo hard"]["rollouts"]
    row = r["by_k"]["4"]
    assert row["same solver, binary search"]["rollouts"] < row["same solver"]["rollouts"]
    assert "## Monte-Carlo by k" in "\n".join(markdown(r))
