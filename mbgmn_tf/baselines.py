"""Tuned simple baselines under MB-GMN's exact protocol: popularity, ItemKNN, ItemKNN on all
behaviours, EASE, BPR-MF.

    python -m mbgmn_tf.baselines --dataset beibei                       # all five, one run record
    python -m mbgmn_tf.baselines --baselines ease --out R --resume      # add or redo some of them

Protocol (by construction the one of ``mbgmn_tf.main``): the authors' training matrices and held-out
purchases (``mbgmn_tf.data``), and each test user's 99 negatives drawn by ``sample_test_negatives``
from ``default_rng([--test-seed, 1])`` over the items the user did not purchase in training, exactly
``main.py --fixed-test-negatives --seed <test-seed>``. The positive goes last; a negative equal to
the held-out item (the authors' sampler can draw it) is ignored, as in ``main.py``. HR@10 / NDCG@10
come from ``common.metrics`` (ties count against the positive). **Full ranking** beside it
(``full_*`` keys): the held-out item against every item the user did not purchase in training
(the authors' negative-sampling exclusion: only training *purchases* are excluded; viewed and
carted items stay candidates), ties again against it.

Tuning never reads the test file. Validation: for ``--val-users`` users drawn with
``default_rng([--seed, 2])`` among those with at least two training purchases, one training
purchase is held out (the authors' matrices are binary, so there is no "last" one: it is drawn
uniformly from the same generator) and removed from the purchase matrix only; views and carts
stay, as the authors' split leaves them (on Beibei 66 % of the test items are in the user's
training views, 62 % in the carts, none in the purchases). Its 99 negatives are drawn as the
test's, from ``default_rng([--seed, 3])``, over the items not purchased in that reduced matrix.
Each grid point is fitted on the reduced matrices and scored on the validation users; the best
sampled ``--select`` (ties: the other metric, then grid order) is refitted on all training data
and evaluated once on test.

* popularity: ``data.popularity_scores``, purchases per item (no hyperparameter);
* itemknn: item-item cosine on the purchase matrix X, ``s_ij = x_i . x_j / (|x_i| |x_j| + shrink)``,
  ``s_ii = 0``; column j keeps its ``k`` largest ``s_ij`` (ties at the k-th value kept; k = 0:
  all), score ``X_u . S[:, j]``;
* itemknn_all: the same on ``X = w_pv pv + w_cart cart + buy`` (Tmall: ``+ w_fav fav``); profile and
  similarities from that X. Tuned in two stages: the behaviour weights at itemknn's chosen k and
  shrink, then k x shrink at the chosen weights (the full 12 x 25 grid would take about an hour here);
* ease (Steck 2019) on purchases: ``P = (X^T X + lambda I)^-1``, ``B_ij = -P_ij / P_jj``,
  ``B_jj = 0``, score ``X_u . B[:, j]`` (float32 Cholesky inverse, one 7,977 x 7,977 solve);
* bpr (Rendle et al. 2009) on purchases: ``x_uij = p_u . (q_i - q_j) + b_i - b_j``, minibatch SGD on
  ``-ln sigmoid(x_uij) + reg (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2)`` summed over the batch,
  every training purchase once per epoch with j uniform among the user's unpurchased items; the
  epoch count is tuned with the rest (validation after each of ``--bpr-epochs``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # shared machine: one BLAS thread, set before numpy loads

import argparse
import dataclasses
import itertools
import logging
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp
from tqdm.auto import tqdm

from common.cli import (UserError, add_run_flags, nonnegative_float, nonnegative_int,
                        positive_float, positive_int, run_cli)
from common.metrics import full_ranks, ranking_metrics, sampled_ranks
from common.runs import RunRecord
from mbgmn_tf.data import (BEHAVIOURS, MultiBehaviourData, PairSampler, load_dataset, load_folder,
                           popularity_scores, sample_test_negatives)

log = logging.getLogger("mbgmn_tf.baselines")

BASELINES = ("popularity", "itemknn", "itemknn_all", "ease", "bpr")
N_NEGATIVES = 99  # main.py's N_NEGATIVES: 1 held-out purchase + 99 sampled items
TOP_K = 10  # main.py's TOP_K (the notebook's --shoot)
METRICS = (f"hr@{TOP_K}", f"ndcg@{TOP_K}", f"full_hr@{TOP_K}", f"full_ndcg@{TOP_K}")


# ----------------------------------------------------------------------------- protocol
def fixed_test_negatives(data: MultiBehaviourData, test_seed: int) -> np.ndarray:
    """int64 [test_users, 99]: ``main.py --fixed-test-negatives --seed test_seed``'s draw."""
    return sample_test_negatives(data.tst_users, data.target, N_NEGATIVES, np.random.default_rng([test_seed, 1]))


@dataclasses.dataclass
class Validation:
    """Training data with one purchase held out per validation user.

    mats: the training matrices, the purchase matrix (last) without the held-out purchases.
    users, items: int64 [val_users]; negatives: int64 [val_users, 99].
    """

    mats: list[sp.csr_matrix]
    users: np.ndarray
    items: np.ndarray
    negatives: np.ndarray


def carve_validation(trn_mats: Sequence[sp.csr_matrix], seed: int, n_users: int = 0) -> Validation:
    """Hold out one training purchase of ``n_users`` users (0: every user with >= 2 purchases)."""
    rng = np.random.default_rng([seed, 2])
    buy = sp.csr_matrix(trn_mats[-1], copy=True)
    buy.sort_indices()
    counts = np.diff(buy.indptr)
    eligible = np.flatnonzero(counts >= 2)
    users = eligible if n_users == 0 or n_users >= len(eligible) else np.sort(
        rng.choice(eligible, n_users, replace=False))
    pick = buy.indptr[users] + (rng.random(len(users)) * counts[users]).astype(np.int64)
    items = buy.indices[pick].astype(np.int64)
    buy.data[pick] = 0
    buy.eliminate_zeros()
    negatives = sample_test_negatives(users, buy, N_NEGATIVES, np.random.default_rng([seed, 3]))
    return Validation([*trn_mats[:-1], buy], users.astype(np.int64), items, negatives)


def _sampled(cand_scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Ranks of the positive (last column); a negative equal to it is ignored (as main.py)."""
    scores = np.array(cand_scores, dtype=np.float64)
    dup = candidates[:, :-1] == candidates[:, -1:]
    scores[:, :-1][dup] = -np.inf
    return sampled_ranks(scores, pos_col=candidates.shape[1] - 1)


def _metrics(ranks: np.ndarray, prefix: str = "") -> dict[str, float]:
    return {prefix + k: v for k, v in ranking_metrics(ranks, ks=(TOP_K,), names=("hr", "ndcg")).items()}


# ----------------------------------------------------------------------------- scorers
class Popularity:
    """Score of item j: its count (training purchases, ``data.popularity_scores``)."""

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.float32)

    def candidates(self, users: np.ndarray, cands: np.ndarray) -> np.ndarray:
        return self.counts[cands]

    def full(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


class ItemItem:
    """Score ``X_u . W[:, j]`` for a user profile matrix X [users, items] and W [items, items]."""

    def __init__(self, profiles: sp.csr_matrix, weights: np.ndarray, budget: int = 4_000_000):
        self.X, self.W, self.budget = sp.csr_matrix(profiles, dtype=np.float32), weights, budget

    def candidates(self, users: np.ndarray, cands: np.ndarray) -> np.ndarray:
        """[n, C] by gathering W at (profile item, candidate): cost nnz x C, not nnz x items."""
        rows = self.X[users]
        out = np.zeros(cands.shape, dtype=np.float32)
        nnz = np.diff(rows.indptr)
        start = 0
        while start < len(users):
            # as many users as fit ``budget`` gathered values (at least one)
            stop = max(int(np.searchsorted(np.cumsum(nnz[start:]) * cands.shape[1], self.budget, "right")), 1)
            stop = min(start + stop, len(users))
            sub = rows[start:stop]
            r = np.repeat(np.arange(stop - start), np.diff(sub.indptr))
            vals = self.W[sub.indices[:, None], cands[start + r]] * sub.data[:, None]
            owner = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, np.arange(len(r)))),
                                  shape=(stop - start, len(r)))
            out[start:stop] = owner @ vals
            start = stop
        return out

    def full(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[users] @ self.W, dtype=np.float32)


class MatrixFactorization:
    """Score ``p_u . q_j + b_j``."""

    def __init__(self, P: np.ndarray, Q: np.ndarray, b: np.ndarray):
        self.P, self.Q, self.b = P, Q, b

    def candidates(self, users: np.ndarray, cands: np.ndarray) -> np.ndarray:
        return np.einsum("nd,ncd->nc", self.P[users], self.Q[cands]) + self.b[cands]

    def full(self, users: np.ndarray) -> np.ndarray:
        return self.P[users] @ self.Q.T + self.b


# ----------------------------------------------------------------------------- item-item models
def gram(a: sp.spmatrix, b: sp.spmatrix) -> np.ndarray:
    """Dense float32 ``a^T b`` [items, items]."""
    return np.asarray((sp.csr_matrix(a).T @ sp.csr_matrix(b)).toarray(), dtype=np.float32)


def cosine_similarity(g: np.ndarray, shrink: float) -> np.ndarray:
    """``s_ij = G_ij / (sqrt(G_ii G_jj) + shrink)``, ``s_ii = 0``, 0 where an item has no interaction."""
    norms = np.sqrt(np.maximum(np.diag(g), 0)).astype(np.float32)
    denom = np.outer(norms, norms)
    denom += np.float32(shrink)
    s = np.divide(g, denom, out=np.zeros_like(g), where=denom > 0)
    np.fill_diagonal(s, 0)
    return s


def knn_thresholds(s: np.ndarray, ks: Sequence[int]) -> dict[int, Optional[np.ndarray]]:
    """Per k, the k-th largest value of every column (None: keep all)."""
    n = s.shape[0]
    cut = sorted({n - k for k in ks if 0 < k < n})
    part = np.partition(s, cut, axis=0) if cut else None
    return {k: part[n - k] if 0 < k < n else None for k in ks}


def keep_top_k(s: np.ndarray, threshold: Optional[np.ndarray]) -> np.ndarray:
    """Column j keeps the entries >= its threshold (its k largest, ties at the k-th kept)."""
    return s if threshold is None else np.where(s >= threshold[None, :], s, np.float32(0))


def ease_weights(g: np.ndarray, lam: float) -> np.ndarray:
    """EASE: ``P = (G + lam I)^-1`` by Cholesky (float32 LAPACK), ``B = -P / diag(P)``, ``diag(B) = 0``."""
    a = np.array(g, dtype=np.float32, order="F")
    a[np.diag_indices_from(a)] += np.float32(lam)
    c, info = sl.lapack.spotrf(a, lower=0, overwrite_a=1)
    if info == 0:
        p, info = sl.lapack.spotri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise UserError(f"EASE: X^T X + {lam} I is not positive definite (LAPACK info {info}): use a larger lambda")
    p = np.triu(p) + np.triu(p, 1).T
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0)
    return np.ascontiguousarray(b, dtype=np.float32)


def weighted_sum(mats: Sequence[sp.csr_matrix], weights: Sequence[float]) -> sp.csr_matrix:
    out = sum(np.float32(w) * m for w, m in zip(weights, mats) if w != 0)
    return sp.csr_matrix(out, dtype=np.float32)


class GramBlocks:
    """``M_a^T M_b`` for pairs of behaviours, computed when first needed, so that the Gram matrix of any
    weighted sum ``X = sum_a w_a M_a`` is ``sum_ab w_a w_b M_a^T M_b`` without a new sparse product.
    Blocks of behaviours outside ``changed`` are taken from ``reuse`` (the same matrices)."""

    def __init__(self, mats: Sequence[sp.csr_matrix], reuse: Optional["GramBlocks"] = None,
                 changed: Sequence[int] = ()):
        self.mats, self.reuse, self.changed = mats, reuse, set(changed)
        self.blocks: dict[tuple[int, int], np.ndarray] = {}

    def block(self, a: int, b: int) -> np.ndarray:
        """``M_a^T M_b`` for ``a <= b``."""
        if (a, b) not in self.blocks:
            if self.reuse is not None and not {a, b} & self.changed:
                self.blocks[a, b] = self.reuse.block(a, b)
            else:
                self.blocks[a, b] = gram(self.mats[a], self.mats[b])
        return self.blocks[a, b]

    def combine(self, weights: Sequence[float]) -> np.ndarray:
        g = np.zeros((self.mats[0].shape[1],) * 2, dtype=np.float32)
        for a, b in itertools.combinations_with_replacement(range(len(self.mats)), 2):
            w = np.float32(weights[a] * weights[b])
            if w == 0:
                continue
            block = self.block(a, b)
            g += w * block
            if a != b:
                g += w * block.T
        return g


# ----------------------------------------------------------------------------- BPR-MF
def bpr_step(P: np.ndarray, Q: np.ndarray, b: np.ndarray, u: np.ndarray, i: np.ndarray, j: np.ndarray,
             lr: float, reg: float) -> float:
    """One SGD step on the summed BPR loss of the triples (u, i, j), in place; returns the loss."""
    pu, qi, qj = P[u], Q[i], Q[j]
    x = np.sum(pu * (qi - qj), axis=1) + b[i] - b[j]
    g = np.exp(-np.logaddexp(0, x))  # sigmoid(-x) = -d(-ln sigmoid(x))/dx, without overflow
    loss = float(np.sum(np.logaddexp(0, -x)) + reg * (np.sum(pu**2) + np.sum(qi**2) + np.sum(qj**2)
                                                       + np.sum(b[i]**2) + np.sum(b[j]**2)))
    gcol = g[:, None]
    np.add.at(P, u, lr * (gcol * (qi - qj) - reg * pu))
    np.add.at(Q, i, lr * (gcol * pu - reg * qi))
    np.add.at(Q, j, lr * (-gcol * pu - reg * qj))
    np.add.at(b, i, lr * (g - reg * b[i]))
    np.add.at(b, j, lr * (-g - reg * b[j]))
    return loss


def bpr_train(buy: sp.csr_matrix, factors: int, lr: float, reg: float, epochs: int, batch: int,
              rng: np.random.Generator, after_epoch: Optional[Callable[[int, MatrixFactorization], None]] = None
              ) -> MatrixFactorization:
    """BPR-MF on the purchase matrix; ``after_epoch(epoch, model)`` after each epoch."""
    n_users, n_items = buy.shape
    P = rng.normal(0, 0.1, (n_users, factors)).astype(np.float32)
    Q = rng.normal(0, 0.1, (n_items, factors)).astype(np.float32)
    b = np.zeros(n_items, dtype=np.float32)
    users, items = (x.astype(np.int64) for x in sp.csr_matrix(buy).nonzero())
    sampler = PairSampler(buy)
    model = MatrixFactorization(P, Q, b)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(users))
        for st in range(0, len(order), batch):
            idx = order[st:st + batch]
            u, i = users[idx], items[idx]
            j = rng.integers(0, n_items, len(idx))
            bad = sampler.is_positive(u, j)
            while bad.any():
                j[bad] = rng.integers(0, n_items, int(bad.sum()))
                bad[bad] = sampler.is_positive(u[bad], j[bad])
            bpr_step(P, Q, b, u, i, j, lr, reg)
        if not (np.isfinite(P).all() and np.isfinite(Q).all()):
            raise UserError(f"BPR-MF diverged (non-finite embeddings) at lr {lr}, epoch {epoch}: lower --bpr-lr")
        if after_epoch is not None:
            after_epoch(epoch, model)
    return model


# ----------------------------------------------------------------------------- tuning
def validation_metrics(scorer: Any, val: Validation) -> dict[str, float]:
    cands = np.concatenate([val.negatives, val.items[:, None]], axis=1)
    return _metrics(_sampled(scorer.candidates(val.users, cands), cands))


def choose(results: list[dict], select: str) -> dict:
    """The grid point with the best validation ``select``, then the other sampled metric, then first."""
    other = f"ndcg@{TOP_K}" if select.startswith("hr") else f"hr@{TOP_K}"
    best = max(range(len(results)), key=lambda n: (results[n]["valid"][select], results[n]["valid"][other], -n))
    return results[best]


class Tuner:
    """Fits each baseline on the validation-reduced data (``val``) and, with the chosen values, on all
    training data (``mats``); holds the shared Gram matrices."""

    def __init__(self, data: MultiBehaviourData, val: Validation, args: argparse.Namespace,
                 bar: Optional[tqdm] = None):
        self.data, self.mats, self.val, self.args, self.bar = data, data.trn_mats, val, args, bar
        self._blocks: dict[str, GramBlocks] = {}

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def blocks(self, which: str) -> GramBlocks:
        if which not in self._blocks:
            if which == "valid":
                self._blocks[which] = GramBlocks(self.val.mats)
            else:  # only the purchase matrix differs from the validation fit
                self._blocks[which] = GramBlocks(self.mats, self.blocks("valid"), changed=(len(self.mats) - 1,))
        return self._blocks[which]

    # each returns (grid results, chosen params, scorer on all training data)
    def popularity(self, prior: dict) -> tuple[list[dict], dict, Any]:
        reduced = dataclasses.replace(self.data, trn_mats=self.val.mats)
        res = [{"params": {}, "valid": validation_metrics(Popularity(popularity_scores(reduced)), self.val)}]
        self._tick()
        return res, {}, Popularity(popularity_scores(self.data))

    def _knn_grid(self, weights: Sequence[float], points: Sequence[tuple[float, int]],
                  with_weights: bool = False) -> list[dict]:
        g = self.blocks("valid").combine(weights)
        profiles = weighted_sum(self.val.mats, weights)
        out = []
        for shrink in dict.fromkeys(s for s, _ in points):
            s = cosine_similarity(g, shrink)
            ks = [k for sh, k in points if sh == shrink]
            thr = knn_thresholds(s, ks)
            for k in ks:
                scorer = ItemItem(profiles, keep_top_k(s, thr[k]))
                named = {f"w_{b}": w for b, w in zip(self.behaviours, weights[:-1])} if with_weights else {}
                out.append({"params": {**named, "shrink": shrink, "k": k},
                            "valid": validation_metrics(scorer, self.val)})
                self._tick()
        return out

    @property
    def behaviours(self) -> tuple[str, ...]:
        return self.args.behaviours

    def _knn_fit(self, params: dict) -> ItemItem:
        weights = [params.get(f"w_{b}", 0.0) for b in self.behaviours[:-1]] + [1.0]
        s = cosine_similarity(self.blocks("full").combine(weights), params["shrink"])
        return ItemItem(weighted_sum(self.mats, weights), keep_top_k(s, knn_thresholds(s, [params["k"]])[params["k"]]))

    def itemknn(self, prior: dict) -> tuple[list[dict], dict, Any]:
        weights = [0.0] * (len(self.mats) - 1) + [1.0]
        res = self._knn_grid(weights, list(itertools.product(self.args.knn_shrink, self.args.knn_k)))
        best = choose(res, self.args.select_key)["params"]
        return res, best, self._knn_fit(best)

    def weight_grid(self) -> list[list[float]]:
        per = [self.args.pv_weights if b == "pv" else self.args.other_weights for b in self.behaviours[:-1]]
        return [list(w) + [1.0] for w in itertools.product(*per)]

    def itemknn_all(self, prior: dict) -> tuple[list[dict], dict, Any]:
        knn = prior["itemknn"]
        stage1 = []
        for weights in self.weight_grid():  # stage 1: weights at itemknn's (shrink, k)
            for r in self._knn_grid(weights, [(knn["shrink"], knn["k"])], with_weights=True):
                stage1.append({**r, "stage": 1})
        p1 = choose(stage1, self.args.select_key)["params"]
        weights = [p1.get(f"w_{b}", 0.0) for b in self.behaviours[:-1]] + [1.0]
        stage2 = [{**r, "stage": 2} for r in self._knn_grid(weights, [
            (s, k) for s, k in itertools.product(self.args.knn_shrink, self.args.knn_k)
            if (s, k) != (knn["shrink"], knn["k"])], with_weights=True)]
        res = stage1 + stage2
        best = choose(res, self.args.select_key)["params"]
        return res, best, self._knn_fit(best)

    def ease(self, prior: dict) -> tuple[list[dict], dict, Any]:
        t = len(self.mats) - 1
        g = self.blocks("valid").block(t, t)
        res = []
        for lam in self.args.ease_lambda:
            res.append({"params": {"lambda": lam},
                        "valid": validation_metrics(ItemItem(self.val.mats[-1], ease_weights(g, lam)), self.val)})
            self._tick()
        best = choose(res, self.args.select_key)["params"]
        g_full = self.blocks("full").block(t, t)
        return res, best, ItemItem(self.mats[-1], ease_weights(g_full, best["lambda"]))

    def bpr(self, prior: dict) -> tuple[list[dict], dict, Any]:
        a, res = self.args, []
        for factors, lr, reg in itertools.product(a.bpr_factors, a.bpr_lr, a.bpr_reg):
            def after(epoch: int, model: MatrixFactorization) -> None:
                if epoch in a.bpr_epochs:
                    res.append({"params": {"factors": factors, "lr": lr, "reg": reg, "epochs": epoch},
                                "valid": validation_metrics(model, self.val)})
                    self._tick()
            bpr_train(self.val.mats[-1], factors, lr, reg, max(a.bpr_epochs), a.bpr_batch,
                      np.random.default_rng([a.seed, 4]), after)
        best = choose(res, a.select_key)["params"]
        model = bpr_train(self.mats[-1], best["factors"], best["lr"], best["reg"], best["epochs"], a.bpr_batch,
                          np.random.default_rng([a.seed, 4]))
        return res, best, model

    def spec(self, name: str, prior: dict) -> dict:
        """What a baseline's result depends on besides the protocol: its grid (and itemknn's choice)."""
        a = self.args
        return {"popularity": {}, "itemknn": {"k": a.knn_k, "shrink": a.knn_shrink},
                "itemknn_all": {"k": a.knn_k, "shrink": a.knn_shrink, "pv": a.pv_weights,
                                "other": a.other_weights, "itemknn": prior.get("itemknn")},
                "ease": {"lambda": a.ease_lambda},
                "bpr": {k: getattr(a, f"bpr_{k}") for k in ("factors", "lr", "reg", "epochs", "batch")}}[name]

    def grid_size(self, name: str) -> int:
        a = self.args
        return {"popularity": 1, "itemknn": len(a.knn_shrink) * len(a.knn_k),
                "itemknn_all": len(self.weight_grid()) + len(a.knn_shrink) * len(a.knn_k) - 1,
                "ease": len(a.ease_lambda),
                "bpr": len(a.bpr_factors) * len(a.bpr_lr) * len(a.bpr_reg) * len(a.bpr_epochs)}[name]


def full_test_ranks(scores: np.ndarray, purchases: sp.spmatrix, targets: np.ndarray) -> np.ndarray:
    """Full-ranking ranks (ties against the target) of ``targets`` [users] among all items, the
    users' training purchases (``purchases`` [users, items], rows of ``data.target``) masked to
    -inf in ``scores`` [users, items] (in place): never candidates (the authors' rule)."""
    r, j = sp.csr_matrix(purchases).nonzero()
    scores[r, j] = -np.inf
    return full_ranks(scores, targets)


def evaluate_test(scorer: Any, data: MultiBehaviourData, negatives: np.ndarray, batch: int = 1000) -> dict:
    """Sampled (1 + 99, main.py's lists) and full-ranking HR@10 / NDCG@10 of the test users."""
    users = data.tst_users
    targets = data.tst_int[users]
    cands = np.concatenate([negatives, targets[:, None]], axis=1)
    sampled, full = [], []
    for st in range(0, len(users), batch):
        u, c = users[st:st + batch], cands[st:st + batch]
        scores = np.asarray(scorer.full(u), dtype=np.float32)
        sampled.append(_sampled(np.take_along_axis(scores, c, axis=1), c))
        full.append(full_test_ranks(scores, data.target[u], targets[st:st + batch]))
    return {**_metrics(np.concatenate(sampled)), **_metrics(np.concatenate(full), "full_")}


# ----------------------------------------------------------------------------- CLI
def existing_dir(text: str) -> str:
    """argparse type: a folder that exists."""
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing folder")
    return str(Path(text).expanduser())


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m mbgmn_tf.baselines",
        description="Simple baselines under MB-GMN's protocol (main.py's test lists with fixed negatives, plus "
                    "full ranking), each tuned on a validation purchase carved from the training data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(BEHAVIOURS), default="beibei", help="dataset (mbgmn_tf.data)")
    p.add_argument("--data-dir", type=existing_dir, default=None,
                   help="read trn_<behaviour>/tst_int from this folder instead of common.datasets (same format)")
    p.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(BASELINES),
                   help="baselines to run (itemknn_all needs itemknn's choice: itemknn is added when missing)")
    p.add_argument("--test-seed", type=nonnegative_int, default=0,
                   help="test negatives = main.py --fixed-test-negatives --seed TEST_SEED")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the validation carve, its negatives and BPR-MF")
    p.add_argument("--val-users", type=nonnegative_int, default=10000,
                   help="validation users (drawn among users with >= 2 training purchases; 0: all of them)")
    p.add_argument("--select", choices=("hr", "ndcg"), default="hr",
                   help=f"sampled validation metric (@{TOP_K}) that picks each baseline's grid point")
    p.add_argument("--knn-k", type=nonnegative_int, nargs="+", default=[50, 200, 500, 1000, 0],
                   help="ItemKNN neighbours kept per item (0: all)")
    p.add_argument("--knn-shrink", type=nonnegative_float, nargs="+", default=[0.0, 10.0, 50.0, 200.0, 1000.0],
                   help="ItemKNN cosine shrinkage")
    p.add_argument("--pv-weights", type=nonnegative_float, nargs="+", default=[0.0, 0.1, 0.3, 1.0],
                   help="itemknn_all: weights of the view matrix (purchase weight 1)")
    p.add_argument("--other-weights", type=nonnegative_float, nargs="+", default=[0.0, 0.3, 1.0],
                   help="itemknn_all: weights of cart (and Tmall's fav)")
    p.add_argument("--ease-lambda", type=positive_float, nargs="+", default=[300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0],
                   help="EASE L2 weight")
    p.add_argument("--bpr-factors", type=positive_int, nargs="+", default=[64], help="BPR-MF dimensions")
    p.add_argument("--bpr-lr", type=positive_float, nargs="+", default=[0.05, 0.2], help="BPR-MF SGD step")
    p.add_argument("--bpr-reg", type=nonnegative_float, nargs="+", default=[1e-3, 1e-2], help="BPR-MF L2 weight")
    p.add_argument("--bpr-epochs", type=positive_int, nargs="+", default=[2, 5, 10, 15],
                   help="BPR-MF epoch counts validated (one run per setting up to the largest)")
    p.add_argument("--bpr-batch", type=positive_int, default=1024, help="BPR-MF triples per SGD step")
    p.add_argument("--eval-batch", type=positive_int, default=1000, help="test users scored at once")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_flags(p, out_help="run folder (default mbgmn_tf/runs/baselines-<dataset>)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(Path(__file__).resolve().parent / "runs" / f"baselines-{args.dataset}")
    if "itemknn_all" in args.baselines and "itemknn" not in args.baselines:
        args.baselines = ["itemknn", *args.baselines]
    args.baselines = [b for b in BASELINES if b in args.baselines]
    args.select_key = f"{args.select}@{TOP_K}"
    args.behaviours = BEHAVIOURS[args.dataset]
    return args


def load(args: argparse.Namespace) -> MultiBehaviourData:
    if args.data_dir:
        return load_folder(args.data_dir, args.behaviours, args.dataset)
    return load_dataset(args.dataset)


PROTOCOL_KEYS = ("dataset", "test_seed", "seed", "val_users", "select")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    config = {k: v for k, v in vars(args).items() if k not in ("behaviours", "select_key")}
    t0 = time.perf_counter()
    data = load(args)
    val = carve_validation(data.trn_mats, args.seed, args.val_users)
    negatives = fixed_test_negatives(data, args.test_seed)
    log.info("%s; validation: %d users, one purchase each held out (%.1f s)", data.summary(), len(val.users),
             time.perf_counter() - t0)
    rec = RunRecord(args.out, paper="mbgmn_tf", dataset=args.dataset, config=config, resume=args.resume,
                    overwrite=args.overwrite, tensorboard=False, argv=argv)
    protocol = {k: getattr(args, k) for k in PROTOCOL_KEYS}
    done = {h["baseline"]: h for h in rec.history if h.get("protocol") == protocol}
    tuner = Tuner(data, val, args)
    # --resume keeps a finished baseline unless its grid (or the choice it builds on) changed
    todo = []
    for b in args.baselines:
        prior = {**{x: done[x]["params"] for x in done}, **{x: None for x in todo}}
        if b not in done or done[b]["spec"] != tuner.spec(b, prior):
            todo.append(b)
    with rec, tqdm(total=sum(tuner.grid_size(b) for b in todo), desc="grid points",
                   disable=args.no_progress) as bar:
        tuner.bar = bar
        for name in todo:
            t1 = time.perf_counter()
            prior = {b: done[b]["params"] for b in done}
            results, best, scorer = getattr(tuner, name)(prior)
            t2 = time.perf_counter()
            test = evaluate_test(scorer, data, negatives, args.eval_batch)
            chosen = choose(results, args.select_key)
            entry = {"baseline": name, **test, **{f"valid_{k}": v for k, v in chosen["valid"].items()},
                     "params": best, "seconds": round(time.perf_counter() - t1, 1),
                     "test_seconds": round(time.perf_counter() - t2, 1), "spec": tuner.spec(name, prior),
                     "grid": results, "protocol": protocol}
            rec.log_epoch(BASELINES.index(name) + 1, entry)
            done[name] = entry
            bar.write(f"{name}: chosen {best or '(no hyperparameter)'} (valid {args.select_key} "
                      f"{chosen['valid'][args.select_key]:.4f}) -> test HR@10 {test['hr@10']:.4f} NDCG@10 "
                      f"{test['ndcg@10']:.4f} | full HR@10 {test['full_hr@10']:.4f} NDCG@10 "
                      f"{test['full_ndcg@10']:.4f} | {entry['seconds']:.0f} s")
        names = [b for b in BASELINES if b in done]
        headline = {f"{b}/{m}": done[b][m] for b in names for m in METRICS}
        extra = {
            "protocol": "mbgmn_tf.data split; test lists = main.py --fixed-test-negatives --seed "
                        f"{args.test_seed} (1 + 99, positive last, duplicate of the positive ignored); full "
                        "ranking over every item not purchased by the user in training; ties against the "
                        "target (common.metrics)",
            "validation": f"{len(val.users)} users (>= 2 training purchases, default_rng([{args.seed}, 2])), one "
                          "training purchase each removed from the purchase matrix (views, carts kept); 99 "
                          f"negatives not purchased in the reduced matrix (default_rng([{args.seed}, 3]))",
            "select": args.select_key,
            "chosen": {b: done[b]["params"] for b in names},
            "grids": {b: [r["params"] for r in done[b]["grid"]] for b in names},
            "tuning": {b: [{**r["params"], **({"stage": r["stage"]} if "stage" in r else {}),
                            **{f"valid_{k}": v for k, v in r["valid"].items()}} for r in done[b]["grid"]]
                       for b in names},
            "seconds": {b: done[b]["seconds"] for b in names},
            "data": data.summary(),
        }
        table = rec.finish({b: {m: done[b][m] for m in METRICS} for b in names}, seed=args.seed, extra=extra,
                           headline=headline, selection="tuned on validation carved from training")
    print(f"\nBaselines on {args.dataset} (MB-GMN protocol), run {args.out}; chosen on validation "
          f"{args.select_key}:")
    for b in names:
        print(f"  {b}: {done[b]['params'] or '(no hyperparameter)'}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
