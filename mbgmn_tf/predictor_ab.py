"""In-process A/B of the per-pair product's chunk size (``model.per_pair_product``), one TF thread.

    python -m mbgmn_tf.predictor_ab block 47700 3 0,512,1024   # the product alone: rows, repetitions, chunks
    python -m mbgmn_tf.predictor_ab step 3 0,1024              # a training step, authors' batch: steps, chunks

``block``: y = per_pair_product(x, meta, W3) and the gradients of sum(y * r) with respect to x,
meta and W3 on random float32 inputs of the real sizes (3d = 96, d = 32; 47,700 rows is one
target's share of a step at the authors' batch, 143,000 rows per step), each variant in its own
sub-graph of one session, variants interleaved; prints CPU seconds (best and median) per variant.
``step``: one ``main.Trainer`` per chunk value on real Beibei (256 users, 40 pairs per user and
behaviour), the same sampled batches fed to each, order alternating; step = one ``train_op`` run,
the first step (graph optimisation) not counted. chunk 0 is the notebook's formulation. Timings
depend on the machine's load: compare variants of one run, not runs.
"""
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np


def block(rows: int, reps: int, chunks: list[int]) -> None:
    import tensorflow.compat.v1 as tf

    from mbgmn_tf.model import per_pair_product

    tf.disable_v2_behavior()
    d, din = 32, 96
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((rows, din)), rng.standard_normal((rows, din)),
              rng.standard_normal((din, din * d)) * 0.02, rng.standard_normal((rows, d))]
    x, meta, r = (tf.placeholder(tf.float32, [None, n]) for n in (din, din, d))
    w3 = tf.Variable(values[2].astype(np.float32))
    feed = {x: values[0], meta: values[1], r: values[3]}
    fetches = {}
    for ch in chunks:
        y = per_pair_product(x, meta, tf.identity(w3), d, ch)
        grads = tf.gradients(tf.reduce_sum(y * r), [x, meta, w3])
        fetches[ch] = [tf.reduce_sum(t) for t in [y, *grads]]  # run everything, fetch scalars
    sess = tf.Session(config=tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1))
    sess.run(tf.global_variables_initializer())
    times = {ch: [] for ch in chunks}
    for k in range(reps + 1):
        for ch in (chunks if k % 2 == 0 else chunks[::-1]):
            t0 = time.process_time()
            sess.run(fetches[ch], feed)
            if k:  # the first run of each is a warm-up
                times[ch].append(time.process_time() - t0)
    for ch, t in times.items():
        print(f"block rows {rows} chunk {ch}: forward + gradients CPU s best {min(t):.3f} median {np.median(t):.3f} (n={len(t)})")


def step(steps: int, chunks: list[int]) -> None:
    import mbgmn_tf.model as model
    from mbgmn_tf.data import load_dataset
    from mbgmn_tf.main import Trainer, parse_args

    batch, samp = 256, 40
    data = load_dataset("beibei")
    original = model.MBGMN.__init__
    trainers = {}
    try:
        for ch in chunks:
            def init(self, *a, _ch=ch, **k):
                original(self, *a, predictor_chunk=_ch, **k)
            model.MBGMN.__init__ = init
            args = parse_args(["--batch", str(batch), "--samp-num", str(samp), "--threads", "1",
                               "--no-progress", "--out", tempfile.mkdtemp()])
            trainers[ch] = Trainer(args, data)
    finally:
        model.MBGMN.__init__ = original
    rng = np.random.default_rng(0)
    users = rng.permutation(data.n_users)
    first = trainers[chunks[0]]
    batches = [[s.sample(users[k * batch:(k + 1) * batch], samp, rng) for s in first.samplers] for k in range(steps + 1)]
    times = {ch: [] for ch in chunks}
    for k, pairs in enumerate(batches):
        for ch in (chunks if k % 2 == 0 else chunks[::-1]):
            tr = trainers[ch]
            feed = tr.model.pair_feed(pairs)
            c0, w0 = time.process_time(), time.perf_counter()
            loss, _ = tr.sess.run([tr.model.loss, tr.model.train_op], feed)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            print(f"step {k} chunk {ch}: loss {loss:.6f} CPU {cpu:.2f} s wall {wall:.2f} s", flush=True)
            if k:
                times[ch].append(wall)
    for ch, t in times.items():
        print(f"step chunk {ch}: wall s best {min(t):.2f} median {np.median(t):.2f} (n={len(t)})")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    argv = sys.argv[1:]
    try:
        if argv[:1] == ["block"] and len(argv) == 4:
            args = (int(argv[1]), int(argv[2]), [int(c) for c in argv[3].split(",")])
        elif argv[:1] == ["step"] and len(argv) == 3:
            args = (int(argv[1]), [int(c) for c in argv[2].split(",")])
        else:
            raise ValueError
    except ValueError:
        sys.exit(f"predictor_ab: unusable arguments {' '.join(argv) or '(none)'}; usage:\n{__doc__}")
    (block if argv[0] == "block" else step)(*args)
