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


def test_flag_threshold_by_hand():
    from prmkit.metrics import flag_threshold, recall_below

    # sorted probs 0.1(bad) 0.2(bad) 0.3(good) 0.4(bad) 0.9(good); 3 wrong steps.
    # flag the k lowest: k=1 F1 = 2*1/(1+3) = 0.5; k=2: 2*2/5 = 0.8; k=3: 4/6; k=4: 6/7 = 0.857;
    # k=5: 6/8. Best k = 4: the threshold lies between 0.4 and 0.9.
    probs, labels = [0.3, 0.1, 0.9, 0.4, 0.2], [1, 0, 1, 0, 0]
    assert flag_threshold(probs, labels) == 0.65
    assert recall_below([0.1, 0.7, 0.64], 0.65) == 2 / 3
    # a tie is flagged whole or not at all: 0.2 twice (one bad, one good) with one bad at 0.1:
    # k=1 F1 = 2/(1+2) = 0.667; k=3 (the tie) F1 = 4/5 = 0.8
    assert flag_threshold([0.1, 0.2, 0.2, 0.8], [0, 0, 1, 1]) == 0.5
    assert math.isnan(recall_below([], 0.5))
