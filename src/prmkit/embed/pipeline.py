"""Embed trajectories through a backbone, reading and filling the cache."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from prmkit.embed.backbone import Backbone, EmbedStats
from prmkit.embed.cache import EmbeddingCache, entry_key, to_fp16
from prmkit.errors import DataError
from prmkit.records import Location, Trajectory

StepFeatures = np.ndarray  # (num_steps, H) float16


def embed_trajectories(trajectories: list[Trajectory], backbone: Backbone,
                       cache: EmbeddingCache | None = None, progress: bool = True,
                       shard_trajectories: int = 2048,
                       locations: list[Location] | None = None) -> tuple[list[StepFeatures], dict]:
    """One (num_steps, H) float16 array per trajectory, and a report of the work done.

    With a cache, only trajectories whose content is not cached are run through the model, in
    chunks that are each written as a shard: an interrupted run loses at most one chunk.
    ``locations`` (file, line per trajectory) lets a refused record be named by its line.
    """
    tokens = []
    for i, t in enumerate(trajectories):
        try:
            tokens.append(backbone.tokenize(t.question, t.steps))
        except DataError as e:
            if locations is None:
                raise DataError(f"trajectory {i}: {e.message}", field=e.field) from None
            raise DataError(e.message, path=locations[i][0], line=locations[i][1],
                            field=e.field) from None
    keys = [entry_key(tok) for tok in tokens]
    todo: dict[str, int] = {}  # key -> first trajectory with it (identical contents embed once)
    for i, key in enumerate(keys):
        if (cache is None or key not in cache) and key not in todo:
            todo[key] = i
    stats = EmbedStats()
    memo: dict = {}  # rows shared across chunks (common prefixes, repeated steps) run once
    computed: dict[str, np.ndarray] = {}
    todo_items = list(todo.items())
    started = time.perf_counter()
    bar = tqdm(total=sum(tokens[i].num_steps for _, i in todo_items), unit="step",
               desc="embed", disable=not progress or not todo_items, leave=False)
    shown = [0]  # steps of the current chunk already on the bar

    def show(steps: int, chunk_stats: EmbedStats) -> None:
        shown[0] += steps
        bar.update(steps)
        tokens_done = stats.real_tokens + chunk_stats.real_tokens
        bar.set_postfix(tok_per_s=f"{tokens_done / (time.perf_counter() - started):.0f}")

    for chunk_start in range(0, len(todo_items), shard_trajectories):
        chunk = todo_items[chunk_start:chunk_start + shard_trajectories]
        jobs = []
        for _, i in chunk:
            traj_jobs, truncated = backbone.jobs(i, tokens[i])
            jobs.extend(traj_jobs)
            stats.truncated_steps += truncated
        shown[0] = 0
        pooled, batch_stats = backbone.forward(jobs, memo, on_batch=show)
        stats.add(batch_stats)
        per_traj = {i: np.zeros((tokens[i].num_steps, backbone.hidden_size), np.float32)
                    for _, i in chunk}
        for job, vectors in zip(jobs, pooled):
            for (step, _, _), vector in zip(job.spans, vectors):
                per_traj[job.traj][step] = vector
        items = [(key, to_fp16(per_traj[i])) for key, i in chunk]
        if cache is not None:
            cache.put(items)
        else:
            computed.update(items)
        # rows shared with earlier ones never ran: count their steps as done now
        bar.update(sum(tokens[i].num_steps for _, i in chunk) - shown[0])
    bar.close()
    features = [cache.get(k) if cache is not None else computed[k] for k in keys]
    elapsed = time.perf_counter() - started
    report = {"trajectories": len(trajectories), "steps": sum(len(t.steps) for t in trajectories),
              "cached": sum(1 for k in keys if k not in todo),
              "computed": len(todo), "seconds": round(elapsed, 3),
              "tokens_per_s": round(stats.real_tokens / elapsed, 1) if stats.real_tokens else 0.0,
              **asdict(stats)}
    return features, report


def describe(report: dict) -> str:
    """One line for people: what was reused and what was computed."""
    if report["forward_batches"] == 0:
        return (f"embeddings: all {report['trajectories']} trajectories from the cache "
                "(no forward pass)")
    line = (f"embeddings: {report['cached']} cached, {report['computed']} computed in "
            f"{report['forward_batches']} forward batches ({report['tokens_per_s']:.0f} tokens/s)")
    if report["truncated_steps"]:
        line += f"; {report['truncated_steps']} steps had their context cut from the left"
    return line
