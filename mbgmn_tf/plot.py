"""Learning curve of a run folder: HR@10 / NDCG@10 per test epoch, with popularity on the same lists.

    python -m mbgmn_tf.plot mbgmn_tf/runs/beibei-authors --png mbgmn_tf/beibei_curve.png
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(run: str | Path, png: str | Path) -> list[dict]:
    """Write the curve of ``run``/metrics.jsonl to ``png``; returns the tested epochs."""
    rows = [json.loads(l) for l in (Path(run) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    tested = [r for r in rows if "hr@10" in r]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ep = [r["epoch"] for r in tested]
    for key, colour in (("hr@10", "tab:blue"), ("ndcg@10", "tab:orange")):
        ax.plot(ep, [r[key] for r in tested], "o-", color=colour, label=f"MB-GMN {key.upper()}")
        ax.plot(ep, [r[f"pop_{key}"] for r in tested], "x--", color=colour, alpha=0.6, label=f"popularity {key.upper()}")
    ax.set_xlabel("epoch (40 steps of 256 users)")
    ax.set_ylabel("metric (1 + 99 candidates)")
    ax.set_title(f"MB-GMN on Beibei, {Path(run).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return tested


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder holding metrics.jsonl")
    p.add_argument("--png", default=None, help="output PNG (default <run>/curve.png)")
    args = p.parse_args(argv)
    plot_run(args.run, args.png or Path(args.run) / "curve.png")


if __name__ == "__main__":
    main()
