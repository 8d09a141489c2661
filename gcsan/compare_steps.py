"""Old/new step timing for `python -m common.bench compare` (the old bench.py prints no BENCH_JSON).

    python -m common.bench compare --rounds 2 e73d588 -- python $(pwd)/gcsan/compare_steps.py 2

Imports gcsan from the tree on PYTHONPATH (compare sets it to each tree): 1 thread (or the second
argument's count, e.g. `compare_steps.py 2 2` for the 2 cores; `--no-draw-ahead` last: masks drawn inline), ML-100k batch
4096, one warm-up and N timed steps of the epoch's order, then a full-sort evaluation of test. Uses
`main.keep_freed_memory` where the tree has it. Reports wall time (`step_s`, `epoch_s`) and the
process's CPU time (`step_cpu_s`, `epoch_cpu_s`; less sensitive to other jobs on the machine)."""
import json, sys, time
import numpy as np, torch
import gcsan.main as gm
from gcsan.data import load
from gcsan.model import GCSAN
NO_AHEAD = sys.argv[-1] == "--no-draw-ahead"
_a = sys.argv[1:len(sys.argv) - NO_AHEAD]
if len(_a) > 2 or not all(x.isdigit() and int(x) > 0 for x in _a):
    sys.exit(f"compare_steps: unusable arguments {sys.argv[1:]}; usage: python gcsan/compare_steps.py "
             "[STEPS (3)] [THREADS (1)] [--no-draw-ahead]")
alloc = getattr(gm, "keep_freed_memory", lambda: False)()
torch.set_num_threads(int(_a[1]) if len(_a) > 1 else 1)
N = int(_a[0]) if _a else 3
data = load("ml-100k", valid_portion=0.0, verbose=False)
torch.manual_seed(0)
model = GCSAN(data.n_items, **gm.MODEL_DEFAULTS); model.train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
order = np.random.default_rng(0).permutation(len(data.train))
bs = 4096
batches = [order[i:i + bs] for i in range(0, len(order), bs)]
def step(idx):
    seq, length, target = gm.to_torch(data.train.batch(idx), "cpu")
    if hasattr(model, "draw_ahead") and not NO_AHEAD:  # as train_epoch (trees that have it)
        model.draw_ahead(*seq.shape)
    loss = model.loss(seq, length, target); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
step(batches[0])
t0, c0 = time.perf_counter(), time.process_time()
for i in range(1, N + 1): step(batches[i])
step_s = (time.perf_counter() - t0) / N
step_cpu_s = (time.process_time() - c0) / N  # CPU time: less sensitive to other jobs on the machine
t0 = time.perf_counter(); gm.evaluate(model, data.test, 4096, "cpu"); eval_s = time.perf_counter() - t0
print("BENCH_JSON " + json.dumps({"step_s": step_s, "epoch_s": step_s * len(batches), "eval_s": eval_s,
                                  "step_cpu_s": step_cpu_s, "epoch_cpu_s": step_cpu_s * len(batches),
                                  "allocator_setting": float(alloc)}), flush=True)
