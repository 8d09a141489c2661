"""GC-SAN: Graph Contextualized Self-Attention Network for Session-based Recommendation (IJCAI'19), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads it.
IMPLEMENTED = True

# What `make reproduce PAPER=gcsan` runs: every dataset/protocol the offline mirror has data for.
# ML-1m and Diginetica under the RecBole protocol (the published rows) need raw files the mirror
# lacks (`python -m gcsan.main --dataset ml-1m` where ml-1m/ratings.dat is at hand).
# Schedules run to early stopping (patience 10); `epochs` is the number of epochs the README's runs
# needed (seed 2020), an upper bound passed as --epochs (= --max-epochs):
#   ML-100k: early-stopped after epoch 35 (best valid NDCG@10 at 24);
#   Diginetica/srgnn: early-stopped after epoch 24 (best test MRR@20 at 13);
#   Yoochoose 1/64/srgnn: best test MRR@20 at 26, no better epoch up to 30 (where the run was cut),
#   so it stops after epoch 37 at the latest.
# epoch_seconds (training + evaluation, 2-core CPU) from the README:
#   ML-100k: 44.0 s per training epoch, measured on both cores (torch's default 2 threads) with the
#   code of commit c47789d (dropout masks drawn ahead, as integers), `python -m common.bench compare
#   --rounds 3 e73d588 -- ... gcsan/compare_steps.py 2 2`, 2026-11-30 18:08 UTC, idle machine: 2.31 s per
#   batch of 4096 x 19 batches (README Speed, Targets), + ~1 s for valid and test;
#   Diginetica/srgnn: 279 ex/s x 719,470 examples (~43 min, README Speed, RecBole batching) + ~110 s
#   for the full sort of the 60,858 test examples; measured with the cores shared, so an over-estimate;
#   Yoochoose 1/64/srgnn: not measured on CPU; Diginetica's cost scaled by examples (369,859) and
#   softmax size (37,483 items): ~1,150 s training + ~90 s evaluation.
# QUICK (make reproduce QUICK=1, a smoke run): one training batch of 1024 and, for the SR-GNN splits,
# evaluation on a fixed subset of 1,000 test examples. quick_seconds: each job's wall time (python
# start-up and data loading included) in `python -m common.reproduce gcsan --quick 1`, measured
# 2026-11-30 on the 2 cores shared with other jobs (load average ~10, OMP_NUM_THREADS=1): 190 s for
# all three (37.6 s user + 8.6 s system CPU time, so alone well under that).

JOBS = [
    dict(name="ml-100k-recbole", dataset="ml-100k", setting="recbole", args=("--dataset", "ml-100k", "--no-progress"),
         epochs=35, epoch_seconds=45.0, setup_seconds=10.0,
         quick_args=("--epochs", "1", "--max-train-batches", "1", "--batch-size", "1024"), quick_seconds=60.0,
         selection="best validation epoch", metrics=("recall@10", "mrr@10", "ndcg@10"),
         curve=("loss", "valid/ndcg@10", "test/recall@10", "test/ndcg@10"), seeds=(2020,)),
    dict(name="diginetica-srgnn", dataset="diginetica", setting="srgnn",
         args=("--dataset", "diginetica", "--protocol", "srgnn", "--no-progress"),
         epochs=24, epoch_seconds=2690.0, setup_seconds=15.0,
         quick_args=("--epochs", "1", "--max-train-batches", "1", "--batch-size", "1024", "--max-eval-examples", "1000"), quick_seconds=62.0,
         selection="best test epoch (authors' rule)", metrics=("recall@20", "mrr@20"),
         curve=("loss", "test/recall@20", "test/mrr@20"), seeds=(2020,)),
    dict(name="yoochoose1_64-srgnn", dataset="yoochoose1_64", setting="srgnn",
         args=("--dataset", "yoochoose1_64", "--protocol", "srgnn", "--no-progress"),
         epochs=37, epoch_seconds=1240.0, setup_seconds=15.0,
         quick_args=("--epochs", "1", "--max-train-batches", "1", "--batch-size", "1024", "--max-eval-examples", "1000"), quick_seconds=68.0,
         selection="best test epoch (authors' rule)", metrics=("recall@20", "mrr@20"),
         curve=("loss", "test/recall@20", "test/mrr@20"), seeds=(2020,)),
]
