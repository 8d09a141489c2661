"""Tuned simple baselines under MPM's exact protocol: popularity, ItemKNN, EASE, BPR-MF.

    python -m mpm.baselines --dataset ml-100k          # all four, tuned, one run record

The split, the test cases and their 99 sampled negatives are ``mpm.data``'s (the same call as
``mpm.main``), and the metrics are ``common.metrics`` (ties counted against the target), so the
sampled protocol is MPM's by construction. Every baseline is also ranked **against all items**
the user has not interacted with in training (``full_*`` keys): the user's training items are
masked with ``-inf`` before ``common.metrics.full_ranks``.

Input of user u: every item of u's training rows, targets and their histories, as one binary
user x item matrix ``X`` (with the default split: all of u's ratings but the test item). The
test arrays are read only to evaluate the final fit.

Tuning never reads test. The validation case of user u is u's **last training target** (the only
one of u's targets that is in none of u's histories); it is removed from ``X`` for the tuning
fit, and its 99 negatives are drawn (seeded, ``--seed``) from the items not in u's row of ``X``
(the test item is unknown to tuning, so it can be drawn). Each grid point is fitted on that
reduced matrix and scored on the validation cases; the point with the best validation metric
(``--select``, default sampled HR@10, ties broken by NDCG@10, then grid order) is refitted on all
of ``X`` and evaluated once on test.

* popularity: an item's score is how many users have it in ``X`` (no hyperparameter);
* ItemKNN: cosine similarity of item columns of ``X`` with shrinkage,
  ``s_ij = x_i . x_j / (|x_i| |x_j| + shrink)``, ``s_ii = 0``, keeping each item's ``k`` most
  similar items (per column), score ``X_u . S``;
* EASE (Steck 2019): ``B = argmin |X - XB|^2 + lambda |B|^2`` with ``diag(B) = 0``, closed form
  ``P = (X^T X + lambda I)^-1``, ``B_ij = -P_ij / P_jj``, score ``X_u . B``;
* BPR-MF (Rendle et al. 2009): ``x_uij = p_u . (q_i - q_j) + b_i - b_j``, loss
  ``-log sigmoid(x_uij) + reg (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2)`` averaged over
  mini-batches of (u, i, j) triples with j drawn uniformly among the items not in u's row, Adam;
  the epoch count is tuned too (validation at each of ``--bpr-epochs``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the machine is shared; set before numpy loads its BLAS

import argparse
import itertools
import logging
import time
from typing import Any, Callable, Iterable, Optional

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from common.cli import (add_run_flags, nonnegative_float, nonnegative_int, positive_float, positive_int,
                        run_cli)
from common.metrics import full_ranks, ranking_metrics, sampled_ranks
from common.runs import RunRecord
from mpm.data import PREPROCESS_SEED, RAW_FILES, TEST_NEGATIVES, TIE_ORDERS, MPMData, load

log = logging.getLogger("mpm.baselines")

BASELINES = ("popularity", "itemknn", "ease", "bpr")
GRIDS: dict[str, Any] = dict(
    knn_k=[5, 10, 20, 50, 100, 200, 400], knn_shrink=[0.0, 10.0, 50.0, 100.0],
    ease_lambda=[10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0],
    bpr_factors=[32, 64], bpr_reg=[1e-5, 1e-4, 1e-3], bpr_lr=[3e-3, 1e-2], bpr_epochs=[10, 20, 40],
)

Scorer = Callable[[np.ndarray], np.ndarray]  # user ids [b] -> scores over all items [b, I]


# ----------------------------------------------------------------------------- inputs
def interaction_matrix(users: np.ndarray, items: np.ndarray, nb_users: int, nb_items: int) -> sp.csr_matrix:
    """Binary user x item matrix [U, I] (float64) of the (user, item) pairs, duplicates counted once."""
    keys = np.unique(np.asarray(users, np.int64) * nb_items + np.asarray(items, np.int64))
    return sp.csr_matrix((np.ones(len(keys)), (keys // nb_items, keys % nb_items)), shape=(nb_users, nb_items))


def training_matrix(data: MPMData) -> sp.csr_matrix:
    """``X`` [U, I]: every item of each user's training rows (targets and histories); reads no test array."""
    h = data.train_history.shape[1]
    users = np.concatenate([data.train_users, np.repeat(data.train_users, h)])
    items = np.concatenate([data.train_items, data.train_history.reshape(-1)])
    return interaction_matrix(users, items, data.nb_users, data.nb_items)


def validation_split(data: MPMData) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The tuning fit matrix [U, I] and each user's validation case, its last training target.

    The last target is the one target of a user that is in none of the user's histories (each
    earlier target is in the history of the next rows). Returns (``X`` without the validation
    items, validation users [V], validation items [V]); reads no test array.
    """
    n = data.nb_items
    target_keys = data.train_users * n + data.train_items
    history_keys = np.unique(data.train_users[:, None] * n + data.train_history)
    last = np.unique(target_keys[~np.isin(target_keys, history_keys)])
    users, items = last // n, last % n
    if len(np.unique(users)) != len(users) or len(users) != len(np.unique(data.train_users)):
        raise ValueError("training rows are not one sliding window per user (a user has zero or several targets "
                         "outside every history): cannot carve the validation case from training")
    X = training_matrix(data).tolil()
    X[users, items] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    return X, users, items


def row_keys(X: sp.csr_matrix) -> np.ndarray:
    """Sorted keys ``user * I + item`` of the nonzeros of X."""
    coo = X.tocoo()
    return np.sort(coo.row.astype(np.int64) * X.shape[1] + coo.col)


def sample_unseen(users: np.ndarray, X: sp.csr_matrix, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct items per user [len(users), n], uniformly among the items not in the user's row of X."""
    from mpm.data import sample_negatives  # the same sampler as the test negatives'

    return sample_negatives(users, row_keys(X), X.shape[1], n, rng)


# ----------------------------------------------------------------------------- baselines
def popularity(X: sp.csr_matrix) -> Scorer:
    """Score of item i = number of users with i in X (the same for every user)."""
    counts = np.asarray(X.sum(axis=0), np.float64).ravel()
    return lambda users: np.repeat(counts[None, :], len(users), axis=0)


def cosine_similarity(X: sp.csr_matrix, shrink: float = 0.0) -> np.ndarray:
    """``s_ij = x_i . x_j / (|x_i| |x_j| + shrink)`` over item columns of X, diagonal 0 [I, I]."""
    co = (X.T @ X).toarray()
    norms = np.sqrt(np.diag(co))
    den = np.outer(norms, norms) + shrink
    s = np.divide(co, den, out=np.zeros_like(co), where=den > 0)
    np.fill_diagonal(s, 0.0)
    return s


def keep_top_k(s: np.ndarray, k: int, order: Optional[np.ndarray] = None) -> np.ndarray:
    """``s`` with only the k largest entries of each column kept (ties: lower item id first) [I, I].

    ``order``: ``np.argsort(-s, axis=0, kind="stable")`` when already computed.
    """
    if order is None:
        order = np.argsort(-s, axis=0, kind="stable")
    top = order[:k]
    w = np.zeros_like(s)
    np.put_along_axis(w, top, np.take_along_axis(s, top, axis=0), axis=0)
    return w


def itemknn(X: sp.csr_matrix, k: int, shrink: float, cache: Optional[dict] = None) -> Scorer:
    """ItemKNN: score ``X_u . W``, W = cosine similarity with shrinkage, each item's k neighbours kept.

    ``cache`` (a dict) keeps the similarity and its column order per shrink across grid points.
    """
    key = (id(X), shrink)
    if cache is not None and key in cache:
        s, order = cache[key]
    else:
        s = cosine_similarity(X, shrink)
        order = np.argsort(-s, axis=0, kind="stable")
        if cache is not None:
            cache.clear()  # one shrink at a time: the grid loops shrink outside k
            cache[key] = (s, order)
    w = keep_top_k(s, k, order)
    return lambda users: np.asarray(X[users] @ w)


def ease_weights(X: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's B [I, I]: ``P = (X^T X + lam I)^-1``, ``B_ij = -P_ij / P_jj``, ``B_ii = 0``."""
    g = (X.T @ X).toarray()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def ease(X: sp.csr_matrix, lam: float) -> Scorer:
    """EASE: score ``X_u . B`` (:func:`ease_weights`)."""
    b = ease_weights(X, lam)
    return lambda users: np.asarray(X[users] @ b)


def bpr(X: sp.csr_matrix, factors: int, reg: float, lr: float, epochs: int, seed: int = 0, batch_size: int = 4096,
        checkpoints: Iterable[int] = (), on_checkpoint: Optional[Callable[[int, Scorer], None]] = None,
        init_std: float = 0.1) -> Scorer:
    """BPR-MF trained with Adam for ``epochs`` passes over the nonzeros of X; returns the final scorer.

    Each epoch shuffles the (u, i) pairs and draws one j per pair uniformly among the items not in
    u's row (rejection). ``on_checkpoint(epoch, scorer)`` is called after each epoch in ``checkpoints``.
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    nb_users, nb_items = X.shape
    p = (torch.randn(nb_users, factors, generator=gen) * init_std).requires_grad_()
    q = (torch.randn(nb_items, factors, generator=gen) * init_std).requires_grad_()
    b = torch.zeros(nb_items, requires_grad=True)
    opt = torch.optim.Adam([p, q, b], lr=lr)
    coo = X.tocoo()
    users, pos = coo.row.astype(np.int64), coo.col.astype(np.int64)
    keys = row_keys(X)

    def scorer(u: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (p[torch.from_numpy(u)] @ q.T + b).double().numpy()

    checkpoints = set(checkpoints)
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(len(users))
        u_all, i_all = users[perm], pos[perm]
        j_all = rng.integers(0, nb_items, len(u_all))
        todo = np.arange(len(u_all))
        while len(todo):  # redraw the j that are in u's row
            k = u_all[todo] * nb_items + j_all[todo]
            at = np.searchsorted(keys, k).clip(max=len(keys) - 1)
            todo = todo[keys[at] == k]
            j_all[todo] = rng.integers(0, nb_items, len(todo))
        u_t, i_t, j_t = (torch.from_numpy(a) for a in (u_all, i_all, j_all))
        for start in range(0, len(u_t), batch_size):
            u, i, j = u_t[start:start + batch_size], i_t[start:start + batch_size], j_t[start:start + batch_size]
            pu, qi, qj, bi, bj = p[u], q[i], q[j], b[i], b[j]
            x = (pu * (qi - qj)).sum(-1) + bi - bj
            penalty = (pu.square().sum(-1) + qi.square().sum(-1) + qj.square().sum(-1) + bi.square() + bj.square())
            loss = -F.logsigmoid(x).mean() + reg * penalty.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_checkpoint is not None and epoch in checkpoints:
            on_checkpoint(epoch, scorer)
    return scorer


# ----------------------------------------------------------------------------- evaluation
def evaluate(score: Scorer, X: sp.csr_matrix, users: np.ndarray, targets: np.ndarray, negatives: np.ndarray,
             k: int = 10, batch_users: int = 1024) -> dict[str, float]:
    """HR@K / NDCG@K of each user's target among itself and its negatives [n, C] (sampled) and among all
    items with the user's row of X masked to ``-inf`` (``full_*``); ties counted against the target."""
    sampled, full = [], []
    for start in range(0, len(users), batch_users):
        sl = slice(start, start + batch_users)
        u = users[sl]
        s = np.array(score(u), dtype=np.float64)                                  # [b, I]
        cand = np.c_[targets[sl], negatives[sl]]
        sampled.append(sampled_ranks(np.take_along_axis(s, cand, axis=1), pos_col=0))
        rows = X[u].tocoo()
        s[rows.row, rows.col] = -np.inf
        full.append(full_ranks(s, targets[sl]))
    m = ranking_metrics(np.concatenate(sampled), ks=(k,))
    m.update({f"full_{name}": v for name, v in ranking_metrics(np.concatenate(full), ks=(k,)).items()})
    return m


# ----------------------------------------------------------------------------- tuning
def grid(name: str, grids: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid points of a baseline, in the order they are tried (BPR's epochs are checkpoints of one fit)."""
    if name == "popularity":
        return [{}]
    if name == "itemknn":
        return [{"shrink": s, "k": k} for s in grids["knn_shrink"] for k in grids["knn_k"]]
    if name == "ease":
        return [{"lambda": lam} for lam in grids["ease_lambda"]]
    if name == "bpr":
        return [{"factors": f, "reg": r, "lr": lr, "epochs": e} for f, r, lr in
                itertools.product(grids["bpr_factors"], grids["bpr_reg"], grids["bpr_lr"])
                for e in sorted(grids["bpr_epochs"])]
    raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")


def fit_and_score(name: str, X: sp.csr_matrix, params: dict[str, Any], seed: int, bpr_batch: int,
                  cache: Optional[dict] = None) -> Scorer:
    """Fit one baseline with one grid point on X."""
    if name == "popularity":
        return popularity(X)
    if name == "itemknn":
        return itemknn(X, int(params["k"]), float(params["shrink"]), cache)
    if name == "ease":
        return ease(X, float(params["lambda"]))
    if name == "bpr":
        return bpr(X, int(params["factors"]), float(params["reg"]), float(params["lr"]), int(params["epochs"]),
                   seed, bpr_batch)
    raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")


def select(results: list[dict[str, Any]], metric: str, k: int = 10) -> dict[str, Any]:
    """The grid result with the best validation ``metric``; ties: better NDCG@K, then earlier in the grid."""
    tie = f"{'full_' if metric.startswith('full_') else ''}ndcg@{k}"
    best = max(range(len(results)), key=lambda n: (results[n]["valid"][metric], results[n]["valid"][tie], -n))
    return results[best]


def tune(name: str, X_fit: sp.csr_matrix, valid_users: np.ndarray, valid_items: np.ndarray,
         valid_negatives: np.ndarray, grids: dict[str, Any], seed: int = 0, k: int = 10, bpr_batch: int = 4096,
         batch_users: int = 1024, bar: Optional[tqdm] = None) -> list[dict[str, Any]]:
    """Validation metrics of every grid point of ``name`` fitted on ``X_fit``: [{"params", "valid", "seconds"}]."""
    results: list[dict[str, Any]] = []

    def record(params: dict[str, Any], score: Scorer, t0: float) -> None:
        m = evaluate(score, X_fit, valid_users, valid_items, valid_negatives, k, batch_users)
        results.append({"params": dict(params), "valid": m, "seconds": round(time.perf_counter() - t0, 3)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{name} {params} HR {m[f'hr@{k}']:.4f}")

    if name == "bpr":  # one fit per (factors, reg, lr), validated at each epoch checkpoint
        epochs = sorted(grids["bpr_epochs"])
        for f, r, lr in itertools.product(grids["bpr_factors"], grids["bpr_reg"], grids["bpr_lr"]):
            t0 = time.perf_counter()
            bpr(X_fit, f, r, lr, max(epochs), seed, bpr_batch, epochs,
                lambda e, s: record({"factors": f, "reg": r, "lr": lr, "epochs": e}, s, t0))  # noqa: B023
        return results
    cache: dict = {}
    for params in grid(name, grids):
        t0 = time.perf_counter()
        record(params, fit_and_score(name, X_fit, params, seed, bpr_batch, cache), t0)
    return results


def tuning_inputs(data: MPMData, seed: int, negatives: int = TEST_NEGATIVES
                  ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """(tuning fit matrix, validation users, items, negatives): training arrays only; negatives seeded."""
    X_fit, vu, vi = validation_split(data)
    vneg = sample_unseen(vu, training_matrix(data), negatives, np.random.default_rng(seed))
    return X_fit, vu, vi, vneg


# ----------------------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    g = GRIDS
    p = argparse.ArgumentParser(
        prog="python -m mpm.baselines",
        description="Popularity, ItemKNN, EASE and BPR-MF under MPM's protocol (mpm.data split, 1 test item + 99 "
                    "sampled negatives, and full ranking over all unseen items), each tuned on a validation case "
                    "carved from the training data (each user's last training target).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(RAW_FILES), default="ml-100k",
                   help="raw ratings through common.datasets (only ml-100k is in the offline mirror)")
    p.add_argument("--tie-order", choices=TIE_ORDERS, default="authors",
                   help="order of same-second ratings in mpm.data (authors = the notebook's split, as mpm.main)")
    p.add_argument("--preprocess-seed", type=nonnegative_int, default=PREPROCESS_SEED,
                   help="seed of the test negatives drawn in preprocessing (as mpm.main)")
    p.add_argument("--cache-dir", default=None, help="preprocessed-data cache folder (as mpm.main)")
    p.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(BASELINES), help="baselines to run")
    p.add_argument("--knn-k", nargs="+", type=positive_int, default=g["knn_k"], help="ItemKNN neighbourhood sizes")
    p.add_argument("--knn-shrink", nargs="+", type=nonnegative_float, default=g["knn_shrink"],
                   help="ItemKNN cosine shrinkage terms")
    p.add_argument("--ease-lambda", nargs="+", type=positive_float, default=g["ease_lambda"],
                   help="EASE L2 penalties")
    p.add_argument("--bpr-factors", nargs="+", type=positive_int, default=g["bpr_factors"], help="BPR-MF factors")
    p.add_argument("--bpr-reg", nargs="+", type=nonnegative_float, default=g["bpr_reg"],
                   help="BPR-MF L2 penalty per triple")
    p.add_argument("--bpr-lr", nargs="+", type=positive_float, default=g["bpr_lr"], help="BPR-MF Adam learning rates")
    p.add_argument("--bpr-epochs", nargs="+", type=positive_int, default=g["bpr_epochs"],
                   help="BPR-MF epoch counts tried (validation after each of these epochs of one fit)")
    p.add_argument("--bpr-batch-size", type=positive_int, default=4096, help="BPR-MF triples per Adam step")
    p.add_argument("--select", choices=("hr", "ndcg", "full_hr", "full_ndcg"), default="hr",
                   help="validation metric (at --topk) that picks each baseline's grid point")
    p.add_argument("--topk", type=positive_int, default=10, help="K of HR@K and NDCG@K")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the validation negatives and of BPR-MF (init, triples)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument("--eval-batch-users", type=positive_int, default=1024, help="users scored per batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_flags(p, out_help="run folder (default: mpm/runs/baselines-<dataset>)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(Path(__file__).resolve().parent / "runs" / f"baselines-{args.dataset}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    torch.set_num_threads(args.threads)
    k = args.topk
    metric = f"{args.select}@{k}"
    grids = {name: getattr(args, name) for name in GRIDS}
    config = dict(vars(args))
    rec = RunRecord(args.out, paper="mpm", dataset=args.dataset, config=config, resume=args.resume,
                    overwrite=args.overwrite, tensorboard=False, setting="baselines", argv=argv)

    t0 = time.perf_counter()
    data = load(args.dataset, cache=args.cache_dir, tie_order=args.tie_order, seed=args.preprocess_seed)
    X = training_matrix(data)
    # as many validation negatives as test negatives (the protocol's candidate count, not their values)
    X_fit, vu, vi, vneg = tuning_inputs(data, args.seed, data.test_negatives.shape[1])
    seen_test = int(np.asarray(X[data.test_users, data.test_items]).sum())
    log.info("data %s in %.1f s: %s; X %d nonzeros, tuning fit %d, %d validation cases; test items in X: %d",
             args.dataset, time.perf_counter() - t0, data.summary(), X.nnz, X_fit.nnz, len(vu), seen_test)

    # --resume keeps the baselines already finished; a requested one whose grid changed runs again
    done = {h["baseline"]: h for h in rec.history if "baseline" in h}
    todo = [b for b in args.baselines if b not in done or [r["params"] for r in done[b]["grid"]] != grid(b, grids)]
    n_points = sum(len(grid(b, grids)) for b in todo)
    with rec, tqdm(total=n_points, desc="grid", disable=args.no_progress) as bar:
        for name in todo:
            t1 = time.perf_counter()
            results = tune(name, X_fit, vu, vi, vneg, grids, args.seed, k, args.bpr_batch_size,
                           args.eval_batch_users, bar)
            best = select(results, metric, k)
            tune_seconds = time.perf_counter() - t1
            t2 = time.perf_counter()
            score = fit_and_score(name, X, best["params"], args.seed, args.bpr_batch_size)
            test = evaluate(score, X, data.test_users, data.test_items, data.test_negatives, k,
                            args.eval_batch_users)
            entry = {"baseline": name, **test, **{f"valid_{m}": v for m, v in best["valid"].items()},
                     "params": best["params"], "tune_seconds": round(tune_seconds, 2),
                     "test_fit_seconds": round(time.perf_counter() - t2, 2), "grid": results}
            rec.log_epoch(BASELINES.index(name) + 1, entry)
            done[name] = rec.history[[h.get("baseline") for h in rec.history].index(name)]
            bar.write(f"{name}: chosen {best['params'] or '(no hyperparameter)'} (valid {metric} "
                      f"{best['valid'][metric]:.4f}) -> test HR@{k} {test[f'hr@{k}']:.4f} NDCG@{k} "
                      f"{test[f'ndcg@{k}']:.4f} | full HR@{k} {test[f'full_hr@{k}']:.4f} NDCG@{k} "
                      f"{test[f'full_ndcg@{k}']:.4f} | tuning {tune_seconds:.1f} s")

        names = [b for b in BASELINES if b in done]
        keys = [f"hr@{k}", f"ndcg@{k}", f"full_hr@{k}", f"full_ndcg@{k}"]
        metrics = {b: {m: done[b][m] for m in keys} for b in names}
        headline = {f"{b}/{m}": done[b][m] for b in names for m in keys}
        chosen = {b: done[b]["params"] for b in names}
        tuning = {b: [{**r["params"], **{f"valid_{m}": r["valid"][m] for m in keys}} for r in done[b]["grid"]]
                  for b in names}
        table = rec.finish(
            metrics, seed=args.seed, device="cpu",
            extra={"protocol": "mpm.data split and test candidates (1 + 99); full ranking over every item not in "
                               "the user's training rows; ties against the target (common.metrics)",
                   "validation": "each user's last training target, removed from the tuning fit; 99 negatives "
                                 "among the items not in the user's training rows (seeded by --seed)",
                   "select": metric, "grids": {b: [r["params"] for r in done[b]["grid"]] for b in names},
                   "chosen": chosen,
                   "tuning": tuning, "data": data.summary(), "test_items_in_training": seen_test,
                   "seconds": {b: {"tune": done[b]["tune_seconds"], "test_fit": done[b]["test_fit_seconds"]}
                               for b in names}},
            headline=headline, selection="tuned on validation carved from training")
    print(f"\nBaselines on {args.dataset} (MPM protocol), run {args.out}")
    for b in names:
        print(f"  {b}: {chosen[b] or '(no hyperparameter)'}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
