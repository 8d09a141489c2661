"""AGNN: Attribute Graph Neural Networks for Strict Cold Start Recommendation (TKDE'20), PyTorch."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = True
# ICS on the built graph (the authors' ICS file is not in the mirror), UCS and warm on the authors'.
REPRODUCE_ARGS: list[str] = ["--mode", "all", "--out", "agnn/runs/reproduce"]
