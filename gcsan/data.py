"""Raw files -> next-item examples for GC-SAN, in the three protocols the issue names.

Protocol ``recbole`` (RecBole's sequential benchmark, used for the published ML-1m and Diginetica rows):

1. read the interactions (user or session, item, timestamp; ML also rating);
2. ML only: keep ratings >= 3 (RecBole ``val_interval: rating: "[3,inf)"``);
3. k-core: drop every user (session) and every item with fewer than k interactions, *both at once*
   on the current data, and repeat until nothing is dropped (RecBole ``_filter_by_inter_num``);
   k = 10 for ML-1m, 5 for Diginetica;
4. remap ids in order of first appearance in the file (RecBole factorizes), item 0 = padding;
5. sort by (user, timestamp), stably (ties keep file order);
6. every interaction after a user's first is a target; its history is the items before it,
   truncated to the last ``max_len`` (50 for ML-1m, 20 for Diginetica) (RecBole ``data_augmentation``);
7. per user, in time order: the last example is test, the one before valid, the rest train
   (RecBole ``leave_one_out(valid_and_test)``; a user with 2 examples gets train + test,
   with 1 example train only).

Protocol ``srgnn`` (the paper's own, SR-GNN's preprocessing): SR-GNN's ``train.txt`` /
``test.txt`` pickles hold ``(sessions, labels)`` already prefix-augmented (sessions of length 1
and items seen fewer than 5 times removed, last 7 days as test). We read them unchanged. SR-GNN
has no validation set by default; ``valid_portion`` > 0 holds out a random share of the training
examples as validation (SR-GNN's ``split_validation``), used here for model selection.

Examples are stored without padding: ``items`` is one flat int array and each example is
``items[start : start + length]`` with its ``target``. :meth:`Split.batch` builds the
right-padded ``[batch, max_len_in_batch]`` matrix with one vectorized gather.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from common.cli import DataError
from common.datasets import cache_dir, fetch_file

CACHE_VERSION = 1


# ----------------------------------------------------------------------------- containers
@dataclass
class Split:
    """Next-item examples: example i has history ``items[start[i] : start[i] + length[i]]``."""

    items: np.ndarray  # int64 [total]
    start: np.ndarray  # int64 [n]
    length: np.ndarray  # int64 [n], >= 1
    target: np.ndarray  # int64 [n], >= 1

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-padded histories of the examples ``idx``.

        Returns:
            seq [B, L] int64 (0 = padding, L = longest history in the batch), length [B], target [B].
        """
        idx = np.asarray(idx, dtype=np.int64)
        length = self.length[idx]
        width = int(length.max()) if len(idx) else 1
        pos = np.arange(width, dtype=np.int64)[None, :]
        inside = pos < length[:, None]
        flat = np.where(inside, self.start[idx, None] + pos, 0)
        seq = np.where(inside, self.items[flat], 0)
        return seq, length, self.target[idx]

    def subset(self, idx: np.ndarray) -> "Split":
        idx = np.asarray(idx, dtype=np.int64)
        return Split(self.items, self.start[idx], self.length[idx], self.target[idx])


@dataclass
class SeqData:
    """Everything a run needs: item count (padding included) and the three splits."""

    n_items: int  # number of item ids including padding id 0
    train: Split
    valid: Optional[Split]
    test: Split
    stats: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- raw readers
def read_movielens(path: str | Path) -> pd.DataFrame:
    """``u.data`` (tab) or ``ratings.dat`` (``::``) -> columns user, item, rating, timestamp."""
    path = Path(path)
    sep = "::" if path.name.endswith(".dat") else "\t"
    return pd.read_csv(path, sep=sep, header=None, names=["user", "item", "rating", "timestamp"],
                       engine="python" if sep == "::" else "c")


def read_diginetica(path: str | Path) -> pd.DataFrame:
    """CIKM Cup 2016 ``train-item-views.csv`` -> columns user (= session), item, timestamp.

    timestamp = eventdate (seconds since epoch, UTC) + timeframe (milliseconds since the session
    started) / 1000, so that the sort by time orders clicks within a session and sessions by day.
    """
    df = pd.read_csv(path, sep=";")
    df.columns = [c.strip().lower().replace("sessionid", "session_id").replace("itemid", "item_id")
                  for c in df.columns]
    day = pd.to_datetime(df["eventdate"]).astype("int64") // 10**9
    return pd.DataFrame({"user": df["session_id"].to_numpy(), "item": df["item_id"].to_numpy(),
                         "timestamp": day.to_numpy() + df["timeframe"].to_numpy() / 1000.0})


# ----------------------------------------------------------------------------- RecBole protocol
def k_core(df: pd.DataFrame, user_k: int, item_k: int) -> pd.DataFrame:
    """Drop users with < user_k and items with < item_k interactions, simultaneously, until stable.

    Each round counts on the current data, bans both sets at once and drops every interaction
    touching a banned user or item (RecBole ``Dataset._filter_by_inter_num``). Row order is kept.
    """
    while True:
        u_cnt = df["user"].map(df["user"].value_counts())
        i_cnt = df["item"].map(df["item"].value_counts())
        drop = (u_cnt < user_k) | (i_cnt < item_k)
        if not drop.any():
            return df
        df = df[~drop.to_numpy()]


def leave_one_out_examples(
    user: np.ndarray, item: np.ndarray, max_len: int
) -> tuple[Split, Split, Split]:
    """Time-sorted interactions -> train / valid / test prefix examples (RecBole LS valid_and_test).

    Args:
        user: [n] user index per interaction, grouped (all of a user's rows contiguous, in time order).
        item: [n] item id per interaction (>= 1).
        max_len: histories keep their last ``max_len`` items.
    """
    n = len(user)
    first = np.r_[True, user[1:] != user[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    tgt = np.flatnonzero(~first)  # every interaction but a user's first is a target
    start = np.maximum(group_start[tgt], tgt - max_len)
    length = tgt - start
    # rank of each example from the end of its user's examples: 0 = last
    ex_user = user[tgt]
    last_of_user = np.r_[ex_user[1:] != ex_user[:-1], True]
    end_idx = np.minimum.accumulate(np.where(last_of_user, np.arange(len(tgt)), len(tgt))[::-1])[::-1]
    from_end = end_idx - np.arange(len(tgt))
    _, inv, cnt = np.unique(ex_user, return_inverse=True, return_counts=True)
    count = cnt[inv]  # examples of the example's user
    legal = np.minimum(2, count - 1)  # RecBole: min(leave_one_num, tot_cnt - 1)
    is_test = (from_end == 0) & (legal >= 1)
    is_valid = (from_end == 1) & (legal >= 2)
    is_train = ~(is_test | is_valid)
    items = item.astype(np.int64)

    def part(mask: np.ndarray) -> Split:
        return Split(items, start[mask].astype(np.int64), length[mask].astype(np.int64),
                     items[tgt[mask]])

    return part(is_train), part(is_valid), part(is_test)


def recbole_protocol(
    df: pd.DataFrame, min_rating: Optional[float], user_k: int, item_k: int, max_len: int
) -> SeqData:
    """Steps 2-7 of the module docstring on a raw interaction frame (user, item, timestamp[, rating])."""
    n_raw = len(df)
    if min_rating is not None:
        df = df[df["rating"] >= min_rating]
    df = k_core(df, user_k, item_k)
    user_idx, users = pd.factorize(df["user"])
    item_idx, items = pd.factorize(df["item"])
    order = np.lexsort((df["timestamp"].to_numpy(), user_idx))  # stable: ties keep file order
    train, valid, test = leave_one_out_examples(user_idx[order], item_idx[order] + 1, max_len)
    stats = {"raw_interactions": n_raw, "users": len(users), "items": len(items),
             "interactions": len(df), "train_examples": len(train), "valid_examples": len(valid),
             "test_examples": len(test), "max_len": max_len}
    return SeqData(len(items) + 1, train, valid, test, stats)


# ----------------------------------------------------------------------------- SR-GNN protocol
def srgnn_split(sessions: list, labels: list) -> Split:
    """SR-GNN ``(sessions, labels)`` -> Split (items concatenated, no padding)."""
    length = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    items = np.fromiter((i for s in sessions for i in s), dtype=np.int64, count=int(length.sum()))
    start = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64)
    return Split(items, start, length, np.asarray(labels, dtype=np.int64))


def truncate(split: Split, max_len: Optional[int]) -> Split:
    """Keep the last ``max_len`` items of each history (no-op for None)."""
    if not max_len:
        return split
    cut = np.maximum(split.length - max_len, 0)
    return Split(split.items, split.start + cut, split.length - cut, split.target)


def read_srgnn(path: str | Path) -> Split:
    """SR-GNN's ``train.txt`` / ``test.txt``: a pickled ``(sessions, labels)`` pair."""
    with open(path, "rb") as f:
        sessions, labels = pickle.load(f)
    return srgnn_split(sessions, labels)


def _read_or_data_error(reader, path: Path):
    """``reader(path)``; a malformed file becomes a :class:`DataError` naming it and the fix."""
    try:
        return reader(path)
    except (ValueError, KeyError, TypeError, IndexError, EOFError, pickle.UnpicklingError,
            pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}. The file is malformed (expected the "
                        f"format of {reader.__name__}: {(reader.__doc__ or '').splitlines()[0]}); delete it from "
                        f"the cache ({cache_dir()}) so that it is fetched and verified again, or check the "
                        f"mirror's copy.") from e


def srgnn_protocol(train_path: Path, test_path: Path, valid_portion: float, seed: int,
                   max_len: Optional[int]) -> SeqData:
    train = _read_or_data_error(read_srgnn, train_path)
    test = _read_or_data_error(read_srgnn, test_path)
    n_items = int(max(train.items.max(), train.target.max(), test.items.max(), test.target.max())) + 1
    valid = None
    if valid_portion > 0:
        perm = np.random.default_rng(seed).permutation(len(train))
        n_train = int(np.round(len(train) * (1.0 - valid_portion)))
        train, valid = train.subset(np.sort(perm[:n_train])), train.subset(np.sort(perm[n_train:]))
    train, test = truncate(train, max_len), truncate(test, max_len)
    valid = truncate(valid, max_len) if valid is not None else None
    stats = {"items": n_items - 1, "train_examples": len(train),
             "valid_examples": len(valid) if valid is not None else 0, "test_examples": len(test),
             "max_len": max_len, "longest_history": int(max(train.length.max(), test.length.max()))}
    return SeqData(n_items, train, valid, test, stats)


# ----------------------------------------------------------------------------- entry point
# dataset name -> (registry dataset, file, protocol settings)
DATASETS = {
    "ml-1m": dict(source=("ml-1m", "ratings.dat"), kind="movielens", min_rating=3, k=10, max_len=50),
    "ml-100k": dict(source=("ml-100k", "u.data"), kind="movielens", min_rating=3, k=10, max_len=50),
    "diginetica": dict(source=("diginetica", "train-item-views.csv"), kind="diginetica", min_rating=None, k=5, max_len=20),
    "diginetica-sample": dict(source=("srgnn-sample", "sample_train-item-views.csv"), kind="diginetica", min_rating=None, k=5, max_len=20),
    "diginetica-srgnn": dict(source=("diginetica-srgnn", None), kind="srgnn"),
    "yoochoose1_64-srgnn": dict(source=("yoochoose1_64-srgnn", None), kind="srgnn"),
}


def _save(path: Path, data: SeqData) -> None:
    arrays = {"n_items": np.int64(data.n_items), "stats": np.frombuffer(json.dumps(data.stats).encode(), np.uint8)}
    for name in ("train", "valid", "test"):
        s = getattr(data, name)
        if s is not None:
            for f in ("items", "start", "length", "target"):
                arrays[f"{name}_{f}"] = getattr(s, f)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load(path: Path) -> SeqData:
    z = np.load(path)
    splits = {}
    for name in ("train", "valid", "test"):
        splits[name] = (Split(*(z[f"{name}_{f}"] for f in ("items", "start", "length", "target")))
                        if f"{name}_items" in z else None)
    return SeqData(int(z["n_items"]), splits["train"], splits["valid"], splits["test"],
                   json.loads(z["stats"].tobytes().decode()))


def load(dataset: str, max_len: Optional[int] = None, valid_portion: float = 0.1, seed: int = 2019,
         use_cache: bool = True, verbose: bool = True) -> SeqData:
    """Processed examples of ``dataset`` (a key of :data:`DATASETS`), cached as .npz.

    ``max_len`` None takes the protocol's default (50 ML, 20 Diginetica; no truncation for SR-GNN).
    ``valid_portion`` and ``seed`` apply to the SR-GNN protocol only.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[dataset]
    name, path = spec["source"]
    t0 = time.time()
    if spec["kind"] == "srgnn":
        files = [fetch_file(name, "train.txt"), fetch_file(name, "test.txt")]
        params = dict(dataset=dataset, max_len=max_len, valid_portion=valid_portion, seed=seed)
    else:
        files = [fetch_file(name, path)]
        max_len = max_len or spec["max_len"]
        params = dict(dataset=dataset, max_len=max_len, k=spec["k"], min_rating=spec["min_rating"])
    key = json.dumps({**params, "v": CACHE_VERSION,
                      "files": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]}, sort_keys=True)
    cache = cache_dir() / "gcsan-processed" / f"{dataset}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    data = None
    if use_cache and cache.is_file():
        try:
            data, how = _load(cache), "cache"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged cache is rebuilt
            cache.unlink(missing_ok=True)
    if data is None:
        if spec["kind"] == "srgnn":
            data = srgnn_protocol(files[0], files[1], valid_portion, seed, max_len)
        else:
            reader = read_movielens if spec["kind"] == "movielens" else read_diginetica
            df = _read_or_data_error(reader, files[0])
            data = recbole_protocol(df, spec["min_rating"], spec["k"], spec["k"], max_len)
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            _save(cache, data)
        how = "built"
    data.stats["preprocess_seconds"] = round(time.time() - t0, 3)
    if verbose:
        print(f"[data] {dataset} ({how} in {data.stats['preprocess_seconds']:.2f}s): "
              + ", ".join(f"{k}={v}" for k, v in data.stats.items() if k != "preprocess_seconds"))
    return data
