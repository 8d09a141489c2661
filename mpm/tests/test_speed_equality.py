"""The fast model and training loop compute what the code of commit e73d588 computed.

``fixtures/mpm_speed_equality.npz`` was written by the code of e73d588 (before the speed-ups of
issue 15) with

    .venv/bin/python -m mpm.tests.test_speed_equality --make-fixture

(the ``make_fixture`` function below; run it again only with code known to be right). It holds:

1. **one real training batch**: a seeded MPM on ML-100k (``torch.manual_seed(3)``, then both
   embedding tables scaled by 100 so that the logits vary from example to example instead of being
   almost constant), and the first 256 examples of a seeded ``sample_epoch`` (numpy seed 5) --
   user, item, history, label; in eval mode the logits and the loss; in train mode after
   ``torch.manual_seed(11)`` (dropout masks from torch's generator) the logits, the loss, the
   gradient of every parameter (embedding tables: only the rows the batch touches; every other
   row's gradient is checked to be exactly zero) and three numbers drawn from torch's generator
   after the backward pass (the dropout masks must consume the random stream exactly as before);
   ``score`` of the first 16 test users against their 100 candidates;
2. **a short real run**: ``torch.manual_seed(3)``, the default model, Adam, two calls of
   ``mpm.main.train_epoch`` of 3 steps of 2048 examples (numpy generator seed 3, so negatives and
   shuffling as in ``mpm.main``) each followed by ``mpm.main.evaluate`` of all 943 test users:
   the losses, HR@10 and NDCG@10, the logits of the first 32 test users' 100 candidates after the
   run, and a fixed random projection of every parameter after the run.

Tolerance: max abs diff <= 1e-5 * max(1, max |reference|) per tensor (relative only for tensors
whose entries exceed 1 in magnitude: losses, logits; gradients and weights are below 1). HR@10 and
NDCG@10 must be equal within 1e-5 too (one changed rank would move them by 1e-3). The float16
weights of the golden test (test_mpm_golden.py) check the model against the authors' code; this
test checks the restructured computations (training mode with dropout, the optimizer path) against
the code before them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "mpm_speed_equality.npz"
TOL = 1e-5
BATCH = 256


def close(name: str, got, ref) -> None:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    diff = float(np.abs(got - ref).max(initial=0.0))
    assert diff <= TOL * scale, f"{name}: max abs diff {diff:.3g} > {TOL * scale:.3g}"


def _data():
    from mpm.data import load

    return load("ml-100k")


def _batch_model(data):
    from mpm.model import MPM

    torch.manual_seed(3)
    model = MPM(data.nb_users, data.nb_items)
    with torch.no_grad():
        model.user_embed.weight.mul_(100.0)
        model.item_embed.weight.mul_(100.0)
    return model


def _batch(data):
    from mpm.main import sample_epoch

    entry, item, label = sample_epoch(data.train_users, data.train_items, data.train_positive_keys(), data.nb_items,
                                      4, np.random.default_rng(5))
    e = entry[:BATCH]
    return (torch.from_numpy(data.train_users[e]), torch.from_numpy(item[:BATCH]),
            torch.from_numpy(data.train_history[e]), torch.from_numpy(label[:BATCH]))


def batch_results(data) -> dict[str, np.ndarray]:
    """Part 1 of the fixture, computed with the code on the path."""
    model = _batch_model(data)
    u, i, h, y = _batch(data)
    out: dict[str, np.ndarray] = {}
    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(u, i, h).squeeze(-1).numpy()
        out["eval_loss"] = np.float64(model.loss(u, i, h, y).item())
        users = torch.from_numpy(data.test_users[:16])
        cand = torch.from_numpy(np.c_[data.test_items[:16], data.test_negatives[:16]])
        out["eval_scores"] = model.score(users, torch.from_numpy(data.test_history[:16]), cand).numpy()
    model.train()
    torch.manual_seed(11)
    logits = model(u, i, h).squeeze(-1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    loss.backward()
    out["train_logits"] = logits.detach().numpy()
    out["train_loss"] = np.float64(loss.item())
    out["rng_after"] = torch.rand(3).numpy()
    users_touched = np.unique(u.numpy())
    items_touched = np.unique(np.r_[i.numpy(), h.numpy().ravel()])
    out["users_touched"], out["items_touched"] = users_touched, items_touched
    for name, p in model.named_parameters():
        g = p.grad.numpy()
        rows = {"user_embed.weight": users_touched, "item_embed.weight": items_touched}.get(name)
        if rows is not None:
            rest = np.ones(len(g), bool)
            rest[rows] = False
            out[f"grad_rest_nonzero/{name}"] = np.int64(np.count_nonzero(g[rest]))
            g = g[rows]
        out[f"grad/{name}"] = g.copy()
    return out


def short_run_results(data) -> dict[str, np.ndarray]:
    """Part 2 of the fixture: two epochs of 3 steps through mpm.main's loop, evaluated after each."""
    from mpm.main import build_model, evaluate, parse_args, train_epoch

    args = parse_args(["--dataset", "ml-100k", "--no-progress", "--device", "cpu", "--max-train-steps", "3"])
    torch.manual_seed(3)
    model = build_model(data, args)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    rng = np.random.default_rng(args.seed)
    exclude = data.train_positive_keys()
    out: dict[str, np.ndarray] = {}
    losses, hr, ndcg = [], [], []
    for epoch in (1, 2):
        t = train_epoch(model, opt, data, exclude, args, epoch, rng)
        m = evaluate(model, data.test_users, data.test_items, data.test_history, data.test_negatives, 10, 64, "cpu")
        losses.append(t["loss"])
        hr.append(m["hr@10"])
        ndcg.append(m["ndcg@10"])
    out["run_loss"], out["run_hr"], out["run_ndcg"] = np.array(losses), np.array(hr), np.array(ndcg)
    model.eval()
    with torch.no_grad():
        users = torch.from_numpy(data.test_users[:32])
        cand = torch.from_numpy(np.c_[data.test_items[:32], data.test_negatives[:32]])
        out["run_scores"] = model.score(users, torch.from_numpy(data.test_history[:32]), cand).numpy()
    proj = np.random.default_rng(0)
    out["run_param_proj"] = np.array([float((p.detach().double().numpy() * proj.standard_normal(p.shape)).sum())
                                      for _, p in model.named_parameters()])
    out["run_rng_after"] = torch.rand(3).numpy()
    return out


def make_fixture() -> None:
    torch.set_num_threads(1)
    data = _data()
    res = {**batch_results(data), **short_run_results(data)}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **res)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} kB, {len(res)} arrays)")


@pytest.fixture(scope="module")
def reference():
    from common.testing import need_file

    need_file("ml-100k", "u.data")
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def data(reference):
    return _data()


def test_one_batch_outputs_loss_gradients_and_random_stream(reference, data):
    got = batch_results(data)
    assert sorted(got) == sorted(k for k in reference if not k.startswith("run_"))
    for k in ("users_touched", "items_touched", "grad_rest_nonzero/user_embed.weight",
              "grad_rest_nonzero/item_embed.weight"):
        np.testing.assert_array_equal(got[k], reference[k], err_msg=k)
    for k in sorted(got):
        if k not in ("users_touched", "items_touched") and not k.startswith("grad_rest_nonzero/"):
            close(k, got[k], reference[k])


def test_short_seeded_run_gives_the_same_losses_metrics_and_weights(reference, data):
    got = short_run_results(data)
    for k in ("run_loss", "run_hr", "run_ndcg", "run_scores", "run_rng_after"):
        close(k, got[k], reference[k])
    # each parameter's projection, relative to the projection's own size (sums of up to 54k terms)
    ref, new = reference["run_param_proj"], got["run_param_proj"]
    assert np.all(np.abs(new - ref) <= TOL * np.maximum(1.0, np.abs(ref))), np.abs(new - ref).max()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    p = argparse.ArgumentParser(description="write fixtures/mpm_speed_equality.npz with the code on the path")
    p.add_argument("--make-fixture", action="store_true", required=True)
    p.parse_args()
    make_fixture()
