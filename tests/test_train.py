import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from prmkit.model import PRMConfig
from prmkit.records import Trajectory
from prmkit.train import (CHECKPOINT_NAME, SUMMARY_NAME, TrainConfig, split_by_question, train,
                          training_labels)
from prmkit.embed import EmbedConfig
from prmkit.workflows import embed_data

from conftest import make_rows

HEAD = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_steps": 16}


def synthetic_features(trajectories, dim=8, seed=0):
    """Features where a wrong step is visible in dimension 0, so a head can learn something."""
    rng = np.random.default_rng(seed)
    out = []
    for t in trajectories:
        f = rng.normal(size=(t.num_steps, dim)).astype(np.float16)
        for i, label in enumerate(t.labels):
            if label == 0:
                f[i, 0] += 3
        out.append(f)
    return out


def test_split_by_question_keeps_questions_apart():
    data = [Trajectory.from_dict(r) for r in make_rows(10)]
    train_idx, val_idx = split_by_question(data, 0.2, seed=0)
    q = lambda idx: {data[i].question for i in idx}
    assert q(train_idx).isdisjoint(q(val_idx))
    assert len(q(val_idx)) == 2 and len(train_idx) + len(val_idx) == 30


def test_orm_labels_only_the_last_step():
    t = Trajectory("q", ["a", "b", "c"], [1, 0, None], outcome=False)
    assert training_labels(t, "outcome") == [None, None, 0.0]
    assert training_labels(t, "step") == [1, 0, None]


def test_training_learns_and_is_reproducible(tmp_path):
    data = [Trajectory.from_dict(r) for r in make_rows(12)]
    feats = synthetic_features(data)
    config = TrainConfig(epochs=15, batch_size=8, lr=3e-3, val_fraction=0.25, patience=15)
    model_config = PRMConfig(input_dim=8, **HEAD)
    s1 = train(data, feats, model_config, config, tmp_path / "a", progress=False)
    train(data, feats, model_config, config, tmp_path / "b", progress=False)
    w1, w2 = load_file(tmp_path / "a/model.safetensors"), load_file(tmp_path / "b/model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert s1["val_step_auroc"] > 0.9  # dimension 0 gives wrong steps away
    summary = json.loads((tmp_path / "a" / SUMMARY_NAME).read_text())
    assert summary["val_loss"] == s1["val_loss"] and summary["best_epoch"] >= 1


def test_checkpoint_of_another_run_is_refused(tmp_path):
    from prmkit.errors import PrmkitError

    data = [Trajectory.from_dict(r) for r in make_rows(4)]
    feats = synthetic_features(data)
    model_config = PRMConfig(input_dim=8, **HEAD)
    train(data, feats, model_config, TrainConfig(epochs=1), tmp_path, progress=False,
          keep_checkpoint=True)
    with pytest.raises(PrmkitError, match="belongs to a different run"):
        train(data, feats, model_config, TrainConfig(epochs=2), tmp_path, progress=False)
    s = train(data, feats, model_config, TrainConfig(epochs=2), tmp_path, progress=False,
              overwrite=True)
    assert s["epochs_run"] == 2


def test_a_finished_run_leaves_no_checkpoint_and_is_not_trained_over(tmp_path):
    from prmkit.errors import PrmkitError

    data = [Trajectory.from_dict(r) for r in make_rows(4)]
    feats = synthetic_features(data)
    model_config = PRMConfig(input_dim=8, **HEAD)
    (tmp_path / f".{CHECKPOINT_NAME}.x.tmp").write_bytes(b"half")  # a kill during a write
    train(data, feats, model_config, TrainConfig(epochs=1), tmp_path, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors", SUMMARY_NAME]
    with pytest.raises(PrmkitError, match="holds a trained model; pass overwrite=True"):
        train(data, feats, model_config, TrainConfig(epochs=1), tmp_path, progress=False)


def run_cli(args, env):
    return subprocess.Popen([sys.executable, "-m", "prmkit.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_rerun_resumes_to_bit_identical_weights(tmp_path, small_jsonl):
    env = dict(os.environ, PRMKIT_CACHE=str(tmp_path / "cache"))
    embed_data(small_jsonl, EmbedConfig(backbone="minilm"), cache_dir=tmp_path / "cache",
               progress=False)  # embed once, up front
    args = lambda out: ["train", str(small_jsonl), "--out", str(out), "--epochs", "25",
                        "--batch-size", "2", "--patience", "25", "--hidden-size", "32",
                        "--num-layers", "1", "--num-heads", "2", "--checkpoint-every", "1",
                        "--threads", "1", "--no-progress", "--json", "--backbone", "minilm"]
    reference = run_cli(args(tmp_path / "ref"), env)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    killed = run_cli(args(tmp_path / "run"), env)
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.01)
    time.sleep(0.5)  # let it train a little past the first checkpoint
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert checkpoint.exists() and not (tmp_path / "run" / SUMMARY_NAME).exists()  # died mid-run

    resumed = run_cli(args(tmp_path / "run"), env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    summary = json.loads(out)
    assert summary["resumed_from"] is not None
    assert summary["resumed_from"]["epoch"] * 12 + summary["resumed_from"]["batch"] > 0
    w_ref = load_file(tmp_path / "ref/model.safetensors")
    w_run = load_file(tmp_path / "run/model.safetensors")
    assert all(torch.equal(w_ref[k], w_run[k]) for k in w_ref)


def test_compare_layers_scores_each_layer_beside_content_free_heads(small_jsonl, tmp_path):
    from prmkit.embed import EmbedConfig
    from prmkit.workflows import compare_layers

    rows = compare_layers(small_jsonl, EmbedConfig(backbone="minilm"), [2, -1], cache_dir=tmp_path,
                          head={"hidden_size": 16, "num_layers": 1, "num_heads": 2},
                          config=TrainConfig(epochs=2, val_fraction=0.25), seeds=(0, 1),
                          progress=False)
    assert [r["layer"] for r in rows] == [2, -1, "length only", "random features"]
    for r in rows:
        assert 0.0 <= r["val_step_auroc"] <= 1.0 and r["val_step_auroc_std"] >= 0.0
        assert r["val_loss"] > 0.0


def test_split_always_leaves_questions_on_both_sides():
    data = [Trajectory.from_dict(r) for r in make_rows(2)]
    train_idx, val_idx = split_by_question(data, 0.6, seed=0)  # 0.6 of 2 questions rounds to 1
    assert len(train_idx) == 3 and len(val_idx) == 3
    train_idx, val_idx = split_by_question(data, 0.99, seed=0)
    assert len(train_idx) == 3 and len(val_idx) == 3
    assert split_by_question(data, 0.0, seed=0)[1] == []
