"""AGNN: Attribute Graph Neural Networks for Strict Cold Start Recommendation (TKDE'20), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = False
REPRODUCE_ARGS: list[str] = []
