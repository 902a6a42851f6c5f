"""Forward-pass rows: how trajectories become padded batches when they do not share prefixes.

A *row* (``Job``) is one input to the model and the step spans read from it:

* per prefix (bidirectional encoders): one row per step, holding the question and the steps up
  to it, so later steps cannot leak into it;
* single pass (causal LMs): one row per solution, every step read at its span;
* steps alone (``context="none"``): one row per step, without the question or earlier steps;
* a context longer than the model allows: the steps that fit in one row, then a left-cut window
  per remaining step.

Identical rows in one call run once. Rows are grouped into batches by ``plan_batches``, a pure
function of their lengths. Causal LMs whose candidates share prefixes go through ``prefix.py``
instead; both paths end in ``Backbone.step_vectors``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from prmkit.embed.tokens import StepTokens
from prmkit.errors import PrmkitError

# What one more forward batch costs, in padded tokens: SmolLM2 in bfloat16 on this project's CPU
# takes about a + b x tokens per batch with a = 300 b (a bfloat16 matrix product of 256 rows
# runs at 2/3 the speed of one of 1,024).
BATCH_OVERHEAD_TOKENS = 256


@dataclass
class Job:
    """One forward-pass row: input ids and the step spans to read from it."""

    traj: int  # which trajectory of the call
    input_ids: list[int]
    spans: list[tuple[int, int, int]]  # (step index, start, end) in input_ids, end exclusive


@dataclass
class EmbedStats:
    forward_batches: int = 0
    rows: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    truncated_steps: int = 0
    shared_rows: int = 0  # rows identical to another row of the same call, computed once
    input_tokens: int = 0  # tokens of the trajectories embedded, as if each ran alone

    def add(self, other: "EmbedStats") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def plan_rows(backbone, traj: int, tokens: StepTokens) -> tuple[list[Job], int]:
    """Forward-pass rows for one trajectory, and how many of its steps were truncated."""
    pre, suf = backbone.prefix_ids, backbone.suffix_ids
    room = backbone.max_length - len(pre) - len(suf)
    ids, starts, ends = tokens.ids, tokens.starts, tokens.ends
    if backbone.config.context == "none":
        too_long = sum(e - s > room for s, e in zip(starts, ends))
        if too_long and backbone.config.truncation == "error":
            raise PrmkitError(f"{too_long} steps are longer than the backbone allows "
                              f"({backbone.max_length} tokens)")
        return [_alone(traj, t, ids[s:e], pre, suf, room)
                for t, (s, e) in enumerate(zip(starts, ends))], too_long
    if backbone.single_pass and ends[-1] <= room:
        spans = [(t, len(pre) + s, len(pre) + e) for t, (s, e) in enumerate(zip(starts, ends))]
        return [Job(traj, pre + list(ids), spans)], 0
    jobs, truncated = [], 0
    first = 0
    if backbone.single_pass:  # the steps that fit share one pass; the rest get a window each
        fit = [t for t, e in enumerate(ends) if e <= room]
        if fit:
            last_fit = fit[-1]
            spans = [(t, len(pre) + starts[t], len(pre) + ends[t]) for t in fit]
            jobs.append(Job(traj, pre + list(ids[:ends[last_fit]]), spans))
            first = last_fit + 1
    for t in range(first, tokens.num_steps):
        offset = max(0, ends[t] - room)
        if offset:
            if backbone.config.truncation == "error":
                raise PrmkitError(f"step {t} needs {ends[t] + len(pre) + len(suf)} tokens of "
                                  f"context; the backbone allows {backbone.max_length}")
            truncated += 1
        start = max(starts[t] - offset, 0)
        jobs.append(Job(traj, pre + list(ids[offset:ends[t]]) + suf,
                        [(t, len(pre) + start, len(pre) + ends[t] - offset)]))
    return jobs, truncated

def _alone(traj: int, step: int, step_ids, pre, suf, room: int) -> Job:
    step_ids = list(step_ids[-room:])
    return Job(traj, pre + step_ids + suf, [(step, len(pre), len(pre) + len(step_ids))])

def run_rows(backbone, jobs: list[Job],
             on_batch=None) -> tuple[list[np.ndarray], EmbedStats]:
    """Run jobs in length-sorted, token-budgeted batches; return each job's (n_spans, H).

    Identical rows (steps shared by solutions, embedded alone) run once. ``on_batch(steps,
    tokens)``, if given, is called after each batch with its steps and real tokens (for
    progress bars).
    """
    stats = EmbedStats()
    unique: dict[tuple, int] = {}
    rows: list[Job] = []
    job_row: list[int] = []
    for job in jobs:
        key = (tuple(job.input_ids), tuple((s, e) for _, s, e in job.spans))
        if key not in unique:
            unique[key] = len(rows)
            rows.append(job)
        job_row.append(unique[key])
    stats.shared_rows += len(jobs) - len(rows)
    results: list[np.ndarray | None] = [None] * len(rows)
    for batch in plan_batches([len(r.input_ids) for r in rows], backbone.config.batch_tokens):
        for j, pooled in zip(batch, _run_batch(backbone, [rows[j] for j in batch], stats)):
            results[j] = pooled
        if on_batch is not None:
            on_batch(sum(len(rows[j].spans) for j in batch),
                     sum(len(rows[j].input_ids) for j in batch))
    return [results[j] for j in job_row], stats


def plan_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Group rows (by index) into batches of rows sorted by length, each batch's padded size
    (rows x longest) within ``batch_tokens``, minimizing padded tokens plus
    ``BATCH_OVERHEAD_TOKENS`` per batch (an exact dynamic programme over the sorted rows).

    On a CPU a forward pass costs about a fixed amount plus a share per padded token, and a
    matrix product of a few hundred rows runs at a fraction of the speed of a thousand: many
    small batches of well-matched rows are slower than fewer, slightly padded ones.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sizes = np.array([lengths[i] for i in order], dtype=np.int64)
    n = len(order)
    cost = np.zeros(n + 1)
    start = np.zeros(n + 1, dtype=np.int64)  # the best last batch ending at j starts here
    for j in range(1, n + 1):
        longest = int(sizes[j - 1])
        width = max(1, min(j, batch_tokens // longest))
        first = np.arange(j - width, j)
        options = cost[j - width:j] + BATCH_OVERHEAD_TOKENS + (j - first) * longest
        k = int(np.argmin(options))  # the first of equal options: deterministic
        cost[j], start[j] = options[k], first[k]
    batches = []
    j = n
    while j > 0:
        batches.append(order[start[j]:j])
        j = int(start[j])
    return batches[::-1]

def pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, L) and the attention mask (B, L), built from lengths: some
    tokenizers pad with EOS, so ``ids != pad_id`` would mask real tokens."""
    lengths = torch.tensor([len(r) for r in rows])
    width = int(lengths.max())
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids, (torch.arange(width)[None, :] < lengths[:, None]).long()


def _run_batch(backbone, jobs: list[Job], stats: EmbedStats) -> list[np.ndarray]:
    ids, attention_mask = pad([j.input_ids for j in jobs], backbone.pad_id)  # (B, L)
    read, final = backbone.run(ids, attention_mask)
    stats.forward_batches += 1
    stats.rows += len(jobs)
    stats.real_tokens += int(attention_mask.sum())
    stats.padded_tokens += len(jobs) * ids.shape[1]
    tokens = None
    if final is not None:
        # token p is predicted by the state at p - 1; a window's first token has none
        states, targets, sizes = [], [], []
        for row, job in enumerate(jobs):
            for _, s, e in job.spans:
                s = max(s, 1)
                states.append(final[row, s - 1:e - 1])
                targets.append(ids[row, s:e])
                sizes.append(e - s)
        tokens = backbone.token_logprobs(states, targets, sizes)
    out, k = [], 0
    for row, job in enumerate(jobs):
        spans = [(s, e) for _, s, e in job.spans]
        out.append(backbone.step_vectors(read[row] if read is not None else None, spans,
                                     tokens=tokens[k:k + len(spans)] if tokens else None))
        k += len(spans)
    return out
