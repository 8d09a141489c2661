"""MPM: eliminating effects of unexpected behaviors (arXiv 2112.11023), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = True
# Raw ML-1m cannot be had on the offline machines: the main job is the 20-epoch ML-100k run
# (`--dataset ml-1m`, the paper's dataset, where ratings.dat can be downloaded).
REPRODUCE_ARGS: list[str] = ["--dataset", "ml-100k"]
