"""A tiny synthetic multi-behaviour dataset in exactly the authors' pickle format (generated)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

TINY_USERS, TINY_ITEMS = 60, 130
TINY_BEHAVIOURS = ("pv", "cart", "buy")


def write_tiny_dataset(folder: Path, seed: int = 0) -> Path:
    """pv ⊃ cart ⊃ buy as pickled int32 CSR matrices (values = a timestamp, not 1, to test the
    binarisation), ``tst_int`` a list with a held-out item for every other user, None elsewhere."""
    rng = np.random.default_rng(seed)
    pv = rng.random((TINY_USERS, TINY_ITEMS)) < 0.15
    pv[:, :5] |= rng.random((TINY_USERS, 5)) < 0.6  # a few popular items
    cart = pv & (rng.random(pv.shape) < 0.5)
    buy = cart & (rng.random(pv.shape) < 0.5)
    buy[3] = cart[3] = False  # a user without any purchase or cart
    tst = [None] * TINY_USERS
    for u in range(0, TINY_USERS, 2):
        choices = np.flatnonzero(~buy[u])
        tst[u] = int(rng.choice(choices))
    folder.mkdir(parents=True, exist_ok=True)
    for name, m in zip(TINY_BEHAVIOURS, (pv, cart, buy)):
        mat = sp.csr_matrix(m.astype(np.int32) * 1511539200)
        with open(folder / f"trn_{name}", "wb") as f:
            pickle.dump(mat, f, protocol=3)
    with open(folder / "tst_int", "wb") as f:
        pickle.dump(tst, f, protocol=3)
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "tiny")
