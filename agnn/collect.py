"""Summarise finished runs (``<runs>/<mode>_<graph>_s<seed>/summary.json``) as the README's table.

    python -m agnn.collect                 # reads agnn/runs
    python -m agnn.collect --runs DIR
    python -m agnn.collect --png agnn/curves.png   # also plot validation RMSE per epoch
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

from common.runs import atomic_path


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


def curves(runs: Path) -> dict[tuple[str, str], np.ndarray]:
    """Validation RMSE per epoch of every finished run, as an array (seeds × epochs) per (mode, graph)."""
    groups: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for f in sorted(runs.glob("*_s*/summary.json")):
        s = json.loads(f.read_text())
        rows = [json.loads(line) for line in (f.parent / "metrics.jsonl").read_text().splitlines() if line]
        groups[(s["mode"], s["graph"])].append([r["rmse"] for r in sorted(rows, key=lambda r: r["epoch"])])
    out = {}
    for key, seqs in groups.items():
        n = min(len(x) for x in seqs)
        out[key] = np.array([x[:n] for x in seqs])
    return out


def plot(runs: Path, png: Path) -> None:
    """Mean validation RMSE per epoch over seeds (line) with the seeds' min-max range (band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (mode, graph), a in sorted(curves(runs).items()):
        ep = np.arange(1, a.shape[1] + 1)
        line, = ax.plot(ep, a.mean(0), label=f"{mode} / {graph} ({a.shape[0]} seeds)",
                        linestyle="-" if graph == "authors" else "--")
        ax.fill_between(ep, a.min(0), a.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation RMSE")
    ax.set_title("AGNN on ML-100k: validation RMSE per epoch (mean, min-max over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Mean ± std (over seeds) of finished AGNN runs as a markdown table.")
    p.add_argument("--runs", default="agnn/runs", help="folder holding <mode>_<graph>_s<seed>/summary.json")
    p.add_argument("--png", default=None, help="also write a plot of validation RMSE per epoch to this file")
    args = p.parse_args(argv)
    print(collect(Path(args.runs)))
    if args.png:
        plot(Path(args.runs), Path(args.png))
        print(f"plot written to {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
