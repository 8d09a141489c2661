"""GC-SAN: Graph Contextualized Self-Attention Network for Session-based Recommendation (IJCAI'19), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = True
# RecBole's ML-1m protocol run on ML-100k (raw ML-1m ratings.dat is not in the offline mirror);
# `python -m gcsan.main --dataset ml-1m` where it is, `--dataset diginetica --protocol srgnn` for the paper's protocol.
REPRODUCE_ARGS: list[str] = ["--dataset", "ml-100k"]
