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
