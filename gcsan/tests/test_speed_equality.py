"""The speed work (issue 15) changed no mathematics: today's code against a fixture of the code before it.

The fixture ``fixtures/speed_equality_ml100k.npz`` was made with the code of commit e73d588 (before
any speed change) by

    .venv/bin/python -m gcsan.tests.test_speed_equality --make-fixture

It holds, for one fixed real ML-100k training batch (256 examples drawn with numpy seed 0, histories
padded to 50) and the preset model (hidden 64, 2 blocks, 2 heads, inner 256, step 1) initialized
under ``torch.manual_seed(0)``:

- eval mode (dropout off): the session representation S_f of the first 64 rows, the full-sort scores of the
  first 8 rows, the CE loss (EmbLoss included) and every parameter's gradient;
- train mode (dropout on, ``torch.manual_seed(1)`` before the forward pass): the loss and every
  gradient, so the dropout masks must be drawn in the same order and shapes as before;
- gradients of vectors (biases, LayerNorm) whole; of each matrix a fixed random projection
  ``grad @ R`` (R [cols, 8] normal, numpy seed 1: any changed entry moves it), and of the item
  embedding also its exact rows for the first 32 item ids the batch touches;
- a short real run (``main.run_from_args``: ML-100k, batch 512, 2 epochs of 2 batches, seed 2020):
  the per-epoch training loss, the valid/test metrics of each epoch and the final metrics.

Tolerance: each tensor's max abs difference is at most 1e-5 times max(1, its largest magnitude)
(gradients are ~1e-3 or smaller, so for them this is the absolute bound 1e-5; the full-sort scores
and losses are O(1-10), where it is relative). The short run's metrics must agree within 1e-5.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "speed_equality_ml100k.npz"
TOL = 1e-5
SHORT_RUN = ["--dataset", "ml-100k", "--batch-size", "512", "--max-epochs", "2", "--max-train-batches", "2",
             "--seed", "2020", "--no-progress"]


def _batch():
    from gcsan.data import load
    from gcsan.main import PRESETS

    data = load(PRESETS[("ml-100k", "recbole")]["data"], valid_portion=0.0, verbose=False)
    idx = np.random.default_rng(0).permutation(len(data.train))[:256]
    seq, length, target = (torch.as_tensor(x) for x in data.train.batch(idx))
    return data.n_items, seq, length, target


def _grads(model, prefix: str, touched: torch.Tensor) -> dict[str, np.ndarray]:
    """Vectors (biases, LayerNorm) whole; each matrix as ``grad @ R`` (R [cols, 8], normal, numpy
    seed 1); the item embedding also with its rows for the first 32 items the batch touches."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().numpy().astype(np.float64)
        if g.ndim == 1:
            out[f"{prefix}grad/{name}"] = g
            continue
        R = np.random.default_rng(1).standard_normal((g.shape[1], 8))
        out[f"{prefix}grad_proj/{name}"] = g @ R
        if name == "item_embedding.weight":
            out[f"{prefix}grad_rows/{name}"] = g[touched[:32].numpy()]
    return out


def compute() -> dict[str, np.ndarray]:
    """Everything the fixture stores, recomputed with the code on the path."""
    from gcsan.main import MODEL_DEFAULTS
    from gcsan.model import GCSAN

    torch.set_num_threads(1)
    n_items, seq, length, target = _batch()
    torch.manual_seed(0)
    model = GCSAN(n_items, **MODEL_DEFAULTS)
    touched = torch.unique(torch.cat([seq.flatten(), target]))
    res: dict[str, np.ndarray] = {}

    model.eval()
    with torch.no_grad():
        res["eval/representation_first64"] = model(seq, length)[:64].numpy()
        res["eval/full_sort_first8"] = model.full_sort(seq[:8], length[:8]).numpy()
    model.zero_grad()
    loss = model.loss(seq, length, target)
    loss.backward()
    res["eval/loss"] = np.array(loss.item())
    res.update(_grads(model, "eval/", touched))

    model.train()
    model.zero_grad()
    torch.manual_seed(1)
    loss = model.loss(seq, length, target)
    loss.backward()
    res["train/loss"] = np.array(loss.item())
    res.update(_grads(model, "train/", touched))

    from gcsan.main import run_from_args

    with tempfile.TemporaryDirectory() as tmp:
        final = run_from_args([*SHORT_RUN, "--out", str(Path(tmp) / "run")])
        history = [json.loads(line) for line in open(Path(tmp) / "run" / "metrics.jsonl") if line.strip()]
    for h in history:
        for k, v in h.items():
            if isinstance(v, (int, float)) and not k.endswith("seconds") and k not in ("examples_per_second",
                                                                                       "outside_forward_backward_share"):
                res[f"run/epoch{h['epoch']}/{k}"] = np.array(float(v))
    for split, metrics in final.items():
        for k, v in metrics.items():
            res[f"run/final/{split}/{k}"] = np.array(float(v))
    return res


def make_fixture() -> None:
    res = compute()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **{k: v.astype(np.float32) if v.ndim else v for k, v in res.items()})
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} KB, {len(res)} arrays)")


def test_fast_code_equals_the_code_before_the_speed_work():
    from common.testing import need_file

    need_file("ml-100k", "u.data")
    want = dict(np.load(FIXTURE))
    got = compute()
    assert sorted(got) == sorted(want)
    worst = {}
    for k, w in want.items():
        diff = float(np.max(np.abs(got[k] - w.astype(np.float64)))) if w.size else 0.0
        bound = TOL * max(1.0, float(np.max(np.abs(w)))) if w.size else 0.0
        worst[k] = diff
        assert diff <= bound, f"{k}: max abs diff {diff:.3g} > {bound:.3g}"
    print("largest differences:", sorted(worst.items(), key=lambda kv: -kv[1])[:5])


def test_session_edges_equal_the_dense_session_graph():
    """The sparse graph the model uses holds exactly the dense A of Eq. 1 (repeats, padding, length 1)."""
    from gcsan.model import session_edges, session_graph

    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(1, 6, (300, 9), generator=gen)  # few ids: many repeated items and edges
    length = torch.randint(1, 10, (300,), generator=gen)
    seq[torch.arange(9)[None, :] >= length[:, None]] = 0
    alias, A, items = session_graph(seq)
    g = session_edges(seq)
    B, L = seq.shape
    n_nodes = (items != 0).sum(1) + (seq == 0).any(1)
    offset = n_nodes.cumsum(0) - n_nodes
    assert torch.equal(g.alias, alias + offset[:, None])
    assert torch.equal(g.items, items[torch.arange(L)[None, :] < n_nodes[:, None]])
    row = torch.repeat_interleave(torch.arange(B), n_nodes)
    local = torch.arange(len(g.items)) - offset[row]
    dense = torch.zeros(B, L, 2 * L)
    b = row[g.dst]
    dense[b, local[g.dst], local[g.src]] = g.w_in
    dense[b, local[g.src], L + local[g.dst]] = g.w_out
    assert torch.equal(dense, A)


if __name__ == "__main__":
    if sys.argv[1:] == ["--make-fixture"]:
        make_fixture()
    else:
        raise SystemExit(pytest.main([__file__, "-q", "-s"]))
