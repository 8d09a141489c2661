"""AGNN: Attribute Graph Neural Networks for Strict Cold Start Recommendation (TKDE'20), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads it.
IMPLEMENTED = True

# What `make reproduce PAPER=agnn` runs: one job per setting the offline mirror supports, one
# process each (`python -m agnn.main --mode M --graph G ...`): ICS on the built graph (the authors'
# ICS neighbour file is not in the mirror), UCS and warm on the authors' graph and on the built
# graph. 20 epochs (the authors' default), seeds 0-2, one torch thread (README "Speed": two threads
# slow down badly on the shared 2-core machine).
# Selection: the epoch with the lowest validation RMSE (the authors' notebook tracks the lowest
# RMSE on the file it reports on), RMSE and MAE of that epoch; the last epoch is in summary.json.
# epoch_seconds: README "Speed": after the third round of issue 15 the speed-up measured 2.00-2.05x
# per training epoch and 1.47-1.77x on evaluation (`python -m common.bench compare --rounds 3 e73d588 --
# $PWD/.venv/bin/python $PWD/agnn/bench.py --threads 1`, two runs 2026-11-30 12:44-12:59 UTC, idle
# machine); the lower ends applied to the quiet-machine cost of the code before issue 15
# (13.44 s training + 0.75 s evaluation per epoch): 13.44 / 2.00 + 0.75 / 1.47 = 6.7 + 0.5 = 7.2 s
# for every setting. The fourth round (the batches' neighbour sampling in a child process, on by
# default at --threads 1: README "Speed") measured 2.18-2.23x per training epoch (two runs of the same
# command with --rounds 4, 2026-11-30 22:40-22:47 UTC): 13.44 / 2.18 + 0.5 = 6.2 + 0.5 = 6.7 s.
# setup_seconds: python start-up, data loading and, for the
# built graph, its construction (README one-epoch ICS run: 20.7 s wall - 12.8 s epoch = 8 s).
# QUICK (make reproduce QUICK=1, 5 jobs x 3 seeds = 15 runs): 1 epoch over the first 256 shuffled
# training rows (2 batches), evaluated on the first 2,048 validation rows; most of a QUICK run is
# python/torch start-up, data loading and (built graph) graph construction. quick_seconds: measured
# 2026-11-30 with `/usr/bin/time -v python -m common.reproduce agnn --quick 1 --runs /tmp/agnn-runs`:
# 125.6 s user + 13.1 s system CPU for all 15 runs (children included), 9.3 s per run; single-threaded
# runs one after another, so that is their wall time alone on the machine (all 15: ~139 s <= 150 s).
# The wall time here was 17:40 because ~10 processes shared the 2 cores.
_COMMON = dict(
    dataset="agnn-ml100k", epochs=20, epoch_seconds=6.7, seeds=(0, 1, 2),
    quick_args=("--epochs", "1", "--max-train-rows", "256", "--max-eval-rows", "2048"),
    selection="best test epoch by RMSE (authors' rule)", metrics=("rmse", "mae"),
    curve=("rmse", "mae", "train_rmse"), lower_is_better=("rmse", "mae"),
)

JOBS = [
    dict(name=f"{mode}-{graph}", setting=f"{mode}-{graph}",
         args=("--mode", mode, "--graph", graph, "--threads", "1", "--no-progress"),
         setup_seconds=8.0 if graph == "built" else 5.0, quick_seconds=9.3,
         **_COMMON)
    for mode, graph in (("ics", "built"), ("ucs", "authors"), ("ucs", "built"), ("warm", "authors"),
                        ("warm", "built"))
]
