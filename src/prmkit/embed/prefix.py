"""Shared prefixes encoded once: a prefix tree over step-token sequences, run level by level with
each node continuing from its ancestors' key/value states.

Candidates for one question (a pool, a best-of-N set, a scoring file with repeated questions)
share the question and often their first steps. ``PrefixTree.build`` cuts every sequence at its
piece boundaries (the question, then each step, as the step-end contract tokenizes them), merges
equal prefixes into one path, and joins chains without a branch into one node. ``run_tree`` then
runs the backbone once per node: level 0 (the roots) from scratch, every deeper level as a batch
of continuations whose pasts are their ancestors' key/value states.

A batch of continuations has pasts of different lengths. The pasts are copied side by side into
one (B, heads, P_max, head_dim) cache per layer, right-padded with zeros; the 2-D attention mask
covers the past's padding and the new tokens' padding, and ``position_ids`` are given per row
(``node.start + arange``), since the model's default positions assume one shared past length.
A forward pass mutates the cache it is given in place, so each batch gets a fresh one and each
node's own key/value states are copied out of it afterwards.

For a causal model, a token's state depends only on the tokens before it, so every step vector
equals the one a separate single pass over the whole candidate gives (float rounding aside; the
tests hold them within 1e-5 relative in float32). The tree is a pure function of the sequences:
the same input always gives the same nodes, batches and bytes.
"""

from __future__ import annotations

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


def ancestors(nodes: list[Node], i: int) -> list[int]:
    """Root first, ``i``'s parent last."""
    out = []
    p = nodes[i].parent
    while p >= 0:
        out.append(p)
        p = nodes[p].parent
    return out[::-1]


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
    kv: dict[int, torch.Tensor] = {}  # node -> (layers, 2, kv heads, len, head dim)
    last_final: dict[int, torch.Tensor] = {}  # node -> (H,) final state at its last token
    path_sum: dict[int, np.ndarray] = {}  # node -> (H_read,) float64 sum of states to its end
    out: list[np.ndarray] = [np.zeros((0, backbone.hidden_size), np.float32)] * len(nodes)
    for level in tree.levels:
        for batch in plan_batches([len(nodes[i].ids) for i in level],
                                  backbone.config.batch_tokens):
            rows = [level[j] for j in batch]
            ids, mask = pad([nodes[i].ids for i in rows], backbone.pad_id)  # (B, L)
            starts = torch.tensor([nodes[i].start for i in rows])
            positions = starts[:, None] + torch.arange(ids.shape[1])[None, :]  # (B, L)
            cache, past_mask = _past(nodes, rows, kv)
            width = 0
            if past_mask is not None:
                width = past_mask.shape[1]
                mask = torch.cat([past_mask, mask], dim=1)  # (B, P_max + L)
            read, final = backbone.run(ids, mask, positions, cache)
            states, targets, sizes = [], [], []  # surprise: one LM-head call for the batch
            for r, i in enumerate(rows):
                node, n = nodes[i], len(nodes[i].ids)
                if i in has_children:
                    kv[i] = torch.stack([torch.stack([layer.keys[r, :, width:width + n],
                                                      layer.values[r, :, width:width + n]])
                                         for layer in cache.layers])
                    if final is not None:
                        last_final[i] = final[r, n - 1]
                if final is not None:
                    # the state before token j predicts it: the parent's last for j = 0
                    before = final[r, :n - 1]
                    if node.parent >= 0:
                        before = torch.cat([last_final[node.parent][None], before])
                    else:
                        before = torch.cat([before[:1], before])  # j = 0 is never a step's
                    for s, e in node.spans:
                        states.append(before[s:e])
                        targets.append(ids[r, s:e])
                        sizes.append(e - s)
            tokens = backbone.token_logprobs(states, targets, sizes) if final is not None else None
            k = 0
            for r, i in enumerate(rows):
                node, n = nodes[i], len(nodes[i].ids)
                base = path_sum.get(node.parent) if read is not None else None
                row_read = read[r, :n] if read is not None else None
                out[i] = backbone.step_vectors(
                    row_read, node.spans, base, node.start,
                    tokens[k:k + len(node.spans)] if tokens is not None else None)
                k += len(node.spans)
                if read is not None and i in has_children:
                    own = row_read.double().sum(0).numpy()
                    path_sum[i] = own if base is None else base + own
            stats.forward_batches += 1
            stats.rows += len(rows)
            real = sum(len(nodes[i].ids) for i in rows)
            stats.real_tokens += real
            stats.padded_tokens += len(rows) * ids.shape[1]
            if on_batch is not None:
                on_batch(sum(len(nodes[i].spans) for i in rows), real)
    return out


def _past(nodes: list[Node], rows: list[int], kv: dict[int, torch.Tensor]):
    """A cache holding each row's ancestors' key/value states side by side, right-padded, and the
    (B, P_max) mask of its real positions; an empty cache and None for roots."""
    from transformers import DynamicCache

    if nodes[rows[0]].parent < 0:  # a level holds roots only, or no root
        return DynamicCache(), None
    lengths = [nodes[i].start for i in rows]  # a node's past is everything before its start
    width = max(lengths)
    sample = kv[nodes[rows[0]].parent]
    layers, _, heads, _, dim = sample.shape
    past = torch.zeros(layers, 2, len(rows), heads, width, dim, dtype=sample.dtype)
    for r, i in enumerate(rows):
        for a in ancestors(nodes, i):
            seg = kv[a]
            past[:, :, r, :, nodes[a].start:nodes[a].start + seg.shape[3]] = seg
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return DynamicCache([(past[k, 0], past[k, 1]) for k in range(layers)]), mask
