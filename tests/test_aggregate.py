import math

import pytest
import torch

from prmkit.scoring.aggregate import AGGREGATIONS, aggregate, aggregate_steps

PROBS = torch.tensor([[0.9, 0.5, 0.8, 0.01], [0.6, 0.3, 0.2, 0.7]])
MASK = torch.tensor([[True, True, True, False], [True, True, True, True]])


@pytest.mark.parametrize("how, expected", [
    ("product", [0.9 * 0.5 * 0.8, 0.6 * 0.3 * 0.2 * 0.7]),   # 0.36, 0.0252
    ("min", [0.5, 0.2]),                                      # padding's 0.01 is not a minimum
    ("mean", [(0.9 + 0.5 + 0.8) / 3, (0.6 + 0.3 + 0.2 + 0.7) / 4]),  # 0.7333, 0.45
    ("sum", [2.2, 1.8]),
    ("last", [0.8, 0.7]),                                     # last *valid* step of row 0
    ("log_product", [math.log(0.36), math.log(0.0252)]),
])
def test_aggregations_by_hand(how, expected):
    assert aggregate(PROBS, MASK, how).tolist() == pytest.approx(expected, rel=1e-6)


def test_product_of_200_steps_does_not_underflow():
    probs = torch.full((1, 200), 0.9)
    mask = torch.ones(1, 200, dtype=torch.bool)
    # 0.9^200 = 7.0550e-10; float32 0.9 is 0.89999997615..., so compare relatively
    assert float(aggregate(probs, mask, "product")[0]) == pytest.approx(0.9 ** 200, rel=1e-5)
    # 0.5^2000 = 10^-602 is below float64's range, but its log is exact: 2000 log 0.5
    long = torch.full((1, 2000), 0.5)
    assert float(aggregate(long, torch.ones(1, 2000, dtype=torch.bool), "log_product")[0]) == \
        pytest.approx(2000 * math.log(0.5))


def test_last_on_padded_row_uses_the_mask():
    probs = torch.tensor([[0.2, 0.9, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]])
    assert float(aggregate(probs, mask, "last")[0]) == pytest.approx(0.9)


def test_single_list_helper_and_unknown_name():
    assert aggregate_steps([0.5, 0.5], "product") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(PROBS, MASK, "median")
    assert set(AGGREGATIONS) >= {"product", "min", "mean", "sum", "last"}
