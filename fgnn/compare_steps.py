"""Before/after timing of the training step for `python -m common.bench compare` (issue 15).

Imports `fgnn` from the tree on PYTHONPATH (the old commit's worktree or this one), so it also times code
whose bench.py prints no BENCH_JSON; give its absolute path so both trees run this same script:

    python -m common.bench compare --rounds 3 e73d588 -- python $PWD/fgnn/compare_steps.py 12

Times N training steps (after 3 warm-up steps) and 20 test batches on Diginetica; torch threads: the
second argument (default 1), e.g. `compare_steps.py 40 2` for the 2 cores.
"""
import json, sys, time
_a = sys.argv[1:]
if len(_a) > 2 or not all(x.isdigit() and int(x) > 0 for x in _a):
    sys.exit(f"compare_steps: unusable arguments {_a}; usage: python fgnn/compare_steps.py [STEPS (20)] [THREADS (1)]")
import torch
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
from common.bench import sgemm_rate
from fgnn.data import SessionBatches, load_dataset
from fgnn.main import evaluate, make_model, parse_args
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
train, test, info = load_dataset("diginetica")
torch.manual_seed(0)
model = make_model(parse_args([]), info["n_items"])
opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
batches = SessionBatches(train, 100, shuffle=True, generator=torch.Generator().manual_seed(0))
it = iter(batches)
def step():
    b = next(it); opt.zero_grad(); loss = model.loss(b); loss.backward(); opt.step()
for _ in range(3): step()
t = time.perf_counter()
for _ in range(N): step()
step_s = (time.perf_counter() - t) / N
ev = [b for _, b in zip(range(20), SessionBatches(test, 100))]
eval_s = evaluate(model, ev, torch.device("cpu"), progress=False)["eval_seconds"] / len(ev)
sg = sgemm_rate()
print("BENCH_JSON " + json.dumps({"step_s": step_s, "epoch_s": step_s * len(batches), "eval_s": eval_s,
      "gflops_per_s": 3.07 / step_s, "sgemm_gflops": sg}))
