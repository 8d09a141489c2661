"""The fast training path computes what the code before the speed-up (commit e73d588) computed.

The fixture ``fixtures/speed_equality.npz`` was made with that code, by this module::

    .venv/bin/python -m fgnn.tests.test_speed_equality --make-fixture

It holds, for both models (``fgnn``, ``gated``) with seeded weights (``torch.manual_seed(0)``, then
``build_model`` at Diginetica's 43,097 items; the weights are regenerated here from the seed, not
stored) on one real batch (the first 100 examples of Diginetica's training split shuffled with
seed 0, stored whole):

* the evaluation scores (``full_sort``) at the target columns and 256 fixed random columns, and a
  fixed random projection of the whole [100, 43097] score matrix onto 8 directions of the items;
* the training loss (``model.loss``) and the gradients: every gradient as 512 fixed entries plus
  8 fixed random projections of the flattened gradient; for the item embedding the rows of the
  batch's targets and of its first 128 distinct input items, plus an 8 x 100 projection of the
  whole [43097, 100] gradient along the items (a wrong row anywhere moves it);
* the same views of every parameter after one Adam step (lr 1e-3, weight decay 1e-5, fused).

and the last epoch's train loss, test loss, Recall@20 and MRR@20 of short seeded real runs of
``fgnn.main`` (``RUNS``: Diginetica 5 training batches evaluated on a fixed 500 test examples;
SR-GNN's sample, 2 epochs of each model).

Tolerance, per stored array with largest magnitude ``scale = max|old|``: max abs diff
``max|new - old| <= 1e-5 * max(1, scale)`` (absolute 1e-5; relative where magnitudes are large: the loss
~10.7, projections summing tens of thousands of terms), and also ``<= 1e-4 * scale``, so that the tiny
gradients are checked too (the item embedding's are ~1e-6, an absolute 1e-5 would let any bug through
there; 1e-4 rather than 1e-5 because float rounding alone moves the nearly cancelling gradient of
``wgat2.att`` by 2e-5 of its size). An array that is exactly 0 (Recall@20 after 5 Diginetica steps)
must stay exactly 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from fgnn.model import build_model

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "speed_equality.npz"
BATCH_KEYS = ("x", "edge_index", "edge_attr", "out_degree_inv", "in_degree_inv", "sequence", "last_node_index",
              "batch", "ptr", "y", "sequence_len")
# Short seeded real runs (1 thread): Diginetica, 5 training batches (its Recall/MRR are still 0 there: the
# losses carry the check) and SR-GNN's sample, 2 whole epochs of both models (non-zero Recall/MRR).
RUNS = {
    "diginetica-fgnn": ["--dataset", "diginetica", "--model", "fgnn", "--epochs", "1", "--max-train-batches", "5",
                        "--max-eval-examples", "500"],
    "sample-fgnn": ["--dataset", "sample", "--model", "fgnn", "--epochs", "2"],
    "sample-gated": ["--dataset", "sample", "--model", "gated", "--epochs", "2"],
}
RUN_FLAGS = ["--threads", "1", "--seed", "0", "--no-progress"]
RUN_KEYS = ("train_loss", "recall@20", "mrr@20", "test_loss")
TOL = 1e-5  # absolute (relative above magnitude 1)
REL_TOL = 1e-4  # relative to the array's largest magnitude
N_PROJ = 8


def _batch(f) -> Batch:
    b = Batch(**{k: torch.from_numpy(f[f"batch/{k}"]) for k in BATCH_KEYS})
    b._num_graphs = len(f["batch/y"])
    return b


def _views(t: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """512 fixed entries and 8 fixed random projections of the flattened tensor."""
    flat = t.detach().reshape(-1).double()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, flat.numel(), (min(512, flat.numel()),), generator=g)
    proj = torch.randn(N_PROJ, flat.numel(), generator=g, dtype=torch.float64) @ flat
    return {"entries": flat[idx].numpy(), "proj": proj.numpy()}


def _item_proj(t: torch.Tensor, dim: int, seed: int) -> np.ndarray:
    """Projection of a [.., n_items, ..] tensor along the items (dim) onto 8 fixed random directions."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(N_PROJ, t.size(dim), generator=g, dtype=torch.float64)
    return torch.tensordot(p, t.detach().double(), dims=([1], [dim])).numpy()


def compute(name: str, batch: Batch, n_items: int) -> dict[str, np.ndarray]:
    """Everything the fixture stores for one model, computed with the code on the path."""
    torch.manual_seed(0)
    model = build_model(name, n_items)
    out: dict[str, np.ndarray] = {}
    model.eval()
    with torch.inference_mode():
        scores = model.full_sort(batch)
    g = torch.Generator().manual_seed(1)
    cols = torch.cat([batch.y - 1, torch.randint(0, n_items, (256,), generator=g)])
    out["scores_cols"] = scores[:, cols].numpy()
    out["scores_proj"] = _item_proj(scores, 1, 2)
    model.train()
    loss = model.loss(batch)
    loss.backward()
    out["loss"] = np.array(loss.item())
    rows = torch.cat([batch.y - 1, torch.unique(batch.x.view(-1) - 1)[:128]])
    for i, (pname, p) in enumerate(model.named_parameters()):
        for k, v in _views(p.grad, 100 + i).items():
            out[f"grad/{pname}/{k}"] = v
        if pname == "embedding.weight":
            out[f"grad/{pname}/rows"] = p.grad[rows].numpy()
            out[f"grad/{pname}/item_proj"] = _item_proj(p.grad, 0, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
    opt.step()
    for i, (pname, p) in enumerate(model.named_parameters()):
        for k, v in _views(p, 200 + i).items():
            out[f"step/{pname}/{k}"] = v
        if pname == "embedding.weight":
            out[f"step/{pname}/item_proj"] = _item_proj(p, 0, 4)
    return {f"{name}/{k}": v for k, v in out.items()}


def short_run(name: str, out_dir: Path) -> dict[str, float]:
    """The last epoch's losses and metrics of the short run ``name``."""
    from fgnn.main import run

    res = run([*RUNS[name], *RUN_FLAGS, "--out", str(out_dir)])
    return {k: float(res["history"][-1][k]) for k in RUN_KEYS}


def _assert_close(new, old, what: str) -> None:
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    assert new.shape == old.shape, what
    scale = np.abs(old).max()
    if scale == 0:  # e.g. Recall@20 0 after 5 Diginetica steps: must stay exactly 0
        assert not new.any(), f"{what}: {new} where the old code gave 0"
        return
    diff = np.abs(new - old).max()
    assert diff <= TOL * max(1.0, scale), f"{what}: max abs diff {diff:.3g} > {TOL:g} x max(1, {scale:.3g})"
    assert diff <= REL_TOL * scale, f"{what}: max abs diff {diff:.3g} > {REL_TOL:g} x {scale:.3g}"


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(FIXTURE))


@pytest.mark.parametrize("name", ["fgnn", "gated"])
def test_scores_loss_gradients_and_adam_step_equal_the_old_code(fixture, name):
    new = compute(name, _batch(fixture), int(fixture["n_items"]))
    stored = {k: v for k, v in fixture.items() if k.startswith(f"{name}/")}
    assert set(new) == set(stored)
    for key in sorted(stored):
        _assert_close(new[key], stored[key], key)


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_short_real_run_gives_the_old_metrics(fixture, tmp_path, name):
    from common.testing import need_file

    if name.startswith("diginetica"):
        need_file("diginetica-srgnn", "train.txt")
    else:
        need_file("srgnn-sample", "sample_train-item-views.csv")
    new = short_run(name, tmp_path / "run")
    for k in RUN_KEYS:
        _assert_close(new[k], fixture[f"run/{name}/{k}"], f"run/{name}/{k}")


def make_fixture() -> None:
    import tempfile

    from fgnn.data import SessionBatches, load_dataset

    torch.set_num_threads(1)
    train, _, info = load_dataset("diginetica")
    batch = next(iter(SessionBatches(train, 100, shuffle=True, generator=torch.Generator().manual_seed(0))))
    out: dict[str, np.ndarray] = {"n_items": np.array(info["n_items"])}
    out.update({f"batch/{k}": batch[k].numpy() for k in BATCH_KEYS})
    for name in ("fgnn", "gated"):
        out.update(compute(name, batch, info["n_items"]))
    for name in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            out.update({f"run/{name}/{k}": np.array(v) for k, v in short_run(name, Path(tmp) / "run").items()})
    out = {k: (v.astype(np.float32) if v.dtype == np.float64 and v.ndim else v) for k, v in out.items()}
    np.savez_compressed(FIXTURE, **out)
    print(f"written {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="regenerate fixtures/speed_equality.npz with the code on the path")
    p.add_argument("--make-fixture", action="store_true")
    if not p.parse_args().make_fixture:
        sys.exit("nothing to do: pass --make-fixture (overwrites the fixture)")
    make_fixture()
