"""GC-SAN: Graph Contextualized Self-Attention Network for Session-based Recommendation (IJCAI'19), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = False
REPRODUCE_ARGS: list[str] = []
