"""The fast code path computes what the code before the speed-up (commit e73d588) computed.

``fixtures/speed_equality.npz`` was made with the model, batch builder and training loop of commit
e73d588 (before any speed change), by running this module as a script:

    REPRO_DATA_MIRROR=$PWD/../shared/data .venv/bin/python -m agnn.tests.test_speed_equality --make-fixture

What it holds (and what the tests below recompute with the current code):

* ``batch/*``: one real UCS training batch (authors' graph): the first 128 rows of the training file
  shuffled by ``np.random.default_rng(0)``, neighbours sampled by ``BatchBuilder`` with that rng.
* Weights: not stored. Every parameter, in sorted name order, is filled from
  ``torch.Generator().manual_seed(0)`` with N(0, 0.1) (:func:`fill_weights`), so no weight is zero
  and the fill does not depend on the model's own initialisation code.
* For float64 and float32 (``f64/``, ``f32/``): ``AGNN.loss`` in training mode after
  ``torch.manual_seed(11)`` (the eVAE noise comes from torch's global generator, so the new code
  must also draw it in the same order and shapes): prediction, ``sse``, ``recon``, ``kl``, the total
  loss, and the gradient of the loss of every parameter. Dense layers' gradients are stored whole;
  embedding tables' gradients ``G [rows, D]`` as the fixed random projection ``G @ R`` with
  ``R [D, 3]`` from ``np.random.default_rng(5)`` (any wrong entry of any row changes it); the
  bias tables whole. Then the predictions of ``AGNN.predict`` in the modes ``ucs``, ``ics`` and
  ``warm`` after ``torch.manual_seed(12 + k)``.
* ``run/*``: the metrics of a short real run, ``python -m agnn.main --mode ucs --epochs 2
  --max-train-rows 640 --max-eval-rows 1024 --seed 0 --threads 1`` (5 training steps and one
  evaluation per epoch): val RMSE and MAE, train RMSE, mean recon and KL per epoch.

Tolerances: max abs diff <= 1e-5 in float64. In float32, max abs diff <= 1e-5 * max(1, max |reference|)
per tensor (relative where magnitudes are large: the genre/country padding rows collect the
gradient of thousands of slots, summed in a different order by the fused code). The short run:
each metric within 1e-5 * max(1, |reference|).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agnn.data import Batch

FIXTURE = Path(__file__).parent / "fixtures" / "speed_equality.npz"
BATCH_FIELDS = ("user", "item", "rating", "user_attr", "user_nbr", "user_nbr_attr", "item_attr", "item_nbr",
                "item_nbr_attr")
EMBED_TABLES = ("user_embed.weight", "item_embed.weight", "attr_embed.")
EVAL_MODES = ("ucs", "ics", "warm")
RUN_ARGS = ["--mode", "ucs", "--epochs", "2", "--max-train-rows", "640", "--max-eval-rows", "1024", "--seed", "0",
            "--threads", "1", "--no-progress"]
RUN_KEYS = ("rmse", "mae", "train_rmse", "recon", "kl")
TOL = 1e-5


def fill_weights(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def projection(dim: int) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((dim, 3))


def is_table(name: str) -> bool:
    return name.startswith(EMBED_TABLES)


def make_model(vocab: dict, n_users: int, n_items: int, dtype: torch.dtype):
    from agnn.model import AGNN, AGNNConfig

    model = AGNN(AGNNConfig(n_users, n_items, vocab)).to(dtype)
    fill_weights(model)
    return model


def compute(model, b: Batch, dtype: torch.dtype) -> dict[str, np.ndarray]:
    """Everything the fixture stores for one dtype."""
    out: dict[str, np.ndarray] = {}
    b = Batch(**{k: (v.to(dtype) if k == "rating" else v) for k, v in b.__dict__.items()})
    model.zero_grad()
    torch.manual_seed(11)
    model.train()
    loss, _ = model.loss(b)
    pred, recon, kl = None, None, None
    loss.backward()
    # The prediction and the terms again, with the same noise (forward only).
    torch.manual_seed(11)
    with torch.no_grad():
        pred, recon, kl = model(b, "train")
    out["pred"] = pred.numpy()
    out["sse"] = np.array(torch.nn.functional.mse_loss(pred, b.rating, reduction="sum").item())
    out["recon"], out["kl"], out["loss"] = np.array(recon.item()), np.array(kl.item()), np.array(loss.item())
    for name, p in model.named_parameters():
        if p.grad is None or not p.grad.any():
            continue  # no gradient (dense_user_self_siinter): recorded by absence
        g = p.grad.double().numpy()
        if is_table(name) and g.shape[1] > 1:
            g = g @ projection(g.shape[1])
        out[f"grad/{name}"] = g
    model.eval()
    for k, mode in enumerate(EVAL_MODES):
        torch.manual_seed(12 + k)
        out[f"predict/{mode}"] = model.predict(b, mode).numpy()
    return out


def real_batch():
    from agnn.data import BatchBuilder, load

    data = load("ucs", "authors")
    rng = np.random.default_rng(0)
    rows = data.train[rng.permutation(len(data.train))][:128]
    return data, BatchBuilder(data, 10, 10).build(rows, rng)


def short_run(tmp: Path) -> dict[str, list[float]]:
    from agnn.main import main

    assert main(RUN_ARGS + ["--out", str(tmp / "run")]) == 0
    hist = [json.loads(l) for l in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    return {k: [float(h[k]) for h in hist] for k in RUN_KEYS}


def make_fixture() -> None:
    import tempfile

    torch.set_num_threads(1)
    data, b = real_batch()
    z: dict[str, np.ndarray] = {}
    for k in BATCH_FIELDS:
        v = getattr(b, k).numpy()
        z[f"batch/{k}"] = v.astype(np.float32 if k == "rating" else np.int16)
    z["meta/vocab"] = np.array(json.dumps(data.vocab))
    z["meta/n"] = np.array([data.n_users, data.n_items])
    for tag, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        for k, v in compute(make_model(data.vocab, data.n_users, data.n_items, dtype), b, dtype).items():
            z[f"{tag}/{k}"] = np.asarray(v, np.float64 if tag == "f64" else np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for k, v in short_run(Path(tmp)).items():
            z[f"run/{k}"] = np.array(v)
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **z)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} kB, {len(z)} arrays)")


# ----------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def fx():
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} missing: make it with --make-fixture (see the module docstring)")
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def stored_batch(fx) -> Batch:
    return Batch(**{k: torch.from_numpy(fx[f"batch/{k}"].astype(np.float32 if k == "rating" else np.int64))
                    for k in BATCH_FIELDS})


@pytest.mark.parametrize("tag", ["f64", "f32"])
def test_step_outputs_losses_and_gradients_equal_before_speedup(fx, tag):
    dtype = torch.float64 if tag == "f64" else torch.float32
    n_users, n_items = (int(x) for x in fx["meta/n"])
    model = make_model(json.loads(str(fx["meta/vocab"])), n_users, n_items, dtype)
    torch.set_num_threads(1)
    got = compute(model, stored_batch(fx), dtype)
    want = {k[len(tag) + 1:]: v for k, v in fx.items() if k.startswith(tag + "/")}
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for k, w in want.items():
        scale = 1.0 if tag == "f64" else max(1.0, float(np.abs(w).max()))
        err = float(np.abs(got[k] - w).max())
        assert err <= TOL * scale, f"{tag} {k}: max abs diff {err:.3g} (tolerance {TOL * scale:.3g})"


def test_short_run_metrics_equal_before_speedup(fx, tmp_path):
    from common.testing import need_file

    for f in ("uiinfo.pkl", "ucs_train.dat", "ucs_val.dat", "neighbor_aspect_extension_2_zscore_ucs_uuii.pkl"):
        need_file("agnn-ml100k", f)
    got = short_run(tmp_path)
    for k in RUN_KEYS:
        w = fx[f"run/{k}"]
        err = np.abs(np.array(got[k]) - w)
        assert (err <= TOL * np.maximum(1.0, np.abs(w))).all(), f"{k}: {got[k]} vs {w.tolist()}"


def test_field_sums_give_the_attribute_interaction_layer():
    """The fused lookup (one embedding_bag over [W ; W*W]) against the layer's formula on the
    [N, F, D] field embeddings, values and gradients (float64)."""
    from agnn.model import attribute_interaction, bi_interaction, field_sums

    gen = torch.Generator().manual_seed(3)
    vocab, cols = (4, 9, 6), (0, 0, 1, 2, 2, 2)  # three fields, six attribute columns
    tables = [torch.randn(v, 5, generator=gen, dtype=torch.float64, requires_grad=True) for v in vocab]
    attr = torch.stack([torch.randint(vocab[c], (7,), generator=gen) for c in cols], dim=1)
    offsets = torch.tensor([sum(vocab[:c]) for c in cols])
    dense_bi, dense_si = torch.nn.Linear(5, 5).double(), torch.nn.Linear(5, 5).double()
    feat = torch.stack([tables[c][attr[:, j]] for j, c in enumerate(cols)], dim=1)
    want = attribute_interaction(feat, dense_bi, dense_si)
    both = field_sums(attr, tables, offsets)
    got = bi_interaction(both[:, :5], both[:, 5:], dense_bi, dense_si)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    g_want = torch.autograd.grad(want.sum(), tables)
    g_got = torch.autograd.grad(got.sum(), tables)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


if __name__ == "__main__":
    if sys.argv[1:] != ["--make-fixture"]:
        raise SystemExit("usage: python -m agnn.tests.test_speed_equality --make-fixture")
    make_fixture()
