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


def test_label_smoothing_as_the_spec_writes_it():
    from prmkit.losses import smooth_labels

    out = smooth_labels(torch.tensor([0.0, 1.0, 0.5, 0.7]), 0.1)
    # y (1 - 0.2) + 0.1: 0 -> 0.1, 1 -> 0.9, 0.5 -> 0.5, 0.7 -> 0.66
    assert torch.allclose(out, torch.tensor([0.1, 0.9, 0.5, 0.66]))


def test_focal_loss_by_hand_and_gamma_0_is_bce():
    from prmkit.losses import step_loss

    logits = torch.tensor([[0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.7]])
    mask = torch.tensor([[True, True]])
    assert torch.isclose(step_loss(logits, labels, mask), masked_bce(logits, labels, mask))
    # gamma = 2: step 0: p = 0.5, |1 - 0.5|^2 = 0.25, BCE = log 2
    # step 1: p = sigmoid(2) = 0.880797, |0.7 - p|^2 = 0.032687, BCE = log(1 + e^2) - 1.4
    p1 = 1 / (1 + math.exp(-2))
    expected = (0.25 * math.log(2) + (0.7 - p1) ** 2 * (math.log1p(math.exp(2)) - 1.4)) / 2
    assert math.isclose(float(step_loss(logits, labels, mask, gamma=2.0)), expected,
                        rel_tol=1e-6)
    # a soft label met exactly costs nothing under the focal factor
    z = math.log(0.7 / 0.3)
    assert float(step_loss(torch.tensor([[z]]), torch.tensor([[0.7]]), torch.tensor([[True]]),
                           gamma=2.0)) < 1e-12


def test_balance_weights_by_hand():
    from prmkit.losses import balance_weights, step_loss

    # 3 right, 1 wrong, one unlabelled: right weigh 4 / (2 * 3) = 2/3, wrong 4 / (2 * 1) = 2
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    mask = torch.tensor([True, True, True, True, False])
    w = balance_weights(labels, mask)
    assert torch.allclose(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0, 0.0]))
    # by group: group 0 = steps 0, 3 (one of each: weight 1 each); group 1 = steps 1, 2 (right
    # only: nothing to balance, weight 1)
    w = balance_weights(labels, mask, torch.tensor([0, 1, 1, 0, 0]))
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]))
    # weighted loss: right steps at z = 0 (log 2), the wrong one at z = 0 (log 2): mean log 2
    loss = step_loss(torch.zeros(1, 5), labels[None], mask[None], balance_weights(labels, mask)[None])
    assert math.isclose(float(loss), math.log(2), rel_tol=1e-6)


def test_multitask_losses_by_hand():
    from prmkit.losses import next_step_loss, outcome_loss

    # rows: logit 0 vs outcome 1 (log 2); logit 2 vs 0 (log(1 + e^2)); unknown row ignored
    loss = outcome_loss(torch.tensor([0.0, 2.0, 9.0]), torch.tensor([1.0, 0.0, 0.0]),
                        torch.tensor([True, True, False]))
    assert math.isclose(float(loss), (math.log(2) + math.log1p(math.exp(2))) / 2, rel_tol=1e-6)
    # one row of 3 steps (the last is padding): the pair (0 -> 1) only.
    # predicted[0] = (1, 1), projected[1] = (0, 2): squared errors 1 and 1, mean 1
    predicted = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [7.0, 7.0]]], requires_grad=True)
    projected = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [9.0, 9.0]]], requires_grad=True)
    loss = next_step_loss(predicted, projected, torch.tensor([[True, True, False]]))
    assert loss.item() == 1.0
    loss.backward()
    assert projected.grad is None or float(projected.grad.abs().sum()) == 0.0  # a fixed target
