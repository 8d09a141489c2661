"""AGNN input layer: build the user and item attribute graphs (paper, Sec. "Input layer").

The paper: two proximities between nodes, *preference proximity* (similar rating records) and
*attribute proximity* (similar attributes), both cosine similarities; their combination gives an
overall proximity, and each node keeps its k nearest neighbours (a k-NN graph). Cold nodes have no
ratings, so only attribute proximity is defined for them. The authors' graph-building script is
not published; their files (``neighbor_aspect_extension_2_zscore_*``) show 47 neighbours per user
and 84 per item (5% of the nodes), probabilities that sum to 1, never the node itself, and
"zscore" in the name. What this module does (our choices, listed in the README):

1. attribute proximity: cosine between multi-hot attribute vectors (users: gender, age,
   occupation one-hots; items: genres, directors, writers, stars, countries; padding id 0 dropped);
2. preference proximity: cosine between rows of the training rating matrix (0 where a node has
   no training rating);
3. each proximity z-scored per row over the other real nodes; overall = sum of the z-scores that
   are defined (attribute only for nodes without training ratings);
4. keep the top ``share * n_nodes`` nodes (self and the padding node 0 excluded);
5. sampling probabilities = softmax of the overall proximity over the kept neighbours.

``python -m agnn.graph --mode ucs`` builds the graph of a setting and reports its overlap with
the authors' file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from agnn.data import ITEM_FIELDS, USER_FIELDS, NeighbourTable

DEFAULT_SHARE = 0.05  # 47 of 944 users, 84 of 1,683 items, as in the authors' files


def multi_hot(attr: np.ndarray, fields: list[tuple[int, int]], skip_zero: list[bool]) -> np.ndarray:
    """Multi-hot encoding of attribute ids.

    Args:
        attr: int [nodes, slots] attribute ids.
        fields: per field (first slot, number of slots) with its vocabulary size appended:
            ``[(start, width, vocab), ...]``.
        skip_zero: per field, whether id 0 is padding (dropped).
    Returns:
        float64 [nodes, sum of vocab sizes].
    """
    blocks = []
    rows = np.arange(attr.shape[0])
    for (start, width, vocab), skip in zip(fields, skip_zero):
        block = np.zeros((attr.shape[0], vocab))
        for s in range(start, start + width):  # a handful of slots, vectorized over nodes
            block[rows, attr[:, s]] = 1.0
        if skip:
            block[:, 0] = 0.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


def cosine(x: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity [n, d] -> [n, n]; all-zero rows get similarity 0."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    xn = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return xn @ xn.T


def row_zscore(s: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Standardise each row of ``s`` [n, n] over the columns where ``valid`` [n, n] is True."""
    cnt = np.maximum(valid.sum(1, keepdims=True), 1)
    mean = np.where(valid, s, 0).sum(1, keepdims=True) / cnt
    var = (np.where(valid, s - mean, 0) ** 2).sum(1, keepdims=True) / cnt
    return (s - mean) / np.sqrt(np.maximum(var, 1e-12))


def knn_graph(attr_vec: np.ndarray, pref_vec: np.ndarray, k: int) -> NeighbourTable:
    """Overall proximity (z-scored attribute + preference cosine), top ``k`` per node, softmax.

    attr_vec: [n, a] multi-hot attributes; pref_vec: [n, m] training ratings (0 = unrated).
    Node 0 is padding: never a neighbour.
    """
    n = attr_vec.shape[0]
    valid = np.ones((n, n), dtype=bool)
    np.fill_diagonal(valid, False)
    valid[:, 0] = False
    score = row_zscore(cosine(attr_vec), valid)
    has_pref = np.abs(pref_vec).sum(1) > 0
    pref_valid = valid & has_pref[None, :]
    pref = row_zscore(cosine(pref_vec), pref_valid)
    # Preference proximity only between two nodes that both have training ratings.
    score = score + np.where(pref_valid & has_pref[:, None], pref, 0.0)
    score = np.where(valid, score, -np.inf)
    top = np.argpartition(-score, k - 1, axis=1)[:, :k]
    top_score = np.take_along_axis(score, top, axis=1)
    order = np.argsort(-top_score, axis=1, kind="stable")
    top, top_score = np.take_along_axis(top, order, 1), np.take_along_axis(top_score, order, 1)
    p = np.exp(top_score - top_score[:, :1])
    p /= p.sum(1, keepdims=True)
    return NeighbourTable(top.astype(np.int64), p, np.full(n, k, dtype=np.int64))


def build_graph(
    user_attr: np.ndarray,
    item_attr: np.ndarray,
    train: np.ndarray,
    vocab: dict[str, int],
    share: float = DEFAULT_SHARE,
) -> tuple[NeighbourTable, NeighbourTable]:
    """User and item attribute graphs from attributes and training ratings.

    Args:
        user_attr: int [n_users, 3]; item_attr: int [n_items, 23] (see data.AGNNData).
        train: [rows, 3] (user, item, rating) of this setting's training file only, so cold
            nodes get attribute proximity only.
        vocab: ids per attribute field.
        share: neighbours kept per node, as a share of the nodes.
    """
    n_users, n_items = user_attr.shape[0], item_attr.shape[0]
    u_fields = [(s, 1, vocab[name]) for s, name in enumerate(USER_FIELDS)]
    user_vec = multi_hot(user_attr, u_fields, [False] * 3)
    i_fields, start = [], 0
    for name, width in ITEM_FIELDS:
        i_fields.append((start, width, vocab[name]))
        start += width
    item_vec = multi_hot(item_attr, i_fields, [True] * len(ITEM_FIELDS))
    r = np.zeros((n_users, n_items))
    r[train[:, 0].astype(np.int64), train[:, 1].astype(np.int64)] = train[:, 2]
    user_graph = knn_graph(user_vec, r, int(share * n_users))
    item_graph = knn_graph(item_vec, r.T, int(share * n_items))
    return user_graph, item_graph


def overlap(built: NeighbourTable, authors: NeighbourTable, nodes: Optional[np.ndarray] = None) -> float:
    """Mean share of each node's authors' neighbours that the built graph also lists."""
    nodes = np.arange(1, built.ids.shape[0]) if nodes is None else np.asarray(nodes)
    shares = []
    for v in nodes:  # a report, not a hot path
        a = set(authors.ids[v, : authors.lengths[v]].tolist())
        b = set(built.ids[v, : built.lengths[v]].tolist())
        shares.append(len(a & b) / max(len(a), 1))
    return float(np.mean(shares))


def overlap_report(mode: str, share: float = DEFAULT_SHARE) -> dict[str, float]:
    """Built graph vs the authors' file of ``mode``: overlap for all, cold and warm nodes."""
    from agnn.data import load

    authors = load(mode, "authors")
    built = load(mode, "built", built_graph_k=share)
    seen_u = np.zeros(authors.n_users, bool)
    seen_u[authors.train[:, 0].astype(int)] = True
    seen_i = np.zeros(authors.n_items, bool)
    seen_i[authors.train[:, 1].astype(int)] = True
    rep: dict[str, float] = {}
    for kind, b, a, seen in (("user", built.user_graph, authors.user_graph, seen_u),
                             ("item", built.item_graph, authors.item_graph, seen_i)):
        real = np.arange(1, len(seen))
        rep[f"{kind}_overlap"] = overlap(b, a, real)
        if (~seen[real]).any():
            rep[f"{kind}_overlap_cold"] = overlap(b, a, real[~seen[real]])
        rep[f"{kind}_overlap_with_ratings"] = overlap(b, a, real[seen[real]])
        rep[f"{kind}_overlap_random_expected"] = a.lengths[1] / (len(seen) - 2)
    return rep


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Build AGNN's attribute graphs and compare them with the authors' files.")
    p.add_argument("--mode", choices=("ucs", "warm"), nargs="+", default=["ucs", "warm"],
                   help="settings whose authors' neighbour file is available to compare with")
    p.add_argument("--share", type=float, default=DEFAULT_SHARE, help="neighbours kept per node, as a share of the nodes")
    args = p.parse_args(argv)
    for mode in args.mode:
        rep = overlap_report(mode, args.share)
        print(mode, " ".join(f"{k}={v:.3f}" for k, v in rep.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
