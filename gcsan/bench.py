"""Speed of the GC-SAN pipeline on real data: preprocessing, training throughput, evaluation.

    python -m gcsan.bench --dataset ml-100k
    python -m gcsan.bench --dataset diginetica --protocol srgnn --batches 5

Prints: preprocessing time (built from raw, then from cache), training examples per second over
``--batches`` batches, the share of that time spent outside forward/backward/step (batch assembly
and graph inputs; target < 10%), and the time to full-sort every test example.
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

from common.runs import hardware
from common.cli import positive_int, run_cli
from gcsan.data import Split, load
from gcsan.main import MODEL_DEFAULTS, build_parser, evaluate, resolve_config, train_epoch
from gcsan.model import GCSAN


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k", help="as in gcsan.main")
    p.add_argument("--protocol", default="recbole", choices=["recbole", "srgnn"], help="as in gcsan.main")
    p.add_argument("--batches", type=positive_int, default=5, help="training batches to time")
    p.add_argument("--batch-size", type=positive_int, default=None, help="training batch size (default: preset)")
    p.add_argument("--bucket-batches", action="store_true", help="as in gcsan.main")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    args = build_parser().parse_args(["--dataset", a.dataset, "--protocol", a.protocol, "--device", a.device]
                                     + (["--batch-size", str(a.batch_size)] if a.batch_size else []))
    cfg = resolve_config(args)
    cfg["max_train_batches"] = a.batches
    cfg["bucket_batches"] = a.bucket_batches
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    load(cfg["data"], valid_portion=cfg["valid_portion"], use_cache=False, verbose=False)
    t_raw = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = load(cfg["data"], valid_portion=cfg["valid_portion"], verbose=False)
    t_cache = time.perf_counter() - t0
    torch.manual_seed(0)
    model = GCSAN(data.n_items, **{k: cfg[k] for k in MODEL_DEFAULTS}).to(a.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    tr = train_epoch(model, opt, data, cfg, np.random.default_rng(0), desc="bench")
    t0 = time.perf_counter()
    evaluate(model, data.test, cfg["eval_batch_size"], a.device)
    t_eval = time.perf_counter() - t0
    # ML-1m scale (6,040 test users x 3,124 items, histories of 50), random ids: timing only
    rng = np.random.default_rng(0)
    ml1m = Split(rng.integers(1, 3125, 6040 * 50), np.arange(6040) * 50, np.full(6040, 50),
                 rng.integers(1, 3125, 6040))
    big = GCSAN(3125, **{k: cfg[k] for k in MODEL_DEFAULTS}).to(a.device)
    t0 = time.perf_counter()
    evaluate(big, ml1m, cfg["eval_batch_size"], a.device)
    t_ml1m = time.perf_counter() - t0
    n_batches = -(-len(data.train) // cfg["batch_size"])
    res = {"preprocess_from_raw_s": t_raw, "preprocess_from_cache_s": t_cache,
           "train_examples_per_s": tr["examples_per_second"],
           "outside_forward_backward_share": tr["outside_forward_backward_share"],
           "estimated_epoch_s": tr["train_seconds"] / a.batches * n_batches,
           "full_sort_eval_s": t_eval, "test_examples": len(data.test), "items": data.n_items - 1,
           "full_sort_eval_ml1m_scale_s": t_ml1m}
    print(f"[bench] {a.dataset}/{a.protocol} on {hardware(a.device)} (torch threads {torch.get_num_threads()})")
    for k, v in res.items():
        print(f"  {k:32s} {v:.4g}" if isinstance(v, float) else f"  {k:32s} {v}")
    return res


if __name__ == "__main__":
    raise SystemExit(run_cli(lambda argv: main(argv) and 0))
