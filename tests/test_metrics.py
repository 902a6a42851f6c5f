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


# Four ProcessBench items at threshold 0.5 (flag a step when its probability is below 0.5):
#   A  first error 1, probs [0.9, 0.3, 0.8]  -> first flagged 1: right
#   B  first error 0, probs [0.6, 0.2]       -> first flagged 1: wrong (missed step 0)
#   C  correct,       probs [0.7, 0.9]       -> nothing flagged: right
#   D  correct,       probs [0.8, 0.4]       -> step 1 flagged: wrong
# accuracy on erroneous 1/2, on correct 1/2, F1 = 2 * 0.5 * 0.5 / (0.5 + 0.5) = 0.5.
ITEMS = [[0.9, 0.3, 0.8], [0.6, 0.2], [0.7, 0.9], [0.8, 0.4]]
ERRORS = [1, 0, -1, -1]


def test_first_error_f1_by_hand():
    from prmkit.metrics import first_error_f1, first_flagged

    assert [first_flagged(p, 0.5) for p in ITEMS] == [1, 1, -1, 1]
    r = first_error_f1(ITEMS, ERRORS, 0.5)
    assert (r["acc_erroneous"], r["acc_correct"], r["f1"]) == (0.5, 0.5, 0.5)
    assert (r["erroneous"], r["correct"]) == (2, 2)
    # at 0.65: A flags 1 (right), B flags 0 (right), C nothing (right), D flags 1 (wrong):
    # 2/2 and 1/2 -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3
    assert first_error_f1(ITEMS, ERRORS, 0.65)["f1"] == 2 / 3
    # strictly below: at exactly 0.6, B's 0.6 is not flagged
    assert first_flagged([0.6, 0.2], 0.6) == 1


def test_first_error_threshold_by_hand():
    from prmkit.metrics import first_error_f1, first_error_threshold

    # right intervals (low, high]: A (0.3, 0.9], B (0.6, inf), C (-inf, 0.7], D (-inf, 0.4].
    # t in (0.3, 0.4]: A, C, D right, B wrong -> 1/2 and 2/2, F1 2/3; t in (0.6, 0.7]: A, B, C
    # right, D wrong -> 2/2 and 1/2, F1 2/3 again. The lowest best candidate: midway 0.3-0.4.
    t, f1 = first_error_threshold([(ITEMS, ERRORS)])
    assert abs(t - 0.35) < 1e-12 and abs(f1 - 2 / 3) < 1e-12
    assert first_error_f1(ITEMS, ERRORS, t)["f1"] == f1
    # a second split of B and C: at 0.35 B is wrong (F1 0), at 0.65 both right (F1 1), so the
    # average (2/3 + 0) / 2 = 1/3 vs (2/3 + 1) / 2 = 5/6 moves the threshold to 0.65
    t2, f1_2 = first_error_threshold([(ITEMS, ERRORS), (ITEMS[1:3], ERRORS[1:3])])
    assert abs(t2 - 0.65) < 1e-12 and abs(f1_2 - 5 / 6) < 1e-12
    # a split with no erroneous item has no F1: it is left out of the average
    assert first_error_threshold([(ITEMS, ERRORS), (ITEMS[2:], ERRORS[2:])])[0] == t


def test_step_f1_by_hand():
    from prmkit.metrics import step_f1

    # flagged (< 0.5): 0.1, 0.3, 0.4; wrong: 0.1, 0.4, 0.8 -> 2 true, F1 = 2*2 / (3 + 3)
    assert step_f1([0.1, 0.3, 0.4, 0.8, 0.9], [0, 1, 0, 0, 1], 0.5) == 4 / 6
    assert math.isnan(step_f1([0.9], [1], 0.5))


def test_ece_on_five_bins_by_hand():
    from prmkit.metrics import ece, reliability

    probs = [0.1, 0.15, 0.5, 0.55, 0.9, 1.0]
    labels = [0, 1, 1, 1, 1, 1]
    # bins of width 0.2: [0, .2): 0.1, 0.15 (mean p 0.125, mean y 0.5, gap 0.375)
    # [.4, .6): 0.5, 0.55 (0.525 vs 1, gap 0.475); [.8, 1]: 0.9, 1.0 (0.95 vs 1, gap 0.05)
    # ECE = (2 * 0.375 + 2 * 0.475 + 2 * 0.05) / 6 = 0.3
    assert abs(ece(probs, labels, bins=5) - 0.3) < 1e-12
    table = reliability(probs, labels, bins=5)
    assert table["count"] == [2, 0, 2, 0, 2] and math.isnan(table["mean_prob"][1])


def test_correlations_by_hand():
    from prmkit.metrics import pearson, spearman

    assert abs(pearson([1, 2, 3], [2, 4, 6]) - 1) < 1e-12
    # centred: (-1, 0, 1) and (-1, 1, 0): sum of products 1, norms sqrt(2) each: r = 1/2
    assert abs(pearson([1, 2, 3], [1, 3, 2]) - 0.5) < 1e-12
    # ranks of [10, 20, 20] are [1, 2.5, 2.5]; of [1, 2, 3] are [1, 2, 3]: r = 0.866...
    assert abs(spearman([10, 20, 20], [1, 2, 3]) - (3 ** 0.5) / 2) < 1e-12
    assert math.isnan(pearson([1, 1], [1, 2]))
