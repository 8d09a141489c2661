"""MPM: eliminating effects of unexpected behaviors (arXiv 2112.11023), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = False
REPRODUCE_ARGS: list[str] = []
