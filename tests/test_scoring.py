import numpy as np
import pytest
import torch

from prmkit.baselines import length_features
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.scoring import HeadScorer, Scorer, aggregate_all, score, score_features


def test_a_head_over_any_features_is_a_scorer():
    torch.manual_seed(0)
    head = PRMHead(PRMConfig(input_dim=2, hidden_size=8, num_layers=1, num_heads=2))
    scorer = HeadScorer(head, length_features)
    assert isinstance(scorer, Scorer) and scorer.threshold is None
    data = [Trajectory("q", ["a short step.", "a much longer step than the first one."]),
            Trajectory("q", ["x"])]
    probs = scorer.score_batch(data)
    assert [len(p) for p in probs] == [2, 1]
    assert probs == score_features(head, length_features(data))
    assert score(scorer, "q", ["x"]) == probs[1]


def test_aggregate_all_by_hand():
    scores = aggregate_all([[0.5, 0.8], [0.9]], ("product", "min", "last"))
    assert scores["product"] == pytest.approx([0.4, 0.9])
    assert scores["min"] == [0.5, 0.9] and scores["last"] == pytest.approx([0.8, 0.9])


def test_precomputed_features_are_served_by_identity():
    from prmkit.scoring import precomputed

    a, b = Trajectory("q", ["x"]), Trajectory("q", ["x"])  # equal text, different objects
    featurize = precomputed([a], [np.ones((1, 2), np.float32)])
    assert featurize([a])[0].tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="without precomputed features"):
        featurize([b])


def _logits(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize("pooling", ["step", "prefix"])
def test_incremental_scores_equal_scores_from_scratch(tmp_path, minilm, pooling):
    from dataclasses import replace

    from prmkit.embed import Backbone, EmbedConfig
    from prmkit.scoring import PRM, begin, extend
    from conftest import tiny_causal_lm

    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    config = EmbedConfig(backbone=str(folder), pooling=pooling, features="both", layer=(1, -1))
    backbone = Backbone(config)
    torch.manual_seed(0)
    head = PRMHead(PRMConfig(input_dim=backbone.hidden_size, hidden_size=16, num_layers=2,
                             num_heads=2, dropout=0.0))
    prm = PRM(head, backbone)
    q = "A shop sells 3 boxes of 12 pens. How many pens?"
    root = begin(prm, q)
    # a beam expanded three ways (two expansions equal), then two of them expanded again
    first = extend(prm, [root] * 3, ["3 * 12 = 36.", "3 * 12 = 38.", "3 * 12 = 36."])
    second = extend(prm, [first[0], first[1], first[1]],
                    ["The answer is 36.", "The answer is 38.", "So 38 pens in all."])
    third = extend(prm, [second[2]], ["The answer is 38."])
    alone = Backbone(replace(config, share_prefixes=False))
    alone._model = backbone.model
    fresh = PRM(head, alone)
    partials = first + second + third
    expected = fresh.score_batch([Trajectory(q, list(p.steps)) for p in partials])
    scale = max(np.abs(_logits(e)).max() for e in expected)
    for p, e in zip(partials, expected):
        assert len(p.probs) == len(p.steps) == len(e)
        assert np.abs(_logits(p.probs) - _logits(e)).max() <= 1e-5 * scale
    # the question ran once and every step only its own tokens
    step_tokens = sum(len(backbone.tokenize(q, [s]).ids) - len(backbone.tokenize(q, []).ids)
                      for p in partials for s in p.steps[-1:])
    question_tokens = len(backbone.prefix_ids) + len(backbone.tokenize(q, []).ids)
    assert prm.incremental_stats.real_tokens == question_tokens + step_tokens


def test_a_scorer_without_state_rescores_whole_prefixes():
    from prmkit.scoring import begin, extend

    torch.manual_seed(0)
    scorer = HeadScorer(PRMHead(PRMConfig(input_dim=2, hidden_size=8, num_layers=1,
                                          num_heads=2)), length_features)
    one = extend(scorer, [begin(scorer, "q")], ["a short step."])[0]
    two = extend(scorer, [one], ["a much longer step than the first one."])[0]
    assert two.steps == ("a short step.", "a much longer step than the first one.")
    assert list(two.probs) == scorer.score_batch([Trajectory("q", list(two.steps))])[0]
