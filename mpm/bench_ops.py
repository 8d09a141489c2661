"""Every operator of an MPM training step, timed inside the step and alone.

    python -m mpm.bench_ops --threads 2
    python -m mpm.bench_ops --threads 1 --repeats 5

Training steps on ML-100k (batch 2048, the loop of ``mpm.main.train_epoch``): ``--steps`` timed as they
run (mean, after two warm-up steps), then one more under :class:`common.op_times.OpTimes`: each ATen
operator of the forward and backward (the dropout draws included) is timed where it runs, and the first
call of each signature is replayed alone (operands warm, written ones on copies, best of ``--repeats``)
at the same thread count. Adam is timed as it runs.

The sum of the best-alone times is what these operators cost when each runs as fast as this machine runs
it by itself: reordering them or reusing their memory cannot take the step below it; fewer operators
(fused kernels) or faster kernels could. Prints the sums by kind of operator, the largest operators and a
``BENCH_JSON`` line. A benchmark: never a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from common.bench import emit_json, sgemm_rate
from common.cli import positive_int, run_cli
from common.memory import keep_freed_memory
from common.op_times import OpTimes
from common.runs import hardware
from mpm.data import load
from mpm.main import DEFAULTS, build_model, parse_args, sample_epoch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=positive_int, default=5, help="calls of each operator alone (best kept)")
    p.add_argument("--steps", type=positive_int, default=10, help="steps timed as they run (mean)")
    a = p.parse_args(argv)
    allocator = keep_freed_memory()  # as mpm.main
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    data = load("ml-100k")
    args = parse_args(["--dataset", "ml-100k", "--no-progress", "--device", "cpu"])
    torch.manual_seed(DEFAULTS["seed"])
    model = build_model(data, args)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    entry, item, label = sample_epoch(data.train_users, data.train_items, data.train_positive_keys(),
                                      data.nb_items, args.negatives, np.random.default_rng(args.seed))
    users, hist = torch.from_numpy(data.train_users), torch.from_numpy(data.train_history)
    entry, item, label = (torch.from_numpy(x) for x in (entry, item, label))
    bs = args.batch_size
    model.train()

    def step(s: int, mode=None):
        sl = slice(s * bs, (s + 1) * bs)
        e = entry[sl]
        u, i, h, y = users[e], item[sl], hist[e], label[sl]
        t0 = time.perf_counter()
        with mode if mode is not None else _nothing():
            loss = model.loss(u, i, h, y)
            loss.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        t1 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t0, time.perf_counter() - t1

    step(0), step(1)                                                     # warm-up
    runs = [step(2 + s) for s in range(a.steps)]
    step_s = sum(r[0] for r in runs) / len(runs)
    adam_s = sum(r[1] for r in runs) / len(runs)
    ops = OpTimes(repeats=a.repeats)
    watched_s = step(2 + a.steps, ops)[0]
    sgemm = sgemm_rate()
    flops = ops.flops()
    alone = ops.total(alone=True)
    print(f"[bench_ops] mpm ml-100k, batch {bs}, {hardware('cpu')}, torch {torch.__version__}, {threads} thread(s); glibc keep_freed_memory: {allocator}")
    print(ops.summary(top=20))
    print(f"sgemm 2048^3, {threads} thread(s): {sgemm:.1f} GFLOP/s; matrix FLOPs per step {flops / 1e9:.2f} G")
    print(f"step as it runs (mean of {len(runs)}): {step_s * 1e3:.1f} ms, of which Adam {adam_s * 1e3:.1f} ms; "
          f"with OpTimes watching: {watched_s * 1e3:.1f} ms")
    print(f"every operator alone: {alone * 1e3:.1f} ms (products {ops.total('product', True) * 1e3:.1f}, random "
          f"draws {ops.total('random', True) * 1e3:.1f} as in the step, the rest "
          f"{(alone - ops.total('product', True) - ops.total('random', True)) * 1e3:.1f}) + Adam {adam_s * 1e3:.1f} ms "
          f"= {(alone + adam_s) * 1e3:.1f} ms, against {step_s * 1e3:.1f} ms as the step runs")
    res = {"threads": threads, "sgemm_gflops": sgemm, "flops_per_step": flops, "step_s": step_s,
           "watched_step_s": watched_s, "ops_alone_s": alone, "adam_s": adam_s,
           "products_alone_s": ops.total("product", True), "products_in_step_s": ops.total("product"),
           "random_in_step_s": ops.total("random"), "other_alone_s": ops.total("other", True),
           "other_in_step_s": ops.total("other"), "operator_calls": ops.calls(), "signatures": len(ops.rows)}
    emit_json(res)
    return res


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    raise SystemExit(run_cli(lambda argv: main(argv) and 0))
