"""Evaluate a finished MPM run's checkpoint both ways: 1 + 99 sampled candidates and full ranking.

    python -m mpm.evaluate --run runs/mpm/ml-100k/s0 --out runs/mpm/ml-100k-eval/s0

Rebuilds the run's data from its ``config.json`` (same split, same test negatives), loads its
``checkpoint.pt`` (the last finished epoch) and writes a run record whose headline holds HR@10 and
NDCG@10 against the 99 sampled negatives and against all items the user has not rated (the
user's other ratings masked, ties against the target), so that the order of MPM and the baselines
(``mpm.baselines``) can be read both ways (Krichene and Rendle, KDD 2020). Trains nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from typing import Optional

from common.cli import DataError, add_run_flags, positive_int, run_cli
from common.runs import RunRecord, prepare_out


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="a finished mpm.main run folder (config.json, checkpoint.pt)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--batch-users", type=positive_int, default=4, help="users scored against all items at a time")
    add_run_flags(p, out_help="record folder (default: <run>-eval)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(Path(args.run).resolve()) + "-eval"
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    run = Path(args.run)
    if not (run / "config.json").is_file() or not (run / "checkpoint.pt").is_file():
        raise DataError(f"{run} is not a finished mpm.main run folder: it needs config.json and checkpoint.pt. "
                        f"Point --run at the --out of an mpm.main run.")
    out = prepare_out(args.out, args.resume, args.overwrite)
    import torch

    from mpm.main import build_model, evaluate, evaluate_full, prepare_data

    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.loads((run / "config.json").read_text())
    run_args = argparse.Namespace(**config)
    data = prepare_data(run_args)
    model = build_model(data, run_args)
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    k = run_args.topk
    sampled = evaluate(model, data.test_users, data.test_items, data.test_history, data.test_negatives, k, 64, "cpu")
    full = evaluate_full(model, data.test_users, data.test_items, data.test_history, data.rated, data.nb_items, k,
                         args.batch_users, "cpu")
    headline = {f"hr@{k}": sampled[f"hr@{k}"], f"ndcg@{k}": sampled[f"ndcg@{k}"],
                f"full_hr@{k}": full[f"full_hr@{k}"], f"full_ndcg@{k}": full[f"full_ndcg@{k}"]}
    with RunRecord(out, paper="mpm", dataset=run_args.dataset, config={**vars(args), "run_config": config},
                   resume=args.resume, overwrite=args.overwrite, setting=config.get("setting", ""),
                   tensorboard=False) as rec:
        rec.log_epoch(state["epoch"], {**sampled, **full})
        rec.finish({"checkpoint_epoch": state["epoch"], **headline}, epochs=state["epoch"], seed=run_args.seed,
                   headline=headline, selection=f"checkpoint of the last epoch ({state['epoch']})",
                   extra={"evaluated_run": str(run)})
    print(f"MPM {run}: epoch {state['epoch']}: sampled HR@{k} {headline[f'hr@{k}']:.4f} NDCG@{k} "
          f"{headline[f'ndcg@{k}']:.4f}; full HR@{k} {headline[f'full_hr@{k}']:.4f} NDCG@{k} "
          f"{headline[f'full_ndcg@{k}']:.4f} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
