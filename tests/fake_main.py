"""A tiny stand-in for a paper's main.py (used by tests/test_reproduce.py): resumable, a few fast epochs."""

import argparse
import time
from pathlib import Path

from common.cli import add_run_flags, positive_int, run_cli
from common.runs import RunRecord


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sleep", type=float, default=0.4)
    add_run_flags(p)
    args = p.parse_args(argv)
    with RunRecord(args.out, paper="fake", dataset="d", config=vars(args), resume=args.resume,
                   overwrite=args.overwrite, tensorboard=False) as rec:
        start = rec.next_epoch
        with open(Path(args.out).parent / "starts.txt", "a") as f:
            f.write(f"{start}\n")
        for epoch in range(start, args.epochs + 1):
            time.sleep(args.sleep)
            rec.log_epoch(epoch, {"hr@10": 0.1 * epoch})
        last = rec.history[-1]
        rec.finish({"last": {"hr@10": last["hr@10"]}}, epochs=args.epochs, seed=args.seed,
                   headline={"hr@10": last["hr@10"]}, selection="last epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
