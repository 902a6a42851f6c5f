"""Embed trajectories through a backbone, reading and filling the cache."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from prmkit import distributed
from prmkit.embed.backbone import Backbone
from prmkit.embed.rows import EmbedStats
from prmkit.embed.cache import EmbeddingCache, entry_key, to_fp16
from prmkit.embed.tokens import StepTokens
from prmkit.errors import DataError, PrmkitError
from prmkit.records import Location, Trajectory

StepFeatures = np.ndarray  # (num_steps, H) float16


def embed_trajectories(trajectories: list[Trajectory], backbone: Backbone,
                       cache: EmbeddingCache | None = None, progress: bool = True,
                       shard_trajectories: int = 2048,
                       locations: list[Location] | None = None) -> tuple[list[StepFeatures], dict]:
    """One (num_steps, H) float16 array per trajectory, and a report of the work done.

    The distinct trajectories are grouped by question and cut into shards of
    ``shard_trajectories`` (``plan_shards``); a shard whose entries are all cached is skipped,
    and every other shard is computed whole and written to the cache as one file. The plan
    depends on the input alone, never on what the cache holds, so an interrupted run started
    again skips the shards already written and computes the others exactly as an uninterrupted
    run would, to the bit. ``locations`` (file, line per trajectory) lets a refused record be
    named by its line.

    Under torchrun with K processes (after ``distributed.init()``, which the CLI and
    ``workflows`` call) every rank calls this with the same input. Rank 0's look at the cache
    decides which shards are missing; rank r computes the missing shards r, r + K, ... and
    writes them to the cache (``put`` publishes under the folder's lock, so writers never
    collide); after a barrier every rank reads every trajectory's vectors from the cache.
    Without a cache the computed vectors are gathered to every rank instead. Each shard is
    computed whole by one process, as one process would compute it, so the features are the
    same bytes as a single-process run's (at the same torch thread count); every rank returns
    them all, and the report counts the work of all ranks (forward batches, tokens;
    tokens_per_s is their sum over this rank's wall time).
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

    def missing() -> list[list[int]]:
        have = cache.available(keys) if cache is not None else set()  # checked: never corrupt
        return [shard for shard in plan_shards(tokens, keys, shard_trajectories)
                if any(keys[i] not in have for i in shard)]

    # One list for every rank, taken before any rank writes: each shard has exactly one owner.
    shards = distributed.broadcast_object(missing() if distributed.is_main() else None)
    rank, world = distributed.rank(), distributed.world_size()
    mine = shards[rank::world]
    stats = EmbedStats()
    computed: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    bar = tqdm(total=sum(tokens[i].num_steps for shard in mine for i in shard), unit="step",
               desc="embed", disable=not progress or not mine or not distributed.is_main(),
               leave=False)
    shown = [0, 0]  # steps of the current shard on the bar; tokens run so far

    def show(steps: int, batch_tokens: int) -> None:
        shown[0] += steps
        shown[1] += batch_tokens
        bar.update(steps)
        bar.set_postfix(tok_per_s=f"{shown[1] / (time.perf_counter() - started):.0f}")

    for shard in mine:
        shown[0] = 0
        vectors, shard_stats = backbone.embed([tokens[i] for i in shard], on_batch=show)
        stats.add(shard_stats)
        items = [(keys[i], to_fp16(v)) for i, v in zip(shard, vectors)]  # refuses NaN and inf
        if cache is not None:
            cache.put(items)
        else:
            computed.update(items)
        # steps shared with other candidates were computed once: count them as done now
        bar.update(sum(tokens[i].num_steps for i in shard) - shown[0])
    bar.close()
    if world > 1:
        if cache is not None:
            distributed.barrier()  # every rank's shards are published
            cache.refresh()
            # checks the other ranks' shards now, and re-points keys whose old entry rank 0
            # found corrupt (and removed) at the shard that recomputed them
            unseen = len(set(keys) - cache.available(keys))
            if unseen:
                raise PrmkitError(
                    f"{unseen} trajectories' vectors, written by other processes, are not in "
                    f"{cache.dir}: under torchrun every process must see the same cache folder "
                    "(on several machines, a shared filesystem), or embed without the cache "
                    "(--no-cache)")
        else:
            for part in distributed.all_gather_object(computed):
                computed.update(part)
        parts, stats = distributed.all_gather_object(stats), EmbedStats()
        for part in parts:
            stats.add(part)
    features = [cache.get(k) if cache is not None else computed[k] for k in keys]
    elapsed = time.perf_counter() - started
    done = {keys[i] for shard in shards for i in shard}
    report = {"trajectories": len(trajectories), "steps": sum(len(t.steps) for t in trajectories),
              "cached": sum(1 for k in keys if k not in done),
              "computed": len(done), "shards": len(shards), "seconds": round(elapsed, 3),
              "tokens_per_s": round(stats.real_tokens / elapsed, 1) if stats.real_tokens else 0.0,
              **asdict(stats)}
    return features, report


def plan_shards(tokens: list[StepTokens], keys: list[str], size: int) -> list[list[int]]:
    """The distinct trajectories (the first of each key), grouped by question in order of first
    appearance and cut into runs of ``size``: the candidates of one question share a shard (and
    so their prefixes) unless the group is larger than a shard. A pure function of the input."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in first.values():
        groups.setdefault(tokens[i].ids[:tokens[i].question_len], []).append(i)
    order = [i for group in groups.values() for i in group]
    return [order[s:s + size] for s in range(0, len(order), size)]


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
