"""Speed of an MB-GMN training step on real Beibei, and where it goes.

    python -m mbgmn_tf.bench                                  # authors' batch (256 users, 40 pairs), 1 thread
    python -m mbgmn_tf.bench --threads 2 --steps 5 --test-users 2000
    python -m mbgmn_tf.bench --batch 64 --samp-num 20         # the step of tests/test_main.py's real run
    python -m mbgmn_tf.bench --extras                         # + normalisation and sparse-product pieces

Prints, with one TF thread setting throughout (intra- and inter-op = ``--threads``):

* the machine's sgemm rate, a 2048^3 float32 ``tf.matmul`` timed in TF itself with that setting
  (and numpy's, for reference);
* a training step split into data (pair sampling and feed), forward (``sess.run(loss)``), backward
  (running every gradient, one scalar of them fetched, minus forward) and optimizer (``sess.run(train_op)`` minus gradients);
  the step itself is data + one ``train_op`` run; the first step (Grappler optimises the graph)
  is not counted;
* the FLOPs of a step, by arithmetic (:func:`step_flops`: every matrix product; backward counted
  as twice the forward for dense products, once for the sparse ones), achieved GFLOP/s and their
  share of the sgemm rate (``common.bench.share_line``);
* a test pass (1 + 99 candidates) and the full-ranking cost per test user (``--eval full``);
* a last ``BENCH_JSON`` line (``common.bench.emit_json``) for ``python -m common.bench compare``.

Timings depend on what else runs on the machine: run it alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import time
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from common.bench import Phases, emit_json, sgemm_rate, share_line
from common.cli import nonnegative_int, positive_int
from common.runs import hardware, write_json
from mbgmn_tf.data import load_dataset, normalize_loop_reference, symmetric_normalize


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def tf_sgemm_rate(threads: int, n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a float32 n x n x n ``tf.matmul`` in a TF1 session with ``threads`` threads."""
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        a = tf.Variable(rng.standard_normal((n, n), dtype=np.float32))
        b = tf.Variable(rng.standard_normal((n, n), dtype=np.float32))
        prod = tf.reduce_sum(tf.matmul(a, b)[:1, :1])  # fetch one value, not n^2
        init = tf.global_variables_initializer()
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    with tf.Session(graph=graph, config=config) as sess:
        sess.run(init)
        sess.run(prod)
        best, spent = float("inf"), 0.0
        while spent < seconds or best == float("inf"):
            t0 = time.perf_counter()
            sess.run(prod)
            dt = time.perf_counter() - t0
            best, spent = min(best, dt), spent + dt
    return 2.0 * n ** 3 / best / 1e9


def step_flops(rows: Sequence[int], nnz: Sequence[int], n_users: int, n_items: int, latdim: int = 32,
               rank: int = 4, gnn_layer: int = 2) -> dict[str, float]:
    """FLOPs of one training step by arithmetic (2 per multiply-add).

    rows: per target behaviour the (user, item) rows scored, each by all B + 1 sources; nnz: per
    behaviour the adjacency's nonzeros. Dense products count 3x their forward (forward, gradient
    of the input, gradient of the weight), sparse products 2x (forward, gradient of the dense
    input). Element-wise work is not counted.
    """
    d, h, r, nb = latdim, latdim // 2, rank, len(nnz)
    s = nb + 1
    pred = sum(2 * (s * n + n) * 3 * d * d  # predMeta_FC1 (target once, each source)
               + 2 * s * n * (3 * d * 3 * d + 3 * d * 3 * d * d + 2 * 3 * d * d)  # FC2, FC3, FC4, FC5
               + 2 * s * n * 2 * 3 * d * d  # per-pair x w1 and the shared x b3
               for n in rows)
    sparse = sum(2 * z * 2 * (2 * h + 2 * gnn_layer * d) * 2 for z in nnz)  # own and fused branch, A and A^T
    nodes = n_users + n_items
    dense_graph = (s * 2 * nodes * (3 * h * h + 2 * h * r * h + 2 * h * r)  # meta-knowledge learner, specialize
                   + gnn_layer * 2 * nodes * nb * d * d)  # attention projections
    return {"predictor": 3.0 * pred, "sparse": 2.0 * sparse, "graph_dense": 3.0 * dense_graph,
            "total": 3.0 * pred + 2.0 * sparse + 3.0 * dense_graph}


def bench_sparse_product(mat: sp.csr_matrix, repeat: int = 3) -> dict:
    """Forward + gradient of A x (x [items, 32]) with both kernels on one behaviour matrix."""
    import tensorflow.compat.v1 as tf

    from mbgmn_tf.model import Adjacency

    (i, v, s), (ti, tv, ts) = symmetric_normalize(mat), symmetric_normalize(sp.csr_matrix(mat.T))
    graph = tf.Graph()
    with graph.as_default():
        # variables, not constants, so that Grappler cannot fold the products away
        a = tf.SparseTensor(tf.Variable(i.astype(np.int64), trainable=False), tf.Variable(v, trainable=False), s)
        at = tf.SparseTensor(tf.Variable(ti.astype(np.int64), trainable=False), tf.Variable(tv, trainable=False), ts)
        x = tf.Variable(np.random.default_rng(0).random((s[1], 32), dtype=np.float32))
        old = tf.gradients(tf.reduce_sum(tf.square(tf.sparse.sparse_dense_matmul(a, x))), x)[0]
        new = tf.gradients(tf.reduce_sum(tf.square(Adjacency(a, at).matmul(x))), x)[0]
        init = tf.global_variables_initializer()
    with tf.Session(graph=graph) as sess:
        sess.run(init)
        sess.run([old, new])
        return {"notebook_sparse_dense_matmul_s": _best_of(lambda: sess.run(old), repeat),
                "csr_kernel_s": _best_of(lambda: sess.run(new), repeat)}


def extras(data, res: dict, loop_slice: int) -> None:
    """The notebook-vs-ours pieces: adjacency normalisation and the sparse product."""
    pv = data.trn_mats[0]
    res["normalize_vectorized_pv_s"] = _best_of(lambda: symmetric_normalize(pv), 3)
    rows = int(np.searchsorted(pv.indptr, loop_slice))
    sl = pv[:rows]
    loop = _best_of(lambda: normalize_loop_reference(sl), 1)
    res["normalize_loop_slice_nnz"] = int(sl.nnz)
    res["normalize_loop_slice_s"] = loop
    res["normalize_loop_pv_extrapolated_s"] = loop * pv.nnz / sl.nnz
    res.update({f"sparse_product_pv_{k}": val for k, val in bench_sparse_product(pv).items()})


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=positive_int, default=3, help="training steps to time (after one warm-up step)")
    p.add_argument("--batch", type=positive_int, default=256, help="users per step (authors': 256)")
    p.add_argument("--samp-num", type=positive_int, default=40, help="pairs per user and behaviour (authors': 40)")
    p.add_argument("--threads", type=positive_int, default=1, help="TF intra- and inter-op threads, throughout")
    p.add_argument("--test-users", type=nonnegative_int, default=0, help="test users in the timed test pass (0: all 10,000)")
    p.add_argument("--full-users", type=nonnegative_int, default=8,
                   help="test users ranked against all items to time --eval full (0: skip)")
    p.add_argument("--extras", action="store_true", help="also time normalisation and the sparse product against the notebook's")
    p.add_argument("--loop-slice", type=positive_int, default=200_000, help="--extras: nonzeros of pv given to the notebook's loop")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "runs" / "bench.json"), help="JSON result file")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    res: dict = {"hardware": hardware(), "threads": args.threads, "batch": args.batch, "samp_num": args.samp_num}

    data = load_dataset("beibei")
    if args.extras:
        extras(data, res, args.loop_slice)

    from mbgmn_tf.main import Trainer, parse_args

    res["sgemm_gflops"] = tf_sgemm_rate(args.threads)
    res["sgemm_numpy_gflops"] = sgemm_rate(backend="numpy")  # numpy's own threads: for reference only
    targs = parse_args(["--no-progress", "--threads", str(args.threads), "--batch", str(args.batch),
                        "--samp-num", str(args.samp_num), "--test-users", str(args.test_users),
                        "--fixed-test-negatives", "--out", "/tmp/mbgmn-bench"])
    t0 = time.perf_counter()
    tr = Trainer(targs, data)
    res["graph_build_and_load_s"] = time.perf_counter() - t0
    m, rng, sess = tr.model, np.random.default_rng(0), tr.sess
    with tr.graph.as_default():  # run every gradient, fetching one scalar (a tf.group of them is pruned)
        import tensorflow.compat.v1 as tf

        grads = tf.add_n([tf.reduce_sum(g.values if hasattr(g, "values") else g) for g, _ in m.grads_and_vars])
    users = rng.permutation(data.n_users)
    steps_per_epoch = int(np.ceil(targs.trn_num / targs.batch))
    phases, step_s, flops = Phases(), [], []
    nnz = [int(mat.nnz) for mat in data.trn_mats]
    for k in range(args.steps + 1):  # step 0: Grappler optimises the graph; not counted
        timed = Phases() if k == 0 else phases
        t_step = time.perf_counter()
        with timed("data"):
            batch = users[k * targs.batch:(k + 1) * targs.batch]
            feed = m.pair_feed([s.sample(batch, targs.samp_num, rng) for s in tr.samplers])
        t_data = time.perf_counter() - t_step
        t0 = time.perf_counter()
        sess.run(m.loss, feed)
        t_fwd = time.perf_counter() - t0
        t0 = time.perf_counter()
        sess.run(grads, feed)
        t_grad = time.perf_counter() - t0
        t0 = time.perf_counter()
        sess.run(m.train_op, feed)
        t_train = time.perf_counter() - t0
        if k:
            timed.seconds["forward"] += t_fwd
            timed.seconds["backward"] += t_grad - t_fwd
            timed.seconds["optimizer"] += t_train - t_grad
            step_s.append(t_data + t_train)
            rows = [len(np.unique(feed[u].astype(np.int64) << 31 | feed[i])) for u, i in zip(m.uids, m.iids)]
            flops.append(step_flops(rows, nnz, data.n_users, data.n_items, targs.latdim, targs.rank, targs.gnn_layer))
        else:
            res["first_step_s"] = t_data + t_train
    res["step_s"] = float(np.median(step_s))
    res["epoch_s"] = res["step_s"] * steps_per_epoch
    res["phases_ms"] = {k: 1000 * v / args.steps for k, v in phases.seconds.items()}
    res["step_gflop"] = float(np.mean([f["total"] for f in flops])) / 1e9
    res["step_gflop_parts"] = {k: float(np.mean([f[k] for f in flops])) / 1e9 for k in flops[0]}
    res["gflops_per_s"] = res["step_gflop"] / res["step_s"]
    res["sgemm_share"] = res["gflops_per_s"] / res["sgemm_gflops"]
    tr.test_epoch(0)  # warm-up of the scoring graph
    t0 = time.perf_counter()
    tr.test_epoch(0)
    res["eval_s"] = time.perf_counter() - t0
    res["test_users"] = len(tr.test_users())
    if args.full_users:
        tr.args.test_users = args.full_users
        emb = sess.run(m.test_embeddings)
        tr.full_ranking(0, emb)  # warm-up
        t0 = time.perf_counter()
        tr.full_ranking(0, emb)
        res["full_ranking_per_user_s"] = (time.perf_counter() - t0) / args.full_users
        res["full_ranking_10k_users_estimate_s"] = res["full_ranking_per_user_s"] * len(data.tst_users)
    tr.sess.close()

    print(f"MB-GMN on Beibei, batch {args.batch} users x {args.samp_num} pairs, {args.threads} TF thread(s), "
          f"{args.steps} timed steps")
    print(f"sgemm (tf.matmul 2048^3, same threads): {res['sgemm_gflops']:.1f} GFLOP/s "
          f"(numpy: {res['sgemm_numpy_gflops']:.1f})")
    print("per training step:")
    print(phases.table(per=args.steps))
    print(f"step {res['step_s']:.3f} s (first step {res['first_step_s']:.1f} s, not counted); "
          f"epoch of {steps_per_epoch} steps: {res['epoch_s']:.1f} s")
    parts = ", ".join(f"{k} {v:.1f}" for k, v in res["step_gflop_parts"].items() if k != "total")
    print(f"FLOPs per step (arithmetic): {res['step_gflop']:.1f} GFLOP ({parts})")
    print(share_line(res["step_gflop"] * 1e9, res["step_s"], res["sgemm_gflops"]))
    print(f"test pass (1 + 99 candidates, {res['test_users']} users): {res['eval_s']:.2f} s")
    if args.full_users:
        print(f"full ranking: {res['full_ranking_per_user_s']:.3f} s per test user, "
              f"~{res['full_ranking_10k_users_estimate_s'] / 60:.1f} min for the {len(data.tst_users)} test users")
    write_json(args.out, res)
    emit_json({k: v for k, v in res.items() if isinstance(v, (int, float))})
    return res


if __name__ == "__main__":
    main()
