import math

import torch

from prmkit.losses import masked_bce


def test_masked_bce_ignores_padding_and_unlabelled_steps():
    # Row 0: two labelled steps. Row 1: one labelled step, then an unlabelled one and padding,
    # whose logits are huge: if they leaked into the loss it would explode.
    logits = torch.tensor([[0.0, 2.0, 0.0], [-1.0, 50.0, -80.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # BCE(z, y) = softplus(z) - y z
    #   (0, 1): log 2 = 0.693147;  (2, 0): log(1 + e^2) = 2.126928;  (-1, 0): log(1 + e^-1) = 0.313262
    expected = (math.log(2) + math.log1p(math.exp(2)) + math.log1p(math.exp(-1))) / 3
    assert math.isclose(float(masked_bce(logits, labels, mask)), expected, rel_tol=1e-6)


def test_masked_bce_soft_labels():
    # y = 0.25, z = 0: softplus(0) - 0 = log 2, whatever y (z = 0 makes y z vanish)
    # y = 0.25, z = 1: log(1 + e) - 0.25 = 1.313262 - 0.25 = 1.063262
    logits = torch.tensor([[0.0, 1.0]])
    labels = torch.tensor([[0.25, 0.25]])
    mask = torch.tensor([[True, True]])
    expected = (math.log(2) + math.log1p(math.e) - 0.25) / 2
    assert math.isclose(float(masked_bce(logits, labels, mask)), expected, rel_tol=1e-6)


def test_masked_bce_no_labels_is_zero_not_nan():
    loss = masked_bce(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool))
    assert float(loss) == 0.0
