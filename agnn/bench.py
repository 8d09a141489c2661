"""Where an AGNN training epoch goes, against the machine's own matmul rate.

    python -m agnn.bench --threads 1                  # UCS, authors' graph: one full epoch + evaluation
    python -m agnn.bench --threads 1 --batches 100    # first 100 batches, epoch time extrapolated

Prints, with one torch thread count throughout: the time per training step and per epoch split into
data (shuffled rows -> neighbour sampling -> attribute lookup, ``data.BatchBuilder``), forward
(``AGNN.loss``), backward (``zero_grad`` + ``backward``) and optimizer (the Adam step); the FLOPs
of one step as torch's flop counter counts them (matrix products: the embedding lookups and the
element-wise work count nothing) and the GFLOP/s they reach; the float32 sgemm rate of this
machine timed in the same process (``common.bench.sgemm_rate``) and the share of it the step
reaches; the evaluation time (``main.evaluate`` on the whole validation file). The last line is
``BENCH_JSON {...}`` (seconds in keys ending ``_s``) for ``python -m common.bench compare``.

Before/after (README "Speed"): the same file run against another commit's ``agnn`` package,

    python -m common.bench compare e73d588 --rounds 3 -- python $PWD/agnn/bench.py --threads 1

Run as a file with ``PYTHONPATH`` set (``compare`` sets it to each tree), it benchmarks the ``agnn``
package found there; it uses only what the older code has too (``load``, ``BatchBuilder``, ``AGNN``,
``main.evaluate``), and that code's optimizer (plain Adam before ``main.make_optimizer`` existed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, "") and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time
from typing import Optional

import numpy as np
import torch

from agnn.data import MODES, BatchBuilder, load
from agnn.main import DEFAULTS, evaluate
from agnn.model import AGNN, AGNNConfig
from common.bench import Phases, emit_json, sgemm_rate, share_line, torch_flops


def optimizer(model: AGNN):
    """main.py's optimizer (the older code: plain Adam)."""
    try:
        from agnn.main import make_optimizer
    except ImportError:
        return torch.optim.Adam(model.parameters(), lr=DEFAULTS["lr"], weight_decay=DEFAULTS["weight_decay"])
    return make_optimizer(model, DEFAULTS["lr"], DEFAULTS["weight_decay"])


def _use_prefetch(setting: str) -> bool:
    """main.use_prefetch (the older code has no prefetch: False)."""
    try:
        from agnn.main import use_prefetch
    except ImportError:
        return False
    return use_prefetch(setting)


def bench(mode: str, graph: str, batches: int, threads: int, seed: int = 0, do_eval: bool = True,
          prefetch: str = "auto") -> dict:
    """Phase times over ``batches`` training batches (0 = a whole epoch), FLOPs of one step, the
    sgemm rate and the evaluation time."""
    if threads:
        torch.set_num_threads(threads)
    sgemm = sgemm_rate()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = load(mode, graph)
    model = AGNN(AGNNConfig(data.n_users, data.n_items, data.vocab))
    opt = optimizer(model)
    builder = BatchBuilder(data, DEFAULTS["user_neighbours"], DEFAULTS["item_neighbours"])
    bs = DEFAULTS["batch_size"]
    epoch_batches = -(-len(data.train) // bs)

    # FLOPs of one training step (forward + backward) on a real batch; its update is not applied.
    first = builder.build(data.train[:bs], np.random.default_rng(seed + 1))

    def step_for_flops():
        loss, _ = model.loss(first)
        loss.backward()

    flops = torch_flops(step_for_flops)
    model.zero_grad()

    phases = Phases()
    model.train()
    n = 0
    ahead = _use_prefetch(prefetch)
    with phases("data"):
        rows = data.train[rng.permutation(len(data.train))]
        if ahead:   # as main.run: the batches built in a child process, ahead of the model
            from agnn.data import prefetched_batches
            it = prefetched_batches(builder, rows, bs, rng)
        else:
            it = builder.batches(rows, bs, rng, shuffle=False)
    while not batches or n < batches:
        with phases("data"):
            b = next(it, None)
        if b is None:
            break
        with phases("forward"):
            loss, _ = model.loss(b)
        with phases("backward"):
            opt.zero_grad()
            loss.backward()
        with phases("optimizer"):
            opt.step()
        n += 1
    step_s = phases.total() / n
    eval_s = float("nan")
    if do_eval:
        t = time.perf_counter()
        evaluate(model, data, builder, bs, np.random.default_rng([seed, 1]), "cpu")
        eval_s = time.perf_counter() - t
    return {"phases": phases, "batches": n, "epoch_batches": epoch_batches, "step_s": step_s,
            "epoch_s": step_s * epoch_batches if n < epoch_batches else phases.total(),
            "eval_s": eval_s, "flops": flops, "sgemm": sgemm, "threads": torch.get_num_threads(), "prefetch": ahead}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Time split, FLOPs and sgemm share of AGNN training (one epoch).")
    p.add_argument("--mode", choices=MODES, default="ucs", help="setting")
    p.add_argument("--graph", choices=("authors", "built"), default="authors", help="neighbour lists")
    p.add_argument("--batches", type=int, default=0, help="stop after N batches (0 = whole epoch)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation timing")
    p.add_argument("--prefetch", choices=("auto", "on", "off"), default="auto", help="as in agnn.main")
    args = p.parse_args(argv)
    r = bench(args.mode, args.graph, args.batches, args.threads, do_eval=not args.no_eval, prefetch=args.prefetch)
    ph, n = r["phases"], r["batches"]
    measured = "measured" if n >= r["epoch_batches"] else f"estimated from {n} batches"
    print(f"agnn {args.mode}/{args.graph}, {r['threads']} torch thread(s), batch {DEFAULTS['batch_size']}, "
          f"{n} of {r['epoch_batches']} batches; batches built in a child process (--prefetch): {r['prefetch']}")
    print(f"per training step (ms, share):\n{ph.table(per=n)}")
    print(f"per epoch ({r['epoch_batches']} steps, {measured}): {r['epoch_s']:.2f} s = "
          + ", ".join(f"{k} {s / n * r['epoch_batches']:.2f} s" for k, s in ph.seconds.items()))
    print(share_line(r["flops"], r["step_s"], r["sgemm"]))
    print(f"evaluation (whole validation file): {r['eval_s']:.2f} s")
    emit_json({"step_s": r["step_s"], "epoch_s": r["epoch_s"], "eval_s": r["eval_s"],
               "gflops_per_s": r["flops"] / r["step_s"] / 1e9, "sgemm_gflops": r["sgemm"],
               "flops_per_step": r["flops"], "threads": r["threads"], "batches": n, "prefetch": float(r["prefetch"]),
               **{f"{k}_s": s / n for k, s in ph.seconds.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
