"""The two savings of in-context embedding, measured side by side in one run.

Text set: pools of the demo world (`prmkit data synthetic`): --problems problems with --pool
candidates each. Backbone: SmolLM2-135M (`--backbone smollm2`, bfloat16, its default layer 15).

1. **Shared prefixes.** The candidates of a problem share the question and often their first
   steps. `shared` runs the backbone once per distinct prefix (a prefix tree, continuing from
   key/value states); `single` runs each distinct candidate in one pass of its own. Printed:
   tokens through the model / tokens in the candidates, for both, and their wall-time ratio,
   for the default features (hidden states and surprise) and for hidden states alone.
2. **Stopping at the read layer.** Hidden states of layer 15 of 30, read by a pass that stops
   there (`stopped`) and by one that runs every layer (`full depth`), both without sharing.

Each measurement runs the whole pipeline on the same text (tokenization, forward passes, pooling,
surprise features), --runs times interleaved (every other run in reverse order), median reported.

    python bench/prefix.py                 # 40 problems x 32 candidates, 3 runs (~40 min here)
    python bench/prefix.py --problems 20 --pool 24 --runs 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from prmkit.generate.solver import make_world
from prmkit.embed import Backbone, EmbedConfig


def cpu_name() -> str:
    """The processor's model name (Linux), or the platform's guess: bfloat16 matrix products run
    several times faster on some x86 CPUs than on others, which moves every ratio below."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(backbone: Backbone, tokens) -> tuple[float, object]:
    start = time.perf_counter()
    _, stats = backbone.embed(tokens)
    return time.perf_counter() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="smollm2")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    world = make_world(args.problems, args.pool, args.seed)
    data = [t for p in world for t in p.trajectories]
    base = Backbone(EmbedConfig(backbone=args.backbone))
    tokens = [base.tokenize(t.question, t.steps) for t in data]
    variants = {}
    for features in ("both", "hidden"):
        for share in (True, False):
            variants[(features, share)] = Backbone(EmbedConfig(
                backbone=args.backbone, features=features, share_prefixes=share))
    full = Backbone(EmbedConfig(backbone=args.backbone, features="hidden", share_prefixes=False))
    full.layers_run = full.num_layers  # the same vectors from a pass through every layer
    for backbone in (*variants.values(), full):
        backbone._model = base.model  # one copy of the weights
        backbone._cache_arg = base._cache_arg
    layer = variants[("hidden", False)].read_layers[0]
    timed(variants[("hidden", True)], tokens[:64])  # warm up allocator and kernels

    times = {key: [] for key in (*variants, "full")}
    stats = {}
    order = [*variants.items(), ("full", full)]
    for run in range(args.runs):
        # each run reverses the order of the one before: no variant always runs first or last
        for key, backbone in order if run % 2 == 0 else order[::-1]:
            seconds, stats[key] = timed(backbone, tokens)
            times[key].append(seconds)
        print(f"run {run + 1}/{args.runs} done", flush=True)
    med = {key: statistics.median(v) for key, v in times.items()}

    print(f"\n{args.backbone} ({base.config.dtype}), {len(data)} candidates: {args.problems} "
          f"problems x {args.pool}, {stats[('both', False)].input_tokens} tokens; median of "
          f"{args.runs} interleaved runs, {args.threads} threads, {cpu_name()}")
    print(f"{'features':>9} {'shared tok':>11} {'single tok':>11} {'shared s':>9} "
          f"{'single s':>9} {'single / shared':>16}")
    for features in ("both", "hidden"):
        s, p = stats[(features, True)], stats[(features, False)]
        ratios = [a / b for a, b in zip(times[(features, False)], times[(features, True)])]
        print(f"{features:>9} {s.real_tokens / s.input_tokens:>11.3f} "
              f"{p.real_tokens / p.input_tokens:>11.3f} {med[(features, True)]:>9.2f} "
              f"{med[(features, False)]:>9.2f} "
              f"{med[(features, False)] / med[(features, True)]:>16.2f}"
              f"   (runs {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"\nhidden states of layer {layer} of {base.num_layers}, no sharing: stopped "
          f"{med[('hidden', False)]:.2f} s, full depth {med['full']:.2f} s, "
          f"full / stopped {med['full'] / med[('hidden', False)]:.2f}")


if __name__ == "__main__":
    main()
