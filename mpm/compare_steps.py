"""Before/after step timing for `python -m common.bench compare` (the bench of e73d588 prints no BENCH_JSON).

    python -m common.bench compare --rounds 1 e73d588 -- python $PWD/mpm/compare_steps.py 8

N training steps (batch 2048; torch threads: the second argument, default 1) exactly as in mpm.main.train_epoch, then mpm.main.evaluate, with
the mpm package of the tree on PYTHONPATH (compare sets it to each tree); prints BENCH_JSON."""
import json, sys, time
_a = sys.argv[1:]
if len(_a) > 2 or not all(x.isdigit() and int(x) > 0 for x in _a):
    sys.exit(f"compare_steps: unusable arguments {_a}; usage: python mpm/compare_steps.py [STEPS (20)] [THREADS (1)]")
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
from mpm.data import load
import mpm.main
from mpm.main import DEFAULTS, build_model, evaluate, parse_args, sample_epoch
alloc = getattr(mpm.main, "keep_freed_memory", lambda: False)()  # as mpm.main.main, where the tree has it
ahead = getattr(mpm.main, "use_draw_ahead", lambda *a: False)("auto")  # as train_epoch's default, where the tree has it
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
data = load("ml-100k")
args = parse_args(["--dataset", "ml-100k", "--no-progress", "--device", "cpu"])
torch.manual_seed(DEFAULTS["seed"])
model = build_model(data, args)
opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
t0 = time.perf_counter()
entry, item, label = sample_epoch(data.train_users, data.train_items, data.train_positive_keys(), data.nb_items, 4,
                                  np.random.default_rng(3))
U, H = torch.from_numpy(data.train_users), torch.from_numpy(data.train_history)
E, I, L = (torch.from_numpy(a) for a in (entry, item, label))
sample_s = time.perf_counter() - t0
model.train()
t0 = time.perf_counter()
for s in range(steps):
    sl = slice(s * 2048, (s + 1) * 2048); e = E[sl]
    if ahead: model.draw_ahead(len(e))
    loss = model.loss(U[e], I[sl], H[e], L[sl]); loss.item()
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
step_s = (time.perf_counter() - t0) / steps
epoch_steps = (len(entry) + 2047) // 2048
m = evaluate(model, data.test_users, data.test_items, data.test_history, data.test_negatives, 10, 64, "cpu")
print("BENCH_JSON " + json.dumps({"step_s": step_s, "epoch_s": sample_s + step_s * epoch_steps,
                                  "eval_s": m["eval_seconds"], "loss_last": loss.item(),
                                  "allocator_setting": float(alloc), "draw_ahead": float(ahead)}))
