"""FGNN: Rethinking the Item Order in Session-based Recommendation with Graph Neural Networks (CIKM'19), PyTorch Geometric."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads it.
IMPLEMENTED = True

# What `make reproduce PAPER=fgnn` runs: every dataset the offline mirror has data for (SR-GNN's sample
# from its raw log; Diginetica and Yoochoose 1/64 from SR-GNN's prepared splits), the authors' schedule
# (10 epochs, StepLR x0.1 every 3). The setting is the model: `fgnn` (the paper's) everywhere, and the
# notebook's `gated` model on sample, the one with a reference run (fgnn/reference.json).
# Headline: the last epoch's Recall@20 / MRR@20 (x100); summary.json also keeps the best epoch.
# epoch_seconds (training + evaluation, 2-core CPU, idle) from fgnn/README.md:
#   sample: "about 0.1 s per epoch (~10,000 sessions/s) when the cores are free", evaluation of 99
#     sessions negligible; setup (python, torch and PyG start-up, cached graphs) ~10 s;
#   diginetica: `python -m fgnn.bench --dataset diginetica --batches 20 --eval-batches 20 --threads 1 --skip graphs
#     pyg readouts` after the second pass of issue 15 (softmax and gradients fused into the blocked score loop;
#     09:47 UTC 2026-11-30, 1 thread as the jobs run, one other job on the other core): 90.9 ms per training step
#     x 7,195 steps = 654 s, plus 69 ms per test batch x 609 = 42 s -> ~700 s (about 12 min; the old code
#     e73d588 measured 171 ms per step on an idle machine, 1.5-1.9x slower depending on the load);
#     graphs built once in ~5 s;
#   yoochoose1_64: not measured; Diginetica's step time applied to its 3,699 steps (336 s) plus ~35 s
#     evaluation (55,898 sessions x 37,483 items) -> ~370 s.
# QUICK (make reproduce QUICK=1): sample runs 1 epoch of 3 batches per seed; Diginetica and Yoochoose
# 1 epoch of 20 batches and evaluation on a fixed random 2,000 test sessions (--max-eval-examples).
# quick_seconds, measured here 2026-11-30 (`python -m common.reproduce fgnn --quick 1`): the machine was
# shared (load average 8-10 on 2 cores), so the wall times were 5x what a process gets alone: 553 s for
# the 12 jobs (sample 30-45 s each, Diginetica 84 s, Yoochoose 75 s), almost all of it python, torch and
# PyG start-up waiting for a core. The CPU time of the same jobs (`/usr/bin/time`, user + sys) is what they
# take alone: sample 9.3 s, Diginetica ~15.5 s (20 batches) -> 10 s per sample seed, 18 s and 16 s, i.e.
# ~134 s for all fgnn QUICK jobs on an idle 2-core machine.
_COMMON = ("--threads", "1", "--no-progress")
_METRICS = dict(metrics=("recall@20", "mrr@20"), curve=("train_loss", "recall@20", "mrr@20"),
                selection="last epoch")

JOBS = [
    dict(name="sample-fgnn", dataset="sample", setting="fgnn",
         args=("--dataset", "sample", "--model", "fgnn", *_COMMON),
         epochs=10, epoch_seconds=0.2, setup_seconds=10.0, seeds=(0, 1, 2, 3, 4),
         quick_args=("--epochs", "1", "--max-train-batches", "3"), quick_seconds=10.0, **_METRICS),
    dict(name="sample-gated", dataset="sample", setting="gated",
         args=("--dataset", "sample", "--model", "gated", *_COMMON),
         epochs=10, epoch_seconds=0.2, setup_seconds=10.0, seeds=(0, 1, 2, 3, 4),
         quick_args=("--epochs", "1", "--max-train-batches", "3"), quick_seconds=10.0, **_METRICS),
    dict(name="diginetica-fgnn", dataset="diginetica", setting="fgnn",
         args=("--dataset", "diginetica", "--model", "fgnn", *_COMMON),
         epochs=10, epoch_seconds=700.0, setup_seconds=15.0, seeds=(0,),
         quick_args=("--epochs", "1", "--max-train-batches", "20", "--max-eval-examples", "2000"),
         quick_seconds=18.0, **_METRICS),
    dict(name="yoochoose1_64-fgnn", dataset="yoochoose1_64", setting="fgnn",
         args=("--dataset", "yoochoose1_64", "--model", "fgnn", *_COMMON),
         epochs=10, epoch_seconds=370.0, setup_seconds=15.0, seeds=(0,),
         quick_args=("--epochs", "1", "--max-train-batches", "20", "--max-eval-examples", "2000"),
         quick_seconds=16.0, **_METRICS),
]
