"""MB-GMN: Graph Meta Network for Multi-Behavior Recommendation (SIGIR'21), TensorFlow 1 graph mode."""

# Set to True when main.py runs the full reproduction; `make reproduce` reads both names.
IMPLEMENTED = True
# Beibei with the authors' settings (100 epochs, test every 3, negatives redrawn at every test).
REPRODUCE_ARGS: list[str] = ["--dataset", "beibei"]
