import numpy as np
import pytest

from prmkit.embed import Backbone, EmbedConfig
from prmkit.embed.prefix import PrefixTree
from prmkit.records import Trajectory

from conftest import tiny_causal_lm

Q = "A shop sells 3 boxes of 12 pens. How many pens?"
S1, S2 = "3 boxes of 12 pens is 3 * 12 = 36 pens.", "The answer is 36."
# One question's candidates: a branch mid-solution (B), a branch at step 0 (C), a duplicate (D),
# a candidate that is a prefix of another (E), and a second question with one candidate.
CANDIDATES = [
    Trajectory(Q, [S1, S2]),
    Trajectory(Q, [S1, "So there are 36 pens.", S2]),
    Trajectory(Q, ["3 * 12 = 38.", "The answer is 38."]),
    Trajectory(Q, [S1, S2]),
    Trajectory(Q, [S1]),
    Trajectory("What is 7 * 6?", ["7 * 6 = 42.", "The answer is 42."]),
]


def test_tree_shares_prefixes_and_joins_chains_by_hand():
    # ids: question [1, 2]; candidates [1 2 | 3 4 | 5 6], [1 2 | 3 4 | 7], [1 2 | 8], a duplicate
    tree = PrefixTree.build([([1, 2, 3, 4, 5, 6], [2, 4, 6]), ([1, 2, 3, 4, 7], [2, 4, 5]),
                             ([1, 2, 8], [2, 3]), ([1, 2, 3, 4, 5, 6], [2, 4, 6])])
    assert [(n.parent, n.ids, n.start, n.depth, n.spans) for n in tree.nodes] == [
        (-1, [1, 2], 0, 0, []),          # the question, shared by all
        (0, [3, 4], 2, 1, [(0, 2)]),     # the first step shared by three candidates
        (1, [5, 6], 4, 2, [(0, 2)]),
        (1, [7], 4, 2, [(0, 1)]),
        (0, [8], 2, 1, [(0, 1)]),        # a branch at step 0
    ]
    assert tree.steps == [[(1, 0), (2, 0)], [(1, 0), (3, 0)], [(4, 0)], [(1, 0), (2, 0)]]
    assert tree.levels == [[0], [1, 4], [2, 3]]
    assert tree.forward_tokens == 8  # of 6 + 5 + 3 + 6 = 20 tokens in the four sequences


def test_a_chain_without_branches_is_one_node():
    # two steps and no sibling: one row, as a plain single pass would run it
    tree = PrefixTree.build([([1, 2, 3, 4, 5], [1, 3, 5])])
    assert [(n.ids, n.spans) for n in tree.nodes] == [([1, 2, 3, 4, 5], [(1, 3), (3, 5)])]


def per_candidate(backbone: Backbone, trajectories: list[Trajectory]) -> list[np.ndarray]:
    """Each candidate alone, in its own single pass (no sharing, no batching)."""
    return [backbone.embed([backbone.tokenize(t.question, t.steps)])[0][0] for t in trajectories]


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("pooling", ["step", "last", "prefix"])
def test_shared_prefixes_equal_separate_single_passes(tmp_path, minilm, model_type, pooling):
    folder = tiny_causal_lm(model_type, tmp_path / model_type, minilm.path)
    config = EmbedConfig(backbone=str(folder), pooling=pooling, features="both", layer=(1, -1))
    shared = Backbone(config)
    alone = Backbone(EmbedConfig(**{**config.__dict__, "share_prefixes": False}))
    alone._model = shared.model  # one copy of the weights
    assert shared.shares_prefixes and not alone.shares_prefixes
    tokens = [shared.tokenize(t.question, t.steps) for t in CANDIDATES]
    got, stats = shared.embed(tokens)
    assert stats.real_tokens < stats.input_tokens  # the question and S1 ran once
    for x, y in zip(got, per_candidate(alone, CANDIDATES)):
        assert x.shape == y.shape == (len(y), 2 * 32 + 14)
        assert np.linalg.norm(x - y) <= 1e-5 * np.linalg.norm(y)


def test_sharing_is_off_where_it_cannot_apply(minilm, tmp_path):
    assert not minilm.shares_prefixes  # bidirectional: per prefix
    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    assert not Backbone(EmbedConfig(backbone=str(folder), context="none")).shares_prefixes
    assert not Backbone(EmbedConfig(backbone=str(folder), layer=0,
                                    features="hidden")).shares_prefixes
    assert Backbone(EmbedConfig(backbone=str(folder))).shares_prefixes


def test_a_continuation_writes_its_keys_after_the_past_in_place(tmp_path, minilm):
    import torch
    from transformers import DynamicCache

    from prmkit.embed.prefix import Continuation, _past, run_continuations
    from prmkit.embed.rows import EmbedStats

    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    backbone = Backbone(EmbedConfig(backbone=str(folder), features="both"))
    [(_, root)] = run_continuations(backbone, [Continuation(None, [5, 6, 7], [(1, 3)])],
                                    EmbedStats())
    cache, past_mask = _past([Continuation(root, [8, 9], [(0, 2)])], new=2)
    buffers = [layer.keys.data_ptr() for layer in cache.layers]
    assert [layer.keys.shape[2] for layer in cache.layers] == [3 + 2] * len(buffers)
    mask = torch.cat([past_mask, torch.ones(1, 2, dtype=torch.long)], dim=1)  # (1, 3 + 2)
    backbone.run(torch.tensor([[8, 9]]), mask, torch.tensor([[3, 4]]), cache)
    # the new keys went into the buffers that hold the past: no copy of the past per layer
    assert [layer.keys.data_ptr() for layer in cache.layers] == buffers
    whole = DynamicCache()
    backbone.run(torch.tensor([[5, 6, 7, 8, 9]]), torch.ones(1, 5, dtype=torch.long), None, whole)
    for mine, theirs in zip(cache.layers, whole.layers):
        for a, b in ((mine.keys, theirs.keys), (mine.values, theirs.values)):
            assert a.shape == b.shape
            assert torch.linalg.norm(a - b) <= 1e-5 * torch.linalg.norm(b)
