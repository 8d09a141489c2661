"""AGNN data: the authors' preprocessed ML-100k package -> model-ready arrays, and batch building.

Step by step (as in the authors' code, ``get_data_list`` / ``get_batch_instances``):

1. ``uiinfo.pkl``: node counts (944 users, 1,683 items: ids are 1-based, row 0 is an unused
   padding node), user attributes ``[gender, age, occupation]`` and six genre slots per item.
2. The neighbour pickle of the setting (``neighbor_aspect_extension_2_zscore_<mode>...pkl``):
   per node a list of neighbours with sampling probabilities (47 per user, 84 per item in the
   authors' files), plus the item attributes director (3 slots), writer (3), star (3), country
   (8). Item attributes are identical in every setting's pickle.
3. ``<mode>_{train,val}.dat``: ``user<TAB>item<TAB>rating`` rows.
4. Each batch: ratings, user/item attribute ids, and 10 one-hop neighbours per user and per item
   drawn by the stored probabilities (:func:`sample_neighbours`), the last slot the node itself.

Everything per batch is numpy/torch indexing; nothing loops over rows in Python.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from common.cli import DataError
from common.datasets import DatasetUnavailableError, fetch_file

DATASET = "agnn-ml100k"
MODES = ("ics", "ucs", "warm")
NEIGHBOUR_FILES = {
    "ics": "neighbor_aspect_extension_2_zscore_ics_uuii_0.20.pkl",
    "ucs": "neighbor_aspect_extension_2_zscore_ucs_uuii.pkl",
    "warm": "neighbor_aspect_extension_2_zscore_warm_uuii.pkl",
}
# Item attribute columns in the order the authors concatenate them (``item_feature_arr``).
ITEM_FIELDS = (("genre", 6), ("director", 3), ("writer", 3), ("star", 3), ("country", 8))
USER_FIELDS = ("gender", "age", "occupation")


class GraphUnavailableError(DataError, RuntimeError):
    """The authors' neighbour file of a setting cannot be had (the ICS one is not in the mirror).

    A :class:`common.cli.DataError`: ``main`` exits with code 3 and one paragraph naming ``--graph built``.
    """


# ----------------------------------------------------------------------------- neighbour tables
@dataclass
class NeighbourTable:
    """Padded neighbour lists of every node.

    ids:   int64 [nodes, max_len]  neighbour ids, 0-padded past ``lengths``
    probs: float64 [nodes, max_len] sampling probabilities (rows sum to 1), 0 past ``lengths``
    lengths: int64 [nodes]
    """

    ids: np.ndarray
    probs: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_dict(cls, nei: Mapping[int, Sequence], n_nodes: int) -> "NeighbourTable":
        """From the authors' ``{node: (neighbour_ids, probabilities)}`` dict (nodes 0..n-1)."""
        lengths = np.array([len(nei[v][0]) if v in nei else 0 for v in range(n_nodes)], dtype=np.int64)
        width = max(int(lengths.max()), 1)
        ids = np.zeros((n_nodes, width), dtype=np.int64)
        probs = np.zeros((n_nodes, width), dtype=np.float64)
        for v in range(n_nodes):  # once at load time, not on the hot path
            if lengths[v]:
                ids[v, : lengths[v]] = np.asarray(nei[v][0], dtype=np.int64)
                p = np.asarray(nei[v][1], dtype=np.float64)
                probs[v, : lengths[v]] = p / p.sum()
        return cls(ids, probs, lengths)

    def to_dict(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        return {v: (self.ids[v, :n].copy(), self.probs[v, :n].copy()) for v, n in enumerate(self.lengths)}

    def log_probs(self) -> np.ndarray:
        """``log(probs)`` (-inf where 0), computed once per ``probs`` array (the sampler's keys)."""
        cached = self.__dict__.get("_log_probs")
        if cached is None or cached[0] is not self.probs:
            with np.errstate(divide="ignore"):
                cached = (self.probs, np.log(self.probs))
            self.__dict__["_log_probs"] = cached
        return cached[1]


def sample_neighbours(
    table: NeighbourTable, nodes: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` one-hop neighbours per node, the last slot the node itself; a whole batch at once.

    Follows the authors' per-row ``np.random.choice``: more than ``k`` listed neighbours are drawn
    *without* replacement by the stored probabilities, fewer *with* replacement, exactly ``k`` are
    taken as listed; then slot ``k-1`` is overwritten by the node. Without replacement uses the
    Gumbel-top-k trick (keys ``log p + Gumbel``), which has the same distribution as numpy's
    successive draws; with replacement uses inverse-CDF sampling.

    Args:
        table: the graph.
        nodes: int [batch] node ids.
        k: neighbours per node, self included (the authors' ``*_layer1_nei_num`` = 10).
    Returns:
        int64 [batch, k].
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    ids, lengths = table.ids[nodes], table.lengths[nodes]
    width = ids.shape[1]
    out = np.empty((len(nodes), k), dtype=np.int64)
    # Zero-length rows (a node with no neighbour) fall back to the node itself everywhere.
    out[:] = nodes[:, None]

    many = lengths > k
    if many.any():
        rows = slice(None) if many.all() else many  # the authors' files: every row has more than k
        keys = table.log_probs()[nodes[rows]] + rng.gumbel(size=(int(many.sum()), width))
        if lengths[rows].min() < width:  # past a row's length: log(0) = -inf already; made sure
            keys[np.arange(width)[None, :] >= lengths[rows][:, None]] = -np.inf
        # Order among the drawn slots does not matter to the model (mean over neighbours); the
        # slot the node overwrites is the k-th draw, so only the top k-1 keys are needed.
        top = np.argpartition(-keys, k - 1, axis=1)[:, : k - 1] if k > 1 else np.empty((keys.shape[0], 0), np.int64)
        out[rows, : k - 1] = np.take_along_axis(ids[rows], top, axis=1)

    exact = lengths == k
    if exact.any():
        out[exact, : k - 1] = ids[exact, : k - 1]

    few = (lengths < k) & (lengths > 0)
    if few.any():
        cdf = np.cumsum(table.probs[nodes[few]], axis=1)
        cdf /= cdf[:, -1:]
        u = rng.random((int(few.sum()), k - 1))
        pick = (u[:, :, None] > cdf[:, None, :]).sum(axis=2)  # first index whose cdf >= u
        pick = np.minimum(pick, lengths[few][:, None] - 1)
        out[few, : k - 1] = np.take_along_axis(ids[few], pick, axis=1)

    out[:, k - 1] = nodes
    return out


# ----------------------------------------------------------------------------- the package
@dataclass
class AGNNData:
    """Everything one setting needs.

    user_attr: int64 [n_users, 3]   (gender, age, occupation)
    item_attr: int64 [n_items, 23]  (genre 6 | director 3 | writer 3 | star 3 | country 8)
    vocab: number of ids per attribute field (``gender``, ..., ``country``), 0 = padding
    train, val: float64 [rows, 3] (user, item, rating)
    user_graph, item_graph: neighbour tables
    """

    mode: str
    n_users: int
    n_items: int
    user_attr: np.ndarray
    item_attr: np.ndarray
    vocab: dict[str, int]
    train: np.ndarray
    val: np.ndarray
    user_graph: NeighbourTable
    item_graph: NeighbourTable
    graph: str = "authors"


def read_ratings(path: str | Path) -> np.ndarray:
    """``user<TAB>item<TAB>rating`` file -> float64 [rows, 3]."""
    try:
        arr = np.loadtxt(path, dtype=np.float64, delimiter="\t", ndmin=2)
    except ValueError as e:
        raise DataError(f"{path} is not a ratings file of user<TAB>item<TAB>rating rows ({e}). Replace it "
                        f"with the authors' file (python -m common.datasets verifies the mirror).") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 3:
        raise DataError(f"{path}: expected rows of 3 tab-separated columns (user, item, rating), got shape "
                        f"{arr.shape}. Replace it with the authors' file.")
    return arr[:, :3]


def load_info() -> dict:
    with open(fetch_file(DATASET, "uiinfo.pkl"), "rb") as f:
        return pickle.load(f)


def load_neighbour_pickle(mode: str) -> dict:
    """The authors' neighbour pickle of ``mode``; :class:`GraphUnavailableError` if it cannot be had."""
    try:
        path = fetch_file(DATASET, NEIGHBOUR_FILES[mode])
    except DatasetUnavailableError as e:
        raise GraphUnavailableError(
            f"the authors' {mode.upper()} neighbour file {DATASET}/{NEIGHBOUR_FILES[mode]} is not "
            f"available here (it is missing from the offline mirror). Run with `--graph built` to "
            f"build the attribute graph from raw attributes and training ratings instead "
            f"(agnn/graph.py). {e}"
        ) from None
    with open(path, "rb") as f:
        return pickle.load(f)


def item_attribute_dicts() -> dict:
    """Director/writer/star/country ids per item, from whichever authors' pickle can be had.

    They do not depend on the split (identical in the UCS and warm files), so ICS on the built
    graph takes them from the UCS file.
    """
    for mode in ("ucs", "warm", "ics"):
        try:
            return load_neighbour_pickle(mode)
        except GraphUnavailableError:
            continue
    raise GraphUnavailableError(
        "no authors' neighbour pickle can be had, so the director/writer/star/country ids are "
        "unknown; fetch one of " + ", ".join(f"{DATASET}/{f}" for f in NEIGHBOUR_FILES.values())
    )


def attribute_arrays(info: dict, nei: dict) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """User [n_users, 3] and item [n_items, 23] attribute id arrays, plus vocabulary sizes.

    Rows are indexed by node id (the dicts are keyed 0..n-1; the authors rely on their order).
    """
    n_users, n_items = info["user_num"], info["item_num"]
    user_attr = np.array([info["user_feature_dict"][u] for u in range(n_users)], dtype=np.int64)
    cols = [
        np.array([info["item_feature_dict"][i] for i in range(n_items)], dtype=np.int64),
        *(np.array([nei[f"item_{name}_dict"][i] for i in range(n_items)], dtype=np.int64)
          for name, _ in ITEM_FIELDS[1:]),
    ]
    for (name, width), c in zip(ITEM_FIELDS, cols):
        if c.shape[1] != width:
            raise ValueError(f"item {name} has {c.shape[1]} slots, expected {width}")
    vocab = {
        "gender": info["gender_num"], "age": info["age_num"], "occupation": info["occupation_num"],
        "genre": info["genre_num"], "director": nei["director_num"], "writer": nei["writer_num"],
        "star": nei["star_num"], "country": nei["country_num"],
    }
    return user_attr, np.concatenate(cols, axis=1), vocab


def load(mode: str, graph: str = "authors", built_graph_k: Optional[float] = None) -> AGNNData:
    """Load one setting.

    Args:
        mode: ``ics`` | ``ucs`` | ``warm``.
        graph: ``authors`` (the authors' neighbour pickle) or ``built`` (agnn/graph.py from raw
            attributes and this setting's training ratings).
        built_graph_k: share of nodes kept as neighbours in the built graph (default: graph.py's).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    info = load_info()
    train = read_ratings(fetch_file(DATASET, f"{mode}_train.dat"))
    val = read_ratings(fetch_file(DATASET, f"{mode}_val.dat"))
    if graph == "authors":
        nei = load_neighbour_pickle(mode)
        user_attr, item_attr, vocab = attribute_arrays(info, nei)
        user_graph = NeighbourTable.from_dict(nei["user_nei_dict"], info["user_num"])
        item_graph = NeighbourTable.from_dict(nei["item_nei_dict"], info["item_num"])
    elif graph == "built":
        from agnn.graph import build_graph

        user_attr, item_attr, vocab = attribute_arrays(info, item_attribute_dicts())
        kw = {} if built_graph_k is None else {"share": built_graph_k}
        user_graph, item_graph = build_graph(user_attr, item_attr, train, vocab, **kw)
    else:
        raise ValueError(f"unknown graph {graph!r}; valid: authors, built")
    return AGNNData(mode, info["user_num"], info["item_num"], user_attr, item_attr, vocab, train, val,
                    user_graph, item_graph, graph)


# ----------------------------------------------------------------------------- batches
@dataclass
class Batch:
    """One batch (B rows, K neighbours).

    user, item: int64 [B]; rating: float32 [B]
    user_attr: int64 [B, 3]; user_nbr: int64 [B, K]; user_nbr_attr: int64 [B, K, 3]
    item_attr: int64 [B, 23]; item_nbr: int64 [B, K]; item_nbr_attr: int64 [B, K, 23]
    """

    user: torch.Tensor
    item: torch.Tensor
    rating: torch.Tensor
    user_attr: torch.Tensor
    user_nbr: torch.Tensor
    user_nbr_attr: torch.Tensor
    item_attr: torch.Tensor
    item_nbr: torch.Tensor
    item_nbr_attr: torch.Tensor

    def to(self, device: str | torch.device) -> "Batch":
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


class BatchBuilder:
    """Builds :class:`Batch` objects for rows of a ratings array (vectorized over the batch)."""

    def __init__(self, data: AGNNData, user_k: int = 10, item_k: int = 10):
        self.data = data
        self.user_k, self.item_k = user_k, item_k
        self.user_attr = torch.from_numpy(data.user_attr)
        self.item_attr = torch.from_numpy(data.item_attr)

    def build(self, rows: np.ndarray, rng: np.random.Generator) -> Batch:
        """rows: float [B, 3] (user, item, rating)."""
        return self.assemble(rows, *self.sample(rows, rng))

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The random part of :meth:`build`: the user and the item neighbour lists [B, K] of rows, in that order."""
        u = rows[:, 0].astype(np.int64)
        i = rows[:, 1].astype(np.int64)
        return (sample_neighbours(self.data.user_graph, u, self.user_k, rng),
                sample_neighbours(self.data.item_graph, i, self.item_k, rng))

    def assemble(self, rows: np.ndarray, user_nbr: np.ndarray, item_nbr: np.ndarray) -> Batch:
        """The rest of :meth:`build`: ids, ratings and attribute rows around the sampled neighbour lists."""
        u = rows[:, 0].astype(np.int64)
        i = rows[:, 1].astype(np.int64)
        un, inb = torch.from_numpy(user_nbr), torch.from_numpy(item_nbr)
        ut, it = torch.from_numpy(u), torch.from_numpy(i)

        def rows_of(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:  # table[ids], by index_select
            return table.index_select(0, ids.reshape(-1)).view(*ids.shape, table.shape[1])

        return Batch(
            user=ut, item=it, rating=torch.from_numpy(rows[:, 2].astype(np.float32)),
            user_attr=rows_of(self.user_attr, ut), user_nbr=un, user_nbr_attr=rows_of(self.user_attr, un),
            item_attr=rows_of(self.item_attr, it), item_nbr=inb, item_nbr_attr=rows_of(self.item_attr, inb),
        )

    def batches(
        self, rows: np.ndarray, batch_size: int, rng: np.random.Generator, shuffle: bool
    ) -> Iterator[Batch]:
        """The authors' loop: shuffle the whole list (training), then consecutive slices."""
        if shuffle:
            rows = rows[rng.permutation(len(rows))]
        for start in range(0, len(rows), batch_size):
            yield self.build(rows[start : start + batch_size], rng)


def prefetched_batches(builder: BatchBuilder, rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                       depth: int = 8) -> Iterator[Batch]:
    """``builder.batches(rows, batch_size, rng, shuffle=False)``, built up to ``depth`` batches ahead in a
    forked child process: the same batches in the same order, and afterwards ``rng`` holds the state that
    building them here would leave (the child draws from a copy of it and sends its final state back).

    Speed only, for a machine with a core that torch's threads leave idle (``main.use_prefetch``): the
    neighbour sampling (:meth:`BatchBuilder.sample`, most of the data phase, about a tenth of a training step)
    then runs beside the model instead of before each step; a child process rather than a thread, since both
    sides spend much of their time in Python. Only the two sampled [B, K] neighbour lists travel (by value,
    through a pipe); the attribute lookups are done here (:meth:`BatchBuilder.assemble`). An error in the
    child is raised here with its traceback; leaving the loop early (an exception, a diverged run) stops the
    child."""
    import multiprocessing
    import queue as queue_module

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue(maxsize=depth)
    proc = ctx.Process(target=_build_in_child, args=(builder, rows, batch_size, rng, q), daemon=True)
    proc.start()
    try:
        while True:
            try:
                kind, payload = q.get(timeout=1.0)
            except queue_module.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"the batch prefetch process ended (exit code {proc.exitcode}) before "
                                       "sending every batch; run with --prefetch off to build them in this process")
                continue
            if kind == "batch":
                start, user_nbr, item_nbr = payload
                yield builder.assemble(rows[start:start + batch_size], user_nbr, item_nbr)
            elif kind == "end":
                rng.bit_generator.state = payload
                return
            else:
                raise RuntimeError(f"building a batch in the prefetch process failed:\n{payload}")
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join()
        q.close()


def _build_in_child(builder: BatchBuilder, rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                    q) -> None:
    import traceback

    try:
        torch.set_num_threads(1)
        for start in range(0, len(rows), batch_size):   # builder.batches' slices; the random part only
            q.put(("batch", (start, *builder.sample(rows[start:start + batch_size], rng))))
        q.put(("end", rng.bit_generator.state))
    except KeyboardInterrupt:          # Ctrl-C reaches the whole process group: the parent reports it
        pass
    except BaseException:
        q.put(("error", traceback.format_exc()))
    finally:
        q.close()
        q.join_thread()


def cold_start_check(data: AGNNData) -> dict[str, int]:
    """Counts of validation users/items never seen in training (ICS: items; UCS: users)."""
    tr_u, tr_i = set(data.train[:, 0].astype(int)), set(data.train[:, 1].astype(int))
    va_u, va_i = set(data.val[:, 0].astype(int)), set(data.val[:, 1].astype(int))
    return {
        "val_users": len(va_u), "val_users_seen_in_train": len(va_u & tr_u),
        "val_items": len(va_i), "val_items_seen_in_train": len(va_i & tr_i),
    }
