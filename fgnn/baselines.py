"""Tuned simple session baselines under FGNN's exact protocol: S-POP, AR, SR, SKNN, V-SKNN.

    python -m fgnn.baselines --dataset diginetica          # record in fgnn/runs/baselines-diginetica
    python -m fgnn.baselines --dataset yoochoose1_64 --resume

The protocol is the model's by construction: the same SR-GNN split (``fgnn.data.load_splits``), every
test prefix ranked against every item (``common.metrics.full_ranks``, ties pessimistic, nothing
masked), Recall@20 and MRR@20 x100 as ``fgnn.main`` prints them.

Training data. SR-GNN's ``train.txt`` holds every prefix of every training session, longest first
(``(s[:-1], s[-1]), (s[:-2], s[-2]), ..., (s[:1], s[1])``), so a session ends at its one-click prefix
and ``s`` is the first prefix plus its label (:func:`sessions_from_prefixes`). The baselines learn
from these full sessions (Diginetica: 186,670 sessions from 719,470 prefixes). Yoochoose 1/64's
first session is cut by SR-GNN's 1/64 tail and is kept as it appears.

Tuning. The last 10% of the training sessions (in split order, which is date order) are the
validation sessions; the rest are the fit sessions. The validation sessions get the test split's
rules (clicks on items unseen in the fit sessions dropped, sessions left shorter than 2 dropped,
every prefix an example). Each grid point is scored on validation MRR@20 (``--tune-metric``); the
best one is refit on all training sessions and evaluated once on test. Test is read only then.

Baselines (Ludewig & Jannach 2018, session-rec's definitions; item-item and session-item matrices
in ``scipy.sparse``, a batch of prefixes scored at once):

* ``spop``: count of the item in the current prefix + p / (p + 1), p its click count in training;
* ``ar``: association rules, ``C[a, b]`` = pairs of positions (i != j) of a training session holding
  a and b; the prefix's last item's row is the score;
* ``sr``: sequential rules, ``R[a, b]`` = sum over b following a within ``steps`` positions of
  1 / distance; the last item's row is the score (``steps`` tuned);
* ``sknn``: session kNN; candidates are the ``sample`` most recent training sessions sharing an item
  with the prefix (0 = all), similarity cosine on item sets |q & n| / sqrt(|q| |n|), the ``k`` most
  similar vote for their items with their similarity (``k``, ``sample`` tuned);
* ``vsknn``: as sknn, with the prefix's items weighted linearly by position (the i-th of L clicks
  weighs i / L; a repeated item keeps its last position) and a dot-product similarity.

session-rec prunes AR/SR rules to the 20 strongest per item; that cannot change a top-20 list, so
it is not applied. Its cosine reads ``li / sqrt(la) * sqrt(lb)`` (precedence); we use the cosine.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import time
from typing import Any, Callable, Optional, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from common.cli import add_run_flags, nonnegative_int, positive_int, probability, run_cli
from common.metrics import full_ranks, mrr_at_k, recall_at_k
from common.runs import RunRecord, prepare_out
from fgnn.data import DATASETS, Split, _ptr, _ranges, augment, load_splits, resolve_source

BASELINES = ("spop", "ar", "sr", "sknn", "vsknn")
TOP_K = 20
METRICS = (f"recall@{TOP_K}", f"mrr@{TOP_K}")
DEFAULT_GRID = {"sr_steps": (1, 2, 3, 5, 10, 20), "knn_k": (50, 100, 200, 500),
                "knn_sample": (500, 1000, 5000, 0)}


# ----------------------------------------------------------------------------- sessions
def sessions_from_prefixes(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The full sessions behind SR-GNN's prefix examples.

    A session starts at the first example or right after a one-click example; it is that
    example's clicks followed by its label. Returns (items [clicks], ptr [sessions + 1]).
    """
    lengths = np.diff(split.ptr)
    starts = np.flatnonzero(np.r_[True, lengths[:-1] == 1])
    size = lengths[starts] + 1
    ptr = _ptr(size)
    items = np.empty(int(ptr[-1]), dtype=np.int64)
    inside = np.ones(len(items), dtype=bool)
    inside[ptr[1:] - 1] = False
    items[inside] = split.items[_ranges(split.ptr[starts], lengths[starts])]
    items[ptr[1:] - 1] = split.labels[starts]
    return items, ptr


def take_sessions(items: np.ndarray, ptr: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = np.diff(ptr)[which]
    return items[_ranges(ptr[which], size)], _ptr(size)


def carve_validation(items: np.ndarray, ptr: np.ndarray, share: float
                     ) -> tuple[tuple[np.ndarray, np.ndarray], Split]:
    """Fit sessions (the first 1 - ``share`` of the sessions) and validation prefixes (the rest).

    The validation sessions get SR-GNN's test rules: clicks on items not in the fit sessions are
    dropped, then sessions shorter than 2, then every prefix is an example (:func:`augment`).
    """
    n = len(ptr) - 1
    n_fit = n - max(1, int(round(share * n)))
    fit = take_sessions(items, ptr, np.arange(n_fit))
    v_items, v_ptr = take_sessions(items, ptr, np.arange(n_fit, n))
    known = np.zeros(max(int(items.max()), 0) + 1, dtype=bool)
    known[fit[0]] = True
    session = np.repeat(np.arange(n - n_fit), np.diff(v_ptr))
    seen = known[v_items]
    size = np.bincount(session[seen], minlength=n - n_fit)
    keep = seen & (size[session] >= 2)
    return fit, augment(v_items[keep], _ptr(size[size >= 2]))


def session_matrix(items: np.ndarray, ptr: np.ndarray, n_cols: int, binary: bool) -> sp.csr_matrix:
    """[sessions, n_cols] click counts (or 1 where the session holds the item)."""
    rows = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    m = sp.csr_matrix((np.ones(len(items)), (rows, items)), shape=(len(ptr) - 1, n_cols))
    if binary:
        m.data[:] = 1.0
    return m


class Query:
    """A batch of examples (prefixes) as sparse rows over the item columns (column = item id).

    ``counts`` [B, n_cols] clicks per item; ``binary`` 1 per distinct item; ``recency`` i / L for the
    last position i (1-based) of each item in a prefix of L clicks; ``last`` [B] last clicked item;
    ``targets`` [B]; ``cache``: per-batch intermediate results shared by a baseline's grid points.
    """

    def __init__(self, split: Split, idx: np.ndarray, n_cols: int):
        lengths = split.ptr[idx + 1] - split.ptr[idx]
        rows = np.repeat(np.arange(len(idx)), lengths)
        cols = split.items[_ranges(split.ptr[idx], lengths)]
        position = np.arange(len(cols)) - np.repeat(_ptr(lengths)[:-1], lengths) + 1
        shape = (len(idx), n_cols)
        self.counts = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=shape)
        self.binary = self.counts.copy()
        self.binary.data[:] = 1.0
        _, first_from_end = np.unique((rows * n_cols + cols)[::-1], return_index=True)
        last = len(cols) - 1 - first_from_end
        self.recency = sp.csr_matrix(((position / np.repeat(lengths, lengths))[last], (rows[last], cols[last])),
                                     shape=shape)
        self.last = cols[_ptr(lengths)[1:] - 1]
        self.targets = split.labels[idx]
        self.cache: dict[Any, Any] = {}


# ----------------------------------------------------------------------------- baselines
class SPop:
    """Session popularity: clicks in the prefix, ties broken by training popularity p / (p + 1)."""

    name, params = "spop", ()

    def fit(self, items: np.ndarray, ptr: np.ndarray, n_cols: int, grid: Sequence[dict]) -> None:
        pop = np.bincount(items, minlength=n_cols).astype(np.float64)
        self.prior = pop / (pop + 1.0)

    def score(self, q: Query, p: dict) -> np.ndarray:
        return q.counts.toarray() + self.prior  # float64: p / (p + 1) differs below float32's resolution


class AR:
    """Association rules: C = X^T X - diag(clicks), X the [sessions, items] click counts."""

    name, params = "ar", ()

    def fit(self, items: np.ndarray, ptr: np.ndarray, n_cols: int, grid: Sequence[dict]) -> None:
        x = session_matrix(items, ptr, n_cols, binary=False)
        c = (x.T @ x).tocsr() - sp.diags(np.asarray(x.sum(axis=0)).ravel())  # pairs of distinct positions
        c.eliminate_zeros()
        self.rules = c.tocsr()

    def score(self, q: Query, p: dict) -> sp.csr_matrix:
        return self.rules[q.last]


class SR:
    """Sequential rules: R[a, b] += 1 / d for b clicked d <= steps positions after a in a session."""

    name, params = "sr", ("steps",)

    def fit(self, items: np.ndarray, ptr: np.ndarray, n_cols: int, grid: Sequence[dict]) -> None:
        session = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
        self.rules: dict[int, sp.csr_matrix] = {}
        total = sp.csr_matrix((n_cols, n_cols))
        wanted = sorted({g["steps"] for g in grid})
        for d in range(1, max(wanted) + 1):
            j = np.flatnonzero(session[d:] == session[:-d])  # position j and j + d in one session
            total = total + sp.csr_matrix((np.full(len(j), 1.0 / d), (items[j], items[j + d])),
                                          shape=(n_cols, n_cols))
            if d in wanted:
                self.rules[d] = total.tocsr()

    def score(self, q: Query, p: dict) -> sp.csr_matrix:
        return self.rules[p["steps"]][q.last]


class SKNN:
    """Session kNN on item sets (cosine), ``sample`` most recent candidates, ``k`` neighbours."""

    name, params = "sknn", ("k", "sample")

    def fit(self, items: np.ndarray, ptr: np.ndarray, n_cols: int, grid: Sequence[dict]) -> None:
        self.sessions = session_matrix(items, ptr, n_cols, binary=True)  # row order = recency
        self.by_item = self.sessions.T.tocsr()
        self.size = np.diff(self.sessions.indptr).astype(np.float64)  # distinct items per session

    def similarity(self, q: Query) -> sp.csr_matrix:
        """[B, sessions] similarity to every training session sharing an item with the prefix."""
        overlap = (q.binary @ self.by_item).tocsr()
        rows = np.repeat(np.arange(overlap.shape[0]), np.diff(overlap.indptr))
        q_size = np.diff(q.binary.indptr).astype(np.float64)
        overlap.data = overlap.data / np.sqrt(q_size[rows] * self.size[overlap.indices])
        return overlap

    def score(self, q: Query, p: dict) -> sp.csr_matrix:
        key = (self.name, "sim")
        if key not in q.cache:
            q.cache[key] = self.similarity(q)
        if (key, p["sample"]) not in q.cache:  # candidates sorted once per sample size, cut per k
            q.cache[(key, p["sample"])] = by_strength(most_recent(q.cache[key], p["sample"]))
        neighbours = strongest(q.cache[(key, p["sample"])], p["k"])
        return (neighbours @ self.sessions).tocsr()


class VSKNN(SKNN):
    """SKNN with the prefix's items weighted i / L by position and a dot-product similarity."""

    name = "vsknn"

    def similarity(self, q: Query) -> sp.csr_matrix:
        return (q.recency @ self.by_item).tocsr()


def most_recent(sim: sp.csr_matrix, sample: int) -> sp.csr_matrix:
    """Per row, only the ``sample`` candidates with the largest session index (0 = all)."""
    sim = sim.copy()
    sim.sort_indices()
    if sample <= 0:
        return sim
    rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
    keep = sim.indptr[rows + 1] - 1 - np.arange(sim.nnz) < sample
    return sp.csr_matrix((sim.data[keep], sim.indices[keep], _ptr(np.bincount(rows[keep], minlength=sim.shape[0]))),
                         shape=sim.shape)


def by_strength(sim: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``sim`` with each row's entries in decreasing order (ties: the more recent session first),
    and each entry's place in its row (0 = strongest)."""
    rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
    order = np.lexsort((-sim.indices, -sim.data, rows))
    ordered = sp.csr_matrix((sim.data[order], sim.indices[order], sim.indptr), shape=sim.shape)
    return ordered, np.arange(sim.nnz) - sim.indptr[rows]


def strongest(ranked: tuple[sp.csr_matrix, np.ndarray], k: int) -> sp.csr_matrix:
    """Per row, the ``k`` strongest entries of a :func:`by_strength` result."""
    sim, place = ranked
    keep = place < k
    return sp.csr_matrix((sim.data[keep], sim.indices[keep], _ptr(np.minimum(np.diff(sim.indptr), k))),
                         shape=sim.shape)


MODELS: dict[str, Callable[[], Any]] = {"spop": SPop, "ar": AR, "sr": SR, "sknn": SKNN, "vsknn": VSKNN}


# ----------------------------------------------------------------------------- ranking
def sparse_full_ranks(scores: sp.csr_matrix, targets: np.ndarray) -> np.ndarray:
    """``common.metrics.full_ranks`` of non-negative sparse scores, without densifying.

    Absent entries score 0. A target scoring 0 ties with every absent item and ranks last
    (n - 1), as it does densely; otherwise its rank is the number of entries >= its score, less one.
    """
    scores = scores.tocsr()
    n_rows, n = scores.shape
    rows = np.repeat(np.arange(n_rows), np.diff(scores.indptr))
    target_score = np.asarray(scores[np.arange(n_rows), targets]).ravel()
    above = np.bincount(rows[scores.data >= target_score[rows]], minlength=n_rows)
    return np.where(target_score > 0, above - 1, n - 1).astype(np.int64)


def metrics_of(ranks: np.ndarray) -> dict[str, float]:
    """Recall@20 and MRR@20 x100, as ``fgnn.main.evaluate`` reports them."""
    return {f"recall@{TOP_K}": 100 * recall_at_k(ranks, TOP_K), f"mrr@{TOP_K}": 100 * mrr_at_k(ranks, TOP_K)}


def rank_grid(model: Any, split: Split, n_cols: int, grid: Sequence[dict], batch_size: int, dense: bool,
              bar: Optional[tqdm] = None) -> list[np.ndarray]:
    """Ranks of every example of ``split`` for every grid point; columns 1..n are the items
    (``fgnn.main`` ranks item i in column i - 1; column 0, the unused id 0, is dropped).

    ``dense``: through ``common.metrics.full_ranks`` (test); else :func:`sparse_full_ranks` (the
    same ranks, tested equal; used for the validation grid).
    """
    ranks: list[list[np.ndarray]] = [[] for _ in grid]
    for lo in range(0, len(split), batch_size):
        q = Query(split, np.arange(lo, min(lo + batch_size, len(split))), n_cols)
        for j, params in enumerate(grid):
            s = model.score(q, params)
            if dense or isinstance(s, np.ndarray):
                s = s if isinstance(s, np.ndarray) else s.toarray()
                ranks[j].append(full_ranks(s[:, 1:], q.targets - 1))
            else:
                ranks[j].append(sparse_full_ranks(s[:, 1:], q.targets - 1))
        if bar is not None:
            bar.update(len(q.targets))
    return [np.concatenate(r) for r in ranks]


# ----------------------------------------------------------------------------- tuning
def grid_for(name: str, args: argparse.Namespace) -> list[dict]:
    if name == "sr":
        return [{"steps": s} for s in args.sr_steps]
    if name in ("sknn", "vsknn"):
        return [{"k": k, "sample": m} for m in args.knn_sample for k in args.knn_k]
    return [{}]


def tune(name: str, train: Split, n_cols: int, grid: list[dict], valid_share: float, metric: str,
         batch_size: int, bar: Optional[tqdm] = None) -> tuple[dict, list[dict]]:
    """The grid point with the best validation ``metric`` (first on ties) and every point's metrics.

    Reads the training split only: fit on its first sessions, score its last ``valid_share``.
    """
    if len(grid) == 1:
        return grid[0], []
    items, ptr = sessions_from_prefixes(train)
    (fit_items, fit_ptr), valid = carve_validation(items, ptr, valid_share)
    model = MODELS[name]()
    model.fit(fit_items, fit_ptr, n_cols, grid)
    ranks = rank_grid(model, valid, n_cols, grid, batch_size, dense=False, bar=bar)
    table = [{**params, **metrics_of(r)} for params, r in zip(grid, ranks)]
    best = max(range(len(grid)), key=lambda j: (table[j][metric], -j))
    return grid[best], table


def test(name: str, train: Split, test_split: Split, n_cols: int, params: dict, batch_size: int,
         bar: Optional[tqdm] = None) -> dict[str, float]:
    """Fit on every training session with ``params``; Recall@20, MRR@20 on the test prefixes."""
    items, ptr = sessions_from_prefixes(train)
    model = MODELS[name]()
    model.fit(items, ptr, n_cols, [params])
    return metrics_of(rank_grid(model, test_split, n_cols, [params], batch_size, dense=True, bar=bar)[0])


# ----------------------------------------------------------------------------- command line
def int_list(kind: Callable[[str], int]) -> Callable[[str], tuple[int, ...]]:
    def parse(text: str) -> tuple[int, ...]:
        parts = [t for t in text.split(",") if t.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers")
        return tuple(kind(t.strip()) for t in parts)
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def baseline_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in BASELINES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown baseline(s) {bad}; valid: {','.join(BASELINES)}")
    return names


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fgnn.baselines", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="diginetica", choices=sorted(DATASETS),
                   help="SR-GNN split, the same as python -m fgnn.main --dataset")
    p.add_argument("--source", default="auto", choices=["auto", "raw", "prepared"],
                   help="raw click log or SR-GNN's prepared pickles (as fgnn.main)")
    p.add_argument("--baselines", type=baseline_list, default=BASELINES,
                   help=f"comma-separated subset of {','.join(BASELINES)}")
    p.add_argument("--valid-share", type=probability, default=0.1,
                   help="share of the training sessions (the last ones) held out to tune on")
    p.add_argument("--tune-metric", default=f"mrr@{TOP_K}", choices=list(METRICS),
                   help="validation metric that picks each baseline's hyperparameters")
    p.add_argument("--sr-steps", type=int_list(positive_int), default=DEFAULT_GRID["sr_steps"],
                   help="SR grid: how many following positions a rule reaches (comma-separated)")
    p.add_argument("--knn-k", type=int_list(positive_int), default=DEFAULT_GRID["knn_k"],
                   help="SKNN/V-SKNN grid: neighbours (comma-separated)")
    p.add_argument("--knn-sample", type=int_list(nonnegative_int), default=DEFAULT_GRID["knn_sample"],
                   help="SKNN/V-SKNN grid: most recent candidate sessions (0 = all; comma-separated)")
    p.add_argument("--batch-size", type=positive_int, default=500, help="prefixes scored at once")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_flags(p, out_help="run folder (default fgnn/runs/baselines-<dataset>); --resume skips the "
                              "baselines it already holds")
    args = p.parse_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other: continue the run, or start it again")
    if args.valid_share <= 0:
        p.error("--valid-share must be above 0: the hyperparameters are tuned on it")
    if args.out is None:
        args.out = str(Path(__file__).resolve().parent / "runs" / f"baselines-{args.dataset}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    prepare_out(args.out, args.resume, args.overwrite)
    t0 = time.perf_counter()
    source = resolve_source(args.dataset, args.source)
    train, test_split = load_splits(args.dataset, source)
    n_items = int(max(train.items.max(), train.labels.max(), test_split.items.max(), test_split.labels.max()))
    n_cols = n_items + 1
    items, ptr = sessions_from_prefixes(train)
    (_, fit_ptr), valid = carve_validation(items, ptr, args.valid_share)
    data = {"dataset": args.dataset, "source": source, "n_items": n_items, "train_examples": len(train),
            "train_sessions": len(ptr) - 1, "fit_sessions": len(fit_ptr) - 1,
            "valid_sessions": len(ptr) - len(fit_ptr), "valid_examples": len(valid), "test_examples": len(test_split),
            "load_seconds": round(time.perf_counter() - t0, 1)}
    print("[data] " + ", ".join(f"{k} {v}" for k, v in data.items()), flush=True)
    config = {**vars(args), "data": data}
    grids = {name: grid_for(name, args) for name in args.baselines}
    with RunRecord(args.out, paper="fgnn", dataset=args.dataset, setting="fgnn", config=config,
                   resume=args.resume, overwrite=args.overwrite, tensorboard=False) as rec:
        done = {h["baseline"]: h for h in rec.history if "baseline" in h}
        todo = [n for n in args.baselines if n not in done]
        work = sum((len(valid) if len(grids[n]) > 1 else 0) + len(test_split) for n in todo)
        with tqdm(total=work, desc="baselines", unit="ex", mininterval=5, disable=args.no_progress) as bar:
            for name in todo:
                t1 = time.perf_counter()
                bar.set_postfix_str(name)
                chosen, table = tune(name, train, n_cols, grids[name], args.valid_share, args.tune_metric,
                                     args.batch_size, bar)
                t2 = time.perf_counter()
                result = test(name, train, test_split, n_cols, chosen, args.batch_size, bar)
                rec.log_epoch(BASELINES.index(name) + 1, {
                    "baseline": name, **result, "chosen": chosen, "validation": table,
                    "tune_seconds": round(t2 - t1, 1), "test_seconds": round(time.perf_counter() - t2, 1)})
                tqdm.write(f"[{name}] chosen {chosen or '(no hyperparameters)'}: " +
                           ", ".join(f"{k} {v:.2f}" for k, v in result.items()) +
                           f" (tune {t2 - t1:.0f} s, test {time.perf_counter() - t2:.0f} s)")
                done[name] = rec.history[-1]
        names = [n for n in BASELINES if n in done]
        metrics = {n: {m: done[n][m] for m in METRICS} for n in names}
        chosen = {n: done[n]["chosen"] for n in names}
        table = rec.finish(
            metrics, headline={f"{n}/{m}": done[n][m] for n in names for m in METRICS},
            selection="tuned on validation carved from training",
            extra={"data": data, "grid": {n: grids.get(n, grid_for(n, args)) for n in names}, "chosen": chosen,
                   "validation": {n: done[n]["validation"] for n in names}, "tune_metric": args.tune_metric,
                   "scale": "x100, as fgnn.main reports Recall@20 and MRR@20"})
    print(table)
    print("chosen hyperparameters (validation " + args.tune_metric + "): " +
          "; ".join(f"{n} {chosen[n] or '-'}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
