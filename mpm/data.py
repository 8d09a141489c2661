"""MPM's data pipeline: raw MovieLens ratings -> leave-one-out train/test arrays, step by step.

The steps are those of the authors' ``data_preprocess.py`` (the notebook's preprocessing cell):

1. read the raw ratings in file order (``sort=False``), keeping user, item and timestamp;
2. keep users with at least ``MIN_RATINGS`` (20) ratings;
3. map users and items to dense ids ``0..n-1`` in order of first appearance (in file order,
   after the filter);
4. sort by timestamp: ``tie_order="authors"`` (default) makes the notebook's own call,
   ``df.sort_values(by='timestamp')`` on the datetime column (pandas' default quicksort, which
   orders same-second ratings in no meaningful but deterministic order), and keeps each user's
   ratings in that global order; ``tie_order="stable"`` sorts stably instead (ties keep file
   order);
5. per user: the last item is the test item, its previous ``history_size`` (9) items its history,
   and 99 negatives are drawn from the items the user never rated -- from a seeded numpy
   generator here (the notebook seeds numpy but draws with Python's ``random``, so its negatives
   cannot be reproduced);
6. every earlier item whose position leaves ``history_size`` items before it becomes a training
   target with those 9 items as history (so a user with n ratings gives n - 10 training entries).

``valid=True`` also holds out each user's second-to-last item (with its 9 previous items and 99
negatives of its own) as a validation case, the paper's protocol; the training entries then stop
one item earlier.

Everything is vectorised (no Python loop over users or ratings) and the result is cached as an
``.npz`` keyed by the raw file's size and mtime and by the parameters.

The authors' released ML-1m split (``mpm-ml-1m``: ``data_summary.csv``, ``test_ratings.csv``,
``test_negative.csv`` and, upstream only, ``train_ratings.csv``) loads with
:func:`load_official_test` / :func:`load_official_train`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from common.cli import DataError
from common.datasets import cache_dir, fetch_file

log = logging.getLogger("mpm.data")

MIN_RATINGS = 20
HISTORY_SIZE = 9
TEST_NEGATIVES = 99
PREPROCESS_SEED = 0  # the notebook's ``RANDOM_SEED`` for its preprocessing script
CACHE_VERSION = 2
TIE_ORDERS = ("authors", "stable")


class MPMDataError(DataError, ValueError):
    """Input data that cannot give MPM's split: a malformed ratings file, too few ratings per user,
    too few unrated items for the negatives, an inconsistent official split. A ``ValueError`` for
    callers of this module, a :class:`common.cli.DataError` (exit 3, one paragraph) for ``main.py``."""

# dataset name -> (registry dataset, file, format); formats as in the notebook's loaders.
RAW_FILES: dict[str, tuple[str, str, str]] = {
    "ml-1m": ("ml-1m", "ratings.dat", "::"),
    "ml-100k": ("ml-100k", "u.data", "tab"),
    "ml-10m": ("ml-10m", "ratings.dat", "::"),
    "ml-20m": ("ml-20m", "ratings.csv", "csv"),
}
OFFICIAL_DATASET = "mpm-ml-1m"


# ----------------------------------------------------------------------------- step 1: read
def read_ratings(path: str | os.PathLike, fmt: str) -> pd.DataFrame:
    """Raw ratings in file order: columns ``user_id``, ``item_id``, ``timestamp`` (int64 seconds).

    ``fmt``: ``"::"`` (ML-1m/10m ``ratings.dat``), ``"tab"`` (ML-100k ``u.data``) or ``"csv"``
    (ML-20m ``ratings.csv`` with a ``userId,movieId,rating,timestamp`` header).
    """
    path = Path(path)
    cols = ["user_id", "item_id", "rating", "timestamp"]
    layout = {"::": "user::item::rating::timestamp lines (ML-1m ratings.dat)",
              "tab": "tab-separated user, item, rating, timestamp lines (ML-100k u.data)",
              "csv": "a userId,movieId,rating,timestamp header and comma-separated lines (ML-20m ratings.csv)"}
    if fmt not in layout:
        raise ValueError(f"unknown ratings format {fmt!r} for {path}; valid: '::', 'tab', 'csv'")

    def bad(reason: str) -> MPMDataError:
        return MPMDataError(f"{path} is not a ratings file in format {fmt!r} ({reason}): expected {layout[fmt]}. "
                            f"Replace it with the original file (or pass --ratings-file with the --dataset whose "
                            f"format it has).")

    try:
        if fmt == "::":
            # pandas' multi-character separator needs the slow Python engine; '::' -> tab is exact.
            text = path.read_bytes().decode("latin-1").replace("::", "\t")
            df = pd.read_csv(io.StringIO(text), sep="\t", header=None, names=cols)
        elif fmt == "tab":
            df = pd.read_csv(path, sep="\t", header=None, names=cols)
        else:
            df = pd.read_csv(path).rename(columns={"userId": "user_id", "movieId": "item_id"})
        if df.empty:
            raise bad("no ratings in it")
        missing = {"user_id", "item_id", "timestamp"} - set(df.columns)
        if missing or df[["user_id", "item_id", "timestamp"]].isna().any().any():
            raise bad("could not read user/item/timestamp columns")
        return pd.DataFrame({
            "user_id": df["user_id"].to_numpy(np.int64),
            "item_id": df["item_id"].to_numpy(np.int64),
            "timestamp": df["timestamp"].to_numpy(np.int64),
        })
    except MPMDataError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError) as e:  # pandas' parser errors are ValueErrors
        raise bad(f"{type(e).__name__}: {' '.join(str(e).split())}") from e


# ----------------------------------------------------------------------------- steps 2-6
@dataclass
class MPMData:
    """Model-ready arrays (all int64). ``N`` training entries, ``U`` users, ``H`` history size.

    train_users [N], train_items [N], train_history [N, H];
    test_users [U], test_items [U], test_history [U, H], test_negatives [U, 99];
    valid_* likewise when built with ``valid=True`` (else empty arrays);
    rated [R]: sorted keys ``user * nb_items + item`` of every rating kept after the filter.
    """

    nb_users: int
    nb_items: int
    history_size: int
    train_users: np.ndarray
    train_items: np.ndarray
    train_history: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    test_history: np.ndarray
    test_negatives: np.ndarray
    valid_users: np.ndarray
    valid_items: np.ndarray
    valid_history: np.ndarray
    valid_negatives: np.ndarray
    rated: np.ndarray

    @property
    def has_valid(self) -> bool:
        return len(self.valid_users) > 0

    def summary(self) -> dict[str, int]:
        """Same fields as the authors' ``data_summary.csv``."""
        return {"users": self.nb_users, "items": self.nb_items, "history_size": self.history_size,
                "train_entries": int(len(self.train_users)), "test": int(len(self.test_users))}

    def train_positive_keys(self) -> np.ndarray:
        """Sorted unique keys ``user * nb_items + item`` of the training targets [P].

        The official sampler rejects exactly these as negatives (its ``dok_matrix`` is filled
        from the training file's target column).
        """
        return np.unique(self.train_users * self.nb_items + self.train_items)

    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "MPMData":
        with np.load(path) as z:
            kw = {f.name: z[f.name] for f in fields(cls)}
        for k in ("nb_users", "nb_items", "history_size"):
            kw[k] = int(kw[k])
        return cls(**kw)


def filter_users(df: pd.DataFrame, min_ratings: int = MIN_RATINGS) -> pd.DataFrame:
    """Step 2: drop users with fewer than ``min_ratings`` ratings; file order kept."""
    counts = df.groupby("user_id")["user_id"].transform("size")
    return df[counts.to_numpy() >= min_ratings].reset_index(drop=True)


def dense_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: ids ``0..n-1`` in order of first appearance. Returns (new ids [len], originals [n])."""
    codes, uniques = pd.factorize(values, sort=False)  # factorize numbers by first appearance
    return codes.astype(np.int64), np.asarray(uniques)


def time_order(users: np.ndarray, timestamps: np.ndarray, tie_order: str = "authors") -> np.ndarray:
    """Step 4: an order of the ratings by (user, time) [len]: each user's ratings in time order.

    ``tie_order`` decides the order of a user's same-second ratings:

    * ``"authors"``: the notebook's ``df.sort_values(by='timestamp', inplace=True)`` on the
      datetime column (pandas' default ``kind="quicksort"``), then each user's ratings in that
      global order (the notebook appends them to the user's list row by row). The datetime dtype
      matters: numpy sorts datetime64 with its generic introsort (the order did not change with
      numpy's SIMD paths disabled, ``NPY_DISABLE_CPU_FEATURES=X86_V3``), while int64 keys go to a
      CPU-specific SIMD sort (AVX2 here) whose order of ties differs.
    * ``"stable"``: ties keep file order (a stable sort).

    users, timestamps (seconds) [len], in file order after the user filter.
    """
    if tie_order == "stable":
        return np.lexsort((timestamps, users))
    if tie_order != "authors":
        raise ValueError(f"unknown tie order {tie_order!r}; valid: {', '.join(TIE_ORDERS)}")
    frame = pd.DataFrame({"user_id": users, "timestamp": pd.to_datetime(timestamps, unit="s")})
    by_time = frame.sort_values(by="timestamp").index.to_numpy()   # the notebook's call
    return by_time[np.argsort(users[by_time], kind="stable")]      # per user, in that order


def sample_negatives(
    users: np.ndarray, rated: np.ndarray, nb_items: int, n: int, rng: np.random.Generator,
    chunk: int = 1024,
) -> np.ndarray:
    """``n`` distinct items per user, uniformly among the items the user never rated [len(users), n].

    Random keys for every (user, item), rated items pushed to +inf, the ``n`` smallest keys kept:
    a uniform sample without replacement, vectorised over a chunk of users at a time.
    ``rated``: sorted keys ``user * nb_items + item``.
    """
    out = np.empty((len(users), n), dtype=np.int64)
    items = np.arange(nb_items, dtype=np.int64)
    for start in range(0, len(users), chunk):
        u = users[start:start + chunk]
        keys = rng.random((len(u), nb_items), dtype=np.float32)
        cand = u[:, None] * nb_items + items[None, :]
        pos = np.searchsorted(rated, cand).clip(max=len(rated) - 1)
        keys[rated[pos] == cand] = np.inf
        if (np.isfinite(keys).sum(axis=1) < n).any():
            raise MPMDataError(f"some user has rated more than {nb_items - n} of the {nb_items} items: cannot "
                               f"draw {n} negatives (--test-negatives {n}); lower --test-negatives")
        part = np.argpartition(keys, n - 1, axis=1)[:, :n] if n < nb_items else np.argsort(keys, axis=1)
        # order the n drawn items by their random key: a random order, independent of item id
        order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
        out[start:start + len(u)] = np.take_along_axis(part, order, axis=1)
    return out


def build(
    df: pd.DataFrame,
    history_size: int = HISTORY_SIZE,
    negatives: int = TEST_NEGATIVES,
    seed: int = PREPROCESS_SEED,
    min_ratings: int = MIN_RATINGS,
    valid: bool = False,
    tie_order: str = "authors",
) -> MPMData:
    """Steps 2-6 on raw ratings in file order (see the module docstring)."""
    df = filter_users(df, min_ratings)
    if df.empty:
        raise MPMDataError(f"no user has at least {min_ratings} ratings (--min-ratings {min_ratings}): nothing "
                           f"to train or test on; lower --min-ratings or use a larger ratings file")
    users, _ = dense_ids(df["user_id"].to_numpy())
    items, _ = dense_ids(df["item_id"].to_numpy())
    nb_users, nb_items = int(users.max()) + 1, int(items.max()) + 1
    order = time_order(users, df["timestamp"].to_numpy(), tie_order)
    users, items = users[order], items[order]

    # position of each rating within its user's time-ordered sequence
    counts = np.bincount(users, minlength=nb_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(users)) - starts[users]
    length = counts[users]
    if counts.min() < history_size + 1 + int(valid):
        raise MPMDataError(f"a user has {counts.min()} ratings: at least {history_size + 1 + int(valid)} are "
                           f"needed for a test case with {history_size} history items"
                           f"{' and a validation case' if valid else ''}; raise --min-ratings to at least "
                           f"{history_size + 1 + int(valid)} or lower --history-size")
    offsets = np.arange(-history_size, 0)

    def cases(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.flatnonzero(mask)
        return users[idx], items[idx], items[idx[:, None] + offsets[None, :]]

    # step 5: test = last item; valid = second-to-last
    test_users, test_items, test_history = cases(pos == length - 1)
    n_held = 2 if valid else 1
    if valid:
        valid_users, valid_items, valid_history = cases(pos == length - 2)
    # step 6: every earlier item with history_size items before it. The notebook pops targets from
    # the end of each user's list; keep that order (latest target first) within each user.
    train_mask = (pos >= history_size) & (pos < length - n_held)
    tr = np.flatnonzero(train_mask)
    tr = tr[np.lexsort((-pos[tr], users[tr]))]
    train_users, train_items = users[tr], items[tr]
    train_history = items[tr[:, None] + offsets[None, :]]

    rated = np.unique(users * nb_items + items)
    rng = np.random.default_rng(seed)
    test_negatives = sample_negatives(test_users, rated, nb_items, negatives, rng)
    empty2 = np.empty((0, history_size), np.int64)
    if valid:
        valid_negatives = sample_negatives(valid_users, rated, nb_items, negatives, rng)
    else:
        valid_users = valid_items = np.empty(0, np.int64)
        valid_history, valid_negatives = empty2, np.empty((0, negatives), np.int64)
    return MPMData(nb_users, nb_items, history_size, train_users, train_items, train_history,
                   test_users, test_items, test_history, test_negatives,
                   valid_users, valid_items, valid_history, valid_negatives, rated)


# ----------------------------------------------------------------------------- cache
def raw_path(dataset: str) -> Path:
    """Local path of a dataset's raw ratings file, fetched through ``common.datasets``."""
    if dataset not in RAW_FILES:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(RAW_FILES)}")
    name, file, _ = RAW_FILES[dataset]
    return fetch_file(name, file)


def load(
    dataset: str = "ml-1m",
    path: Optional[str | os.PathLike] = None,
    fmt: Optional[str] = None,
    history_size: int = HISTORY_SIZE,
    negatives: int = TEST_NEGATIVES,
    seed: int = PREPROCESS_SEED,
    min_ratings: int = MIN_RATINGS,
    valid: bool = False,
    cache: Optional[str | os.PathLike] = None,
    tie_order: str = "authors",
) -> MPMData:
    """Preprocessed data for ``dataset`` (or the ratings file ``path`` in format ``fmt``), cached.

    The cache file lives in ``cache`` (default ``<common cache>/mpm-preprocessed``) and is keyed by
    the raw file's name, size and mtime and by every parameter; pass ``cache=""`` to disable it.
    """
    if path is None:
        path = raw_path(dataset)
        fmt = fmt or RAW_FILES[dataset][2]
    path = Path(path)
    if fmt is None:
        raise ValueError(f"give the format of {path} ('::', 'tab' or 'csv')")
    st = path.stat()
    params = dict(file=path.name, size=st.st_size, mtime=st.st_mtime_ns, fmt=fmt, history=history_size,
                  negatives=negatives, seed=seed, min_ratings=min_ratings, valid=valid, tie_order=tie_order,
                  v=CACHE_VERSION)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache) if cache else cache_dir() / "mpm-preprocessed"
    cached = folder / f"{dataset}-{key}.npz"
    if cache != "" and cached.is_file():
        log.info("preprocessed data from cache %s", cached)
        return MPMData.load(cached)
    t0 = time.time()
    data = build(read_ratings(path, fmt), history_size, negatives, seed, min_ratings, valid, tie_order)
    log.info("preprocessed %s in %.1f s: %s", path, time.time() - t0, data.summary())
    if cache != "":
        folder.mkdir(parents=True, exist_ok=True)
        data.save(cached)
    return data


# ----------------------------------------------------------------------------- official split
@dataclass
class OfficialTest:
    """The authors' released test split. users/items [U], history [U, H], negatives [U, 99]."""

    summary: dict[str, int]
    users: np.ndarray
    items: np.ndarray
    history: np.ndarray
    negatives: np.ndarray


def _read_int_table(path: Path) -> np.ndarray:
    return pd.read_csv(path, sep="\t", header=None).to_numpy(np.int64)


def load_official_test(folder: Optional[str | os.PathLike] = None) -> OfficialTest:
    """Read ``data_summary.csv``, ``test_ratings.csv`` (user, item, 9 history, 1) and
    ``test_negative.csv`` (user, item, 99 negatives) from ``folder`` or through ``common.datasets``.
    Raises ``ValueError`` when the files disagree with each other or with the summary."""
    def get(name: str) -> Path:
        return Path(folder) / name if folder else fetch_file(OFFICIAL_DATASET, name)

    summary = {k: int(v) for k, v in pd.read_csv(get("data_summary.csv")).iloc[0].items()}
    ratings = _read_int_table(get("test_ratings.csv"))
    negs = _read_int_table(get("test_negative.csv"))
    h = summary["history_size"]
    problems = []
    if ratings.shape != (summary["test"], 2 + h + 1):
        problems.append(f"test_ratings.csv has shape {ratings.shape}, expected ({summary['test']}, {h + 3})")
    if negs.shape[0] != summary["test"]:
        problems.append(f"test_negative.csv has {negs.shape[0]} rows, expected {summary['test']}")
    if not problems and not (np.array_equal(ratings[:, :2], negs[:, :2])):
        problems.append("user/test-item columns of test_ratings.csv and test_negative.csv differ")
    if problems:
        raise MPMDataError("official MPM split inconsistent: " + "; ".join(problems)
                           + ". Fetch the authors' files again (python -m common.datasets mpm-ml-1m).")
    return OfficialTest(summary, ratings[:, 0], ratings[:, 1], ratings[:, 2:2 + h], negs[:, 2:])


def load_official_train(path: str | os.PathLike, history_size: int = HISTORY_SIZE
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The authors' ``train_ratings.csv`` (user, item, 9 history, rating > 0) ->
    users [N], items [N], history [N, H]; rows with a rating of 0 are dropped as the official
    ``CFTrainDataset`` does."""
    t = pd.read_csv(path, sep="\t", header=None).to_numpy(np.float64)
    keep = t[:, -1] > 0
    t = t[keep].astype(np.int64)
    return t[:, 0], t[:, 1], t[:, 2:2 + history_size]


def with_official_split(data: MPMData, official: OfficialTest,
                        train: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> MPMData:
    """``data`` with its test cases (and, if given, its training entries) replaced by the official ones.

    The ids must be those of the authors' mapping: true when ``data`` was built from raw ML-1m,
    whose file order fixes the mapping.
    """
    if (data.nb_users, data.nb_items) != (official.summary["users"], official.summary["items"]):
        raise MPMDataError(f"official split has {official.summary['users']} users / "
                           f"{official.summary['items']} items, the data {data.nb_users} / {data.nb_items}: not the "
                           f"same dataset; --split official needs raw ML-1m (ml-1m/ratings.dat or --ratings-file) "
                           f"read with the default --min-ratings")
    kw = {f.name: getattr(data, f.name) for f in fields(data)}
    kw.update(test_users=official.users, test_items=official.items, test_history=official.history,
              test_negatives=official.negatives)
    if train is not None:
        kw.update(train_users=train[0], train_items=train[1], train_history=train[2])
    return MPMData(**kw)
