"""Golden tests against the authors' notebook code on the real Beibei files.

How the fixtures were made (the generator is a scratch script, not part of the repository):

* Notebook: ``shared/seeds/000_44024cb2b746ab52.txt`` (MB-GMN on BeiBei). Cells executed, by
  jupytext id: ``_sPDAiS8nNN_`` (imports), ``kIIytIU8s3Jq``, ``92B7jEwLtA0j`` (args),
  ``Z80jSTrUtr8g`` (log), ``C5z3c78ctcD0`` (NN layers: FC, Bias, Activate, Regularize,
  lightSelfAttention), ``WJf_ck4htcBW`` (transpose, negSamp, transToLsts, DataHandler),
  ``TNDAiXW0tb-l`` (Recommender). Then ``DataHandler().LoadData()`` and
  ``Recommender(sess, handler).prepareModel()`` on the full real Beibei matrices.
* Patches, nothing else: ``import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()``;
  ``tf.contrib.layers.xavier_initializer`` -> ``tf.glorot_uniform_initializer`` (the values are
  overwritten); ``tqdm.notebook`` -> ``tqdm``; ``DataHandler.predir`` -> the mirror's ``beibei/``.
  Instrumentation only reads tensors: wrappers around ``Activate`` (records every leakyRelu
  input), ``tf.reduce_mean`` (the 12 hinge terms), ``Recommender.predict`` (the 12 score
  tensors) and ``transToLsts`` (the normalised adjacency lists).
* Weights: no RNG. Every variable (notebook names; the four ``defaultParamName<k>`` attention Q
  matrices in creation order = ``attQ_layer{0,1}_{user,item}``) is filled by
  :func:`hashed_weights` below: murmur3's 64-bit finaliser of (element index + the first 8
  bytes of sha256(name)), top 24 bits, mapped to [-1, 1) and scaled by the power of two nearest
  the Xavier bound (predMeta_FC5 and its bias 8x smaller, see ``SCALE_SHIFT``); every value is
  exact in float32, so both sides run on identical weights. Zero-initialised biases get non-zero
  values too, so that their use is tested.
* Batch: ``np.random.seed(0)``, the notebook's ``trainEpoch`` draw
  (``np.random.permutation(args.user)[:trnNum][:16]``: 16 real Beibei users) and its
  ``sampleTrainBatch`` per behaviour with ``--sampNum 4`` (instead of 40, to keep the number of
  per-pair values, and the test, small): 64 (pos, neg) pairs per behaviour. Hyper-parameters
  otherwise the notebook's: latdim 32, rank 4, gnn_layer 2, att_head 2, mult 100, reg 1e-2.
* Kinks, checked in the generator: in this batch no per-pair leakyRelu input (predMeta_FC1,
  predMeta_FC2, the customised predictor's hidden layer) is within 1e-6 of zero (smallest
  3.2e-6) and no hinge argument 1 - (pos - neg) is (smallest 1.9e-3). The graph-level leakyRelu
  inputs (meta-knowledge learner and propagation over all 21,716 users and 7,977 items, 13.3 M
  values, the same for every batch) cannot be chosen by the batch: 9,018 of them lie within 1e-6
  of zero (none exactly 0; smallest 2.0e-11); the comparison below passes with them.
* Stored: the batch, the scores of all 12 (source, target) pairs, the 12 hinge terms, pre_loss,
  reg_loss, loss, and d loss / d variable for every variable. Variables above 50,000 entries
  (uEmbed0, iEmbed0, predMeta_FC3) store full gradient rows at fixed positions (uEmbed0: plus
  the 16 batch users; iEmbed0: plus 96 batch items), a weighted sum of every row
  (weights (1..d)/d) and every column sum; the others the full gradient. Fixture: 0.57 MB.
* Tolerance: 1e-5 absolute for every score, loss term and stored gradient entry; the row and
  column sums, sums of n entries, get 1e-5 * sqrt(n). Measured once against the notebook's full
  gradients (kept in scratch, 800,992 entries): largest difference 3.8e-6 (predMeta_FC5,
  gradients up to 9.8); scores (up to 1.78) 1.1e-6; hinge terms 1.2e-7; pre_loss, reg_loss, loss
  equal. With w2 at the Xavier-like scale: gradients 4.5e-6, scores (up to 14) 9.0e-6 off.
  The gradients compared are ``model.grads_and_vars``, the ones Adam applies.
* Sensitivity, checked by hand: the model test fails when the per-behaviour residual
  ``u_msg + ulats[-1]`` becomes ``u_msg`` (scores off by 0.34) or when the attention logits are
  multiplied by sqrt(d / heads) instead of divided (the notebook's commented-out variant; scores
  off by 8.8e-3); the preprocessing test fails when the degree's outer 1e-8 becomes 1e-7.
* Preprocessing: ``transToLsts(mat, norm=True)`` on each behaviour and on its ``transpose``
  (what prepareModel builds), ``prepareGlobalData``'s row-normalised union graph, and
  ``tstUsrs``/``tstInt``: shapes, nnz, sums and sha256 of the arrays' bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from common.testing import need_file
from mbgmn_tf.data import behaviour_adjacencies, global_adjacency, load_dataset
from mbgmn_tf.model import MBGMN, HParams

FIXTURES = Path(__file__).parent / "fixtures"
TOL = 1e-5


# The generated w2 (predMeta_FC5) 8x smaller than the Xavier-like scale: the scores (x mult 100)
# stay below 2 instead of reaching 14, where 1e-5 would be ~10 float32 ulps (measured: 9e-6 off).
SCALE_SHIFT = {"predMeta_FC5": -3, "predMeta_FC5Bias": -3}


def hashed_weights(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Seed-free float32 weights [shape]: exact multiples of 2^(s - 23) in [-2^s, 2^s), 2^s the
    power of two nearest the Xavier bound sqrt(6 / (fan_in + fan_out)) (1-D: fan_in = fan_out = n),
    shifted by ``SCALE_SHIFT``."""
    fan = shape[0] + shape[1] if len(shape) == 2 else 2 * shape[0]
    scale_log2 = int(np.round(np.log2(np.sqrt(6.0 / fan)))) + SCALE_SHIFT.get(name, 0)
    x = np.arange(int(np.prod(shape)), dtype=np.uint64) + np.uint64(int(hashlib.sha256(name.encode()).hexdigest()[:16], 16))
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB9FE1A85EC53)
        x ^= x >> np.uint64(33)
    u = (x >> np.uint64(40)).astype(np.float64)
    return ((u / 2.0 ** 23 - 1.0) * 2.0 ** scale_log2).astype(np.float32).reshape(shape)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def beibei():
    for f in ("trn_pv", "trn_cart", "trn_buy", "tst_int"):
        need_file("beibei", f)
    return load_dataset("beibei")


def run_with_hashed_weights(data, hp: HParams, pairs, intra_threads: int = 1) -> tuple[dict, list[str]]:
    """One forward and backward pass of the model on ``data``'s graph with the fixed weights of
    :func:`hashed_weights` (entered as the variables' initial values; the optimiser is not run):
    every pair score, pair loss, loss term and the gradients Adam would apply, by variable name;
    and the variable names."""
    graph = tf.Graph()
    with graph.as_default():
        model = MBGMN(data.n_users, data.n_items, len(data.behaviours), hp)
        variables = {v.op.name.split("/", 1)[1]: v for v in graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)}
        grads = {v.op.name.split("/", 1)[1]: g for g, v in model.grads_and_vars}  # what Adam applies
    adjs, tp_adjs = behaviour_adjacencies(data.trn_mats)
    config = tf.ConfigProto(intra_op_parallelism_threads=intra_threads, inter_op_parallelism_threads=1)
    with tf.Session(graph=graph, config=config) as sess:
        sess.run([v.initializer for v in variables.values()],
                 {v.initial_value: hashed_weights(name, tuple(v.shape.as_list())) for name, v in variables.items()})
        model.load_graph(sess, adjs, tp_adjs)
        out = sess.run({"scores": model.pair_scores, "pairs": model.pair_losses, "pre": model.pre_loss,
                        "reg": model.reg_loss, "loss": model.loss, "grads": grads}, model.pair_feed(pairs))
    return out, list(variables)


def test_hashed_weights_are_exact_and_spread():
    w = hashed_weights("predMeta_FC3", (96, 3072))
    assert w.dtype == np.float32 and np.abs(w).max() < 2.0 ** -5 <= np.abs(w).max() * 1.001
    assert np.array_equal(w.astype(np.float64) * 2.0 ** 28, np.round(w.astype(np.float64) * 2.0 ** 28))
    assert abs(float(w.mean())) < 1e-4 and len(np.unique(w)) > 0.99 * w.size


def test_model_equals_authors_notebook_on_a_real_beibei_batch(beibei):
    fx = np.load(FIXTURES / "golden_notebook_beibei.npz")
    meta = json.loads(str(fx["hparams"]))
    assert (beibei.n_users, beibei.n_items) == (meta["n_users"], meta["n_items"])
    hp = HParams(latdim=meta["latdim"], rank=meta["rank"], gnn_layer=meta["gnn_layer"],
                 att_head=meta["att_head"], mult=meta["mult"], reg=meta["reg"])
    keys = [tuple(k) for k in fx["pair_keys"]]
    pairs = [(fx[f"uids{b}"], fx[f"iids{b}"]) for b in range(len(beibei.behaviours))]
    out, variables = run_with_hashed_weights(beibei, hp, pairs, intra_threads=2)

    diffs, tolerance = {}, {}
    for k in keys:
        diffs[f"scores{k}"] = np.abs(out["scores"][k] - fx[f"preds_{k[0]}_{k[1]}"]).max()
    diffs["pair_losses"] = np.abs(np.array([out["pairs"][k] for k in keys]) - fx["pair_losses"]).max()
    for term in ("pre", "reg"):
        diffs[term + "_loss"] = abs(out[term] - fx[term + "_loss"])
    diffs["loss"] = abs(out["loss"] - fx["loss"])
    assert set(variables) == {k.split("/", 1)[1] for k in fx.files if k.startswith(("grad/", "gradrows/"))}
    for name, g in out["grads"].items():
        if f"grad/{name}" in fx.files:
            diffs[f"grad {name}"] = np.abs(g - fx[f"grad/{name}"]).max()
        else:
            diffs[f"grad {name} rows"] = np.abs(g[fx[f"gradrows_idx/{name}"]] - fx[f"gradrows/{name}"]).max()
            weight = np.arange(1, g.shape[1] + 1, dtype=np.float64) / g.shape[1]
            # sums of n float32 entries, each off by rounding: tolerance TOL * sqrt(n) (random walk)
            diffs[f"grad {name} row sums"] = np.abs(g.astype(np.float64) @ weight - fx[f"gradrowdot/{name}"]).max()
            diffs[f"grad {name} column sums"] = np.abs(g.astype(np.float64).sum(0) - fx[f"gradcolsum/{name}"]).max()
            tolerance[f"grad {name} row sums"] = TOL * np.sqrt(g.shape[1])
            tolerance[f"grad {name} column sums"] = TOL * np.sqrt(g.shape[0])
    worst = max(diffs, key=lambda k: diffs[k] / tolerance.get(k, TOL))
    print(f"largest |ours - notebook| relative to its tolerance: {worst} {diffs[worst]:.2e}")
    bad = {k: f"{v:.2e}" for k, v in diffs.items() if v > tolerance.get(k, TOL)}
    assert not bad, bad


def test_preprocessing_equals_authors_notebook_on_real_beibei(beibei):
    want = json.loads((FIXTURES / "golden_preprocessing_beibei.json").read_text())
    assert list(beibei.behaviours) == want["behaviours"]
    assert (beibei.n_users, beibei.n_items) == (want["n_users"], want["n_items"])
    adjs, tp_adjs = behaviour_adjacencies(beibei.trn_mats)
    for entry, adj, tp in zip(want["adjacency"], adjs, tp_adjs):
        for tag, (idx, val, shape) in (("adj", adj), ("tp_adj", tp)):
            w = entry[tag]
            got = {"shape": list(shape), "nnz": len(val), "indices_dtype": str(idx.dtype), "values_dtype": str(val.dtype),
                   "indices_sha256": _sha(idx), "values_sha256": _sha(val)}
            assert got == {k: w[k] for k in got}, (entry["behaviour"], tag)
            assert float(np.sum(val, dtype=np.float64)) == w["values_sum"]
    assert len(beibei.tst_users) == want["test"]["n_test_users"]
    assert _sha(beibei.tst_users.astype(np.int64)) == want["test"]["users_sha256_int64"]
    assert _sha(beibei.tst_int[beibei.tst_users].astype(np.int64)) == want["test"]["items_sha256_int64"]
    for tag, m in zip(("adj", "tp_adj"), global_adjacency(beibei.trn_mats)):
        w = want["global"][tag]
        assert [list(m.shape), m.nnz, str(m.data.dtype)] == [w["shape"], w["nnz"], w["data_dtype"]], tag
        assert _sha(m.indptr.astype(np.int64)) == w["indptr_sha256_int64"]
        assert _sha(m.indices.astype(np.int64)) == w["indices_sha256_int64"]
        assert _sha(m.data) == w["data_sha256"], tag
