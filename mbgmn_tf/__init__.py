"""MB-GMN: Graph Meta Network for Multi-Behavior Recommendation (SIGIR'21), TensorFlow 1 graph mode."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = False
REPRODUCE_ARGS: list[str] = []
