"""FGNN data: SR-GNN's session preprocessing, session graphs, a cached InMemoryDataset, batches.

The pipeline, step by step (each step is one function below):

1. ``read_click_log``: a raw click log (Diginetica ``train-item-views.csv`` or SR-GNN's sample of it,
   Yoochoose ``yoochoose-clicks.dat``) -> one row per click: session, item, in-session order key,
   session date.
2. ``preprocess_clicks``: SR-GNN's ``datasets/preprocess.py`` rules, vectorised:
   clicks ordered by time within each session; sessions of length 1 removed; items clicked fewer
   than 5 times removed, then sessions shorter than 2 removed; the last 7 days (Yoochoose: 1 day)
   are the test split; items are renumbered 1..n in order of first appearance in the training
   sessions (sorted by date); test items unseen in training are dropped (and test sessions left
   shorter than 2); ``augment`` turns every session into its prefixes (sequence -> next item);
   Yoochoose 1/64 keeps the most recent 1/64 of the training examples.
3. ``load_prepared``: SR-GNN's own output pickles ``train.txt`` / ``test.txt`` (what the FGNN
   authors' loader reads), for Diginetica and Yoochoose 1/64 whose raw logs are not in the mirror.
4. ``build_graphs``: every example becomes a session graph exactly as the notebook's
   ``MultiSessionsGraph.process`` builds it, with array operations instead of its per-session
   dictionaries (see the function's docstring for the attributes).
5. ``SessionGraphs``: a ``torch_geometric.data.InMemoryDataset`` holding those graphs, built once
   and cached; it works with ``torch_geometric.loader.DataLoader``. ``SessionBatches`` yields the
   very same ``Batch`` objects by slicing the collated storage directly (no per-graph Python work),
   which is what ``main.py`` uses by default.
"""

from __future__ import annotations

import calendar
import json
import logging
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset

from common.cli import DataError
from common.datasets import DatasetUnavailableError, cache_dir, fetch_file

log = logging.getLogger("fgnn.data")

FORMAT_VERSION = 1  # bump when the stored graph layout changes: old caches are then rebuilt
MIN_ITEM_COUNT = 5  # SR-GNN: items clicked fewer than 5 times are removed
DAY = 86400


class InputError(DataError, ValueError):
    """A malformed input file or cache, or a choice of data flags that cannot work (exit code 3).

    A ``ValueError`` too, so code that catches those keeps working; ``common.cli.run_cli`` prints
    it as one paragraph without a traceback.
    """


@dataclass(frozen=True)
class SessionDataset:
    """Where a session dataset comes from and how SR-GNN splits it."""

    raw: tuple[str, str]  # (registry dataset, file) of the raw click log
    log_format: str  # "diginetica" (';' separated, with timeframe) | "yoochoose" (',' no header)
    test_days: int  # the last ``test_days`` days are the test split
    keep_fraction: int  # keep the most recent 1/keep_fraction of the training examples
    prepared: Optional[str] = None  # registry dataset with SR-GNN's train.txt / test.txt pickles


DATASETS: dict[str, SessionDataset] = {
    "sample": SessionDataset(("srgnn-sample", "sample_train-item-views.csv"), "diginetica", 7, 1),
    "diginetica": SessionDataset(("diginetica", "train-item-views.csv"), "diginetica", 7, 1,
                                 prepared="diginetica-srgnn"),
    "yoochoose1_64": SessionDataset(("yoochoose", "yoochoose-clicks.dat"), "yoochoose", 1, 64,
                                    prepared="yoochoose1_64-srgnn"),
}


@dataclass
class Split:
    """Examples of one split: input sequences (concatenated) and their next items.

    ``items`` int64 [total clicks]; ``ptr`` int64 [n + 1] (example k is
    ``items[ptr[k]:ptr[k + 1]]``); ``labels`` int64 [n]. Item ids start at 1.
    """

    items: np.ndarray
    ptr: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def sequences(self) -> list[list[int]]:
        """The examples as Python lists (for tests and small checks only)."""
        return [self.items[a:b].tolist() for a, b in zip(self.ptr[:-1], self.ptr[1:])]


def _ptr(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - _ptr(lengths)[:-1], lengths)
    return offsets + np.arange(total, dtype=np.int64)


# ----------------------------------------------------------------------------- 1. raw logs
def _seconds(stamps: pd.Series) -> np.ndarray:
    """UTC seconds since the epoch (whatever resolution pandas parsed the dates at)."""
    return stamps.to_numpy().astype("datetime64[s]").astype(np.int64)


def read_click_log(path: str | Path, log_format: str) -> pd.DataFrame:
    """Read a raw click log into one row per click, in file order.

    Returns columns ``session`` (int64 code, numbered in order of first appearance), ``item``
    (int64 code of the raw item id string), ``order`` (int64 key that orders clicks within a
    session: Diginetica's ``timeframe``; 0 for Yoochoose, whose clicks stay in file order as in
    SR-GNN) and ``date`` (int64 seconds, UTC: Diginetica's ``eventdate`` day, Yoochoose's
    ``timestamp`` to the second).
    """
    path = Path(path)
    if log_format == "diginetica":
        df = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
        # SR-GNN's sample says session_id/item_id, the CIKM Cup file sessionId/itemId.
        df.columns = [c.strip().lower().replace("_", "") for c in df.columns]
        missing = {"sessionid", "itemid", "timeframe", "eventdate"} - set(df.columns)
        if missing:
            raise InputError(f"the click log {path} is malformed: columns {sorted(missing)} are missing "
                             f"(got {list(df.columns)}). Fix: use the Diginetica log as published "
                             f"(sessionId;userId;itemId;timeframe;eventdate) or delete it so it is fetched again.")
        session, item = df["sessionid"], df["itemid"]
        order = df["timeframe"].astype(np.int64).to_numpy()
        date = _seconds(pd.to_datetime(df["eventdate"], format="%Y-%m-%d"))
    elif log_format == "yoochoose":
        with open(path) as f:
            first = f.readline()
        header = 0 if first[:1] and not first[:1].isdigit() else None  # SR-GNN needs a header row
        # ~33M rows: read in chunks, numeric ids (all-digit in this log, so equal as strings too)
        # and timestamps turned into seconds chunk by chunk to keep memory low.
        parts = []
        for chunk in pd.read_csv(path, sep=",", header=header, usecols=[0, 1, 2], chunksize=2_000_000,
                                 names=["session_id", "timestamp", "item_id"],
                                 dtype={"session_id": np.int64, "timestamp": str, "item_id": np.int64}):
            stamp = pd.to_datetime(chunk["timestamp"].str.slice(0, 19), format="%Y-%m-%dT%H:%M:%S")
            parts.append(pd.DataFrame({"session_id": chunk["session_id"].to_numpy(),
                                       "item_id": chunk["item_id"].to_numpy(), "date": _seconds(stamp)}))
        df = pd.concat(parts, ignore_index=True)
        session, item = df["session_id"], df["item_id"]
        order = np.zeros(len(df), dtype=np.int64)
        date = df["date"].to_numpy()
    else:
        raise ValueError(f"unknown log format {log_format!r}; valid: diginetica, yoochoose")
    return pd.DataFrame({
        "session": pd.factorize(session)[0].astype(np.int64),
        "item": pd.factorize(item)[0].astype(np.int64),
        "order": order,
        "date": date.astype(np.int64),
    })


# ----------------------------------------------------------------------------- 2. SR-GNN rules
def augment(items: np.ndarray, ptr: np.ndarray) -> Split:
    """Every prefix of every session becomes an example, in SR-GNN's order.

    For a session ``s`` SR-GNN emits ``(s[:-1], s[-1]), (s[:-2], s[-2]), ..., (s[:1], s[1])``.
    ``items`` [clicks], ``ptr`` [sessions + 1] -> :class:`Split`.
    """
    lengths = np.diff(ptr)
    n_ex = np.maximum(lengths - 1, 0)
    ex_session = np.repeat(np.arange(len(lengths)), n_ex)
    k = np.arange(int(n_ex.sum())) - np.repeat(_ptr(n_ex)[:-1], n_ex)  # 0 for the longest prefix
    prefix_len = lengths[ex_session] - 1 - k
    labels = items[ptr[ex_session] + prefix_len]
    flat = items[_ranges(ptr[ex_session], prefix_len)]
    return Split(flat.astype(np.int64), _ptr(prefix_len), labels.astype(np.int64))


def preprocess_clicks(clicks: pd.DataFrame, test_days: int, keep_fraction: int = 1
                      ) -> tuple[Split, Split, int]:
    """SR-GNN's ``preprocess.py`` on a click table from :func:`read_click_log`.

    Returns (train, test, number of items); item ids run from 1 to the number of items.
    """
    session = clicks["session"].to_numpy()
    item = clicks["item"].to_numpy()
    row = np.arange(len(clicks))
    n_sessions = int(session.max()) + 1 if len(session) else 0

    # A session's date is the date of its last click in file order (SR-GNN overwrites it per click).
    last_row = np.full(n_sessions, -1, dtype=np.int64)
    np.maximum.at(last_row, session, row)
    session_date = clicks["date"].to_numpy()[last_row]

    # Clicks ordered within each session by time, ties kept in file order (a stable sort).
    order = np.lexsort((row, clicks["order"].to_numpy(), session))
    session, item = session[order], item[order]

    # Sessions of length 1 removed.
    keep = np.bincount(session, minlength=n_sessions)[session] > 1
    session, item = session[keep], item[keep]
    # Items clicked fewer than 5 times removed, then sessions shorter than 2.
    keep = np.bincount(item)[item] >= MIN_ITEM_COUNT
    session, item = session[keep], item[keep]
    keep = np.bincount(session, minlength=n_sessions)[session] >= 2
    session, item = session[keep], item[keep]
    kept_sessions = np.flatnonzero(np.bincount(session, minlength=n_sessions) >= 2)

    # Split by date: the last test_days days are the test set. A session dated exactly on the
    # split date belongs to neither split (SR-GNN's strict '<' and '>').
    split_date = session_date[kept_sessions].max() - DAY * test_days
    dates = session_date[kept_sessions]
    train_sessions = kept_sessions[dates < split_date]
    test_sessions = kept_sessions[dates > split_date]
    # Sessions sorted by date; ties in order of first appearance (the session code).
    train_sessions = train_sessions[np.argsort(session_date[train_sessions], kind="stable")]
    test_sessions = test_sessions[np.argsort(session_date[test_sessions], kind="stable")]

    # Per-session click ranges (clicks are grouped by session code after the lexsort).
    starts = np.searchsorted(session, np.arange(n_sessions))
    counts = np.bincount(session, minlength=n_sessions)

    def stream(sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return item[_ranges(starts[sessions], counts[sessions])], _ptr(counts[sessions])

    # Items renumbered 1..n in order of first appearance in the date-sorted training sessions.
    train_raw, train_ptr = stream(train_sessions)
    codes, uniques = pd.factorize(train_raw)
    train_items = codes.astype(np.int64) + 1
    n_items = len(uniques)
    new_id = np.zeros(int(item.max()) + 1 if len(item) else 1, dtype=np.int64)
    new_id[uniques] = np.arange(1, n_items + 1)

    # Test items unseen in training dropped; test sessions left shorter than 2 dropped.
    test_raw, test_ptr = stream(test_sessions)
    test_items = new_id[test_raw]
    seen = test_items > 0
    test_sess_of_click = np.repeat(np.arange(len(test_sessions)), np.diff(test_ptr))
    test_len = np.bincount(test_sess_of_click[seen], minlength=len(test_sessions))
    test_keep = seen & (test_len[test_sess_of_click] >= 2)
    test_items = test_items[test_keep]
    test_ptr = _ptr(test_len[test_len >= 2])

    train, test = augment(train_items, train_ptr), augment(test_items, test_ptr)
    if keep_fraction > 1:
        train = tail_fraction(train, keep_fraction)
    return train, test, n_items


def tail_fraction(split: Split, fraction: int) -> Split:
    """SR-GNN's Yoochoose 1/``fraction``: the last ``int(n / fraction)`` training examples.

    Quirk kept: with fewer than ``fraction`` examples, ``int(n / fraction)`` is 0 and SR-GNN's
    ``seqs[-0:]`` keeps every example.
    """
    n = int(len(split) / fraction)
    first = len(split) - n if n > 0 else 0
    start = split.ptr[first]
    return Split(split.items[start:], split.ptr[first:] - start, split.labels[first:])


# ----------------------------------------------------------------------------- 3. prepared
def load_prepared(path: str | Path) -> Split:
    """One of SR-GNN's pickles (``train.txt`` / ``test.txt``): a tuple (sequences, labels)."""
    try:
        with open(path, "rb") as f:
            seqs, labels = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise InputError(f"SR-GNN's split {path} is malformed ({type(e).__name__}: {e}); it must be a pickled "
                         f"(sequences, labels) pair. Fix: delete it so it is fetched and verified again.") from e
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    items = np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(lengths.sum()))
    return Split(items, _ptr(lengths), np.asarray(labels, dtype=np.int64))


def resolve_source(name: str, source: str = "auto") -> str:
    """Which input a dataset is built from: ``raw`` (click log) or ``prepared`` (SR-GNN pickles).

    ``auto``: the raw log when it can be had (cache or mirror), else SR-GNN's prepared splits.
    """
    spec = DATASETS[name]
    if source not in ("auto", "raw", "prepared"):
        raise InputError(f"unknown --source {source!r}; valid: auto, raw, prepared")
    if source == "prepared" and spec.prepared is None:
        raise InputError(f"--dataset {name} has no prepared splits (SR-GNN published none for it): use "
                         f"--source raw or --source auto")
    if source != "auto":
        return source
    if spec.prepared is None:
        return "raw"
    try:
        fetch_file(*spec.raw)
        return "raw"
    except DatasetUnavailableError:
        log.info("%s: raw log %s/%s not available here; using SR-GNN's prepared splits (%s)",
                 name, *spec.raw, spec.prepared)
        return "prepared"


def load_splits(name: str, source: str) -> tuple[Split, Split]:
    """Train and test examples of a dataset from the given source (``raw`` or ``prepared``)."""
    spec = DATASETS[name]
    if source == "prepared":
        return (load_prepared(fetch_file(spec.prepared, "train.txt")),
                load_prepared(fetch_file(spec.prepared, "test.txt")))
    clicks = read_click_log(fetch_file(*spec.raw), spec.log_format)
    train, test, _ = preprocess_clicks(clicks, spec.test_days, spec.keep_fraction)
    return train, test


# ----------------------------------------------------------------------------- 4. graphs
def build_graphs(split: Split) -> tuple[Data, dict[str, torch.Tensor]]:
    """Session graphs of every example, collated as an ``InMemoryDataset`` stores them.

    Per example (the notebook's ``MultiSessionsGraph.process``):

    * ``x`` [nodes, 1]: the distinct items of the sequence, in order of first appearance;
    * ``edge_index`` [2, edges]: one directed edge per pair of consecutive clicks (sender ->
      receiver, local node ids), duplicates merged, kept in order of first occurrence; a
      sequence of one click gets the self loop 0 -> 0 (the notebook keeps its single sender);
    * ``edge_attr`` [edges]: how many times the transition occurs (float);
    * ``out_degree_inv`` / ``in_degree_inv`` [edges]: 1 / (number of merged edges leaving the
      edge's sender) and 1 / (number entering its receiver);
    * ``y`` [1]: the next item; ``sequence`` [len], ``sequence_len`` [1]: the input clicks;
    * ``last_node_index`` [1]: node of the last click (not in the notebook; ``--last-node``).

    Returns (data, slices): every attribute concatenated over examples, and the offsets of each
    example in it (local node ids: PyG's batching adds the per-graph offsets).
    """
    items, ptr = split.items, split.ptr
    lengths = np.diff(ptr)
    n = len(lengths)
    if n and lengths.min() < 1:
        raise ValueError("every example needs at least one click")
    sess = np.repeat(np.arange(n, dtype=np.int64), lengths)

    # Nodes: distinct (example, item) pairs, numbered in order of first click.
    key = sess * (int(items.max()) + 1 if len(items) else 1) + items
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(len(by_first))
    node_of_click = rank[inverse.reshape(-1)]  # global node id of every click
    x = items[first[by_first]]
    node_ptr = _ptr(np.bincount(sess[first[by_first]], minlength=n))
    n_nodes = int(node_ptr[-1])

    # Edges: consecutive clicks of the same example; a one-click example keeps a self loop.
    consecutive = np.flatnonzero(sess[1:] == sess[:-1])
    single = np.flatnonzero(lengths == 1)
    position = np.concatenate([consecutive, ptr[single]])
    src = np.concatenate([node_of_click[consecutive], node_ptr[single]])
    dst = np.concatenate([node_of_click[consecutive + 1], node_ptr[single]])
    by_position = np.argsort(position, kind="stable")
    src, dst = src[by_position], dst[by_position]

    # Duplicate transitions merged into one edge (first occurrence kept) with their count.
    _, efirst, ecount = np.unique(src * max(n_nodes, 1) + dst, return_index=True,
                                  return_counts=True)
    eorder = np.argsort(efirst, kind="stable")
    src, dst, count = src[efirst[eorder]], dst[efirst[eorder]], ecount[eorder]
    node_sess = np.repeat(np.arange(n, dtype=np.int64), np.diff(node_ptr))
    edge_sess = node_sess[src]
    edge_ptr = _ptr(np.bincount(edge_sess, minlength=n))
    out_degree = np.bincount(src, minlength=n_nodes)
    in_degree = np.bincount(dst, minlength=n_nodes)

    local = lambda v: v - node_ptr[node_sess[v]]  # noqa: E731
    data = Data(
        x=torch.from_numpy(x).long().view(-1, 1),
        edge_index=torch.from_numpy(np.stack([local(src), local(dst)])).long(),
        edge_attr=torch.from_numpy(count.astype(np.float32)),
        y=torch.from_numpy(split.labels).long(),
        sequence=torch.from_numpy(items).long(),
        sequence_len=torch.from_numpy(lengths).long(),
        out_degree_inv=torch.from_numpy((1.0 / out_degree[src]).astype(np.float32)),
        in_degree_inv=torch.from_numpy((1.0 / in_degree[dst]).astype(np.float32)),
        last_node_index=torch.from_numpy(local(node_of_click[ptr[1:] - 1])).long(),
    )
    per_graph = torch.arange(n + 1)
    edges = torch.from_numpy(edge_ptr)
    slices = {
        "x": torch.from_numpy(node_ptr), "edge_index": edges, "edge_attr": edges,
        "y": per_graph, "sequence": torch.from_numpy(ptr.astype(np.int64)),
        "sequence_len": per_graph, "out_degree_inv": edges, "in_degree_inv": edges,
        "last_node_index": per_graph,
    }
    return data, slices


# ----------------------------------------------------------------------------- 5. dataset
class SessionGraphs(InMemoryDataset):
    """Every example of one split as a session graph; built once, cached under ``root``.

    ``make_splits`` returns (train, test) :class:`Split` s; it is called only when the cache is
    missing, and both splits are written at once.
    """

    def __init__(self, root: str | Path, split: str, make_splits: Optional[Callable[[], tuple[Split, Split]]] = None):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split, self._make_splits = split, make_splits
        super().__init__(str(root), log=False)
        path = self.processed_paths[0 if split == "train" else 1]
        try:
            self.load(path)
        except Exception as e:  # noqa: BLE001 - torch.load reports a truncated or foreign file as many types
            why = (str(e).splitlines() or [""])[0][:100]
            raise InputError(f"the cached session graphs {path} cannot be read ({type(e).__name__}: "
                             f"{why}). Fix: delete the folder "
                             f"{self.processed_dir} and run again; it is rebuilt from the data in seconds.") from e

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return ["train.pt", "test.pt"]

    def download(self) -> None:
        pass

    def process(self) -> None:
        if self._make_splits is None:
            raise FileNotFoundError(f"no cached session graphs in {self.processed_dir} and no "
                                    "source to build them from")
        t0 = time.time()
        train, test = self._make_splits()
        t1 = time.time()
        meta = {"format_version": FORMAT_VERSION}
        for name, split, path in (("train", train, self.processed_paths[0]),
                                  ("test", test, self.processed_paths[1])):
            data, slices = build_graphs(split)
            torch.save((data.to_dict(), slices, Data), path)
            meta[name] = len(split)
        meta.update(read_seconds=round(t1 - t0, 3), build_seconds=round(time.time() - t1, 3))
        (Path(self.processed_dir) / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @property
    def n_items(self) -> int:
        """Largest item id in this split (inputs and labels)."""
        return int(max(self._data.x.max(), self._data.y.max()))


def processed_root(name: str, source: str) -> Path:
    return cache_dir() / "fgnn" / f"{name}-{source}-v{FORMAT_VERSION}"


def load_dataset(name: str, source: str = "auto", root: Optional[str | Path] = None
                 ) -> tuple[SessionGraphs, SessionGraphs, dict]:
    """Train and test session graphs of a dataset, built once and cached.

    Returns (train, test, info) with ``info`` = {dataset, source, n_items, train, test, root}.
    ``n_items`` is the largest item id over both splits (SR-GNN numbers items from 1, so it is
    the size of the item embedding): 309 on ``sample``, 43,097 on Diginetica, 37,483 on
    Yoochoose 1/64.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    source = resolve_source(name, source)
    root = Path(root) if root is not None else processed_root(name, source)
    make = lambda: load_splits(name, source)  # noqa: E731
    train = SessionGraphs(root, "train", make)
    test = SessionGraphs(root, "test", make)
    info = {"dataset": name, "source": source, "n_items": max(train.n_items, test.n_items),
            "train": len(train), "test": len(test), "root": str(root)}
    return train, test, info


# ----------------------------------------------------------------------------- batches
class SessionBatches:
    """Mini-batches of a :class:`SessionGraphs`, equal to ``torch_geometric.loader.DataLoader``'s.

    The batch is cut out of the collated storage with index arithmetic (``repeat_interleave``),
    so its cost does not grow with a Python loop over graphs.
    """

    _NODE_KEYS = ("x",)
    _EDGE_KEYS = ("edge_attr", "out_degree_inv", "in_degree_inv")
    _GRAPH_KEYS = ("y", "sequence_len")

    def __init__(self, dataset: SessionGraphs | tuple[Data, dict], batch_size: int, shuffle: bool = False,
                 generator: Optional[torch.Generator] = None, indices: Optional[torch.Tensor] = None):
        """``dataset``: a :class:`SessionGraphs` or the (data, slices) of :func:`build_graphs`;
        ``indices``: only these examples (int64, in this order when not shuffled)."""
        self.data, self.slices = dataset if isinstance(dataset, tuple) else (dataset._data, dataset.slices)
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)
        self.n = len(self.slices["y"]) - 1 if self.indices is None else len(self.indices)
        self.node_ptr = self.slices["x"]
        self.edge_ptr = self.slices["edge_index"]
        self.seq_ptr = self.slices["sequence"]

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        order = (torch.randperm(self.n, generator=self.generator) if self.shuffle
                 else torch.arange(self.n))
        if self.indices is not None:
            order = self.indices[order]
        for start in range(0, self.n, self.batch_size):
            yield self.batch(order[start:start + self.batch_size])

    @staticmethod
    def _gather(ptr: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the elements of graphs ``idx`` in the storage, and per-graph counts."""
        counts = ptr[idx + 1] - ptr[idx]
        starts = ptr[idx]
        within = torch.arange(int(counts.sum())) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        return torch.repeat_interleave(starts, counts) + within, counts

    def batch(self, idx: torch.Tensor) -> Batch:
        """The batch of graphs ``idx`` (int64 [B]), with ``batch`` [nodes] and ``ptr`` [B + 1]."""
        d = self.data
        nodes, n_nodes = self._gather(self.node_ptr, idx)
        edges, n_edges = self._gather(self.edge_ptr, idx)
        clicks, _ = self._gather(self.seq_ptr, idx)
        ptr = torch.zeros(len(idx) + 1, dtype=torch.long)
        torch.cumsum(n_nodes, 0, out=ptr[1:])
        shift = torch.repeat_interleave(ptr[:-1], n_edges)
        out = Batch(
            x=d.x[nodes],
            edge_index=d.edge_index[:, edges] + shift,
            sequence=d.sequence[clicks],
            last_node_index=d.last_node_index[idx] + ptr[:-1],
            batch=torch.repeat_interleave(torch.arange(len(idx)), n_nodes),
            ptr=ptr,
        )
        for key in self._EDGE_KEYS:
            out[key] = d[key][edges]
        for key in self._GRAPH_KEYS:
            out[key] = d[key][idx]
        out._num_graphs = len(idx)
        return out
