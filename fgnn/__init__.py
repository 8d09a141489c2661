"""FGNN: Rethinking the Item Order in Session-based Recommendation with Graph Neural Networks (CIKM'19), PyTorch Geometric."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = False
REPRODUCE_ARGS: list[str] = []
