"""Evaluation metrics shared by every paper: one implementation per metric.

All ranking metrics go through one quantity, the **rank of the target** (0-based: 0 means the
target is first). Ranks are computed **pessimistically**: every other candidate whose score is
greater than *or equal to* the target's score is counted as ranked above it. An untrained model
that gives every candidate the same score therefore puts the target last, so with 100 candidates
HR@10 is 0 for every user, and over many users of random scores it is about 0.1 -- never the
1.0 that an optimistic tie rule (counting only strictly greater scores) would report.

Two ranking settings:

* **sampled ranking** (MB-GMN, MPM): each row holds the scores of one positive and N sampled
  negatives. ``sampled_ranks(scores, pos_col=0)`` gives each row's rank.
* **full ranking** (FGNN, GC-SAN): each row holds the scores of every item and one target item
  id. ``full_ranks(scores, targets)`` gives each row's rank. Items that must not be ranked
  (padding id, already-seen items) are set to ``-inf`` by the caller before ranking; a target
  that is itself ``-inf`` gets the worst rank.

Given ranks, ``hit_at_k`` (= HR@K = Recall@K for one target = K * Precision@K), ``mrr_at_k``,
``ndcg_at_k`` and ``precision_at_k`` average over rows. ``ranking_metrics`` returns several of
them at once. Rating prediction (AGNN) uses ``rmse`` and ``mae``.

Inputs may be numpy arrays or torch tensors (on any device); ranks come back as int64 numpy
arrays so that batches can be concatenated and metrics computed once at the end of evaluation.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "sampled_ranks",
    "full_ranks",
    "hit_at_k",
    "recall_at_k",
    "precision_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "ranking_metrics",
    "rmse",
    "mae",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _pessimistic_rank(scores: Any, target_scores: Any) -> np.ndarray:
    """Rank = #(scores > target) + #(scores == target) - 1 per row, the target itself excluded.

    ``scores`` [rows, candidates] includes the target's own entry; ``target_scores`` [rows].
    NaN scores never rank above the target; a NaN target ranks last.
    """
    if _is_torch(scores):
        import torch

        t = target_scores.reshape(-1, 1).to(scores.dtype)
        above = (scores >= t).sum(dim=1) - 1
        nan_target = torch.isnan(t.reshape(-1))
        above = torch.where(nan_target, torch.full_like(above, scores.shape[1] - 1), above)
        return above.cpu().numpy().astype(np.int64)
    scores = np.asarray(scores)
    t = np.asarray(target_scores, dtype=scores.dtype).reshape(-1, 1)
    above = (scores >= t).sum(axis=1) - 1
    above = np.where(np.isnan(t.reshape(-1)), scores.shape[1] - 1, above)
    return above.astype(np.int64)


def sampled_ranks(scores: Any, pos_col: int = 0) -> np.ndarray:
    """Rank of the positive among its candidates, ties counted against the positive.

    Args:
        scores: [users, candidates] scores; column ``pos_col`` is the positive, the others its
            sampled negatives (e.g. 1 + 99 in MB-GMN and MPM).
        pos_col: column of the positive.
    Returns:
        int64 [users]; 0 when the positive scores strictly above every negative.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [users, candidates], got shape {tuple(scores.shape)}")
    return _pessimistic_rank(scores, scores[:, pos_col])


def full_ranks(scores: Any, targets: Any) -> np.ndarray:
    """Rank of each row's target item among all items, ties counted against the target.

    Args:
        scores: [rows, n_items] scores over the whole item set. Mask items that must not be
            ranked (padding, history) with ``-inf`` before calling.
        targets: [rows] integer item ids (column indices into ``scores``).
    Returns:
        int64 [rows].
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [rows, n_items], got shape {tuple(scores.shape)}")
    if _is_torch(scores):
        import torch

        idx = torch.as_tensor(targets, device=scores.device).long().reshape(-1, 1)
        target_scores = scores.gather(1, idx).reshape(-1)
    else:
        idx = np.asarray(targets, dtype=np.int64).reshape(-1, 1)
        target_scores = np.take_along_axis(np.asarray(scores), idx, axis=1).reshape(-1)
    ranks = _pessimistic_rank(scores, target_scores)
    # A masked target (-inf) ties with every other masked item; it must not look ranked.
    masked = _to_numpy(target_scores) == -np.inf
    ranks[masked] = scores.shape[1] - 1
    return ranks


def _ranks(ranks: Any) -> np.ndarray:
    r = _to_numpy(ranks).astype(np.int64).reshape(-1)
    if r.size == 0:
        raise ValueError("no ranks given: cannot average a metric over zero rows")
    return r


def hit_at_k(ranks: Any, k: int) -> float:
    """HR@K: share of rows whose target ranks in the top K (rank < K)."""
    return float(np.mean(_ranks(ranks) < k))


def recall_at_k(ranks: Any, k: int) -> float:
    """Recall@K for one target per row; identical to HR@K (and to P@K * K)."""
    return hit_at_k(ranks, k)


def precision_at_k(ranks: Any, k: int) -> float:
    """Precision@K for one target per row: hit / K averaged over rows."""
    return hit_at_k(ranks, k) / k


def mrr_at_k(ranks: Any, k: int) -> float:
    """MRR@K: mean of 1 / (rank + 1) over rows, counting 0 where rank >= K."""
    r = _ranks(ranks)
    return float(np.mean(np.where(r < k, 1.0 / (r + 1.0), 0.0)))


def ndcg_at_k(ranks: Any, k: int) -> float:
    """NDCG@K for one relevant item: mean of 1 / log2(rank + 2) where rank < K, else 0.

    With one relevant item the ideal DCG is 1, so no further normalisation is needed.
    """
    r = _ranks(ranks)
    return float(np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))


_METRICS = {
    "hit": hit_at_k,
    "hr": hit_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
}


def ranking_metrics(
    ranks: Any, ks: Iterable[int] = (10,), names: Sequence[str] = ("hr", "ndcg")
) -> dict[str, float]:
    """Several ranking metrics at once, keyed ``"<name>@<k>"`` (e.g. ``"ndcg@10"``).

    ``names`` are taken from: hit, hr, recall, precision, mrr, ndcg.
    """
    unknown = [n for n in names if n not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {sorted(_METRICS)}")
    r = _ranks(ranks)
    return {f"{n}@{k}": _METRICS[n](r, k) for k in ks for n in names}


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _to_numpy(pred).astype(np.float64).reshape(-1)
    t = _to_numpy(target).astype(np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"prediction and target sizes differ: {p.shape} vs {t.shape}")
    if p.size == 0:
        raise ValueError("no predictions given")
    return p, t


def rmse(pred: Any, target: Any) -> float:
    """Root mean squared error between predicted and true ratings."""
    p, t = _pair(pred, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error between predicted and true ratings."""
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))
