"""Helpers for tests that need real data (shared by the paper folders' tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.datasets import DatasetUnavailableError, fetch_file


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_file(dataset: str, path: str) -> Path:
    """Path of a real dataset file; skips the test (naming the file) if it cannot be had.

    In CI the mirror must be configured: a missing ``REPRO_DATA_MIRROR`` there is an error, not a
    skip, so that real-data tests cannot silently vanish.
    """
    if in_ci() and not os.environ.get("REPRO_DATA_MIRROR"):
        pytest.fail("CI=true but REPRO_DATA_MIRROR is not set: real-data tests would be skipped")
    try:
        return fetch_file(dataset, path)
    except DatasetUnavailableError as e:
        pytest.skip(f"{dataset}/{path} not available here: {str(e).splitlines()[0]}")
