"""Time one AGNN training epoch split into batch building and model time.

    python -m agnn.bench --mode ucs               # full epoch
    python -m agnn.bench --mode ucs --batches 100 # first 100 batches only

Batch building = shuffling, neighbour sampling and attribute lookup (data.BatchBuilder); model =
forward, backward and the Adam step. The issue's target: batch building under 10% of the epoch.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time
from typing import Optional

import numpy as np
import torch

from agnn.data import MODES, BatchBuilder, load
from agnn.main import DEFAULTS
from agnn.model import AGNN, AGNNConfig


def bench(mode: str, graph: str, batches: int, threads: int, seed: int = 0) -> dict[str, float]:
    """Seconds spent building batches and in the model over ``batches`` batches (0 = an epoch)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = load(mode, graph)
    model = AGNN(AGNNConfig(data.n_users, data.n_items, data.vocab))
    opt = torch.optim.Adam(model.parameters(), lr=DEFAULTS["lr"], weight_decay=DEFAULTS["weight_decay"])
    builder = BatchBuilder(data, DEFAULTS["user_neighbours"], DEFAULTS["item_neighbours"])
    t_build = t_model = 0.0
    n = 0
    t = time.perf_counter()
    rows = data.train[rng.permutation(len(data.train))]
    it = builder.batches(rows, DEFAULTS["batch_size"], rng, shuffle=False)
    while True:
        try:
            b = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        t_build += t1 - t
        loss, _ = model.loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t = time.perf_counter()
        t_model += t - t1
        n += 1
        if batches and n >= batches:
            break
    total = t_build + t_model
    return {"batches": n, "build_seconds": t_build, "model_seconds": t_model, "total_seconds": total,
            "build_share": t_build / total, "threads": torch.get_num_threads()}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Batch-building vs model time for one AGNN training epoch.")
    p.add_argument("--mode", choices=MODES, default="ucs", help="setting")
    p.add_argument("--graph", choices=("authors", "built"), default="authors", help="neighbour lists")
    p.add_argument("--batches", type=int, default=0, help="stop after N batches (0 = whole epoch)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args(argv)
    r = bench(args.mode, args.graph, args.batches, args.threads)
    print(f"{args.mode}/{args.graph}: {r['batches']} batches, {r['threads']} threads: batch building "
          f"{r['build_seconds']:.2f}s ({100 * r['build_share']:.1f}%), model {r['model_seconds']:.2f}s, "
          f"total {r['total_seconds']:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
