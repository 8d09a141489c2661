"""FGNN: Rethinking the Item Order in Session-based Recommendation with Graph Neural Networks (CIKM'19), PyTorch Geometric."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = True
# The paper's model on Diginetica (SR-GNN's splits), 10 epochs; resumable. See README for run times.
REPRODUCE_ARGS: list[str] = ["--dataset", "diginetica", "--model", "fgnn", "--resume"]
