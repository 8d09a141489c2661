"""Hand-worked metric values, ties included (ties count against the target)."""

import math

import numpy as np
import pytest
import torch

from common import metrics as M

# Row 0: positive strictly best -> rank 0.
# Row 1: one negative above (0.9), one tied (0.5) -> rank 2.
# Row 2: everything tied -> rank 3 (last of 4).
SAMPLED = [[0.9, 0.1, 0.5, 0.3], [0.5, 0.5, 0.1, 0.9], [0.2, 0.2, 0.2, 0.2]]


@pytest.mark.parametrize("as_tensor", [np.array, torch.tensor])
def test_sampled_ranks_and_metrics(as_tensor):
    ranks = M.sampled_ranks(as_tensor(SAMPLED))
    assert ranks.tolist() == [0, 2, 3]
    assert M.hit_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert M.hit_at_k(ranks, 2) == pytest.approx(1 / 3)
    assert M.hit_at_k(ranks, 3) == pytest.approx(2 / 3)
    assert M.ndcg_at_k(ranks, 3) == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert M.mrr_at_k(ranks, 3) == pytest.approx((1 + 1 / 3) / 3)
    assert M.ndcg_at_k(ranks, 2) == pytest.approx(1 / 3)


def test_positive_in_another_column():
    scores = np.array([[0.1, 0.9, 0.9], [0.3, 0.2, 0.1]])
    assert M.sampled_ranks(scores, pos_col=1).tolist() == [1, 1]


def test_constant_scores_never_hit():
    # An untrained model scoring all 100 candidates equal must not get HR@10 = 1.
    ranks = M.sampled_ranks(np.zeros((50, 100)))
    assert (ranks == 99).all()
    assert M.hit_at_k(ranks, 10) == 0.0 and M.ndcg_at_k(ranks, 10) == 0.0


def test_random_scores_hr_near_k_over_n():
    rng = np.random.default_rng(0)
    ranks = M.sampled_ranks(rng.random((20000, 100)))
    assert M.hit_at_k(ranks, 10) == pytest.approx(0.1, abs=0.01)


FULL = [[0.1, 0.4, 0.4, 0.2], [0.3, 0.1, 0.3, 0.9]]
TARGETS = [2, 0]  # row 0: tie with item 1 -> rank 1; row 1: item 3 above, item 2 tied -> rank 2


@pytest.mark.parametrize("as_tensor", [np.array, torch.tensor])
def test_full_ranking(as_tensor):
    ranks = M.full_ranks(as_tensor(FULL), as_tensor(TARGETS))
    assert ranks.tolist() == [1, 2]
    assert M.recall_at_k(ranks, 1) == 0.0
    assert M.recall_at_k(ranks, 2) == 0.5
    assert M.hit_at_k(ranks, 3) == 1.0
    assert M.precision_at_k(ranks, 2) == pytest.approx(0.25)
    assert M.mrr_at_k(ranks, 2) == pytest.approx(0.25)
    assert M.mrr_at_k(ranks, 3) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert M.ndcg_at_k(ranks, 2) == pytest.approx(1 / math.log2(3) / 2)
    assert M.ndcg_at_k(ranks, 3) == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)


def test_recall_equals_precision_times_k():
    ranks = np.array([0, 4, 9, 10, 30])
    for k in (1, 5, 10, 20):
        assert M.recall_at_k(ranks, k) == pytest.approx(M.precision_at_k(ranks, k) * k)


@pytest.mark.parametrize("as_tensor", [np.array, torch.tensor])
def test_masked_items_and_masked_target(as_tensor):
    inf = float("inf")
    scores = as_tensor([[-inf, 0.5, 0.1, -inf], [-inf, 0.5, 0.1, 0.2]])
    # row 0: target item 3 is masked -> worst rank; row 1: masked item 0 is below everything.
    ranks = M.full_ranks(scores, as_tensor([3, 2]))
    assert ranks.tolist() == [3, 2]


def test_ranking_metrics_dict_and_bad_name():
    ranks = np.array([0, 2, 3])
    out = M.ranking_metrics(ranks, ks=(1, 3), names=("hr", "mrr"))
    assert out == pytest.approx({"hr@1": 1 / 3, "mrr@1": 1 / 3, "hr@3": 2 / 3, "mrr@3": 4 / 9})
    with pytest.raises(ValueError, match="valid"):
        M.ranking_metrics(ranks, names=("auc",))
    with pytest.raises(ValueError):
        M.hit_at_k(np.array([]), 10)


@pytest.mark.parametrize("as_tensor", [np.array, torch.tensor])
def test_rmse_mae(as_tensor):
    pred, target = as_tensor([1.0, 2.0, 3.0]), as_tensor([1.0, 3.0, 5.0])
    assert M.mae(pred, target) == pytest.approx(1.0)
    assert M.rmse(pred, target) == pytest.approx(math.sqrt(5 / 3))
    with pytest.raises(ValueError):
        M.rmse(as_tensor([1.0]), as_tensor([1.0, 2.0]))
