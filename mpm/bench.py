"""Speed of the MPM pipeline on the real data, and where a training step's time goes.

    python -m mpm.bench --threads 1                  # ML-100k: one full training epoch, evaluation
    python -m mpm.bench --threads 1 --steps 40       # 40 training steps; the epoch time is estimated

Prints, with one torch thread count throughout: preprocessing time (cold, i.e. from the raw file, and
from the cache); the training step (batch 2048, forward + backward + Adam as in ``mpm.main.train_epoch``)
split into data (the epoch's negative sampling and shuffling, spread over its steps, and the batch
gathers), forward, backward and optimizer, per step and per epoch; the FLOPs of one step
(``common.bench.torch_flops``), the GFLOP/s achieved and their share of this machine's float32 matrix
product rate timed in the same run (``common.bench.sgemm_rate``); the evaluation time of all test users
x 100 candidates -- on the dataset's own test cases and, when the authors' ML-1m split is in the
mirror, on its 6,040 users x 100 candidates with an ML-1m-sized model (untrained: the time does not
depend on the weights). The last line is ``BENCH_JSON {...}`` for ``python -m common.bench compare``.
The allocator setting of ``mpm.main`` (``common.memory.keep_freed_memory``) is applied first, as in training.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import tempfile
import time
from typing import Optional

import numpy as np
import torch

from common.bench import Phases, emit_json, sgemm_rate, share_line, torch_flops
from common.datasets import DatasetUnavailableError
from common.memory import keep_freed_memory
from common.runs import hardware
from mpm.data import RAW_FILES, load, load_official_test
from mpm.main import DEFAULTS, build_model, evaluate, parse_args, sample_epoch, use_draw_ahead


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(RAW_FILES), default="ml-100k", help="raw ratings to time")
    p.add_argument("--steps", type=int, default=None, help="training steps to time (default: one full epoch)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--eval-batch-users", type=int, default=64, help="users per evaluation batch")
    p.add_argument("--draw-ahead", choices=("auto", "on", "off"), default="auto", help="as in mpm.main")
    p.add_argument("--no-official", action="store_true", help="skip timing evaluation on the official ML-1m split")
    a = p.parse_args(argv)
    allocator = keep_freed_memory()  # as mpm.main: where training's memory comes from
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"hardware: {hardware()}, torch threads {torch.get_num_threads()}; glibc keep_freed_memory: {allocator}")
    sgemm = sgemm_rate()
    print(f"sgemm 2048^3 float32, {torch.get_num_threads()} thread(s): {sgemm:.1f} GFLOP/s")

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        data = load(a.dataset, cache=cache)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load(a.dataset, cache=cache)
        warm = time.perf_counter() - t0
    print(f"preprocessing {a.dataset}: {cold:.2f} s cold (raw file -> arrays), {warm:.3f} s from the cache; "
          f"{data.summary()}")

    # The loop of mpm.main.train_epoch with a timer around each phase.
    args = parse_args(["--dataset", a.dataset, "--no-progress", "--device", "cpu"])
    torch.manual_seed(DEFAULTS["seed"])
    model = build_model(data, args)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    rng = np.random.default_rng(args.seed)
    ph = Phases()
    with ph("data"):
        entry, item, label = sample_epoch(data.train_users, data.train_items, data.train_positive_keys(),
                                          data.nb_items, args.negatives, rng)
        users_t, hist_t = torch.from_numpy(data.train_users), torch.from_numpy(data.train_history)
        entry_t, item_t, label_t = (torch.from_numpy(x) for x in (entry, item, label))
    bs = args.batch_size
    epoch_steps = (len(entry) + bs - 1) // bs
    steps = min(a.steps or epoch_steps, epoch_steps)

    def batch(s: int):
        sl = slice(s * bs, (s + 1) * bs)
        e = entry_t[sl]
        return users_t[e], item_t[sl], hist_t[e], label_t[sl]

    model.train()
    ahead = use_draw_ahead(a.draw_ahead)
    print(f"dropout masks drawn ahead on a second thread (--draw-ahead {a.draw_ahead}): {ahead}")
    for s in range(steps):
        with ph("data"):
            u, i, h, y = batch(s)
        with ph("forward"):
            if ahead:
                model.draw_ahead(len(y))  # as train_epoch
            loss = model.loss(u, i, h, y)
            loss.item()
        with ph("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with ph("optimizer"):
            opt.step()
    step_s = ph.total() / steps
    epoch_s = step_s * epoch_steps
    print(f"training {a.dataset}: {steps} of the epoch's {epoch_steps} steps (batch {bs}) timed, "
          f"{bs / step_s:.0f} examples/s; per step:")
    print(ph.table(per=steps))
    print(f"per epoch ({'measured' if steps == epoch_steps else 'estimated from the timed steps'}): "
          f"{epoch_s:.1f} s = " + ", ".join(f"{k} {v / steps * epoch_steps:.1f} s" for k, v in ph.seconds.items()))

    u, i, h, y = batch(0)

    def one_step() -> None:
        loss = model.loss(u, i, h, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()

    flops = torch_flops(one_step)
    opt.zero_grad(set_to_none=True)
    compute_s = step_s - ph.seconds["data"] / steps
    print(share_line(flops, step_s, sgemm) + " (whole step)")
    print(share_line(flops, compute_s, sgemm, "forward + backward + optimizer") + " (without the data phase)")

    m = evaluate(model, data.test_users, data.test_items, data.test_history, data.test_negatives,
                 batch_users=a.eval_batch_users)
    eval_s = m["eval_seconds"]
    print(f"evaluation {a.dataset}: {len(data.test_users)} users x 100 candidates in {eval_s:.2f} s")
    record = {"step_s": step_s, "epoch_s": epoch_s, "eval_s": eval_s, "gflops_per_s": flops / step_s / 1e9,
              "sgemm_gflops": sgemm, "flops_per_step": flops, "steps_timed": steps,
              "threads": torch.get_num_threads(), "draw_ahead": float(ahead), **{f"{k}_step_s": v / steps for k, v in ph.seconds.items()}}
    if not a.no_official:
        try:
            o = load_official_test()
        except DatasetUnavailableError as e:
            print(f"official ML-1m split not available: {str(e).splitlines()[0]}")
        else:
            big = build_model(type(data)(o.summary["users"], o.summary["items"], o.summary["history_size"],
                                         *[np.empty(0, np.int64)] * 12), args)
            m = evaluate(big, o.users, o.items, o.history, o.negatives, batch_users=a.eval_batch_users)
            print(f"evaluation official ML-1m split: {len(o.users)} users x 100 candidates in "
                  f"{m['eval_seconds']:.2f} s (untrained HR@10 {m['hr@10']:.4f})")
            record["eval_ml1m_official_s"] = m["eval_seconds"]
    emit_json(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
