"""Every operator of a GC-SAN training step, timed inside the step and alone, against 40% of the sgemm rate.

    python -m gcsan.bench_ops --threads 2
    python -m gcsan.bench_ops --threads 1 --repeats 5

One ML-100k training step (batch 4096, after a warm-up step; the dropout masks drawn ahead on the second
thread as in ``main.train_epoch``, and waited for before the forward) runs under :class:`common.op_times.OpTimes`: each ATen operator of the
forward and backward is timed where it runs, and the first call of each signature is replayed alone (its
operands warm, written ones on copies, best of ``--repeats``) at the same thread count. The dropout draws
of the step (the worker's work, :func:`gcsan.model._draw_mask` for each mask of the plan) are timed alone
on this thread. Adam is timed alone.

The sum of the best-alone times is what these operators cost when each runs as fast as this machine runs
it by itself: reordering them or reusing their memory cannot take the step below it; fewer operators
(fused kernels) or faster kernels could. The bench sets that sum against the time per step that 40% of
the sgemm rate measured in the same process allows for the step's matrix FLOPs (issue 15's target).

Prints the step as it runs, the sums by kind of operator, the largest operators and a ``BENCH_JSON``
line. A benchmark: never a test.
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
from common.op_times import OpTimes
from common.runs import hardware
from gcsan.data import load
from gcsan.main import MODEL_DEFAULTS, build_parser, keep_freed_memory, resolve_config, to_torch
from gcsan.model import GCSAN, _draw_mask, submit_draw


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=positive_int, default=3, help="calls of each operator alone (best kept)")
    p.add_argument("--steps", type=positive_int, default=2, help="steps timed as they run (mean), after a warm-up")
    a = p.parse_args(argv)
    allocator = keep_freed_memory()
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    cfg = resolve_config(build_parser().parse_args(["--dataset", "ml-100k"]))
    data = load(cfg["data"], valid_portion=cfg["valid_portion"], verbose=False)
    torch.manual_seed(0)
    model = GCSAN(data.n_items, **{k: cfg[k] for k in MODEL_DEFAULTS})
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    model.train()
    bs = cfg["batch_size"]
    order = np.random.default_rng(0).permutation(len(data.train))
    batches = [order[i * bs:(i + 1) * bs] for i in range(a.steps + 2)]

    def step(idx, mode=None):
        seq, length, target = to_torch(data.train.batch(idx), "cpu")
        t0 = time.perf_counter()
        model.draw_ahead(*seq.shape)
        if mode is not None:                      # the draws done first: nothing runs beside the watched operators
            submit_draw(lambda: None).result()
        with mode if mode is not None else _nothing():
            loss = model.loss(seq, length, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        t1 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t0, time.perf_counter() - t1, tuple(seq.shape)

    step(batches[0])                                                     # warm-up
    runs = [step(idx) for idx in batches[1:-1]]
    step_s = sum(r[0] for r in runs) / len(runs)
    adam_s = min(r[1] for r in runs)
    shape = runs[-1][2]
    ops = OpTimes(repeats=a.repeats)
    watched_s = step(batches[-1], ops)[0]
    t0 = time.perf_counter()
    for m, s in model.dropout_plan(*shape):
        if m.p > 0:
            _draw_mask(m.p, s, torch.device("cpu"), torch.float32)
    draws_s = time.perf_counter() - t0
    sgemm = sgemm_rate()
    flops = ops.flops()
    allowed = flops / (0.4 * sgemm * 1e9)
    alone = ops.total(alone=True)
    print(f"[bench_ops] ml-100k, batch {bs} (timed under OpTimes: {shape}), {hardware('cpu')}, torch "
          f"{torch.__version__}, {threads} thread(s); glibc keep_freed_memory: {allocator}")
    print(ops.summary())
    print(f"sgemm 2048^3, {threads} thread(s): {sgemm:.1f} GFLOP/s; matrix FLOPs per step {flops / 1e9:.2f} G "
          f"(sparse products by their nonzeros)")
    print(f"step as it runs (mean of {len(runs)}, draws ahead): {step_s:.3f} s, of which Adam {adam_s:.3f} s; "
          f"{flops / step_s / 1e9 / sgemm:.1%} of sgemm; with OpTimes watching: {watched_s:.3f} s")
    print(f"dropout draws of the step alone, on this thread (the draw-ahead worker's work): {draws_s:.3f} s")
    print(f"40% of sgemm allows {allowed:.3f} s per step. Every operator alone: {alone:.3f} s on the step's "
          f"thread (products {ops.total('product', True):.3f} s, the rest {alone - ops.total('product', True):.3f} s)"
          f" + Adam {adam_s:.3f} s; the draws {draws_s:.3f} s beside them")
    res = {"threads": threads, "sgemm_gflops": sgemm, "flops_per_step": flops, "step_s": step_s,
           "watched_step_s": watched_s, "allowed_at_40pct_s": allowed, "ops_alone_s": alone,
           "products_alone_s": ops.total("product", True), "products_in_step_s": ops.total("product"),
           "other_alone_s": ops.total("other", True), "other_in_step_s": ops.total("other"),
           "adam_s": adam_s, "draws_alone_s": draws_s, "operator_calls": ops.calls(),
           "signatures": len(ops.rows)}
    emit_json(res)
    return res


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    raise SystemExit(run_cli(lambda argv: main(argv) and 0))
