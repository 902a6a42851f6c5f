"""The device check: prmkit's GPU paths on the demo world, in a few minutes, with no download.

Run it through ``bench/gpu_check.sh`` (which finds Python, checks for CUDA, sets PYTHONPATH=src
and adds a time limit); ``--device cpu`` is a dry run of every check on the CPU, smaller.

Backbone: a llama built from a config (random weights; hidden 256 x 4 layers on a GPU, 64 x 2 on
the CPU) with a byte-level BPE tokenizer trained here on the world's own text, both saved in a
work folder. Nothing is downloaded and no optional data package is needed.

1. The world's pools (``generate.solver.make_world``) embedded in bfloat16 through the pipeline
   (``embed_trajectories``): a. hidden states, into a fresh cache, and a head trained on them
   with ``train(..., device)``; b. hidden states and surprise (the causal default, which also
   runs the LM head). Prints tokens/s and batches/s. Each check runs apart, so that one failure
   leaves the others' verdicts.
2. ``finetune`` with ``FinetuneConfig(mode="lora")``, small batches, a few hundred optimizer
   steps (steps/s printed); the model reloaded with ``PRM.from_pretrained(out, device)`` must
   score like the PRM ``finetune`` returned (``SCORE_TOLERANCE``).
3. Step vectors of a few solutions (``Backbone.embed``: float32, before the pipeline stores
   float16), hidden states and surprise apart: float32 on the device vs the CPU within
   ``FP32_TOLERANCE``, bfloat16 vs float32 within ``BF16_TOLERANCE``; the difference is
   max |a - b| / max |b| per solution, the largest over the solutions.
4. ``torch.distributed.run --nproc-per-node 2`` on this file's ``--ddp-worker``: both ranks embed
   through one cache (its shards split between them), then train the head under
   DistributedDataParallel (NCCL on two GPUs, gloo on the CPU). The shared embedding must equal a
   one-process embedding, and the weights and step probabilities a one-process run's within
   ``DDP_TOLERANCE`` (see ``weight_difference`` for the one exception). On CUDA it needs two
   GPUs; with one it is skipped, and says so.

Prints a PASS/FAIL line per check and a summary; exits 1 when a check failed.

    bash bench/gpu_check.sh                         # on a machine with a CUDA GPU (~2-3 min)
    PYTHONPATH=src python bench/gpu_check.py --device cpu   # the dry run (~1-2 min on 2 cores)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

FP32_TOLERANCE = 1e-4  # float32 on the device vs the CPU: kernel order only
BF16_TOLERANCE = 5e-2  # bfloat16 keeps 8 bits of mantissa: ~4e-3 per rounding, over 4 layers
DDP_TOLERANCE = 1e-4  # head weights, 2 processes vs 1: gradient sums in another order
SCORE_TOLERANCE = 1e-6  # probabilities of a reloaded model vs the one in memory
REQUIRED = ("numpy", "torch", "safetensors", "tqdm", "transformers", "tokenizers")
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Sizes:
    problems: int  # demo-world problems, ``pool`` candidates each
    pool: int
    hidden: int  # the llama built from a config
    layers: int
    vocab: int
    head_hidden: int
    head_epochs: int
    ft_problems: int  # fine-tuning uses the world's first problems
    ft_batch: int
    ft_epochs: int
    compare: int  # trajectories compared across devices and dtypes
    ddp_problems: int
    ddp_epochs: int
    ddp_shard: int  # trajectories per cache shard: several shards for the ranks to share


SIZES = {
    # ~2,400 solutions, ~430k tokens; fine-tuning 2 epochs of 720 / 4 = 360 steps
    "cuda": Sizes(problems=300, pool=8, hidden=256, layers=4, vocab=1024, head_hidden=256,
                  head_epochs=10, ft_problems=100, ft_batch=4, ft_epochs=2, compare=16,
                  ddp_problems=128, ddp_epochs=4, ddp_shard=128),
    "cpu": Sizes(problems=30, pool=4, hidden=64, layers=2, vocab=512, head_hidden=64,
                 head_epochs=2, ft_problems=12, ft_batch=4, ft_epochs=1, compare=4,
                 ddp_problems=16, ddp_epochs=2, ddp_shard=16),
}
Outcome = tuple[str, str, str]  # (check, "PASS" | "FAIL" | "SKIP", what was measured)


def missing_packages(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("torch", "transformers", "tokenizers", "peft", "numpy"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def describe_device(device) -> str:
    import torch

    if device.type != "cuda":
        return f"{device} ({torch.get_num_threads()} threads)"
    p = torch.cuda.get_device_properties(device)
    return (f"{device}: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability "
            f"{p.major}.{p.minor}, {torch.cuda.device_count()} visible, CUDA {torch.version.cuda}"
            f", bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}, float32 matmul precision "
            f"{torch.get_float32_matmul_precision()!r}")


# --- the world and the backbone --------------------------------------------------------------

def world(problems: int, pool: int) -> list:
    from prmkit.generate.solver import make_world

    return [t for p in make_world(problems, pool, seed=0) for t in p.trajectories]


def build_backbone(folder: Path, trajectories: list, sizes: Sizes) -> Path:
    """A random llama and a byte-level BPE trained on the trajectories' text, saved in
    ``folder`` as a model folder any ``Backbone`` reads."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    texts = [SEPARATOR.join([t.question, *t.steps]) + SEPARATOR for t in trajectories]
    core.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=sizes.vocab, special_tokens=["<pad>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                        eos_token="</s>")
    heads = max(4, sizes.hidden // 64)
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=sizes.hidden,
        intermediate_size=4 * sizes.hidden, num_hidden_layers=sizes.layers,
        num_attention_heads=heads, num_key_value_heads=heads // 2,  # grouped-query attention
        max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def embed_config(folder: Path, dtype: str, **kw):
    from prmkit.embed import EmbedConfig

    return EmbedConfig(backbone=str(folder), dtype=dtype, **kw)


def max_relative(got: list, want: list) -> float:
    """max over trajectories of max |got - want| / max |want|.

    Shape: got[i], want[i] (num_steps, H).
    """
    import numpy as np

    out = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        out = max(out, float(np.abs(g - w).max()) / max(float(np.abs(w).max()), 1e-30))
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def against(value: float, tolerance: float) -> str:
    return f"{value:.2e} {'<=' if value <= tolerance else '>'} {tolerance:g}"


# --- 1. frozen embedding in bfloat16, head training ------------------------------------------

def timed_embed(trajectories, backbone, cache=None) -> tuple[list, dict, bool]:
    """The step vectors, the pipeline's report (after a warm-up call), and whether every vector
    has its trajectory's shape and finite values."""
    import numpy as np

    from prmkit.embed import embed_trajectories

    embed_trajectories(trajectories[:16], backbone, None, progress=False)  # kernels, allocator
    features, report = embed_trajectories(trajectories, backbone, cache, progress=False)
    ok = all(f.shape == (t.num_steps, backbone.hidden_size) and np.isfinite(f).all()
             for f, t in zip(features, trajectories))
    print(f"  embed: {len(trajectories)} solutions, {report['real_tokens']:,} tokens in "
          f"{report['seconds']:.2f} s: {report['tokens_per_s']:,.0f} tokens/s "
          f"({report['forward_batches']} forward batches, {backbone.hidden_size}-d steps, "
          f"features={backbone.config.features}, {backbone.config.dtype}"
          + (", into a fresh cache)" if cache is not None else ")"))
    return features, report, ok


def check_embed_and_train(trajectories, folder: Path, work: Path, device, sizes: Sizes
                          ) -> list[Outcome]:
    from prmkit.embed import Backbone, EmbeddingCache
    from prmkit.model import PRMConfig
    from prmkit.train import TrainConfig, train

    backbone = Backbone(embed_config(folder, "bfloat16", features="hidden"), device=device)
    cache = EmbeddingCache(work / "cache", backbone.fingerprint, backbone.source)
    features, report, embedded = timed_embed(trajectories, backbone, cache)

    config = TrainConfig(epochs=sizes.head_epochs, batch_size=64, lr=1e-3,
                         patience=sizes.head_epochs, val_fraction=0.1)
    model_config = PRMConfig(input_dim=backbone.hidden_size, hidden_size=sizes.head_hidden,
                             num_layers=2, num_heads=4, **backbone.head_settings())
    started = time.perf_counter()
    summary = train(trajectories, features, model_config, config, work / "head",
                    progress=False, device=device)
    seconds = time.perf_counter() - started
    batches = summary["epochs_run"] * math.ceil(summary["train_trajectories"] / config.batch_size)
    auroc = summary["val_step_auroc"]
    print(f"  head:  {batches} batches of {config.batch_size} in {seconds:.2f} s: "
          f"{batches / seconds:.1f} batches/s (validation, checkpoints and saving included); "
          f"val loss {summary['val_loss']:.4f}, val step AUROC "
          f"{'n/a' if auroc is None else f'{auroc:.3f}'}")
    return [("embed (bf16, hidden)", verdict(embedded),
             f"{report['tokens_per_s']:,.0f} tokens/s"
             + ("" if embedded else "; wrong shapes or non-finite vectors")),
            ("train head", verdict(math.isfinite(summary["val_loss"])),
             f"{batches / seconds:.1f} batches/s, val loss {summary['val_loss']:.4f}")]


def check_embed_default(trajectories, folder: Path, device) -> list[Outcome]:
    """The causal default: hidden states and the LM's surprise (its head's log-probabilities)."""
    from prmkit.embed import Backbone

    backbone = Backbone(embed_config(folder, "bfloat16"), device=device)
    _, report, embedded = timed_embed(trajectories, backbone)
    return [("embed (bf16, hidden+surprise)", verdict(embedded),
             f"{report['tokens_per_s']:,.0f} tokens/s"
             + ("" if embedded else "; wrong shapes or non-finite vectors"))]


# --- 2. LoRA fine-tuning, reloaded --------------------------------------------------------------

def check_finetune(trajectories, folder: Path, work: Path, device, sizes: Sizes
                   ) -> list[Outcome]:
    try:
        importlib.import_module("peft")  # LoRA; peft imports accelerate in turn
    except ImportError as e:
        reason = f"peft cannot be imported ({e}; pip install peft accelerate)"
        print(f"  skipped: {reason}")
        return [("finetune lora", "SKIP", reason)]
    import numpy as np
    from safetensors.torch import load_file

    from prmkit.embed import Backbone
    from prmkit.model import PRMConfig
    from prmkit.scoring import PRM
    from prmkit.train import TrainConfig
    from prmkit.train.finetune import FinetuneConfig, finetune

    data = trajectories[:sizes.ft_problems * sizes.pool]  # the first problems' pools
    # the layer below the last: the pass stops early, and LoRA adapts the layers under it
    backbone = Backbone(embed_config(folder, "float32", features="hidden",
                                     layer=sizes.layers - 1), device=device)
    config = TrainConfig(epochs=sizes.ft_epochs, batch_size=sizes.ft_batch, lr=1e-3,
                         patience=sizes.ft_epochs, val_fraction=0.1)
    ft = FinetuneConfig(mode="lora", lora_rank=8, backbone_lr=1e-3, max_minutes=2.0)
    head = PRMConfig(input_dim=1, hidden_size=sizes.head_hidden, num_layers=2, num_heads=4,
                     dropout=0.0)
    out = work / "lora"
    started = time.perf_counter()
    summary, prm = finetune(data, backbone, head, config, ft, out, progress=False)
    seconds = time.perf_counter() - started
    steps = summary["optimizer_steps"]
    val = [h["val_loss"] for h in summary["history"] if "val_loss" in h]
    print(f"  finetune: {steps} optimizer steps of {sizes.ft_batch} solutions in {seconds:.1f} s:"
          f" {steps / seconds:.2f} steps/s (validation, saving and calibration included); "
          f"{summary['trainable_backbone_parameters']:,} LoRA parameters, stopped by "
          f"{summary['stopped_by']}, val loss {' -> '.join(f'{v:.4f}' for v in val)}")
    adapter = load_file(out / "backbone" / "adapter_model.safetensors")
    lora_b = max(float(w.abs().max()) for k, w in adapter.items() if "lora_B" in k)
    print(f"  adapter: {len(adapter)} tensors, max |lora_B| {lora_b:.3g} (0 before training)")

    sample = data[:sizes.compare * 2]
    in_memory = prm.score_batch(sample)
    reloaded = PRM.from_pretrained(out, device=device).score_batch(sample)
    diff = max(float(np.abs(np.subtract(a, b)).max()) for a, b in zip(in_memory, reloaded))
    print(f"  reload: PRM.from_pretrained({out.name}, device={device}) on {len(sample)} "
          f"solutions: max |p - p_in_memory| = {diff:.2e} (tolerance {SCORE_TOLERANCE:g})")
    trained = lora_b > 0 and bool(val) and all(math.isfinite(v) for v in val)
    return [("finetune lora", verdict(trained and steps > 0),
             f"{steps} steps, {steps / seconds:.2f} steps/s"
             + ("" if trained else "; the adapter did not train")),
            ("reload finetuned", verdict(diff <= SCORE_TOLERANCE),
             f"max score diff {against(diff, SCORE_TOLERANCE)}")]


# --- 3. the same step vectors on the device and the CPU, in float32 and bfloat16 ----------------

def check_equality(trajectories, folder: Path, device, sizes: Sizes,
                   features: str) -> list[Outcome]:
    """One feature set (hidden states or surprise, checked apart: their scales differ, and a
    failure of one leaves the other's verdict)."""
    from prmkit.embed import Backbone

    sample = trajectories[::max(1, len(trajectories) // sizes.compare)][:sizes.compare]

    def vectors(where, dtype: str) -> list:
        backbone = Backbone(embed_config(folder, dtype, features=features), device=where)
        return backbone.embed([backbone.tokenize(t.question, t.steps) for t in sample])[0]

    fp32 = vectors(device, "float32")
    cpu = vectors("cpu", "float32")
    bf16 = vectors(device, "bfloat16")
    vs_cpu, vs_fp32 = max_relative(fp32, cpu), max_relative(bf16, fp32)
    print(f"  {len(sample)} solutions, {sum(len(v) for v in cpu)} step vectors of "
          f"{cpu[0].shape[1]} {features} features"
          + (": a dry run, the CPU against itself" if device.type == "cpu" else ""))
    print(f"  float32 {device} vs cpu:      max relative difference {vs_cpu:.2e} "
          f"(tolerance {FP32_TOLERANCE:g})")
    print(f"  bfloat16 vs float32 on {device}: max relative difference {vs_fp32:.2e} "
          f"(tolerance {BF16_TOLERANCE:g})")
    return [(f"{features}: float32 {device.type} vs cpu", verdict(vs_cpu <= FP32_TOLERANCE),
             f"max rel diff {against(vs_cpu, FP32_TOLERANCE)}"),
            (f"{features}: bfloat16 vs float32", verdict(vs_fp32 <= BF16_TOLERANCE),
             f"max rel diff {against(vs_fp32, BF16_TOLERANCE)}")]


# --- 4. two processes: the cache shared out, the head under DistributedDataParallel -----------

def ddp_configs(sizes: Sizes):
    from prmkit.train import TrainConfig

    # no dropout: each rank draws its own masks, so only a dropout-free run can match one process
    head = {"hidden_size": sizes.head_hidden, "num_layers": 2, "num_heads": 4, "dropout": 0.0}
    config = TrainConfig(epochs=sizes.ddp_epochs, batch_size=32, lr=1e-3,
                         patience=sizes.ddp_epochs, val_fraction=0.1)
    return head, config


def weight_difference(want: dict, got: dict) -> tuple[float, float]:
    """max |got - want| over a head's weights, the attention key biases apart; and over those.

    Softmax ignores a key bias (it adds one number to all of a query's scores), so its gradient
    is rounding noise, which Adam divides by its own running size into steps far above it: two
    runs that sum gradients in another order part there (1e-5 after 4 steps on the CPU) and
    nowhere else (the step probabilities agree to 1e-7).
    """
    import torch

    rest, keys = 0.0, 0.0
    for name, w in want.items():
        diff = (got[name].double() - w.double()).abs()
        if name.endswith("self_attn.in_proj_bias"):  # [query, key, value] biases
            third = len(diff) // 3
            keys = max(keys, float(diff[third:2 * third].max()))
            diff = torch.cat([diff[:third], diff[2 * third:]])
        rest = max(rest, float(diff.max()))
    return rest, keys


def check_ddp(trajectories, folder: Path, work: Path, device, sizes: Sizes,
              timeout: float) -> list[Outcome]:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from prmkit.embed import Backbone, embed_trajectories
    from prmkit.model import PRMConfig, PRMHead
    from prmkit.records import write_jsonl
    from prmkit.scoring.prm import score_features
    from prmkit.train import train

    name = "2-process NCCL" if device.type == "cuda" else "2-process gloo"
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        reason = f"{torch.cuda.device_count()} CUDA GPU visible, the NCCL path needs 2"
        print(f"  skipped: {reason}")
        return [(name, "SKIP", reason)]
    ddp = work / "ddp"
    ddp.mkdir()
    data = trajectories[:sizes.ddp_problems * sizes.pool]
    write_jsonl(ddp / "data.jsonl", data)
    backbone = Backbone(embed_config(folder, "bfloat16", features="hidden"), device=device)
    features, _ = embed_trajectories(data, backbone, None, progress=False,
                                     shard_trajectories=sizes.ddp_shard)
    np.savez(ddp / "features.npz", *features)
    head, config = ddp_configs(sizes)
    model_config = PRMConfig(input_dim=backbone.hidden_size, **head, **backbone.head_settings())
    one = train(data, features, model_config, config, ddp / "one", progress=False, device=device)

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(Path(__file__).resolve()), "--ddp-worker", str(ddp),
               "--device", device.type]
    print(f"  {' '.join(command[1:4])} ... ({len(data)} solutions, {sizes.ddp_epochs} epochs)",
          flush=True)
    # a session of its own: on a timeout, or when this check is stopped, the launcher and both
    # workers are ended together, and no worker is left holding a GPU
    started = time.perf_counter()
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = None
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if output is None:
        print(proc.communicate()[0][-4000:])
        return [(name, "FAIL", f"timed out after {timeout:.0f} s")]
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        print(output[-4000:])
        return [(name, "FAIL", f"torch.distributed.run exited {proc.returncode}")]
    worker = json.loads((ddp / "worker.json").read_text())
    want = load_file(ddp / "one" / "model.safetensors")
    got = load_file(ddp / "two" / "model.safetensors")
    same_names = sorted(want) == sorted(got)
    weights, key_biases = weight_difference(want, got) if same_names else (math.inf, math.inf)
    probs = [score_features(PRMHead.from_pretrained(ddp / run), features) for run in ("one", "two")]
    prob_diff = max(float(np.abs(np.subtract(a, b)).max()) for a, b in zip(*probs))
    print(f"  ran in {seconds:.1f} s on {', '.join(worker['devices'])} "
          f"({worker['backend']} backend)")
    print(f"  embed through one cache, {worker['shards']} shards shared out: max relative "
          f"difference to one process {worker['embed_max_rel']:.2e} (float16 vectors; "
          f"{'bit-identical' if worker['embed_identical'] else 'not bit-identical'})")
    print(f"  head, 2 processes vs 1: best epoch {worker['summary']['best_epoch']} vs "
          f"{one['best_epoch']}, val loss {worker['summary']['val_loss']:.6f} vs "
          f"{one['val_loss']:.6f}; max |w_2 - w_1| {weights:.2e} over {len(want)} tensors, "
          f"attention key biases aside (theirs {key_biases:.2e}: see weight_difference); max "
          f"|p_2 - p_1| {prob_diff:.2e} (tolerance {DDP_TOLERANCE:g} for both)")
    embed_ok = worker["embed_max_rel"] <= 1e-3  # float16 keeps ~3 decimal digits
    train_ok = max(weights, prob_diff) <= DDP_TOLERANCE
    return [(f"{name} embed", verdict(embed_ok),
             f"max rel diff {against(worker['embed_max_rel'], 1e-3)} vs 1 process"),
            (f"{name} train", verdict(train_ok),
             f"max weight diff {against(weights, DDP_TOLERANCE)}, prob diff "
             f"{against(prob_diff, DDP_TOLERANCE)} vs 1 process")]


def ddp_worker(folder: Path, device_name: str) -> None:
    """One rank under torch.distributed.run: embed the data through a cache shared with the
    other rank, compare with the one-process vectors, train the head on the one-process vectors
    (so the weights compare training alone). ``folder`` is the work folder's ``ddp``, where
    ``check_ddp`` left the data and those vectors, beside the backbone's ``llama``."""
    import numpy as np
    import torch

    from prmkit import distributed
    from prmkit.devices import resolve_device
    from prmkit.embed import Backbone, EmbeddingCache, embed_trajectories
    from prmkit.model import PRMConfig
    from prmkit.records import read_jsonl
    from prmkit.train import train

    distributed.init()
    device = resolve_device(device_name)
    sizes = SIZES[device_name]
    data = read_jsonl(folder / "data.jsonl")
    with np.load(folder / "features.npz") as saved:
        reference = [saved[f"arr_{i}"] for i in range(len(data))]
    backbone = Backbone(embed_config(folder.parent / "llama", "bfloat16", features="hidden"),
                        device=device)
    cache = EmbeddingCache(folder / "cache", backbone.fingerprint, backbone.source)
    features, report = embed_trajectories(data, backbone, cache, progress=False,
                                          shard_trajectories=sizes.ddp_shard)
    head, config = ddp_configs(sizes)
    model_config = PRMConfig(input_dim=backbone.hidden_size, **head, **backbone.head_settings())
    summary = train(data, reference, model_config, config, folder / "two", progress=False,
                    device=device)
    devices = distributed.all_gather_object(str(device))
    if distributed.is_main():
        (folder / "worker.json").write_text(json.dumps({
            "devices": devices, "backend": str(torch.distributed.get_backend()),
            "shards": report["shards"], "embed_max_rel": max_relative(features, reference),
            "embed_identical": all(np.array_equal(f, r) for f, r in zip(features, reference)),
            "summary": summary}))
    distributed.close()


# --- the run -----------------------------------------------------------------------------------

def run_check(title: str, outcomes: list[Outcome], check, *args) -> None:
    """One check; an exception is its failure, printed, and the other checks still run."""
    print(f"\n== {title}", flush=True)
    started = time.perf_counter()
    try:
        outcomes.extend(check(*args))
    except Exception as e:
        traceback.print_exc()
        outcomes.append((title, "FAIL", f"{type(e).__name__}: {str(e)[:200]}"))
    print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)


def _terminate(signum, frame):
    """SIGTERM (the shell script's time limit) ends like an error: ``finally`` blocks end the
    2-process run and remove the work folder."""
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda",
                        help="cuda: the check; cpu: a dry run of every check, smaller")
    parser.add_argument("--work", default=None,
                        help="folder for the backbone, cache and models (default: a temporary "
                             "one, removed at the end)")
    parser.add_argument("--ddp-timeout", type=float, default=150.0,
                        help="seconds the 2-process run may take")
    parser.add_argument("--ddp-worker", default=None, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    missing = missing_packages(REQUIRED)
    if missing:
        print(f"FAIL: missing Python packages: {', '.join(missing)} (pip install "
              f"{' '.join(missing)})")
        return 1
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per model load says nothing here
    if args.ddp_worker:
        ddp_worker(Path(args.ddp_worker), args.device)
        return 0

    from prmkit.devices import resolve_device

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    device = resolve_device(args.device)
    sizes = SIZES[args.device]
    import prmkit

    print(f"device check: {describe_device(device)}")
    print(f"{versions()}; prmkit from {Path(prmkit.__file__).parent}; Python "
          f"{sys.version.split()[0]}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="prmkit-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    try:
        trajectories = world(sizes.problems, sizes.pool)
        folder = build_backbone(work / "llama", trajectories, sizes)
        print(f"world: {sizes.problems} problems x {sizes.pool} solutions = {len(trajectories)}; "
              f"backbone: llama {sizes.hidden} x {sizes.layers} layers built from a config, "
              f"BPE tokenizer of {sizes.vocab} trained here ({folder}) "
              f"[{time.perf_counter() - started:.1f} s]")
        run_check(f"1a. embed hidden states (bfloat16) and train a head on {device}", outcomes,
                  check_embed_and_train, trajectories, folder, work, device, sizes)
        run_check(f"1b. embed hidden states and surprise (bfloat16) on {device}", outcomes,
                  check_embed_default, trajectories, folder, device)
        run_check(f"2. LoRA fine-tuning on {device}, reloaded", outcomes, check_finetune,
                  trajectories, folder, work, device, sizes)
        for features in ("hidden", "surprise"):
            run_check(f"3. {features} step vectors: float32 {device} vs cpu, bfloat16 vs "
                      "float32", outcomes, check_equality, trajectories, folder, device, sizes,
                      features)
        run_check("4. two processes (torch.distributed.run)", outcomes, check_ddp,
                  trajectories, folder, work, device, sizes, args.ddp_timeout)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [o for o in outcomes if o[1] == "FAIL"]
    skipped = [o for o in outcomes if o[1] == "SKIP"]
    print(f"\n== summary ({device}, {time.perf_counter() - started:.0f} s)")
    width = max(len(o[0]) for o in outcomes)
    for check, status, detail in outcomes:
        print(f"{status:<5} {check:<{width}}  {detail}")
    print(f"{'FAIL' if failed else 'PASS'}: {len(outcomes) - len(failed) - len(skipped)} "
          f"passed, {len(failed)} failed, {len(skipped)} skipped"
          + (" (dry run on the CPU)" if device.type == "cpu" else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
