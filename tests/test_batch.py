import numpy as np
import torch

from prmkit.batch import collate, pad_labels


def test_pad_labels_by_hand():
    labels = [[1, 0, None], [None], [1, 1]]
    y, known = pad_labels(labels, [2, 0], 3)  # rows in the order asked for, padded to 3 steps
    assert y.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert known.tolist() == [[True, True, False], [True, True, False]]
    y, known = pad_labels(None, [0, 1], 2)  # no labels: nothing is known
    assert y.tolist() == [[0.0, 0.0], [0.0, 0.0]] and not known.any()


def test_collate_pads_features_and_masks_steps():
    features = [np.ones((2, 3), np.float32), np.full((1, 3), 2.0, np.float32)]
    batch = collate(features, [[1, None], [0]], [1, 0])
    assert batch["features"].shape == (2, 2, 3)
    assert torch.equal(batch["features"][0], torch.tensor([[2.0] * 3, [0.0] * 3]))
    assert batch["step_mask"].tolist() == [[True, False], [True, True]]
    assert batch["labels"].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert batch["label_mask"].tolist() == [[True, False], [True, False]]
