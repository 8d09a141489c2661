"""data.py: loading, normalisation against the notebook's loop, samplers, sub-graph sampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from common.datasets import DatasetUnavailableError
from common.testing import need_file
from mbgmn_tf.data import (
    PairSampler,
    behaviour_adjacencies,
    global_adjacency,
    load_dataset,
    load_folder,
    normalize_loop_reference,
    sample_large_graph,
    sample_test_negatives,
    symmetric_normalize,
)
from mbgmn_tf.tests.conftest import TINY_BEHAVIOURS, TINY_ITEMS, TINY_USERS


def test_load_tiny_binarises_and_reads_test_items(tiny_folder):
    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    assert (data.n_users, data.n_items) == (TINY_USERS, TINY_ITEMS)
    for m in data.trn_mats:
        assert m.dtype == np.float32 and set(np.unique(m.data)) <= {1.0} and m.has_sorted_indices
    assert np.array_equal(data.tst_users, np.arange(0, TINY_USERS, 2))
    assert (data.tst_int[1::2] == -1).all() and (data.tst_int[::2] >= 0).all()


def test_normalisation_equals_notebook_double_loop():
    rng = np.random.default_rng(1)
    dense = (rng.random((50, 30)) < 0.2).astype(np.float32)
    dense[7] = 0  # an empty row: degree 0, the 1e-8 terms keep it finite
    mat = sp.csr_matrix(dense)
    idx, val, shape = symmetric_normalize(mat)
    ref_idx, ref_val, ref_shape = normalize_loop_reference(mat)
    assert shape == ref_shape == (50, 30)
    assert np.array_equal(idx, ref_idx)
    assert val.dtype == ref_val.dtype == np.float32
    np.testing.assert_array_equal(val, ref_val)
    # and it is D_u^-1/2 A D_i^-1/2
    du = np.asarray(mat.sum(1)).ravel()[idx[:, 0]]
    di = np.asarray(mat.sum(0)).ravel()[idx[:, 1]]
    np.testing.assert_allclose(val, 1 / np.sqrt(du * di), rtol=1e-5)


def test_empty_matrix_gives_one_explicit_zero():
    idx, val, shape = symmetric_normalize(sp.csr_matrix((4, 3), dtype=np.float32))
    assert idx.tolist() == [[0, 0]] and val.tolist() == [0.0] and shape == (4, 3)


def test_transposed_adjacency_holds_the_same_values(tiny_folder):
    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    adjs, tp = behaviour_adjacencies(data.trn_mats)
    for (i1, v1, s1), (i2, v2, s2) in zip(adjs, tp):
        a = sp.coo_matrix((v1, (i1[:, 0], i1[:, 1])), shape=s1).toarray()
        b = sp.coo_matrix((v2, (i2[:, 0], i2[:, 1])), shape=s2).toarray()
        np.testing.assert_allclose(a, b.T, rtol=1e-6)


def test_pair_sampler_invariants(tiny_folder):
    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    rng = np.random.default_rng(0)
    users = rng.permutation(TINY_USERS)[:25]
    for mat in data.trn_mats:
        s = PairSampler(mat)
        uids, iids = s.sample(users, 4, rng)
        half = len(uids) // 2
        dense = mat.toarray()
        assert uids.dtype == iids.dtype == np.int32
        assert np.array_equal(uids[:half], uids[half:])
        assert (dense[uids[:half], iids[:half]] == 1).all()  # positives are positives
        assert (dense[uids[half:], iids[half:]] == 0).all()  # negatives never are
        counts = np.bincount(uids[:half], minlength=TINY_USERS)
        expect = np.minimum(dense.sum(1), 4).astype(int)
        assert np.array_equal(counts[users], expect[users])  # min(sampNum, #positives); 0 -> none


def test_pair_sampler_is_uniform_over_negatives():
    mat = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0]], dtype=np.float32))
    uids, iids = PairSampler(mat).sample(np.zeros(5000, dtype=np.int64), 1, np.random.default_rng(0))
    neg = iids[len(iids) // 2:]
    assert set(neg) == {2, 3, 4, 5}
    assert np.allclose(np.bincount(neg, minlength=6)[2:] / len(neg), 0.25, atol=0.03)


def test_test_negatives_are_distinct_unpurchased_items(tiny_folder):
    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    negs = sample_test_negatives(data.tst_users, data.target, 9, np.random.default_rng(0), chunk=7)
    dense = data.target.toarray()
    assert negs.shape == (len(data.tst_users), 9)
    assert all(len(set(r)) == 9 for r in negs)
    assert (dense[data.tst_users[:, None], negs] == 0).all()


def test_sample_large_graph_keeps_seed_users_and_shapes(tiny_folder):
    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    adj, tpadj = global_adjacency(data.trn_mats)
    np.testing.assert_allclose(np.asarray(adj.sum(1)).ravel()[np.diff(adj.indptr) > 0], 1, rtol=1e-5)
    seeds = np.array([0, 5, 9])
    subs, tps, users, items = sample_large_graph(data.trn_mats, adj, tpadj, seeds, samp_depth=2,
                                                 samp_num=6, rng=np.random.default_rng(0))
    assert set(seeds) <= set(users) and len(items) > 0
    assert len(users) <= 3 + 2 * 6 + 6 and len(items) <= 3 + 2 * 6 + 6
    for full, sub, tp in zip(data.trn_mats, subs, tps):
        assert sub.shape == (len(users), len(items)) and tp.shape == sub.shape[::-1]
        np.testing.assert_array_equal(sub.toarray(), full.toarray()[np.ix_(users, items)])


def test_tmall_missing_behaviour_names_file_and_url():
    try:
        load_dataset("tmall")
    except DatasetUnavailableError as e:
        msg = str(e)
        assert "behaviour 'pv'" in msg and "trn_pv" in msg and "https://" in msg
    else:  # a machine with the full Tmall data
        pass


def test_real_beibei_sizes():
    for f in ("trn_pv", "trn_cart", "trn_buy", "tst_int"):
        need_file("beibei", f)
    data = load_dataset("beibei")
    print(data.summary())
    assert (data.n_users, data.n_items) == (21716, 7977)
    assert [m.nnz for m in data.trn_mats] == [2412586, 642622, 282860]
    assert len(data.tst_users) == 10000
