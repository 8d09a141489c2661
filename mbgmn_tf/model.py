"""MB-GMN network in TensorFlow 1 graph mode (``tensorflow.compat.v1``): the notebook's ``Recommender``.

Paper: Xia et al., "Graph Meta Network for Multi-Behavior Recommendation", SIGIR'21 (arXiv
2110.03969). The paper's PDF cannot be opened on these machines, so blocks are named after the
paper's components (Sec. 3) and after the notebook functions they reimplement, not after
equation numbers:

* meta-knowledge learner (notebook ``metaForSpecialize``): from
  [behaviour embedding || node embedding || neighbourhood sum] it generates, per node, low-rank
  (rank r) behaviour-specific transformation matrices W1 [d/2, r], W2 [r, d/2];
* ``specialize``: e' = [e W1 W2 || e] (behaviour-specific base embedding, size d);
* meta graph neural network (``defineModel``): per behaviour ``gnn_layer`` propagation steps
  h <- h + LeakyReLU_0.1(A h) (residual), summed over layers; the fused branch propagates over
  every behaviour, mixes the behaviour messages with light self-attention (``att_head`` heads)
  and sums over layers;
* meta-knowledge transfer / meta prediction network (``metaForPredict``, ``_predict``): for a
  (source, target) behaviour pair it generates a per-pair two-layer predictor
  (w1 [3d, d], b1 [d], w2 [d, 1]) and scores [u*i || u || i]; scores are multiplied by ``mult``.

Loss: mean hinge max(0, 1 - (pos - neg)) summed over every (source in behaviours + fused, target
in behaviours) pair, plus ``reg`` times the squared L2 norm of the registered parameters; Adam with
staircase exponential decay. Everything is built once, as a static graph; a step feeds only index
arrays. Parameters live in :class:`MBGMN` under a ``variable_scope`` (no module-level registry).

Notation in docstrings: U users, I items, B behaviours, d = latdim, r = rank, N pairs x 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import tensorflow.compat.v1 as tf
from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as csr_ops

tf.disable_v2_behavior()

LEAKY = 0.1  # the notebook's global ``leaky`` for 'leakyRelu'


@dataclass
class HParams:
    """The notebook's argparse values that shape the graph and the optimiser."""

    latdim: int = 32
    rank: int = 4
    gnn_layer: int = 2
    att_head: int = 2
    mult: float = 100.0
    reg: float = 1e-2
    lr: float = 1e-3
    decay: float = 0.96
    decay_step: int = 10000 // 256  # trnNum // batch


def leaky_relu(x: tf.Tensor) -> tf.Tensor:
    """The notebook's 'leakyRelu': max(0.1 x, x)."""
    return tf.maximum(LEAKY * x, x)


PREDICTOR_CHUNK = 1024  # rows per chunk of per_pair_product: its [chunk, 3d * d] tensors (12 MB) stay in cache
W3_GRAD_BLOCK = 8  # components of x per column block of per_pair_product's W3 gradient


def _outer_product_sum(meta: tf.Tensor, x: tf.Tensor, dy: tf.Tensor, d: int) -> tf.Tensor:
    """sum_n meta[n, j] x[n, i] dy[n, k] as [j, i d + k]: [c, a], [c, b], [c, d] -> [a, b d]."""
    outer = tf.reshape(tf.expand_dims(x, 2) @ tf.expand_dims(dy, 1), [-1, int(x.shape[1]) * d])
    return tf.matmul(meta, outer, transpose_a=True)


def per_pair_product(x: tf.Tensor, meta: tf.Tensor, w3: tf.Tensor, d: int, chunk: int = PREDICTOR_CHUNK,
                     training: bool = True) -> tf.Tensor:
    """x_n reshape(meta_n W3, [3d, d]) for every row n: x, meta [N, 3d], w3 [3d, 3d * d] -> [N, d].

    The per-pair product of the notebook's ``_predict`` with its generated weight w1 =
    reshape(meta W3) (predMeta_FC3 without its bias): y[n, k] = sum_{i, j} x[n, i] meta[n, j]
    W3[j, i d + k], trilinear (no nonlinearity between meta W3 and the product).

    ``chunk=0``: as the notebook, the [N, 3d * d] weights at once and a batched matmul
    [N, 1, 3d] @ [N, 3d, d], differentiated by TF. ``chunk > 0``: the same sums, ``chunk`` rows at
    a time in a ``tf.while_loop``, so that the [chunk, 3d * d] tensors stay in cache; with
    ``training`` each chunk's generated weights W_c are kept for the hand-written gradient
    (``tf.custom_gradient``), per chunk c with dy_c = d loss / d y_c:

    * dx_c = W_c dy_c (batched matrix-vector product with the kept W_c);
    * dmeta_c[n, j] = sum_k (x_c W3')[n, j, k] dy_c[n, k], W3'[i, j d + k] = W3[j, i d + k]
      (one product and a batched matrix-vector product);
    * dW3 += meta_c^T (x_c outer dy_c), the outer product per row as [chunk, 3d * d], in column
      blocks of ``W3_GRAD_BLOCK`` components of x (faster products, same sums).

    Three products of N x 3d x 3d * d multiply-adds, as TF's gradient of the notebook's form, but
    no [N, 3d * d] tensor is read back from memory (the kept W_c are read once, by dx_c): forward
    and gradients about 1.8x faster than ``chunk=0`` on one CPU thread (README, Speed). The kept
    W_c hold as much memory as the notebook's w1; ``training=False`` (test scores) keeps nothing.
    Float rounding differs (other summation order): tests/test_model.py compares values and
    gradients with ``chunk=0``, float64 and float32.
    """
    din = int(x.shape[-1])
    if not chunk:
        w1 = tf.reshape(meta @ w3, [-1, din, d])
        return tf.reshape(tf.expand_dims(x, 1) @ w1, [-1, d])

    def forward(x, meta, w3, keep):
        n = tf.shape(x)[0]
        n_chunks = (n + chunk - 1) // chunk

        def body(c, out, kept):
            s = c * chunk
            e = tf.minimum(s + chunk, n)
            w = tf.reshape(meta[s:e] @ w3, [-1, din, d])
            if keep:
                kept = kept.write(c, w)
            return c + 1, out.write(c, tf.reshape(tf.expand_dims(x[s:e], 1) @ w, [-1, d])), kept

        out = tf.TensorArray(x.dtype, size=n_chunks, infer_shape=False, element_shape=tf.TensorShape([None, d]))
        kept = tf.TensorArray(x.dtype, size=n_chunks, infer_shape=False,
                              element_shape=tf.TensorShape([None, din, d]))
        _, out, kept = tf.while_loop(lambda c, *_: c < n_chunks, body, [tf.constant(0), out, kept])
        return n, n_chunks, out.concat(), kept

    if not training:
        return forward(x, meta, w3, False)[2]

    @tf.custom_gradient
    def product(x, meta, w3):
        n, n_chunks, y, kept = forward(x, meta, w3, True)

        def grad(dy):
            block_sizes = [W3_GRAD_BLOCK] * (din // W3_GRAD_BLOCK) + ([din % W3_GRAD_BLOCK] if din % W3_GRAD_BLOCK else [])
            w3t = tf.reshape(tf.transpose(tf.reshape(w3, [din, din, d]), [1, 0, 2]), [din, din * d])

            def body(c, dx, dmeta, dw3):
                s = c * chunk
                e = tf.minimum(s + chunk, n)
                xc, mc, dyc = x[s:e], meta[s:e], dy[s:e]
                dy3 = tf.expand_dims(dyc, 2)
                dx = dx.write(c, tf.reshape(kept.read(c) @ dy3, [-1, din]))
                dmeta = dmeta.write(c, tf.reshape(tf.reshape(xc @ w3t, [-1, din, d]) @ dy3, [-1, din]))
                # dW3 in column blocks of W3_GRAD_BLOCK components of x: TF's [3d, chunk] x [chunk, 3d * d]
                # product ran at ~36 GFLOP/s on one thread here, its [3d, 8 d] blocks at ~45-50 (numpy: ~66)
                blocks = [_outer_product_sum(mc, xb, dyc, d) for xb in tf.split(xc, block_sizes, axis=1)]
                return c + 1, dx, dmeta, dw3 + tf.concat(blocks, 1)

            arrays = [tf.TensorArray(x.dtype, size=n_chunks, infer_shape=False,
                                     element_shape=tf.TensorShape([None, din])) for _ in range(2)]
            _, dx, dmeta, dw3 = tf.while_loop(lambda c, *_: c < n_chunks, body,
                                              [tf.constant(0), *arrays, tf.zeros_like(w3)])
            return dx.concat(), dmeta.concat(), dw3

        return y, grad

    return product(x, meta, w3)


class Adjacency:
    """A normalised adjacency A [rows, cols] and its transpose, both as CSR matrices.

    ``A @ x`` runs TF's CSR kernel (SparseMatrixMatMul) and its gradient ``A^T @ dy`` the same
    kernel on the stored transpose: the notebook's ``sparse_dense_matmul`` values, about ten
    times faster on CPU than SparseTensorDenseMatMul and its adjoint (see bench.py).
    """

    def __init__(self, a: tf.SparseTensor, at: tf.SparseTensor):
        self.sparse, self.sparse_t = a, at
        self.csr, self.csr_t = csr_ops.CSRSparseMatrix(a), csr_ops.CSRSparseMatrix(at)

    def matmul(self, x: tf.Tensor) -> tf.Tensor:
        """A x: [cols, k] -> [rows, k]."""
        a, at = self.csr, self.csr_t

        @tf.custom_gradient
        def product(dense):
            def grad(dy):
                return csr_ops.matmul(at, dy)
            return csr_ops.matmul(a, dense), grad

        return product(x)

    @property
    def T(self) -> "Adjacency":
        twin = Adjacency.__new__(Adjacency)
        twin.sparse, twin.sparse_t, twin.csr, twin.csr_t = self.sparse_t, self.sparse, self.csr_t, self.csr
        return twin


class MBGMN:
    """MB-GMN graph: variables, placeholders, scores and loss.

    Args:
        n_users, n_items: sizes of the full embedding tables.
        nnz: per behaviour the number of stored adjacency entries (user->item; the transpose has
            as many). The adjacency itself is fed once by :meth:`load_graph` into local
            (not checkpointed) variables, or, with ``subgraph=True``, at every step.
        subgraph: the graph of each step is a sampled sub-graph (``--graph-sample``); the
            placeholders ``sub_users``/``sub_items`` then map its local ids to global ones.
        predictor_chunk: rows per chunk of :func:`per_pair_product`; 0 = the notebook's
            formulation (the whole [N, 3d * d] tensor of generated weights and a batched matmul).
    """

    def __init__(self, n_users: int, n_items: int, n_behaviours: int, hp: HParams,
                 subgraph: bool = False, scope: str = "mbgmn", predictor_chunk: int = PREDICTOR_CHUNK):
        self.hp, self.n_beh, self.subgraph = hp, n_behaviours, subgraph
        self.predictor_chunk = predictor_chunk
        self.n_users, self.n_items = n_users, n_items
        self.reg_params: list[tf.Variable] = []
        with tf.variable_scope(scope):
            self._define_parameters()
            self._define_inputs()
            self._build()

    # ------------------------------------------------------------------ parameters
    def _param(self, name: str, shape: Sequence[int], init: str = "xavier", reg: bool = False) -> tf.Variable:
        initializer = tf.glorot_uniform_initializer() if init == "xavier" else tf.zeros_initializer()
        var = tf.get_variable(name, shape=list(shape), dtype=tf.float32, initializer=initializer)
        if reg:
            self.reg_params.append(var)
        return var

    def _fc(self, name: str, in_dim: int, out_dim: int, bias_init: str = "zeros",
            bias_reg: bool = False) -> tuple[tf.Variable, tf.Variable]:
        """The notebook's ``FC(..., reg=True, useBias=True)``: W (regularised) and its bias."""
        w = self._param(name, [in_dim, out_dim], "xavier", reg=True)
        b = self._param(name + "Bias", [out_dim], bias_init, reg=bias_reg)
        return w, b

    def _define_parameters(self) -> None:
        d, h, r = self.hp.latdim, self.hp.latdim // 2, self.hp.rank
        self.user_embedding = self._param("uEmbed0", [self.n_users, h], reg=True)
        self.item_embedding = self._param("iEmbed0", [self.n_items, h], reg=True)
        self.behaviour_embedding = self._param("behEmbeds", [self.n_beh + 1, h])  # last: fused
        # meta-knowledge learner (specMeta_FC1..5), shared by users and items and behaviours
        self.spec_fc1 = self._fc("specMeta_FC1", 3 * h, h)
        self.spec_fc = [self._fc(f"specMeta_FC{k}", h, r * h, "xavier", bias_reg=True) for k in (2, 3, 4, 5)]
        # light self-attention: one Q per layer and side, as each call of lightSelfAttention defines one
        self.attention_q = [[self._param(f"attQ_layer{l}_{side}", [d, d], reg=True) for side in ("user", "item")]
                            for l in range(self.hp.gnn_layer)]
        # meta prediction network (predMeta_FC1..5)
        self.pred_fc1 = self._fc("predMeta_FC1", 3 * d, d)
        self.pred_fc2 = self._fc("predMeta_FC2", 3 * d, 3 * d)
        self.pred_fc3 = self._fc("predMeta_FC3", 3 * d, 3 * d * d, "xavier", bias_reg=True)
        self.pred_fc4 = self._fc("predMeta_FC4", 3 * d, d)
        self.pred_fc5 = self._fc("predMeta_FC5", 3 * d, d, "xavier", bias_reg=True)
        self.global_step = tf.get_variable("global_step", [], tf.int64, tf.zeros_initializer(), trainable=False)

    # ------------------------------------------------------------------ inputs
    def _sparse_input(self, name: str, rows: tf.Tensor, cols: tf.Tensor) -> tf.SparseTensor:
        idx = tf.placeholder(tf.int64, [None, 2], name=name + "_indices")
        val = tf.placeholder(tf.float32, [None], name=name + "_values")
        self._graph_feeds.append((idx, val))
        if not self.subgraph:  # held in session memory, fed once, never checkpointed
            idx = tf.Variable(idx, trainable=False, validate_shape=False, name=name + "_idx",
                              collections=[tf.GraphKeys.LOCAL_VARIABLES])
            val = tf.Variable(val, trainable=False, validate_shape=False, name=name + "_val",
                              collections=[tf.GraphKeys.LOCAL_VARIABLES])
            idx, val = tf.reshape(idx.value(), [-1, 2]), tf.reshape(val.value(), [-1])
        # The graph is data, not a parameter (stop_gradient also keeps custom_gradient from
        # looking for these local variables among the trainable ones).
        return tf.SparseTensor(tf.stop_gradient(idx), tf.stop_gradient(val), tf.stack([rows, cols]))

    def _define_inputs(self) -> None:
        self._graph_feeds: list[tuple[tf.Tensor, tf.Tensor]] = []
        if self.subgraph:
            self.sub_users = tf.placeholder(tf.int32, [None], name="sub_users")
            self.sub_items = tf.placeholder(tf.int32, [None], name="sub_items")
            rows, cols = tf.shape(self.sub_users, out_type=tf.int64)[0], tf.shape(self.sub_items, out_type=tf.int64)[0]
        else:
            rows, cols = tf.constant(self.n_users, tf.int64), tf.constant(self.n_items, tf.int64)
        self.adjs, self.tp_adjs = [], []
        for b in range(self.n_beh):
            adj = Adjacency(self._sparse_input(f"adj{b}", rows, cols), self._sparse_input(f"tpAdj{b}", cols, rows))
            self.adjs.append(adj)
            self.tp_adjs.append(adj.T)
        # per target behaviour: the users and items of its pairs (positives first, then negatives)
        self.uids = [tf.placeholder(tf.int32, [None], name=f"uids{b}") for b in range(self.n_beh)]
        self.iids = [tf.placeholder(tf.int32, [None], name=f"iids{b}") for b in range(self.n_beh)]
        self.graph_init = tf.local_variables_initializer()

    def graph_feed(self, adjs: Sequence, tp_adjs: Sequence) -> dict:
        """feed_dict entries for the adjacency lists [(indices [nnz, 2], values [nnz], shape)]."""
        feed = {}
        for (idx_ph, val_ph), (idx, val, _) in zip(self._graph_feeds, [x for pair in zip(adjs, tp_adjs) for x in pair]):
            feed[idx_ph], feed[val_ph] = idx, val
        return feed

    def load_graph(self, sess: tf.Session, adjs: Sequence, tp_adjs: Sequence) -> None:
        """Put the full normalised adjacencies into session memory (static-graph mode)."""
        sess.run(self.graph_init, feed_dict=self.graph_feed(adjs, tp_adjs))

    # ------------------------------------------------------------------ blocks
    def meta_knowledge_learner(self, u_embed: tf.Tensor, i_embed: tf.Tensor, beh_embed: tf.Tensor,
                               adjs: Sequence[Adjacency], tp_adjs: Sequence[Adjacency]) -> dict:
        """Low-rank behaviour-specific transformations (notebook ``metaForSpecialize``).

        u_embed [U, d/2], i_embed [I, d/2], beh_embed [d/2] ->
        {'uW1': [U, d/2, r], 'uW2': [U, r, d/2], 'iW1': [I, d/2, r], 'iW2': [I, r, d/2]}.
        """
        h, r = self.hp.latdim // 2, self.hp.rank
        u_neighbour = tf.add_n([a.matmul(i_embed) for a in adjs])
        i_neighbour = tf.add_n([a.matmul(u_embed) for a in tp_adjs])
        u_beh = tf.expand_dims(beh_embed, 0) * tf.ones_like(u_embed)
        i_beh = tf.expand_dims(beh_embed, 0) * tf.ones_like(i_embed)
        w, b = self.spec_fc1
        u_meta = leaky_relu(tf.concat([u_beh, u_embed, u_neighbour], -1) @ w + b)
        i_meta = leaky_relu(tf.concat([i_beh, i_embed, i_neighbour], -1) @ w + b)
        shapes = ([-1, h, r], [-1, r, h], [-1, h, r], [-1, r, h])
        lats = (u_meta, u_meta, i_meta, i_meta)
        return {name: tf.reshape(lat @ w + b, shape)
                for name, (w, b), lat, shape in zip(("uW1", "uW2", "iW1", "iW2"), self.spec_fc, lats, shapes)}

    @staticmethod
    def specialize(u_embed: tf.Tensor, i_embed: tf.Tensor, params: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """e' = [e W1 W2 || e]: [U, d/2], [I, d/2] -> [U, d], [I, d] (notebook ``specialize``)."""
        def one(e, w1, w2):
            low = tf.einsum("nd,ndr->nr", e, w1)
            return tf.concat([tf.einsum("nr,nrd->nd", low, w2), e], -1)
        return one(u_embed, params["uW1"], params["uW2"]), one(i_embed, params["iW1"], params["iW2"])

    @staticmethod
    def propagate(adj: Adjacency, lats: tf.Tensor) -> tf.Tensor:
        """One message-passing step LeakyReLU(A h): [I, d] -> [U, d] (notebook ``messagePropagate``)."""
        return leaky_relu(adj.matmul(lats))

    def light_self_attention(self, local_reps: Sequence[tf.Tensor], q_weight: tf.Variable) -> tf.Tensor:
        """Sum over behaviours of (attention output + input): B x [n, d] -> [n, d].

        q = k = x Q, v = x, per head softmax(q k^T / sqrt(d / heads)) over behaviours
        (notebook ``lightSelfAttention`` followed by ``tf.add_n``).
        """
        d, heads, nb = self.hp.latdim, self.hp.att_head, len(local_reps)
        stacked = tf.stack(local_reps, axis=1)  # [n, B, d]
        reps = tf.reshape(stacked, [-1, d])
        proj = reps @ q_weight
        q = tf.reshape(proj, [-1, nb, 1, heads, d // heads])
        k = tf.reshape(proj, [-1, 1, nb, heads, d // heads])
        v = tf.reshape(reps, [-1, 1, nb, heads, d // heads])
        att = tf.nn.softmax(tf.reduce_sum(q * k, -1, keepdims=True) / np.sqrt(d / heads).astype(np.float32), axis=2)
        att_val = tf.reshape(tf.reduce_sum(att * v, axis=2), [-1, nb, d])
        return tf.reduce_sum(att_val + stacked, axis=1)

    def meta_graph_network(self) -> None:
        """Per-behaviour and fused user/item representations (notebook ``defineModel``).

        Sets ``self.ulat``/``self.ilat``: B + 1 tensors [U, d] / [I, d], the last the fused branch.
        """
        u0, i0 = self.user_embedding, self.item_embedding
        if self.subgraph:
            u0, i0 = tf.gather(u0, self.sub_users), tf.gather(i0, self.sub_items)
        self.ulat, self.ilat = [], []
        for b in range(self.n_beh):
            params = self.meta_knowledge_learner(u0, i0, self.behaviour_embedding[b], [self.adjs[b]], [self.tp_adjs[b]])
            u_spec, i_spec = self.specialize(u0, i0, params)
            ulats, ilats = [u_spec], [i_spec]
            for _ in range(self.hp.gnn_layer):
                u_msg = self.propagate(self.adjs[b], ilats[-1])
                i_msg = self.propagate(self.tp_adjs[b], ulats[-1])
                ulats.append(u_msg + ulats[-1])  # residual
                ilats.append(i_msg + ilats[-1])
            self.ulat.append(tf.add_n(ulats))
            self.ilat.append(tf.add_n(ilats))
        params = self.meta_knowledge_learner(u0, i0, self.behaviour_embedding[-1], self.adjs, self.tp_adjs)
        u_spec, i_spec = self.specialize(u0, i0, params)
        ulats, ilats = [u_spec], [i_spec]
        for layer in range(self.hp.gnn_layer):
            u_msgs = [self.propagate(self.adjs[b], ilats[-1]) for b in range(self.n_beh)]
            i_msgs = [self.propagate(self.tp_adjs[b], ulats[-1]) for b in range(self.n_beh)]
            ulats.append(self.light_self_attention(u_msgs, self.attention_q[layer][0]))  # no residual here
            ilats.append(self.light_self_attention(i_msgs, self.attention_q[layer][1]))
        self.ulat.append(tf.add_n(ulats))
        self.ilat.append(tf.add_n(ilats))

    def pair_representation(self, u: tf.Tensor, i: tf.Tensor) -> tf.Tensor:
        """LeakyReLU([u*i || u || i] W + b) (predMeta_FC1, notebook ``metaForPredict``): [N, d] x 2 -> [N, d]."""
        w, b = self.pred_fc1
        return leaky_relu(tf.concat([u * i, u, i], -1) @ w + b)

    def meta_prediction_network(self, src_ui: tf.Tensor, tgt_ui: tf.Tensor) -> dict:
        """Per-pair predictor weights from the source and target pair representations (notebook
        ``metaForPredict``): [N, d] x 2 -> {'meta': [N, 3d], 'b1': [N, d], 'w2': [N, d]}.

        The notebook's w1 [N, 3d, d] is reshape(meta W3 + b3). It is not formed here:
        :meth:`customized_predictor` applies reshape(meta W3) through :func:`per_pair_product`
        (chunked, or the notebook's batched matmul with ``predictor_chunk=0``) and the bias part b3
        (the same [3d, d] matrix for every pair) as one product x reshape(b3): the same sum,
        without a [N, 3d * d] bias addition and its [N, 3d * d] -> [3d * d] gradient reduction.
        """
        w, b = self.pred_fc2
        meta = leaky_relu(tf.concat([src_ui * tgt_ui, src_ui, tgt_ui], -1) @ w + b)
        (w4, b4), (w5, b5) = self.pred_fc4, self.pred_fc5
        return {"meta": meta, "b1": meta @ w4 + b4, "w2": meta @ w5 + b5}

    def customized_predictor(self, u: tf.Tensor, i: tf.Tensor, params: dict, training: bool = True) -> tf.Tensor:
        """LeakyReLU([u*i || u || i] (w1 + b3) + b1) w2: [N, d] x 2 -> [N] (notebook ``_predict``),
        w1 = reshape(meta W3) [N, 3d, d]. ``training=False``: the graph is never differentiated
        (test scores), so the chunked product keeps nothing for a gradient."""
        d = self.hp.latdim
        x = tf.concat([u * i, u, i], -1)  # [N, 3d]
        w3 = tf.identity(self.pred_fc3[0])  # a tensor input, so that its gradient flows to the variable
        per_pair = per_pair_product(x, params["meta"], w3, d, self.predictor_chunk, training)
        shared = x @ tf.reshape(self.pred_fc3[1], [3 * d, d])
        hidden = leaky_relu(per_pair + shared + params["b1"])
        return tf.reduce_sum(hidden * params["w2"], -1)

    def predict(self, sources: Sequence[int], tgt: int, uids: tf.Tensor, iids: tf.Tensor,
                training: bool = True) -> list[tf.Tensor]:
        """Scores [N] of (uids, iids) for target behaviour ``tgt`` seen from each of ``sources``
        (B = fused), one list entry per source.

        Each distinct (user, item) row is scored once (``tf.unique``; a step's pairs repeat some)
        and the scores are gathered back; the target's pair representation is computed once for
        all sources and the sources are stacked along the rows, so that predMeta_FC2..5 and the
        predictor run as one product each. Row for row the same arithmetic as scoring every
        (source, row) separately. ``training=False``: scores that are never differentiated (the
        test scores), see :meth:`customized_predictor`.
        """
        look = tf.nn.embedding_lookup
        keys = tf.cast(uids, tf.int64) * (1 << 31) + tf.cast(iids, tf.int64)
        distinct, back = tf.unique(keys)
        u, i = tf.cast(distinct // (1 << 31), tf.int32), tf.cast(distinct % (1 << 31), tf.int32)
        tgt_ui = self.pair_representation(look(self.ulat[tgt], u), look(self.ilat[tgt], i))
        src_u = tf.concat([look(self.ulat[s], u) for s in sources], 0)
        src_i = tf.concat([look(self.ilat[s], i) for s in sources], 0)
        src_ui = self.pair_representation(src_u, src_i)
        params = self.meta_prediction_network(src_ui, tf.concat([tgt_ui] * len(sources), 0))
        scores = tf.reshape(self.customized_predictor(src_u, src_i, params, training) * self.hp.mult, [len(sources), -1])
        return [tf.gather(scores[k], back) for k in range(len(sources))]

    # ------------------------------------------------------------------ graph
    def _build(self) -> None:
        hp = self.hp
        self.meta_graph_network()
        self.pair_scores, self.pair_losses = {}, {}  # per (source, target): scores [N], hinge term
        sources = list(range(self.n_beh + 1))
        for tgt in range(self.n_beh):
            half = tf.shape(self.uids[tgt])[0] // 2
            for src, preds in zip(sources, self.predict(sources, tgt, self.uids[tgt], self.iids[tgt])):
                self.pair_scores[(src, tgt)] = preds
                pos, neg = preds[:half], preds[half:]
                self.pair_losses[(src, tgt)] = tf.reduce_mean(tf.maximum(0.0, 1.0 - (pos - neg)))
        self.pre_loss = tf.add_n([self.pair_losses[(src, tgt)] for src in sources for tgt in range(self.n_beh)])
        # fused source, target behaviour: the test scores (their own product, so that scoring does
        # not run the other sources)
        self.target_scores = self.predict([self.n_beh], self.n_beh - 1, self.uids[-1], self.iids[-1], training=False)[0]
        self.reg_loss = hp.reg * tf.add_n([tf.reduce_sum(tf.square(p)) for p in self.reg_params])
        self.loss = self.pre_loss + self.reg_loss
        self.learning_rate = tf.train.exponential_decay(hp.lr, self.global_step, hp.decay_step, hp.decay, staircase=True)
        optimizer = tf.train.AdamOptimizer(self.learning_rate)
        # minimize() split in its two halves so that the gradients can be fetched (golden test)
        self.grads_and_vars = optimizer.compute_gradients(self.loss)
        self.train_op = optimizer.apply_gradients(self.grads_and_vars, global_step=self.global_step)
        # Evaluation feeds these (computed once per test pass) instead of recomputing the graph.
        self.test_embeddings = [self.ulat[-1], self.ilat[-1], self.ulat[self.n_beh - 1], self.ilat[self.n_beh - 1]]

    def pair_feed(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
        """feed_dict for per-behaviour (uids, iids) int32 [2 * pairs_b] arrays."""
        feed = {}
        for b, (u, i) in enumerate(pairs):
            feed[self.uids[b]], feed[self.iids[b]] = u, i
        return feed

    def score_feed(self, uids: np.ndarray, iids: np.ndarray, embeddings: Optional[Sequence[np.ndarray]] = None) -> dict:
        """feed_dict to score (uids, iids) [n] with ``target_scores``; with ``embeddings`` (the
        values of ``test_embeddings``) the graph network is not recomputed."""
        feed = {self.uids[-1]: uids, self.iids[-1]: iids}
        if embeddings is not None:
            feed.update(dict(zip(self.test_embeddings, embeddings)))
        return feed
