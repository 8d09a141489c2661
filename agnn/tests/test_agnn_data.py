"""Neighbour sampler (hand-made graphs), cold-start integrity and the built graph (real files)."""

import numpy as np
import pytest
import torch

from agnn.data import (BatchBuilder, GraphUnavailableError, NeighbourTable, cold_start_check, load, load_neighbour_pickle,
                       prefetched_batches, sample_neighbours)
from common.testing import need_file

# node 0: 5 neighbours (> k), node 1: 2 neighbours (< k), node 2: exactly 3 (= k), node 3: none
NEI = {
    0: (np.array([10, 11, 12, 13, 14]), np.array([0.4, 0.3, 0.15, 0.1, 0.05])),
    1: (np.array([20, 21]), np.array([0.8, 0.2])),
    2: (np.array([30, 31, 32]), np.array([0.2, 0.3, 0.5])),
}


def table():
    return NeighbourTable.from_dict({**NEI, 3: (np.array([], int), np.array([]))}, 4)


def test_shape_self_last_and_only_listed():
    rng = np.random.default_rng(0)
    nodes = np.array([0, 1, 2, 3, 0, 1])
    out = sample_neighbours(table(), nodes, 3, rng)
    assert out.shape == (6, 3) and out.dtype == np.int64
    assert (out[:, -1] == nodes).all()
    for row, v in zip(out, nodes):
        listed = set(NEI[v][0].tolist()) if v in NEI else {v}
        assert set(row[:-1].tolist()) <= listed
    # more neighbours than slots: drawn without replacement
    many = sample_neighbours(table(), np.zeros(500, int), 4, rng)[:, :-1]
    assert all(len(set(r)) == 3 for r in many.tolist())
    # exactly k: the list as stored, its last entry replaced by the node (authors' in-place write)
    assert sample_neighbours(table(), np.array([2]), 3, rng).tolist() == [[30, 31, 2]]


def test_frequencies_follow_probabilities():
    rng = np.random.default_rng(1)
    n = 40000
    # k=2: one drawn slot, so its distribution is exactly p (first draw)
    first = sample_neighbours(table(), np.zeros(n, int), 2, rng)[:, 0]
    freq = np.array([(first == v).mean() for v in NEI[0][0]])
    np.testing.assert_allclose(freq, NEI[0][1], atol=0.01)
    # fewer than k: with replacement, every slot ~ p
    few = sample_neighbours(table(), np.ones(n, int), 5, rng)[:, :-1]
    np.testing.assert_allclose((few == 20).mean(), 0.8, atol=0.01)
    # without replacement, k-1=3 draws: inclusion frequencies match numpy's successive choice
    draws = sample_neighbours(table(), np.zeros(n, int), 4, rng)[:, :-1]
    ours = np.array([(draws == v).any(1).mean() for v in NEI[0][0]])
    ref_rng = np.random.default_rng(2)
    ref = np.array([ref_rng.choice(NEI[0][0], 4, replace=False, p=NEI[0][1])[:3] for _ in range(20000)])
    theirs = np.array([(ref == v).any(1).mean() for v in NEI[0][0]])
    np.testing.assert_allclose(ours, theirs, atol=0.015)


def test_cold_start_integrity_on_real_files():
    for f in ("uiinfo.pkl", "ics_train.dat", "ics_val.dat", "ucs_train.dat", "ucs_val.dat",
              "neighbor_aspect_extension_2_zscore_ucs_uuii.pkl"):
        need_file("agnn-ml100k", f)
    ics = cold_start_check(load("ics", "built"))
    assert ics["val_items"] > 100 and ics["val_items_seen_in_train"] == 0
    ucs = cold_start_check(load("ucs", "authors"))
    assert ucs["val_users"] > 100 and ucs["val_users_seen_in_train"] == 0


def test_ics_authors_graph_missing_points_to_built():
    try:
        load_neighbour_pickle("ics")
    except GraphUnavailableError as e:
        assert "--graph built" in str(e)
    else:
        pytest.skip("the authors' ICS neighbour file is available here")


def test_built_graph_matches_authors_shape_and_overlaps():
    need_file("agnn-ml100k", "neighbor_aspect_extension_2_zscore_ucs_uuii.pkl")
    from agnn.graph import overlap

    built, authors = load("ucs", "built"), load("ucs", "authors")
    for b, a, n in ((built.user_graph, authors.user_graph, 944), (built.item_graph, authors.item_graph, 1683)):
        assert b.ids.shape == (n, int(0.05 * n)) == a.ids.shape
        assert not (b.ids == np.arange(n)[:, None]).any() and not (b.ids == 0).any()
        np.testing.assert_allclose(b.probs.sum(1), 1.0)
        assert overlap(b, a) > 0.5  # random lists would overlap about 5%


def test_uiinfo_attributes_agree_with_raw_movielens():
    """uiinfo.pkl's user and item attributes are the raw u.user / u.item fields, re-coded."""
    info_path = need_file("agnn-ml100k", "uiinfo.pkl")
    u_item, u_user = need_file("ml-100k", "u.item"), need_file("ml-100k", "u.user")
    import pickle

    info = pickle.loads(info_path.read_bytes())
    items = [l.split("|") for l in u_item.read_text(encoding="latin-1").splitlines()]
    for r in items:  # genre slots = indices of the set genre flags (u.genre order), 0-padded
        flags = [k for k, f in enumerate(r[5:]) if f == "1"]
        assert info["item_feature_dict"][int(r[0])] == (flags + [0] * 6)[:6]
    users = [l.split("|") for l in u_user.read_text().splitlines()]
    occ = {}
    for uid, age, gender, job, _ in users:
        g, a, o = info["user_feature_dict"][int(uid)]
        assert g == (gender == "F") and a == min(int(age) // 10, 6)
        assert occ.setdefault(job, o) == o  # one id per occupation
    assert len(occ) == len(set(occ.values())) == 21


def test_prefetched_batches_are_the_inline_batches_and_leave_the_same_rng():
    """data.prefetched_batches: built in a child process, the same batches (every field, bit for bit) in the
    same order, and the caller's generator left as building them here leaves it."""
    for f in ("uiinfo.pkl", "ucs_train.dat", "ucs_val.dat", "neighbor_aspect_extension_2_zscore_ucs_uuii.pkl"):
        need_file("agnn-ml100k", f)
    data = load("ucs", "authors")
    builder = BatchBuilder(data, 10, 10)
    rows = data.train[:1000]
    inline_rng, ahead_rng = np.random.default_rng(7), np.random.default_rng(7)
    want = list(builder.batches(rows, 128, inline_rng, shuffle=False))
    got = list(prefetched_batches(builder, rows, 128, ahead_rng, depth=3))
    assert len(got) == len(want) == 8
    for a, b in zip(want, got):
        assert a.__dict__.keys() == b.__dict__.keys()
        assert all(torch.equal(a.__dict__[k], b.__dict__[k]) for k in a.__dict__)
    assert inline_rng.bit_generator.state == ahead_rng.bit_generator.state


class _Failing:
    """A builder whose second batch fails in the child (its sampling); assembly returns the parts."""

    def __init__(self):
        self.calls = 0

    def sample(self, rows, rng):
        self.calls += 1
        if self.calls == 2:
            raise ValueError("no neighbours for node 42")
        return np.zeros((len(rows), 2), np.int64), np.zeros((len(rows), 2), np.int64)

    def assemble(self, rows, user_nbr, item_nbr):
        return rows, user_nbr, item_nbr


def test_prefetch_reports_the_childs_error_and_stops_it_when_left_early():
    gen = prefetched_batches(_Failing(), np.zeros((4, 3)), 2, np.random.default_rng(0))
    next(gen)
    with pytest.raises(RuntimeError, match="no neighbours for node 42"):
        next(gen)
    import multiprocessing

    left = prefetched_batches(_Failing(), np.zeros((4, 3)), 2, np.random.default_rng(0))
    next(left)
    left.close()                                      # the loop left early: the child is stopped and joined
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_main_prefetches_only_where_a_core_is_free(monkeypatch):
    from agnn import main
    from common import parallel

    assert main.use_prefetch("on") and not main.use_prefetch("off")
    assert parallel.available_cores() >= 1
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert main.use_prefetch("auto") and not main.use_prefetch("auto", "cuda")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not main.use_prefetch("auto")
    with pytest.raises(SystemExit):
        main.parse_args(["--prefetch", "always"])
