import math

from prmkit.metrics import auroc


def test_auroc_by_hand():
    # positives score 0.9, 0.4; negatives 0.5, 0.1. Pairs (pos > neg): (0.9,0.5) (0.9,0.1) (0.4,0.1)
    # = 3 of 4 pairs → 0.75
    assert auroc([0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0]) == 0.75


def test_auroc_ties_count_half():
    # one positive, one negative, same score → 0.5
    assert auroc([0.3, 0.3], [1, 0]) == 0.5
    # pos {0.5, 0.7}, neg {0.5}: (0.5 vs 0.5) = 1/2, (0.7 vs 0.5) = 1 → 1.5/2 = 0.75
    assert auroc([0.5, 0.7, 0.5], [1, 1, 0]) == 0.75


def test_auroc_one_class_is_nan():
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
