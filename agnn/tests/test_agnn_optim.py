"""``optim.FlatAdam`` against ``torch.optim.Adam(fused=True)``, and the joined field tables of
``model._FieldSums`` (README "Speed")."""

import copy
import io

import numpy as np
import torch

from agnn.data import BatchBuilder
from agnn.model import AGNN, AGNNConfig, field_sums
from agnn.optim import FlatAdam
from agnn.tests.test_agnn_model import VOCAB, tiny_data


def steps(model, opt, batches, seed=0):
    for k, b in enumerate(batches):
        torch.manual_seed(seed + k)
        opt.zero_grad()
        model.loss(b)[0].backward()
        opt.step()


def setup(n=6):
    data = tiny_data()
    rng = np.random.default_rng(0)
    batches = [BatchBuilder(data, 4, 4).build(data.train[k % 2 * 10:(k % 2 + 1) * 10], rng) for k in range(n)]
    torch.manual_seed(0)
    return AGNN(AGNNConfig(6, 8, VOCAB, embed_size=8)), batches


def assert_close_models(a, b, atol):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=atol), (name, (p - q).abs().max().item())


def test_flat_adam_follows_fused_adam():
    """Same update formula as Adam(fused=True): the per-tensor kernel's scalar tail (the last
    numel mod 8 elements of a tensor) rounds differently from the vector body, so not bit for bit;
    after 6 steps within 1e-7 (the updates are ~lr = 5e-4)."""
    ref, batches = setup()
    flat = copy.deepcopy(ref)
    steps(ref, torch.optim.Adam(ref.parameters(), lr=5e-4, weight_decay=1e-3, fused=True), batches)
    opt = FlatAdam(flat.parameters(), lr=5e-4, weight_decay=1e-3)
    steps(flat, opt, batches)
    assert opt._pack is not None  # the fast path ran
    assert_close_models(ref, flat, 1e-7)
    # dense_user_self_siinter never gets a gradient (authors' quirk): untouched and without state, as in Adam
    p = flat.dense_user_self_siinter.weight
    assert p not in opt.state and torch.equal(p, ref.dense_user_self_siinter.weight)


def test_flat_adam_checkpoint_round_trip_and_plain_adam_resume():
    """A state_dict of FlatAdam resumes in FlatAdam and in plain Adam like an uninterrupted run."""
    ref, batches = setup(8)
    a, b = copy.deepcopy(ref), copy.deepcopy(ref)
    steps(ref, FlatAdam(ref.parameters(), lr=5e-4, weight_decay=1e-3), batches)
    for model, cls in ((a, FlatAdam), (b, torch.optim.Adam)):
        opt = FlatAdam(model.parameters(), lr=5e-4, weight_decay=1e-3)
        steps(model, opt, batches[:4])
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=False)
        fresh = copy.deepcopy(ref)
        fresh.load_state_dict(state["model"])
        kw = {"fused": True} if cls is torch.optim.Adam else {}
        opt2 = cls(fresh.parameters(), lr=5e-4, weight_decay=1e-3, **kw)
        opt2.load_state_dict(state["opt"])
        steps(fresh, opt2, batches[4:], seed=4)
        steps_done = {float(s["step"]) for s in opt2.state_dict()["state"].values()}
        assert steps_done == {8.0}
        assert_close_models(ref, fresh, 1e-7)


def test_flat_adam_after_model_to_repacks():
    model, batches = setup(4)
    opt = FlatAdam(model.parameters(), lr=5e-4, weight_decay=1e-3)
    steps(model, opt, batches[:2])
    model.double()  # moves every parameter out of the flat buffer
    steps(model, opt, batches[2:], seed=2)
    assert opt._pack[1].dtype == torch.float64
    assert {float(s["step"]) for s in opt.state_dict()["state"].values()} == {4.0}


def test_field_sums_on_joined_tables_equal_separate_tables():
    """Tables lying one after another in one buffer (as FlatAdam keeps them) are read as one view;
    values and gradients equal those of separate tables."""
    gen = torch.Generator().manual_seed(1)
    vocab, cols = (4, 9, 6), (0, 1, 1, 2)
    flat = torch.randn(sum(vocab) * 5, generator=gen, dtype=torch.float64)
    views, start = [], 0
    for v in vocab:
        views.append(torch.nn.Parameter(flat[start:start + v * 5].view(v, 5)))
        start += v * 5
    separate = [torch.nn.Parameter(t.detach().clone()) for t in views]
    assert views[1].data_ptr() == views[0].data_ptr() + views[0].numel() * 8
    attr = torch.stack([torch.randint(vocab[c], (7,), generator=gen) for c in cols], dim=1)
    offsets = torch.tensor([sum(vocab[:c]) for c in cols])
    g = torch.randn(7, 10, generator=gen, dtype=torch.float64)
    out_v, out_s = field_sums(attr, views, offsets), field_sums(attr, separate, offsets)
    assert torch.equal(out_v, out_s)
    gv, gs = torch.autograd.grad((out_v * g).sum(), views), torch.autograd.grad((out_s * g).sum(), separate)
    for a, b in zip(gv, gs):
        assert torch.equal(a, b)
