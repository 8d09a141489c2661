"""Shared by the five paper folders: metrics, dataset download, run records. Nothing model-specific."""
