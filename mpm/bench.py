"""Speed of the MPM pipeline on the real data.

    python -m mpm.bench                        # ML-100k: preprocessing, one training epoch, evaluation
    python -m mpm.bench --steps 50             # only 50 training steps (the share is per step)

Prints: preprocessing time (cold, i.e. from the raw file, and from the cache), training examples
per second, the share of the epoch spent outside the model's forward/backward/step (sampling the
epoch's negatives, shuffling, batching), and the evaluation time of all test users x 100
candidates -- on the dataset's own test cases and, when the authors' ML-1m split is in the mirror,
on its 6,040 users x 100 candidates with an ML-1m-sized model (untrained: the time does not
depend on the weights).
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

from common.datasets import DatasetUnavailableError
from common.runs import hardware
from mpm.data import RAW_FILES, load, load_official_test
from mpm.main import DEFAULTS, build_model, evaluate, parse_args, train_epoch


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(RAW_FILES), default="ml-100k", help="raw ratings to time")
    p.add_argument("--steps", type=int, default=None, help="training steps to time (default: one full epoch)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--eval-batch-users", type=int, default=64, help="users per evaluation batch")
    p.add_argument("--no-official", action="store_true", help="skip timing evaluation on the official ML-1m split")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"hardware: {hardware()}, torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        data = load(a.dataset, cache=cache)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load(a.dataset, cache=cache)
        warm = time.perf_counter() - t0
    print(f"preprocessing {a.dataset}: {cold:.2f} s cold (raw file -> arrays), {warm:.3f} s from the cache; "
          f"{data.summary()}")

    args = parse_args(["--dataset", a.dataset, "--no-progress", "--device", "cpu"]
                      + (["--max-train-steps", str(a.steps)] if a.steps else []))
    torch.manual_seed(DEFAULTS["seed"])
    model = build_model(data, args)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    t = train_epoch(model, opt, data, data.train_positive_keys(), args, 1, np.random.default_rng(args.seed))
    print(f"training: {t['examples']} examples in {t['train_seconds']:.1f} s = {t['examples'] / t['train_seconds']:.0f} "
          f"examples/s; forward/backward/step {t['model_seconds']:.1f} s; outside it {100 * t['outside_share']:.1f}% "
          f"of the epoch (of which sampling + shuffling {t['sample_seconds']:.2f} s)")

    m = evaluate(model, data.test_users, data.test_items, data.test_history, data.test_negatives,
                 batch_users=a.eval_batch_users)
    print(f"evaluation {a.dataset}: {len(data.test_users)} users x 100 candidates in {m['eval_seconds']:.2f} s")
    if not a.no_official:
        try:
            o = load_official_test()
        except DatasetUnavailableError as e:
            print(f"official ML-1m split not available: {str(e).splitlines()[0]}")
            return 0
        big = build_model(type(data)(o.summary["users"], o.summary["items"], o.summary["history_size"],
                                     *[np.empty(0, np.int64)] * 12), args)
        m = evaluate(big, o.users, o.items, o.history, o.negatives, batch_users=a.eval_batch_users)
        print(f"evaluation official ML-1m split: {len(o.users)} users x 100 candidates in {m['eval_seconds']:.2f} s "
              f"(untrained HR@10 {m['hr@10']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
