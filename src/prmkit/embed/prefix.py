"""Shared prefixes encoded once: a prefix tree over step-token sequences, run level by level with
each node continuing from its ancestors' key/value states.

Candidates for one question (a pool, a best-of-N set, a scoring file with repeated questions)
share the question and often their first steps. ``PrefixTree.build`` cuts every sequence at its
piece boundaries (the question, then each step, as the step-end contract tokenizes them), merges
equal prefixes into one path, and joins chains without a branch into one node. ``run_tree`` then
runs the backbone once per node: level 0 (the roots) from scratch, every deeper level as a batch
of continuations whose pasts are their ancestors' key/value states.

A batch of continuations has pasts of different lengths. The pasts are copied side by side into
one (B, heads, P_max + L, head_dim) buffer per layer, right-padded with zeros, with room for the
new tokens after them: the forward pass writes each layer's new keys and values there in place
(``_presized_layer``; transformers' ``DynamicLayer`` would concatenate, copying the past again
at every layer). The 2-D attention mask covers the past's padding and the new tokens' padding,
and ``position_ids`` are given per row (``node.start + arange``), since the model's default
positions assume one shared past length. Each batch gets fresh buffers, and each node's own
key/value states are copied out of them afterwards.

For a causal model, a token's state depends only on the tokens before it, so every step vector
equals the one a separate single pass over the whole candidate gives (float rounding aside; the
tests hold them within 1e-5 relative in float32). The tree is a pure function of the sequences:
the same input always gives the same nodes, batches and bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from prmkit.embed.rows import pad, plan_batches

Span = tuple[int, int, int]  # (node, local start, local end), end exclusive


@dataclass
class Node:
    """A run of tokens shared by every sequence through it.

    ``start`` is the absolute position of its first token (its ancestors' tokens come before);
    ``spans`` are the steps that end in this node, in local coordinates.
    """

    parent: int  # -1 for a root
    ids: list[int]
    start: int
    depth: int
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class PrefixTree:
    """``nodes`` in creation order (parents first); ``steps[i][t]`` is ``(node, span index)`` of
    step ``t`` of sequence ``i``."""

    nodes: list[Node]
    steps: list[list[tuple[int, int]]]

    @classmethod
    def build(cls, sequences: Sequence[tuple[Sequence[int], Sequence[int]]]) -> "PrefixTree":
        """``sequences``: (ids, piece ends) pairs; the first piece is the question (with any
        leading special tokens), each later piece one step."""
        # 1. A trie with one node per distinct prefix ending at a piece boundary.
        index: dict[tuple[int, tuple[int, ...]], int] = {}
        parent_of: list[int] = []
        pieces: list[tuple[int, ...]] = []
        end_of: list[int] = []  # absolute end position of each trie node
        children = []
        paths = []
        for ids, ends in sequences:
            parent, start, path = -1, 0, []
            for end in ends:
                key = (parent, tuple(ids[start:end]))
                node = index.get(key)
                if node is None:
                    node = index[key] = len(pieces)
                    parent_of.append(parent)
                    pieces.append(key[1])
                    end_of.append(end)
                    children.append(0)
                    if parent >= 0:
                        children[parent] += 1
                path.append(node)
                parent, start = node, end
            paths.append(path)
        # 2. Chains without a branch become one node: a trie node joins its parent's node when it
        #    is the parent's only child. Parents precede children, so one pass suffices.
        nodes: list[Node] = []
        place: list[tuple[int, int]] = []  # trie node -> (tree node, local start)
        for u, piece in enumerate(pieces):
            p = parent_of[u]
            if p >= 0 and children[p] == 1:
                node = place[p][0]
                place.append((node, len(nodes[node].ids)))
                nodes[node].ids.extend(piece)
            else:
                up = place[p][0] if p >= 0 else -1
                nodes.append(Node(parent=up, ids=list(piece), start=end_of[u] - len(piece),
                                  depth=nodes[up].depth + 1 if p >= 0 else 0))
                place.append((len(nodes) - 1, 0))
        span_of: dict[int, tuple[int, int]] = {}
        for u, piece in enumerate(pieces):
            if parent_of[u] >= 0:  # every piece after the question is a step
                node, local = place[u]
                span_of[u] = (node, len(nodes[node].spans))
                nodes[node].spans.append((local, local + len(piece)))
        return cls(nodes, [[span_of[u] for u in path[1:]] for path in paths])

    @property
    def levels(self) -> list[list[int]]:
        """Node indices by depth: every node's parent is in an earlier level."""
        out: list[list[int]] = []
        for i, node in enumerate(self.nodes):
            while len(out) <= node.depth:
                out.append([])
            out[node.depth].append(i)
        return out

    @property
    def forward_tokens(self) -> int:
        return sum(len(node.ids) for node in self.nodes)


@dataclass(eq=False)
class Past:
    """What a run of tokens leaves for its continuations: its own key/value states, the final
    state at its last token (surprise at a continuation's first token), the sum of read states up
    to its end ("prefix" pooling), and its parent. A chain of them is the key/value state of a
    whole prefix; a beam that holds one keeps its ancestors alive, and dropping it frees them."""

    parent: "Past | None"
    start: int  # absolute position of its first token
    kv: torch.Tensor  # (layers run, 2, kv heads, length, head dim)
    last_final: torch.Tensor | None  # (H,)
    path_sum: np.ndarray | None  # (H_read,) float64

    @property
    def end(self) -> int:
        return self.start + self.kv.shape[3]

    def chain(self) -> list["Past"]:
        """Root first, itself last."""
        out, past = [], self
        while past is not None:
            out.append(past)
            past = past.parent
        return out[::-1]


@dataclass
class Continuation:
    """Tokens to run after ``parent`` (None: from scratch), with step spans in local
    coordinates."""

    parent: Past | None
    ids: list[int]
    spans: list[tuple[int, int]]

    @property
    def start(self) -> int:
        return self.parent.end if self.parent is not None else 0


def run_tree(backbone, tree: PrefixTree, stats, on_batch: Callable | None = None
             ) -> list[np.ndarray]:
    """Every node's step vectors, ``out[node]`` of shape (len(node.spans), H) float32.

    ``backbone`` provides ``run`` (the forward pass, stopped at the deepest layer it needs),
    ``token_logprobs`` and ``step_vectors`` (pooling and surprise).
    ``stats`` (an ``EmbedStats``) counts the work; ``on_batch(steps, tokens)`` is called after
    each batch.
    """
    nodes = tree.nodes
    has_children = {node.parent for node in nodes}
    pasts: dict[int, Past] = {}
    out: list[np.ndarray] = [np.zeros((0, backbone.hidden_size), np.float32)] * len(nodes)
    for level in tree.levels:
        for batch in plan_batches([len(nodes[i].ids) for i in level],
                                  backbone.config.batch_tokens):
            rows = [level[j] for j in batch]
            jobs = [Continuation(pasts[nodes[i].parent] if nodes[i].parent >= 0 else None,
                                 nodes[i].ids, nodes[i].spans) for i in rows]
            done = run_continuations(backbone, jobs, stats, keep=[i in has_children for i in rows])
            for i, (vectors, past) in zip(rows, done):
                out[i] = vectors
                if past is not None:
                    pasts[i] = past
            if on_batch is not None:
                on_batch(sum(len(nodes[i].spans) for i in rows),
                         sum(len(nodes[i].ids) for i in rows))
    return out


def run_continuations(backbone, jobs: list[Continuation], stats, keep: list[bool] | None = None
                      ) -> list[tuple[np.ndarray, Past | None]]:
    """One forward batch: each job's step vectors, (len(spans), H) float32, and its ``Past``
    for continuations (None where ``keep`` is False). The jobs' pasts may differ in length."""
    keep = keep if keep is not None else [True] * len(jobs)
    ids, mask = pad([job.ids for job in jobs], backbone.pad_id)  # (B, L)
    starts = torch.tensor([job.start for job in jobs])
    positions = starts[:, None] + torch.arange(ids.shape[1])[None, :]  # (B, L)
    cache, past_mask = _past(jobs, ids.shape[1])
    width = 0
    if past_mask is not None:
        width = past_mask.shape[1]
        mask = torch.cat([past_mask, mask], dim=1)  # (B, P_max + L)
    read, final = backbone.run(ids, mask, positions, cache)
    states, targets, sizes = [], [], []  # surprise: one LM-head call for the batch
    if final is not None:
        for r, job in enumerate(jobs):
            # the state before token j predicts it: the parent's last for j = 0
            before = final[r, :len(job.ids) - 1]
            if job.parent is not None:
                before = torch.cat([job.parent.last_final[None], before])
            else:
                before = torch.cat([before[:1], before])  # j = 0 is never a step's
            for s, e in job.spans:
                states.append(before[s:e])
                targets.append(ids[r, s:e])
                sizes.append(e - s)
    tokens = backbone.token_logprobs(states, targets, sizes) if final is not None else None
    out, k = [], 0
    for r, job in enumerate(jobs):
        n = len(job.ids)
        base = job.parent.path_sum if job.parent is not None and read is not None else None
        row_read = read[r, :n] if read is not None else None
        vectors = backbone.step_vectors(
            row_read, job.spans, base, job.start,
            tokens[k:k + len(job.spans)] if tokens is not None else None)
        k += len(job.spans)
        past = None
        if keep[r]:
            kv = _own_kv(cache, r, width, n)
            path_sum = None
            if read is not None:
                own = row_read.double().sum(0).numpy()
                path_sum = own if base is None else base + own
            past = Past(job.parent, job.start, kv,
                        final[r, n - 1] if final is not None else None, path_sum)
        out.append((vectors, past))
    stats.forward_batches += 1
    stats.rows += len(jobs)
    stats.real_tokens += sum(len(job.ids) for job in jobs)
    stats.padded_tokens += len(jobs) * ids.shape[1]
    return out


def _past(jobs: list[Continuation], new: int):
    """A cache holding each row's ancestors' key/value states side by side, right-padded, with
    room for ``new`` tokens after them, and the (B, P_max) mask of the past's real positions; an
    empty cache and None when no row has a past."""
    from transformers import DynamicCache

    lengths = [job.start for job in jobs]  # a row's past is everything before its start
    width = max(lengths)
    if width == 0:
        return DynamicCache(), None
    sample = next(job.parent.kv for job in jobs if job.parent is not None)
    layers, _, heads, _, dim = sample.shape
    # empty, not zeros: every real position is copied in, the past's padding is zeroed and the
    # new tokens' columns are written by the forward pass (masked keys must still be finite, or
    # their zero weights times NaN values poison the sum)
    buffer = torch.empty(layers, 2, len(jobs), heads, width + new, dim, dtype=sample.dtype,
                         device=sample.device)
    for r, job in enumerate(jobs):
        for a in job.parent.chain() if job.parent is not None else []:
            buffer[:, :, r, :, a.start:a.end] = a.kv
        buffer[:, :, r, :, job.start:width] = 0
    presized = _presized_layer()
    cache = DynamicCache()
    cache.layers = [presized(buffer[k, 0], buffer[k, 1], width) for k in range(layers)]
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return cache, mask


@functools.cache
def _presized_layer():
    """The cache layer class of ``_past`` (defined on first use: transformers loads lazily)."""
    from transformers.cache_utils import DynamicLayer

    class Presized(DynamicLayer):
        """One layer's keys and values in buffers sized for the past and the new tokens,
        (B, kv heads, P + L, d), holding the past: ``update`` writes the new states after it in
        place and returns the buffers up to them."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
            super().__init__()
            self.keys, self.values, self.length = keys, values, length
            self.dtype, self.device = keys.dtype, keys.device
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.length + key_states.shape[-2]
            self.keys[:, :, self.length:end] = key_states
            self.values[:, :, self.length:end] = value_states
            self.length = end
            return self.keys[:, :, :end], self.values[:, :, :end]

        def get_seq_length(self) -> int:
            return self.length

    return Presized


def _own_kv(cache, row: int, width: int, n: int) -> torch.Tensor:
    """Row ``row``'s new key/value states, the ``n`` positions after the past's ``width``, copied
    out of the batch's cache once: (layers, 2, kv heads, n, head dim)."""
    first = cache.layers[0].keys
    kv = torch.empty(len(cache.layers), 2, first.shape[1], n, first.shape[3], dtype=first.dtype,
                     device=first.device)
    for k, layer in enumerate(cache.layers):
        kv[k, 0] = layer.keys[row, :, width:width + n]
        kv[k, 1] = layer.values[row, :, width:width + n]
    return kv
