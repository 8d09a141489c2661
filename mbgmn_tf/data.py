"""MB-GMN data: the authors' pickled behaviour matrices -> normalised adjacencies and samples.

Step by step (the notebook's ``DataHandler`` and helper functions, vectorised):

1. ``load_dataset``: per behaviour a pickled scipy CSR user x item matrix ``trn_<behaviour>``,
   binarised with ``!= 0`` (Tmall stores timestamps); behaviours in order, target last.
   ``tst_int`` holds per user the held-out purchase or ``None``.
2. ``symmetric_normalize``: each behaviour's adjacency scaled by
   ``1 / (sqrt(deg + 1e-8) + 1e-8)`` on both sides (the notebook's ``transToLsts(norm=True)``).
3. ``PairSampler``: per epoch user, up to ``sampNum`` (positive, negative) pairs per behaviour,
   negatives never positives of that behaviour (``sampleTrainBatch``).
4. ``sample_test_negatives``: per test user 99 items not purchased in training (``sampleTestBatch``).
5. ``sample_large_graph``: the notebook's budget-weighted sub-graph sampling for graphs that do
   not fit (``sampleLargeGraph``), on the row-normalised union graph of ``global_adjacency``.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from common.cli import DataError
from common.datasets import DatasetUnavailableError, fetch_file

# Behaviours in the authors' order; the last one is the target (purchase).
BEHAVIOURS: dict[str, tuple[str, ...]] = {
    "beibei": ("pv", "cart", "buy"),
    "tmall": ("pv", "fav", "cart", "buy"),
}

SparseLists = tuple[np.ndarray, np.ndarray, tuple[int, int]]  # indices [nnz, 2], values [nnz], shape


@dataclass
class MultiBehaviourData:
    """One dataset in memory.

    trn_mats: per behaviour a binary float32 CSR matrix [users, items] (sorted indices).
    tst_int: int64 [users], the held-out item of each test user, -1 for the others.
    tst_users: int64 [test_users], the users with a held-out item (ascending, as the notebook).
    """

    name: str
    behaviours: tuple[str, ...]
    trn_mats: list[sp.csr_matrix]
    tst_int: np.ndarray
    tst_users: np.ndarray

    @property
    def n_users(self) -> int:
        return self.trn_mats[0].shape[0]

    @property
    def n_items(self) -> int:
        return self.trn_mats[0].shape[1]

    @property
    def target(self) -> sp.csr_matrix:
        return self.trn_mats[-1]

    def summary(self) -> str:
        nnz = ", ".join(f"{b} {m.nnz:,}" for b, m in zip(self.behaviours, self.trn_mats))
        return (f"{self.name}: {self.n_users:,} users x {self.n_items:,} items; nonzeros {nnz}; "
                f"{len(self.tst_users):,} test users")


# ----------------------------------------------------------------------------- 1. loading
def read_behaviour_matrix(path: str | Path) -> sp.csr_matrix:
    """A pickled CSR matrix, binarised (``!= 0``) to float32 with sorted column indices."""
    with warnings.catch_warnings():  # pickles name scipy.sparse.csr.csr_matrix (deprecated path)
        warnings.simplefilter("ignore", DeprecationWarning)
        with open(path, "rb") as f:
            mat = pickle.load(f)
    mat = sp.csr_matrix((mat != 0).astype(np.float32))
    mat.sort_indices()
    return mat


def read_test_items(path: str | Path) -> np.ndarray:
    """``tst_int`` (a list with an item id or None per user) as int64 [users], -1 for None."""
    with open(path, "rb") as f:
        raw = pickle.load(f)
    return np.array([-1 if x is None else int(x) for x in raw], dtype=np.int64)


def _read_or_data_error(reader, path: Path, what: str):
    """``reader(path)``; a missing or malformed file becomes a :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{path} is missing: --data-dir needs {what} (the authors' pickle format). "
                        f"Put the file there or leave out --data-dir to use common.datasets.")
    try:
        return reader(path)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError,
            UnicodeDecodeError) as e:
        raise DataError(f"{path} is not {what} ({type(e).__name__}: {str(e)[:200]}). Replace it with the "
                        f"authors' file (common.datasets fetches the registered ones).") from e


def load_folder(folder: str | Path, behaviours: Sequence[str], name: str = "") -> MultiBehaviourData:
    """Read ``trn_<behaviour>`` for each behaviour and ``tst_int`` from one folder.

    A missing or malformed file raises :class:`common.cli.DataError` naming it.
    """
    folder = Path(folder)
    mats = [_read_or_data_error(read_behaviour_matrix, folder / f"trn_{b}",
                                f"a pickled user x item matrix of behaviour {b!r}") for b in behaviours]
    tst = _read_or_data_error(read_test_items, folder / "tst_int", "a pickled list of held-out items (tst_int)")
    return _assemble(name or folder.name, tuple(behaviours), mats, tst)


def load_dataset(name: str) -> MultiBehaviourData:
    """A registered dataset (``beibei``, ``tmall``) through ``common.datasets``.

    A behaviour file that cannot be had raises :class:`DatasetUnavailableError` naming the
    behaviour, then the download instructions (URL and destination) of ``common.datasets``.
    """
    if name not in BEHAVIOURS:
        raise ValueError(f"unknown dataset {name!r}; MB-GMN knows {sorted(BEHAVIOURS)}")
    behaviours = BEHAVIOURS[name]
    mats = []
    for b in behaviours:
        try:
            path = fetch_file(name, f"trn_{b}")
        except DatasetUnavailableError as e:
            raise DatasetUnavailableError(
                f"{name}: behaviour {b!r} (file trn_{b}) is missing, so MB-GMN cannot run on "
                f"{name}.\n{e}") from e
        mats.append(read_behaviour_matrix(path))
    return _assemble(name, behaviours, mats, read_test_items(fetch_file(name, "tst_int")))


def _assemble(name: str, behaviours: tuple[str, ...], mats: list[sp.csr_matrix],
              tst_int: np.ndarray) -> MultiBehaviourData:
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise DataError(f"{name}: behaviour matrices differ in shape: "
                        f"{dict(zip(behaviours, [m.shape for m in mats]))}; all trn_<behaviour> files must "
                        f"be users x items of the same dataset.")
    if len(tst_int) != mats[0].shape[0]:
        raise DataError(f"{name}: tst_int has {len(tst_int)} entries for {mats[0].shape[0]} users; it must "
                        f"hold one entry (an item id or None) per user of the trn_<behaviour> matrices.")
    return MultiBehaviourData(name, behaviours, mats, tst_int, np.flatnonzero(tst_int >= 0))


# ----------------------------------------------------------------------------- 2. normalisation
def _inv_sqrt_degree(mat: sp.spmatrix, axis: int) -> np.ndarray:
    """The notebook's ``1 / (sqrt(sum(mat, axis) + 1e-8) + 1e-8)``, in the matrix's dtype."""
    return np.asarray(1 / (np.sqrt(np.sum(mat, axis=axis) + 1e-8) + 1e-8)).reshape(-1)


def symmetric_normalize(mat: sp.spmatrix, norm: bool = True) -> SparseLists:
    """``D_u^-1/2 A D_i^-1/2`` as (indices [nnz, 2] int32, values [nnz] float32, shape).

    Same arithmetic and order as the notebook's ``transToLsts`` (value * rowD[row] * colD[col]);
    an empty matrix gives one explicit zero at (0, 0) so that TF accepts the SparseTensor.
    """
    coo = sp.coo_matrix(mat)
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32).reshape(-1, 2)
    values = coo.data.astype(np.float32)
    if norm:
        row_d = _inv_sqrt_degree(mat, axis=1)
        col_d = _inv_sqrt_degree(mat, axis=0)
        values = values * row_d[coo.row] * col_d[coo.col]
    if indices.shape[0] == 0:
        indices = np.zeros((1, 2), dtype=np.int32)
        values = np.zeros(1, dtype=np.float32)
    return indices, values, (int(mat.shape[0]), int(mat.shape[1]))


def normalize_loop_reference(mat: sp.spmatrix) -> SparseLists:
    """The notebook's double loop, kept only as the reference for tests and bench.py."""
    coo = sp.coo_matrix(mat)
    indices = np.array(list(map(list, zip(coo.row, coo.col))), dtype=np.int32).reshape(-1, 2)
    data = coo.data.astype(np.float32)
    row_d = np.squeeze(np.array(1 / (np.sqrt(np.sum(mat, axis=1) + 1e-8) + 1e-8)))
    col_d = np.squeeze(np.array(1 / (np.sqrt(np.sum(mat, axis=0) + 1e-8) + 1e-8)))
    for i in range(len(data)):
        data[i] = data[i] * row_d[indices[i, 0]] * col_d[indices[i, 1]]
    return indices, data, (int(mat.shape[0]), int(mat.shape[1]))


def behaviour_adjacencies(mats: Sequence[sp.csr_matrix]) -> tuple[list[SparseLists], list[SparseLists]]:
    """Normalised user->item adjacency and its item->user transpose for every behaviour."""
    adjs = [symmetric_normalize(m) for m in mats]
    tp_adjs = [symmetric_normalize(sp.csr_matrix(m.T)) for m in mats]
    return adjs, tp_adjs


# ----------------------------------------------------------------------------- 3. training pairs
class PairSampler:
    """(positive, negative) pairs of one behaviour, as the notebook's ``sampleTrainBatch``.

    Per user ``min(samp_num, #positives)`` positives drawn with replacement from the user's
    items, and as many negatives drawn uniformly with replacement among the items the user has
    no interaction of this behaviour with (rejection sampling, redrawn in whole-array rounds).
    A user with no positive contributes nothing.
    """

    def __init__(self, mat: sp.csr_matrix):
        mat = sp.csr_matrix(mat)
        mat.sort_indices()
        self.indptr = mat.indptr.astype(np.int64)
        self.indices = mat.indices.astype(np.int64)
        self.n_items = int(mat.shape[1])
        rows = np.repeat(np.arange(mat.shape[0], dtype=np.int64), np.diff(self.indptr))
        self.keys = rows * self.n_items + self.indices  # sorted: rows ascend, columns sorted

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool [n]: whether (users[k], items[k]) is an interaction."""
        key = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self.keys, key)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == key

    def sample(self, users: np.ndarray, samp_num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """uids, iids int32 [2 * pairs]: first half positives, second half their negatives."""
        users = np.asarray(users, dtype=np.int64)
        counts = self.indptr[users + 1] - self.indptr[users]
        take = np.minimum(counts, samp_num)
        rep_users = np.repeat(users, take)
        starts = np.repeat(self.indptr[users], take)
        offsets = (rng.random(len(rep_users)) * np.repeat(counts, take)).astype(np.int64)
        pos = self.indices[starts + offsets]
        neg = rng.integers(0, self.n_items, len(rep_users))
        bad = self.is_positive(rep_users, neg)
        for _ in range(10_000):
            if not bad.any():
                break
            idx = np.flatnonzero(bad)
            neg[idx] = rng.integers(0, self.n_items, len(idx))
            bad[idx] = self.is_positive(rep_users[idx], neg[idx])
        else:
            raise RuntimeError("negative sampling did not finish: some user interacted with every item")
        uids = np.concatenate([rep_users, rep_users]).astype(np.int32)
        iids = np.concatenate([pos, neg]).astype(np.int32)
        return uids, iids


# ----------------------------------------------------------------------------- 4. test candidates
def sample_test_negatives(users: np.ndarray, label_mat: sp.csr_matrix, n_neg: int,
                          rng: np.random.Generator, chunk: int = 1024) -> np.ndarray:
    """int64 [users, n_neg]: distinct items each user has no training interaction with.

    The notebook's ``np.random.permutation(negset)[:99]`` (uniform, without replacement) via
    random keys: positives get key +inf, the n_neg smallest keys win. As in the notebook, only
    the training matrix is excluded, so the held-out item itself can be drawn (about 1% of
    Beibei's test users); evaluation then ignores that duplicate, as the notebook's ``calcRes``
    does (it looks up the first occurrence of the item).
    """
    users = np.asarray(users, dtype=np.int64)
    free = label_mat.shape[1] - np.diff(label_mat.indptr)[users]
    if len(users) and free.min() < n_neg:
        raise ValueError(f"user {users[free.argmin()]} has only {free.min()} items without a training "
                         f"interaction; {n_neg} test negatives are needed")
    out = np.empty((len(users), n_neg), dtype=np.int64)
    for st in range(0, len(users), chunk):
        rows = label_mat[users[st:st + chunk]]
        keys = rng.random((rows.shape[0], label_mat.shape[1]))
        r, c = rows.nonzero()
        keys[r, c] = np.inf
        part = np.argpartition(keys, n_neg - 1, axis=1)[:, :n_neg]
        # argpartition leaves the n_neg winners unordered: sort them by key for a random order
        order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
        out[st:st + chunk] = np.take_along_axis(part, order, axis=1)
    return out


# ----------------------------------------------------------------------------- 5. large graphs
def global_adjacency(mats: Sequence[sp.csr_matrix]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Row-normalised union of all behaviours and of its transpose (``prepareGlobalData``)."""
    adj = sp.csr_matrix(sum(mats) != 0, dtype=np.float32)
    tpadj = sp.csr_matrix(adj.T)
    out = []
    for m in (adj, tpadj):
        deg = np.asarray(m.sum(axis=1)).reshape(-1)
        m = m.copy()
        m.data /= np.repeat(deg, np.diff(m.indptr)).astype(np.float32)
        out.append(m)
    return out[0], out[1]


def sample_large_graph(
    mats: Sequence[sp.csr_matrix],
    adj: sp.csr_matrix,
    tpadj: sp.csr_matrix,
    pck_users: np.ndarray,
    pck_items: Optional[np.ndarray] = None,
    samp_depth: int = 2,
    samp_num: int = 15000,
    rng: Optional[np.random.Generator] = None,
) -> tuple[list[sp.csr_matrix], list[sp.csr_matrix], np.ndarray, np.ndarray]:
    """Budget-weighted sub-graph around ``pck_users`` (the notebook's ``sampleLargeGraph``).

    Nodes are drawn without replacement with probability proportional to the squared
    "budget" (sum of row-normalised edge weights from nodes already picked), ``samp_depth``
    hops of ``samp_num`` users and items each. Returns per behaviour the sub-matrices
    [sub_users, sub_items] and their transposes, and the picked user and item ids (ascending).
    """
    rng = rng or np.random.default_rng()
    n_users, n_items = adj.shape

    def budget(m: sp.csr_matrix, nodes: Optional[np.ndarray]) -> np.ndarray:
        if nodes is None:
            return np.zeros(m.shape[1])
        return np.asarray(m[nodes].sum(axis=0), dtype=np.float64).reshape(-1)

    def sample(bdgt: np.ndarray, mask: np.ndarray, num: int) -> tuple[np.ndarray, int]:
        score = (mask * bdgt) ** 2
        total = score.sum()
        if total == 0:
            return rng.choice(len(score), 1), num - 1
        prob = score / total
        pos_num = int(np.count_nonzero(prob))
        if pos_num < num:
            picked = np.flatnonzero(prob)
        else:
            picked = rng.choice(len(score), num, p=prob, replace=False)
        return picked, max(num - pos_num, 0)

    pck_users = np.asarray(pck_users)
    usr_mask = np.ones(n_users)
    usr_mask[pck_users] = 0.0
    itm_mask = np.ones(n_items)
    if pck_items is not None:
        itm_mask[pck_items] = 0.0
    itm_bdgt = budget(adj, pck_users)
    if pck_items is None:
        pck_items, _ = sample(itm_bdgt, itm_mask, len(pck_users))
        itm_mask[pck_items] = 0.0
    usr_bdgt = budget(tpadj, pck_items)
    u_rest = i_rest = 0
    for depth in range(samp_depth + 1):
        extra = samp_num if depth < samp_depth else 0
        new_users, u_rest = sample(usr_bdgt, usr_mask, u_rest + extra)
        usr_mask[new_users] = 0.0
        new_items, i_rest = sample(itm_bdgt, itm_mask, i_rest + extra)
        itm_mask[new_items] = 0.0
        if depth == samp_depth:
            break
        usr_bdgt = usr_bdgt + budget(tpadj, new_items)
        itm_bdgt = itm_bdgt + budget(adj, new_users)
    users = np.flatnonzero(usr_mask == 0)
    items = np.flatnonzero(itm_mask == 0)
    sub = [sp.csr_matrix(m[users][:, items]) for m in mats]
    return sub, [sp.csr_matrix(m.T) for m in sub], users, items


def popularity_scores(data: MultiBehaviourData) -> np.ndarray:
    """float64 [items]: number of training purchases (target behaviour) per item."""
    return np.asarray(data.target.sum(axis=0), dtype=np.float64).reshape(-1)
