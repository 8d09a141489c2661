"""model.py: TF1 graph mode, meta-network shapes, parameter count against the notebook, training."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from mbgmn_tf.data import PairSampler, behaviour_adjacencies, load_folder
from mbgmn_tf.model import MBGMN, HParams
from mbgmn_tf.tests.conftest import TINY_BEHAVIOURS, TINY_ITEMS, TINY_USERS


def notebook_parameter_shapes(users: int, items: int, behs: int, latdim: int, rank: int, layers: int) -> list[tuple]:
    """Shapes of every variable the notebook's defineParam/FC/lightSelfAttention create, by hand."""
    h, d = latdim // 2, latdim
    shapes = [(users, h), (items, h), (behs + 1, h)]                      # uEmbed0, iEmbed0, behEmbeds
    shapes += [(3 * h, h), (h,)]                                          # specMeta_FC1 (+ bias)
    shapes += [(h, rank * h), (rank * h,)] * 4                            # specMeta_FC2..5
    shapes += [(d, d)] * (2 * layers)                                     # lightSelfAttention Q
    shapes += [(3 * d, d), (d,), (3 * d, 3 * d), (3 * d,)]                # predMeta_FC1, FC2
    shapes += [(3 * d, 3 * d * d), (3 * d * d,), (3 * d, d), (d,), (3 * d, d), (d,)]  # FC3..5
    return shapes


_BUILT: dict = {}


def _build(hp: HParams, tiny_folder):
    """Building the graph takes seconds: each configuration is built once per test session."""
    key = (hp.rank, hp.latdim)
    if key not in _BUILT:
        data = load_folder(tiny_folder, TINY_BEHAVIOURS)
        graph = tf.Graph()
        with graph.as_default():
            tf.set_random_seed(0)
            model = MBGMN(data.n_users, data.n_items, len(TINY_BEHAVIOURS), hp)
        _BUILT[key] = (data, graph, model)
    return _BUILT[key]


def test_graph_mode_is_tf1_style(tiny_folder):
    assert not tf.executing_eagerly()
    data, graph, model = _build(HParams(), tiny_folder)
    for t in [model.loss, model.target_scores, *model.ulat, *model.ilat]:
        assert type(t).__name__ == "SymbolicTensor" or not hasattr(t, "numpy")
        assert t.graph is graph
    ops = {op.type for op in graph.get_operations()}
    assert "Placeholder" in ops and "SparseMatrixMatMul" in ops
    assert all(v.name.startswith("mbgmn/") for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES))


@pytest.mark.parametrize("rank,latdim", [(4, 32), (2, 32)])
def test_parameter_shapes_match_notebook(tiny_folder, rank, latdim):
    hp = HParams(rank=rank, latdim=latdim)
    _, graph, model = _build(hp, tiny_folder)
    trainable = graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)
    got = sorted(tuple(v.shape.as_list()) for v in trainable)
    want = sorted(notebook_parameter_shapes(TINY_USERS, TINY_ITEMS, 3, latdim, rank, hp.gnn_layer))
    assert got == want
    count = sum(int(np.prod(s)) for s in want)
    assert sum(int(np.prod(v.shape.as_list())) for v in trainable) == count
    # regularised: every weight matrix and embedding, the xavier biases of specMeta_FC2..5,
    # predMeta_FC3 and predMeta_FC5; not behEmbeds nor the zero-initialised biases
    names = {v.name.split("/", 1)[1].split(":")[0] for v in model.reg_params}
    assert "mbgmn/behEmbeds" not in names and "specMeta_FC1Bias" not in names and "predMeta_FC4Bias" not in names
    assert {"uEmbed0", "iEmbed0", "specMeta_FC2Bias", "predMeta_FC3Bias", "predMeta_FC5Bias"} <= names
    assert len(model.reg_params) == 2 + 1 + 4 * 2 + 2 * hp.gnn_layer + 5 + 2


@pytest.mark.parametrize("rank", [4, 2])
def test_meta_network_output_shapes(tiny_folder, rank):
    hp = HParams(rank=rank)
    data, graph, model = _build(hp, tiny_folder)
    adjs, tp = behaviour_adjacencies(data.trn_mats)
    with graph.as_default(), tf.name_scope("shape_probe"):
        params = model.meta_knowledge_learner(model.user_embedding, model.item_embedding,
                                              model.behaviour_embedding[0], model.adjs[:1], model.tp_adjs[:1])
        u = tf.nn.embedding_lookup(model.ulat[0], model.uids[0])
        i = tf.nn.embedding_lookup(model.ilat[0], model.iids[0])
        ui = model.pair_representation(u, i)
        pred = model.meta_prediction_network(ui, ui)
    with tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        model.load_graph(sess, adjs, tp)
        feed = model.pair_feed([(np.arange(6, dtype=np.int32), np.arange(6, dtype=np.int32))] * 3)
        out, pout, ulat, ilat = sess.run([params, pred, model.ulat, model.ilat], feed)
    h, d = hp.latdim // 2, hp.latdim
    assert out["uW1"].shape == (TINY_USERS, h, rank) and out["uW2"].shape == (TINY_USERS, rank, h)
    assert out["iW1"].shape == (TINY_ITEMS, h, rank) and out["iW2"].shape == (TINY_ITEMS, rank, h)
    assert pout["meta"].shape == (6, 3 * d) and pout["b1"].shape == (6, d) and pout["w2"].shape == (6, d)
    assert len(ulat) == 4 and all(x.shape == (TINY_USERS, d) for x in ulat)
    assert all(x.shape == (TINY_ITEMS, d) for x in ilat)


def test_training_steps_reduce_loss_and_feeding_embeddings_is_exact(tiny_folder):
    data, graph, model = _build(HParams(), tiny_folder)
    adjs, tp = behaviour_adjacencies(data.trn_mats)
    rng = np.random.default_rng(0)
    samplers = [PairSampler(m) for m in data.trn_mats]
    users = np.arange(TINY_USERS)
    feed = model.pair_feed([s.sample(users, 5, rng) for s in samplers])
    with tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        model.load_graph(sess, adjs, tp)
        first = sess.run(model.pre_loss, feed)
        for _ in range(15):
            sess.run(model.train_op, feed)
        last = sess.run(model.pre_loss, feed)
        assert sess.run(model.global_step) == 15
        # scores through the full graph == scores with the test embeddings fed in
        uids, iids = np.repeat(np.arange(5), 8).astype(np.int32), np.tile(np.arange(8), 5).astype(np.int32)
        full = sess.run(model.target_scores, model.score_feed(uids, iids))
        emb = sess.run(model.test_embeddings)
        fed = sess.run(model.target_scores, model.score_feed(uids, iids, emb))
    assert last < first
    np.testing.assert_allclose(full, fed, rtol=1e-5, atol=1e-4)


def test_csr_product_equals_notebook_sparse_dense_matmul_and_its_gradient():
    from mbgmn_tf.data import symmetric_normalize
    from mbgmn_tf.model import Adjacency
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    mat = sp.csr_matrix((rng.random((9, 7)) < 0.3).astype(np.float32))
    (i, v, s), (ti, tv, ts) = symmetric_normalize(mat), symmetric_normalize(sp.csr_matrix(mat.T))
    graph = tf.Graph()
    with graph.as_default():
        a = tf.SparseTensor(i.astype(np.int64), v, s)
        adj = Adjacency(a, tf.SparseTensor(ti.astype(np.int64), tv, ts))
        x = tf.constant(rng.random((7, 4)).astype(np.float32))
        y = tf.constant(rng.random((9, 4)).astype(np.float32))
        ours, ref = adj.matmul(x), tf.sparse.sparse_dense_matmul(a, x)
        ours_t, ref_t = adj.T.matmul(y), tf.sparse.sparse_dense_matmul(a, y, adjoint_a=True)
        grads = tf.gradients(tf.reduce_sum(tf.sin(ours)), x) + tf.gradients(tf.reduce_sum(tf.sin(ref)), x)
    with tf.Session(graph=graph) as sess:
        o, r, ot, rt, (g1, g2) = sess.run([ours, ref, ours_t, ref_t, grads])
    np.testing.assert_allclose(o, r, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ot, rt, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("rows", [0, 1, 7, 64, 150])
def test_chunked_per_pair_product_equals_the_notebook_form_and_its_gradient(dtype, tol, rows):
    """per_pair_product in chunks (hand-written gradient) == reshape(meta W3) and a batched matmul
    differentiated by TF (chunk=0): values and d/dx, d/dmeta, d/dW3, for row counts below, equal
    to and not a multiple of the chunk, a single row and none; forward-only (training=False) too."""
    from mbgmn_tf.model import per_pair_product

    d, din, chunk = 4, 12, 7  # din = 3d = 12: W3-gradient blocks of 8 and 4 x-components (W3_GRAD_BLOCK 8)
    rng = np.random.default_rng(rows)
    xv, mv = rng.standard_normal((rows, din)), rng.standard_normal((rows, din))
    wv, rv = rng.standard_normal((din, din * d)), rng.standard_normal((rows, d))
    graph = tf.Graph()
    with graph.as_default():
        x, m, w = (tf.constant(v.astype(dtype)) for v in (xv, mv, wv))
        r = tf.constant(rv.astype(dtype))
        outs = {}
        for name, kw in {"plain": dict(chunk=0), "chunked": dict(chunk=chunk), "forward": dict(chunk=chunk, training=False)}.items():
            y = per_pair_product(x, m, w, d, **kw)
            grads = tf.gradients(tf.reduce_sum(y * r), [x, m, w]) if name != "forward" else []
            outs[name] = [y, *grads]
    with tf.Session(graph=graph) as sess:
        got = sess.run(outs)
    want = np.einsum("ni,nj,jik->nk", xv, mv, wv.reshape(din, din, d))
    assert got["plain"][0].shape == (rows, d) and got["chunked"][0].shape == (rows, d)
    np.testing.assert_allclose(got["plain"][0], want, rtol=tol, atol=tol * 10)
    for a, b in zip(got["chunked"], got["plain"]):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max(initial=0))))
    np.testing.assert_array_equal(got["forward"][0], got["chunked"][0])
