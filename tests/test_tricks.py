"""The training tricks: their maths by hand, and each one changing what is learned."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from prmkit.batch import collate
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.train import TrainConfig, train
from prmkit.train.tricks import (curriculum_indices, hard_negative_weights, length_bins,
                                 step_weights, truncate_prefixes)

from conftest import make_rows
from test_train import HEAD, synthetic_features


def test_prefix_truncation_is_a_no_op_for_a_causal_head_and_not_for_a_bidirectional_one():
    torch.manual_seed(0)
    features = [np.random.default_rng(i).normal(size=(6, 4)).astype(np.float32)
                for i in range(3)]
    labels = [[1, 1, 0, None, None, None]] * 3
    batch = collate(features, labels, [0, 1, 2])
    cut = truncate_prefixes(batch, torch.Generator().manual_seed(3))
    kept = cut["step_mask"].sum(dim=1)
    assert (kept >= 1).all() and (kept <= 6).all() and (kept < 6).any()
    assert not (cut["label_mask"] & ~cut["step_mask"]).any()
    for causal, same in ((True, True), (False, False)):
        head = PRMHead(PRMConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2,
                                 causal=causal, dropout=0.0)).eval()
        with torch.no_grad():
            full = head(batch["features"], batch["step_mask"])
            prefix = head(cut["features"], cut["step_mask"])
        inside = cut["step_mask"]
        # a causal head scores every kept step exactly as in the whole solution
        assert torch.allclose(full[inside], prefix[inside], atol=1e-6) == same


def test_curriculum_follows_the_data_length_quantiles():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]  # sorted: 1 1 2 3 3 4 5 5 6 9; median (lower) 3
    assert curriculum_indices(lengths, 0, 6) == [0, 1, 3, 6, 9]  # lengths <= 3
    # epoch 1 of a 3-epoch ramp: quantile 0.5 + 0.5/3 = 2/3 -> lower value 5
    assert curriculum_indices(lengths, 1, 6) == [0, 1, 2, 3, 4, 6, 8, 9]
    assert curriculum_indices(lengths, 3, 6) == list(range(10))


def test_step_weights_and_hard_negatives_by_hand():
    labels = [[1, 0, None], [1, 1]]
    chars = [[10, 10, 50], [50, 10]]
    # balance: labelled 1, 0, 1, 1 -> right 4 / (2 * 3) = 2/3, wrong 4 / 2 = 2, unlabelled 0
    w = step_weights(labels, chars, balance=True, length_balance=False)
    assert np.allclose(w[0], [2 / 3, 2, 0]) and np.allclose(w[1], [2 / 3, 2 / 3])
    # hard negatives: |label - p| > 0.5 is a mistake made with confidence: step (0, 1) labelled
    # 0 predicted 0.9, and step (1, 0) labelled 1 predicted 0.4, weigh x2; the unlabelled
    # step (0, 2) stays 0
    mined = hard_negative_weights([np.array([0.8, 0.9, 0.1]), np.array([0.4, 0.7])], labels,
                                  w, 2.0)
    assert np.allclose(mined[0], [2 / 3, 4, 0]) and np.allclose(mined[1], [4 / 3, 2 / 3])
    assert length_bins(np.array([1.0, 2, 3, 4, 5]), bins=5).tolist() == [0, 1, 2, 3, 4]


def test_soft_labels_stay_soft_end_to_end():
    t = Trajectory.from_dict({"question": "q", "steps": ["a", "b"], "labels": [0.7, 0.25],
                              "label_kind": "value"})
    batch = collate([np.zeros((2, 3), np.float32)], [t.labels], [0])
    assert batch["labels"][0].tolist() == pytest.approx([0.7, 0.25])


TRICKS = {"label_smoothing": 0.1, "focal_gamma": 2.0, "balance": True, "length_balance": True,
          "prefix_augment": True, "curriculum": True, "outcome_weight": 0.5,
          "next_step_weight": 0.5, "hard_negative_rounds": 1}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    data = [Trajectory.from_dict(r) for r in make_rows(6)]
    for k, t in enumerate(data):  # solutions of 1, 2 and 3 steps: work for a curriculum
        keep = 1 + (k // 3) % 3  # by question: right and wrong steps stay unbalanced
        t.steps, t.labels = t.steps[:keep], t.labels[:keep]
    feats = synthetic_features(data)
    out = tmp_path_factory.mktemp("plain")
    train(data, feats, PRMConfig(input_dim=8, **HEAD), TrainConfig(epochs=3, batch_size=4),
          out, progress=False)
    return data, feats, load_file(out / "model.safetensors")


@pytest.mark.parametrize("trick", TRICKS)
def test_each_trick_trains_and_changes_the_weights(tmp_path, plain, trick):
    data, feats, reference = plain
    summary = train(data, feats, PRMConfig(input_dim=8, **HEAD),
                    TrainConfig(epochs=3, batch_size=4, **{trick: TRICKS[trick]}), tmp_path,
                    progress=False)
    assert np.isfinite(summary["train_loss"])
    weights = load_file(tmp_path / "model.safetensors")
    assert any(not torch.equal(weights[k], reference[k]) for k in reference)
    if trick == "hard_negative_rounds":
        assert summary["hard_negative_rounds"][0]["round"] == 1


def test_the_linear_head_is_per_step_logistic_regression(tmp_path):
    data = [Trajectory.from_dict(r) for r in make_rows(6)]
    feats = synthetic_features(data)
    train(data, feats, PRMConfig(input_dim=8, head_type="linear"), TrainConfig(epochs=5),
          tmp_path, progress=False)
    head = PRMHead.from_pretrained(tmp_path)
    x = torch.from_numpy(feats[0].astype(np.float32))[None]
    with torch.no_grad():
        got = head(x, torch.ones(1, x.shape[1], dtype=torch.bool))[0]
    z = ((x[0] - head.feature_mean) / head.feature_std) @ head.head.weight[0] + head.head.bias
    assert torch.allclose(got, z, atol=1e-5)
    assert sorted(load_file(tmp_path / "model.safetensors")) == [
        "feature_mean", "feature_std", "head.bias", "head.weight"]


def test_an_ensemble_is_the_mean_of_its_members_saved_as_one_model(tmp_path):
    from prmkit.model import EnsembleHead

    data = [Trajectory.from_dict(r) for r in make_rows(6)]
    feats = synthetic_features(data)
    summary = train(data, feats, PRMConfig(input_dim=8, **HEAD),
                    TrainConfig(epochs=2, ensemble=3), tmp_path, progress=False)
    assert len(summary["members"]) == 3 and summary["ensemble"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "model.safetensors", "summary.json"]  # members folded into one model
    head = PRMHead.from_pretrained(tmp_path)
    assert isinstance(head, EnsembleHead) and len(head.members) == 3
    x = torch.from_numpy(np.stack([f.astype(np.float32) for f in feats[:4]]))
    mask = torch.ones(4, 3, dtype=torch.bool)
    with torch.no_grad():
        members = torch.stack([torch.sigmoid(m(x, mask)) for m in head.members])
        mean = torch.sigmoid(head(x, mask))
        spread = head.spread(x, mask)
    # different seeds, different members; the ensemble is their mean, the spread their sd
    assert not torch.allclose(members[0], members[1])
    assert torch.allclose(mean, members.mean(0), atol=1e-6)
    assert torch.allclose(spread, members.std(0, unbiased=False), atol=1e-6)
