"""Summarise finished runs (``<runs>/<mode>_<graph>_s<seed>/summary.json``) as the README's table.

    python -m agnn.collect                 # reads agnn/runs
    python -m agnn.collect --runs DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from collections import defaultdict
from typing import Optional

import numpy as np


def collect(runs: Path) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for f in sorted(runs.glob("*_s*/summary.json")):
        s = json.loads(f.read_text())
        groups[(s["mode"], s["graph"])].append(s)
    head = ("| setting | graph | seeds | epochs | best RMSE | best MAE | best epoch | last RMSE | last MAE "
            "| global-mean RMSE | train s/epoch | wall s/run |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]

    def ms(xs: list[float]) -> str:
        return f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"

    for (mode, graph), ss in sorted(groups.items()):
        m = [s["metrics"] for s in ss]
        lines.append("| " + " | ".join([
            mode, graph, ",".join(str(s["seed"]) for s in ss), str(ss[0]["epochs"]),
            ms([x["rmse_best"] for x in m]), ms([x["mae_best"] for x in m]),
            ",".join(str(x["best_epoch"]) for x in m),
            ms([x["rmse_last"] for x in m]), ms([x["mae_last"] for x in m]),
            f"{m[0]['global_mean_rmse']:.4f}",
            f"{np.mean([s['mean_train_seconds_per_epoch'] for s in ss]):.1f}",
            f"{np.mean([s['wall_seconds'] for s in ss]):.0f}",
        ]) + " |")
    hw = {s["hardware"] for ss in groups.values() for s in ss}
    return "\n".join(lines) + (f"\n\nhardware: {'; '.join(sorted(hw))}" if hw else "")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Mean ± std (over seeds) of finished AGNN runs as a markdown table.")
    p.add_argument("--runs", default="agnn/runs", help="folder holding <mode>_<graph>_s<seed>/summary.json")
    args = p.parse_args(argv)
    print(collect(Path(args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
