"""Several processes under torchrun (gloo on 127.0.0.1): embedding shared by shards, training
under DistributedDataParallel, and the loss scaling that makes K processes train like one.

Each multi-process test launches ``python -m torch.distributed.run --nproc-per-node 2`` as a
subprocess, on a free port, with one thread per process (this machine has two cores)."""

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from prmkit import distributed
from prmkit.devices import resolve_device
from prmkit.embed import EmbedConfig
from prmkit.errors import PrmkitError
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.train import CHECKPOINT_NAME, SUMMARY_NAME, TrainConfig, training_labels
from prmkit.train.loop import batch_loss
from prmkit.train.tricks import step_weights
from prmkit.workflows import embed_data

from conftest import make_rows

EMBED = EmbedConfig(backbone="minilm", context="none")  # the cheapest real backbone
EMBED_ARGS = ["--backbone", "minilm", "--context", "none"]
# 5 questions, 15 trajectories; a 0.2 validation share holds one question out: 12 to train on
HEAD_ARGS = ["--hidden-size", "16", "--num-layers", "1", "--num-heads", "2", "--dropout", "0",
             "--threads", "1", "--val-fraction", "0.2", "--lr", "3e-3", "--no-progress", "--json"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(tmp_path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PRMKIT_CACHE=str(tmp_path / "prmkit-cache"))
    if sys.platform == "linux":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # no interface lookup by host name
    return env


def torchrun(args: list[str], tmp_path) -> subprocess.Popen:
    """``torchrun --nproc-per-node 2 ARGS`` on 127.0.0.1 (ARGS: ``-m prmkit.cli ...`` or a
    script), started in a session of its own so that a test can kill every process at once."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), *args]
    return subprocess.Popen(command, env=environment(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows(5)))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory, data):
    """The data embedded once, in this process: training runs read the vectors from here."""
    folder = tmp_path_factory.mktemp("cache")
    embed_data(data, EMBED, cache_dir=folder, progress=False)
    return folder


# --- the helpers -----------------------------------------------------------------------------

def test_one_process_is_rank_0_of_1_and_every_helper_is_a_no_op():
    distributed.init()  # no WORLD_SIZE: nothing to join
    assert not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_main()
    distributed.barrier()
    thing = {"a": [1, 2]}
    assert distributed.broadcast_object(thing) is thing
    assert distributed.broadcast_float(0.1) == 0.1
    assert distributed.all_reduce_sum(2.5) == 2.5
    assert distributed.all_gather_object(thing) == [thing]


HELPERS = """
    import json, sys, torch
    from prmkit import distributed

    distributed.init()
    r = distributed.rank()
    out = {"rank": r, "world": distributed.world_size(), "main": distributed.is_main(),
           "object": distributed.broadcast_object({"from": r} if r == 0 else None),
           "float": distributed.broadcast_float(0.1 + r),
           "sum": distributed.all_reduce_sum(1.5 * (r + 1)),
           "tensor_sum": distributed.all_reduce_sum(torch.tensor([r, 10.0])).tolist(),
           "gathered": distributed.all_gather_object(r * r)}
    distributed.barrier()
    open(f"{sys.argv[1]}/rank{r}.json", "w").write(json.dumps(out))
    distributed.close()
"""


def test_helpers_across_two_processes(tmp_path):
    script = tmp_path / "helpers.py"
    script.write_text(textwrap.dedent(HELPERS))
    finish(torchrun([str(script), str(tmp_path)], tmp_path))
    for r in (0, 1):
        out = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert (out["rank"], out["world"], out["main"]) == (r, 2, r == 0)
        assert out["object"] == {"from": 0} and out["float"] == 0.1  # rank 0's, exactly
        assert out["sum"] == 1.5 + 3.0  # 1.5 * 1 + 1.5 * 2
        assert out["tensor_sum"] == [0 + 1, 10 + 10]
        assert out["gathered"] == [0, 1]  # 0 * 0, 1 * 1, in rank order


def test_resolve_device_names_and_refusals():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    with pytest.raises(PrmkitError, match="unknown device 'tpu'; use one of auto, cpu"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cuda", torch.cuda.current_device())
        with pytest.raises(PrmkitError, match="'cuda:99' is not available"):
            resolve_device("cuda:99")
    else:
        with pytest.raises(PrmkitError, match="device 'cuda:1' is not available: .* no CUDA"):
            resolve_device("cuda:1")
        if not torch.backends.mps.is_available():
            assert resolve_device("auto") == torch.device("cpu")
            with pytest.raises(PrmkitError, match="'mps' is not available"):
                resolve_device("mps")


# --- embedding by shards ---------------------------------------------------------------------

EMBED_SCRIPT = """
    import json, sys
    import numpy as np
    from prmkit import distributed
    from prmkit.embed import EmbedConfig
    from prmkit.errors import PrmkitError
    from prmkit.workflows import embed_data

    data, folder = sys.argv[1], sys.argv[2]
    config = EmbedConfig(backbone="minilm", context="none")
    _, cached, report = embed_data(data, config, cache_dir=f"{folder}/cache", progress=False,
                                   shard_trajectories=4)
    _, alone, _ = embed_data(data, config, cache_dir=False, progress=False, shard_trajectories=4)
    r = distributed.rank()
    np.savez(f"{folder}/rank{r}.npz", *cached, *alone)
    try:  # each rank its own cache folder, as on two machines without a shared filesystem
        embed_data(data, config, cache_dir=f"{folder}/own{r}", progress=False,
                   shard_trajectories=4)
        report["refused"] = None
    except PrmkitError as e:
        report["refused"] = str(e)
    open(f"{folder}/report{r}.json", "w").write(json.dumps(report))
"""


def test_two_processes_embed_the_same_bytes_as_one(tmp_path, data):
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent(EMBED_SCRIPT))
    run = torchrun([str(script), str(data), str(tmp_path)], tmp_path)
    _, reference, one = embed_data(data, EMBED, cache_dir=False, progress=False,
                                   shard_trajectories=4)  # meanwhile, in this process
    finish(run)
    for r in (0, 1):  # every rank returns every trajectory, through the cache and without it
        saved = np.load(tmp_path / f"rank{r}.npz")
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        assert len(arrays) == 2 * 15
        for got, want in zip(arrays, reference + reference):
            assert got.dtype == np.float16 and np.array_equal(got, want)
        report = json.loads((tmp_path / f"report{r}.json").read_text())
        # 15 trajectories in 4 shards (4 + 4 + 4 + 3); the work of both ranks is counted
        assert (report["computed"], report["cached"], report["shards"]) == (15, 0, 4)
        assert (report["forward_batches"], report["real_tokens"]) == \
            (one["forward_batches"], one["real_tokens"])
        # rank 0 lacks shards 1 and 3 (4 + 3 trajectories), rank 1 shards 0 and 2 (4 + 4)
        assert report["refused"].startswith(f"{7 + r} trajectories' vectors, written by other "
                                            "processes, are not in ")
        assert "every process must see the same cache folder" in report["refused"]
    # each shard was written once, two by each rank (the pid ends the shard's name)
    manifests = sorted((tmp_path / "cache").glob("*/shard-*.json"))
    writers = [m.stem.rsplit("-", 1)[1] for m in manifests]
    assert len(manifests) == 4 and sorted(writers.count(w) for w in set(writers)) == [2, 2]


# --- training under DDP ----------------------------------------------------------------------

def key_bias_free_difference(a, b) -> float:
    """max |a - b| over two saved heads' tensors, leaving out attention's key bias: softmax
    ignores a constant added to every score, so that bias's gradient is 0 plus rounding noise,
    which AdamW scales up to lr-sized steps whenever a sum is taken in another order (one
    process's batch sum vs two halves)."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    worst = 0.0
    for name in wa:
        x, y = wa[name], wb[name]
        if name.endswith("self_attn.in_proj_bias"):
            h = len(x) // 3  # (query, key, value) biases
            x, y = torch.cat([x[:h], x[2 * h:]]), torch.cat([y[:h], y[2 * h:]])
        worst = max(worst, float((x - y).abs().max()))
    return worst


@pytest.mark.parametrize("settings", [
    # 12 to train on in batches of 11 and 1: an odd split (6 + 5), then a batch of one row,
    # which leaves rank 1 without rows
    ["--epochs", "4", "--batch-size", "11"],
    # every trick that changes a batch's loss: its terms are each scaled by their own share
    ["--epochs", "3", "--batch-size", "5", "--outcome-weight", "0.5", "--next-step-weight",
     "0.5", "--prefix-augment", "--label-smoothing", "0.1", "--balance", "--focal-gamma", "1",
     "--hard-negative-rounds", "1"],
], ids=["plain", "tricks"])
def test_two_processes_train_the_weights_of_one(tmp_path, data, cache, capsys, settings):
    from prmkit.cli import main

    args = ["train", str(data), *EMBED_ARGS, "--cache", str(cache), *HEAD_ARGS, *settings]
    two = torchrun(["-m", "prmkit.cli", *args, "--out", str(tmp_path / "two")], tmp_path)
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--out", str(tmp_path / "one")]) == 0  # meanwhile, in this process
    finally:
        torch.set_num_threads(threads)  # --threads 1 pinned it for the whole process
    out_one = capsys.readouterr().out
    out_two = finish(two)
    assert len(out_two.splitlines()) == 1  # rank 0 alone printed its summary
    s_two, s_one = json.loads(out_two), json.loads(out_one)
    assert s_two["epochs_run"] == s_one["epochs_run"] and s_two["best_epoch"] == s_one["best_epoch"]
    assert s_two["val_loss"] == pytest.approx(s_one["val_loss"], abs=1e-5)
    assert key_bias_free_difference(tmp_path / "one", tmp_path / "two") < 1e-5
    # rank 1 wrote nothing there: the model, its config, the summary, no checkpoint
    assert sorted(os.listdir(tmp_path / "two")) == ["config.json", "model.safetensors",
                                                    SUMMARY_NAME]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts each rank in a session of
    its own, so killing the launcher's group would leave the ranks running)."""
    tree, i = [pid], 0
    while i < len(tree):
        for task in Path(f"/proc/{tree[i]}/task").glob("*"):
            tree += [int(c) for c in (task / "children").read_text().split()]
        i += 1
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


@pytest.mark.slow  # three launches of two processes: about a minute on two cores
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the ranks through /proc")
def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path, data, cache):
    # With dropout on, each rank draws its own masks; the checkpoint keeps every rank's RNG
    # state, so the resumed run ends bit-identical to the uninterrupted one.
    args = lambda out: ["-m", "prmkit.cli", "train", str(data), *EMBED_ARGS, "--cache",
                        str(cache), *HEAD_ARGS, "--dropout", "0.1", "--epochs",
                        "30", "--patience", "30", "--batch-size", "2", "--checkpoint-every",
                        "1", "--out", str(out)]
    finish(torchrun(args(tmp_path / "ref"), tmp_path))
    killed = torchrun(args(tmp_path / "run"), tmp_path)
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.01)
    time.sleep(1.0)  # a little past the first checkpoint
    kill_tree(killed.pid)  # the launcher and both ranks, at once
    killed.communicate(timeout=30)
    assert checkpoint.exists() and not (tmp_path / "run" / SUMMARY_NAME).exists()

    summary = json.loads(finish(torchrun(args(tmp_path / "run"), tmp_path)))
    r = summary["resumed_from"]
    assert r is not None and r["epoch"] * 6 + r["batch"] > 0  # 12 rows: 6 batches an epoch
    w_ref = load_file(tmp_path / "ref/model.safetensors")
    w_run = load_file(tmp_path / "run/model.safetensors")
    assert all(torch.equal(w_ref[k], w_run[k]) for k in w_ref)


def test_a_refusal_on_rank_0_ends_every_rank(tmp_path, data, cache):
    from prmkit._io import file_lock

    (tmp_path / "busy").mkdir()
    with file_lock(tmp_path / "busy"):  # as if another run were writing there
        run = torchrun(["-m", "prmkit.cli", "train", str(data), *EMBED_ARGS, "--cache",
                        str(cache), *HEAD_ARGS, "--out", str(tmp_path / "busy")], tmp_path)
        out, err = run.communicate(timeout=120)  # no rank left waiting for rank 0
    assert run.returncode != 0
    assert "is locked: another prmkit train is writing there" in err


# --- the loss scaling, by hand ---------------------------------------------------------------

def zero_linear_head() -> PRMHead:
    head = PRMHead(PRMConfig(input_dim=1, head_type="linear"))
    torch.nn.init.zeros_(head.head.weight)
    torch.nn.init.zeros_(head.head.bias)
    return head


def test_rank_losses_average_to_the_whole_batch_loss_by_hand():
    # A head with zero weights gives logit 0 everywhere: every labelled step's BCE is ln 2 and
    # its gradient on the bias is sigmoid(0) - y = 0.5 - y.
    data = [Trajectory("q", ["a", "b"], [1, 0]), Trajectory("q", ["a"], [1]),
            Trajectory("q", ["a", "b", "c"], [1, 1, 0])]
    features = [np.ones((t.num_steps, 1), dtype=np.float16) for t in data]
    labels = [training_labels(t, "step") for t in data]
    config = TrainConfig()
    head = zero_linear_head()

    def loss_and_bias_grad(rank: int, world: int) -> tuple[float, float]:
        head.zero_grad()
        loss = batch_loss(head, features, labels, None, [None] * 3, [0, 1, 2], config, seed=0,
                          rank=rank, world=world)
        loss.backward()
        return float(loss.detach()), float(head.head.bias.grad)

    # the whole batch: 6 labelled steps, mean ln 2; bias gradient
    # (4 right * (0.5 - 1) + 2 wrong * 0.5) / 6 = -1/6
    assert loss_and_bias_grad(0, 1) == pytest.approx((math.log(2), -1 / 6))
    # rank 0 of 2 takes rows 0 and 2 (5 steps): 2 * 5 ln 2 / 6 over the whole batch's 6 steps;
    # its bias gradient 2 * (3 * -0.5 + 2 * 0.5) / 6 = -1/6
    assert loss_and_bias_grad(0, 2) == pytest.approx((5 / 3 * math.log(2), -1 / 6))
    # rank 1 takes row 1 (1 step): 2 * ln 2 / 6; bias gradient 2 * -0.5 / 6 = -1/6
    assert loss_and_bias_grad(1, 2) == pytest.approx((1 / 3 * math.log(2), -1 / 6))
    # DDP averages: (5/3 + 1/3) / 2 ln 2 = ln 2 and (-1/6 - 1/6) / 2 = -1/6, the whole batch's


@pytest.mark.parametrize("world", [2, 3])
def test_rank_gradients_average_to_the_whole_batch_gradient_with_every_trick(world):
    data = [Trajectory.from_dict(r) for r in make_rows(3)]
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(t.num_steps, 4)).astype(np.float16) for t in data]
    labels = [training_labels(t, "step") for t in data]
    weights = step_weights(labels, [[len(s) for s in t.steps] for t in data], True, False)
    outcomes = [t.outcome for t in data]
    config = TrainConfig(outcome_weight=0.5, next_step_weight=0.3, label_smoothing=0.1,
                         focal_gamma=1.0, prefix_augment=True, balance=True)
    torch.manual_seed(0)
    head = PRMHead(PRMConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2, dropout=0.0,
                             aux_outcome=True, aux_next_step=True))
    rows = [0, 4, 5, 7, 8]  # 5 rows: 3 + 2 under two ranks, 2 + 2 + 1 under three

    def grads(rank: int, world: int) -> dict[str, torch.Tensor]:
        head.zero_grad()
        batch_loss(head, features, labels, weights, outcomes, rows, config, seed=3, rank=rank,
                   world=world).backward()
        return {n: p.grad.clone() for n, p in head.named_parameters()}

    whole = grads(0, 1)
    parts = [grads(r, world) for r in range(world)]
    for name, g in whole.items():
        torch.testing.assert_close(sum(p[name] for p in parts) / world, g, rtol=0, atol=1e-6)


def test_a_rank_without_rows_adds_zero_but_reaches_every_parameter():
    data = [Trajectory.from_dict(r) for r in make_rows(1)]
    features = [np.ones((t.num_steps, 4), dtype=np.float16) for t in data]
    labels = [training_labels(t, "step") for t in data]
    head = PRMHead(PRMConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2,
                             aux_outcome=True))
    loss = batch_loss(head, features, labels, None, [t.outcome for t in data], [1],
                      TrainConfig(outcome_weight=0.5), seed=0, rank=1, world=2)
    loss.backward()
    assert float(loss.detach()) == 0.0
    # DDP's all-reduce waits for a gradient of every parameter from every rank
    assert all(p.grad is not None and not p.grad.any() for p in head.parameters())
