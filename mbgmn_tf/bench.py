"""Speed of the MB-GMN pipeline on real Beibei, piece by piece.

    python -m mbgmn_tf.bench                      # 5 training steps, full test pass
    python -m mbgmn_tf.bench --steps 2 --test-users 2000

Prints (and writes to --out as JSON): adjacency normalisation (vectorised, whole pv matrix, vs
the notebook's double loop on a slice, extrapolated per nonzero), pair sampling per epoch,
the sparse product A x with its gradient (notebook's SparseTensorDenseMatMul vs our CSR kernel),
the session step, a test pass and the share of an epoch spent outside ``sess.run``.
Timings depend on what else runs on the machine: run it alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import time
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp

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


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=positive_int, default=5, help="training steps to time (authors' batch and sampNum)")
    p.add_argument("--test-users", type=nonnegative_int, default=0, help="test users in the timed test pass (0: all 10,000)")
    p.add_argument("--loop-slice", type=positive_int, default=200_000, help="nonzeros of pv given to the notebook's loop")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "runs" / "bench.json"), help="JSON result file")
    args = p.parse_args(argv)
    res: dict = {"hardware": hardware()}

    data = load_dataset("beibei")
    pv = data.trn_mats[0]
    res["normalize_vectorized_pv_s"] = _best_of(lambda: symmetric_normalize(pv), 3)
    rows = int(np.searchsorted(pv.indptr, args.loop_slice))
    sl = pv[:rows]
    loop = _best_of(lambda: normalize_loop_reference(sl), 1)
    res["normalize_loop_slice_nnz"] = int(sl.nnz)
    res["normalize_loop_slice_s"] = loop
    res["normalize_loop_pv_extrapolated_s"] = loop * pv.nnz / sl.nnz
    print(json.dumps(res, indent=1), flush=True)

    res.update({f"sparse_product_pv_{k}": val for k, val in bench_sparse_product(pv).items()})
    print(json.dumps(res, indent=1), flush=True)

    from mbgmn_tf.main import Trainer, parse_args

    targs = parse_args(["--no-progress", "--test-users", str(args.test_users), "--out", "/tmp/mbgmn-bench"])
    t0 = time.perf_counter()
    tr = Trainer(targs, data)
    res["graph_build_and_load_s"] = time.perf_counter() - t0
    m, rng = tr.model, np.random.default_rng(0)
    users = rng.permutation(data.n_users)[: targs.trn_num]
    steps = int(np.ceil(len(users) / targs.batch))

    def sample_epoch():
        for k in range(steps):
            batch = users[k * targs.batch:(k + 1) * targs.batch]
            for s in tr.samplers:
                s.sample(batch, targs.samp_num, rng)

    res["sampling_per_epoch_s"] = _best_of(sample_epoch, 3)
    step_times = []
    for k in range(args.steps + 1):  # the first step also optimises the graph: not counted
        batch = users[k * targs.batch:(k + 1) * targs.batch]
        feed = m.pair_feed([s.sample(batch, targs.samp_num, rng) for s in tr.samplers])
        t0 = time.perf_counter()
        tr.sess.run(m.train_op, feed)
        step_times.append(time.perf_counter() - t0)
    res["first_step_s"] = step_times[0]
    res["session_step_s"] = float(np.median(step_times[1:]))
    res["epoch_estimate_s"] = res["session_step_s"] * steps + res["sampling_per_epoch_s"]
    res["outside_session_share"] = res["sampling_per_epoch_s"] / res["epoch_estimate_s"]
    t0 = time.perf_counter()
    tr.test_epoch(0)
    res["test_pass_s"] = time.perf_counter() - t0
    res["test_users"] = len(tr.test_users())
    print(json.dumps(res, indent=1), flush=True)
    write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
