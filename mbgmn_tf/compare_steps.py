"""Before/after timing of MB-GMN training steps, for ``python -m common.bench compare``.

    python -m common.bench compare --rounds 3 e73d588 -- python $PWD/mbgmn_tf/compare_steps.py 256 40 2 2000

Arguments: batch, samp_num, timed steps (after one warm-up step), test users, and optionally TF threads
(default 1; `... 256 40 2 2000 2` for the 2 cores).
Imports ``mbgmn_tf`` from the working directory (``compare`` runs it in each tree), using only what
the code before the speed-up (e73d588) already had: ``main.Trainer``/``parse_args``,
``model.train_op``, ``Trainer.test_epoch``. Prints a last ``BENCH_JSON`` line (step_s, epoch_s,
eval_s, first_step_s).
"""
import json, os, sys, tempfile, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.getcwd())
import numpy as np
from mbgmn_tf.data import load_dataset
from mbgmn_tf.main import Trainer, parse_args
_a = sys.argv[1:]
if len(_a) not in (4, 5) or not all(x.isdigit() and int(x) > 0 for x in _a):
    sys.exit(f"compare_steps: unusable arguments {_a}; usage: python mbgmn_tf/compare_steps.py "
             "BATCH SAMP_NUM STEPS TEST_USERS [THREADS (1)]")
batch, samp, steps, test_users = (int(x) for x in _a[:4])
threads = _a[4] if len(_a) > 4 else "1"
data = load_dataset("beibei")
args = parse_args(["--batch", str(batch), "--samp-num", str(samp), "--threads", threads, "--test-users", str(test_users),
                   "--fixed-test-negatives", "--no-progress", "--out", tempfile.mkdtemp()])
tr = Trainer(args, data)
m, rng = tr.model, np.random.default_rng(0)
users = rng.permutation(data.n_users)
times = []
for k in range(steps + 1):
    b = users[k * batch:(k + 1) * batch]
    feed = m.pair_feed([s.sample(b, samp, rng) for s in tr.samplers])
    t0 = time.perf_counter(); tr.sess.run(m.train_op, feed); times.append(time.perf_counter() - t0)
tr.test_epoch(0)
t0 = time.perf_counter(); tr.test_epoch(0); ev = time.perf_counter() - t0
step = float(np.median(times[1:]))
print("BENCH_JSON " + json.dumps({"step_s": step, "epoch_s": step * int(np.ceil(args.trn_num / batch)),
                                  "eval_s": ev, "first_step_s": times[0]}), flush=True)
