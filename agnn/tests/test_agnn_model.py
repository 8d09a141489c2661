"""eVAE shapes and gradients, the quirk switches, and a forward pass on a hand-made batch."""

import numpy as np
import torch

from agnn.data import AGNNData, BatchBuilder, NeighbourTable
from agnn.model import AGNN, EVAE, AGNNConfig, kl_term

VOCAB = dict(gender=2, age=7, occupation=21, genre=19, director=5, writer=5, star=5, country=4)


def tiny_data(n_users=6, n_items=8, seed=0):
    rng = np.random.default_rng(seed)
    user_attr = np.stack([rng.integers(0, 2, n_users), rng.integers(0, 7, n_users), rng.integers(0, 21, n_users)], 1)
    item_attr = np.concatenate([rng.integers(0, 19, (n_items, 6)), rng.integers(0, 5, (n_items, 9)),
                                rng.integers(0, 4, (n_items, 8))], 1)
    def graph(n):
        ids = np.stack([np.roll(np.arange(n), -s) for s in range(1, 4)], 1)
        return NeighbourTable(ids, np.full(ids.shape, 1 / 3), np.full(n, 3))
    rows = np.array([[u, i, r] for u, i, r in zip(rng.integers(1, n_users, 20), rng.integers(1, n_items, 20),
                                                  rng.integers(1, 6, 20))], dtype=float)
    return AGNNData("ucs", n_users, n_items, user_attr, item_attr, VOCAB, rows, rows, graph(n_users), graph(n_items))


def model(**kw):
    torch.manual_seed(0)
    return AGNN(AGNNConfig(6, 8, VOCAB, embed_size=8, **kw))


def test_evae_shapes_and_both_losses_reach_it():
    vae = EVAE(8)
    x = torch.randn(5, 8)
    rec, z, mu, lv = vae(x)
    assert rec.shape == z.shape == mu.shape == lv.shape == (5, 8)
    target = torch.randn(5, 8)
    for loss in (torch.norm(rec - target), kl_term(z, mu, lv, "authors"), kl_term(z, mu, lv, "standard")):
        vae.zero_grad()
        loss.backward(retain_graph=True)
        assert vae.dense_hz_mu.weight.grad.abs().sum() > 0
        assert vae.dense_hz_var.weight.grad.abs().sum() > 0


def test_standard_kl_is_the_closed_form():
    mu, lv = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mu, torch.exp(lv / 2))
    p = torch.distributions.Normal(torch.zeros(4, 3), torch.ones(4, 3))
    expect = torch.distributions.kl_divergence(q, p).sum(1).mean()
    torch.testing.assert_close(kl_term(mu, mu, lv, "standard"), expect)
    z = torch.randn(4, 3)  # the authors' term differs: exp(z) instead of exp(log_var)
    assert not torch.allclose(kl_term(z, mu, lv, "authors"), expect)


def test_forward_loss_and_gradients_in_every_mode():
    data = tiny_data()
    b = BatchBuilder(data, 4, 4).build(data.train, np.random.default_rng(0))
    m = model()
    for mode in ("train", "warm", "ics", "ucs"):
        pred, recon, kl = m(b, mode)
        assert pred.shape == (20,) and recon.ndim == 0 and kl.ndim == 0
    loss, parts = m.loss(b)
    loss.backward()
    assert m.item_vae.dense_xh.weight.grad.abs().sum() > 0 and m.user_vae.dense_hx.weight.grad.abs().sum() > 0
    assert m.fc_pre.weight.grad.abs().sum() > 0 and set(parts) == {"sse", "recon", "kl"}


def test_quirk_switches():
    data = tiny_data()
    b = BatchBuilder(data, 4, 4).build(data.train, np.random.default_rng(0))
    quirky, fixed = model(), model(user_self_linear="self")
    for m in (quirky, fixed):
        m.loss(b)[0].backward()
    assert quirky.dense_user_self_siinter.weight.grad is None  # authors' code never uses it
    assert fixed.dense_user_self_siinter.weight.grad is not None
    assert model().dense_user_erasegate.bias.abs().sum() > 0  # PyTorch default init, not Xavier
    assert model(user_erase_init="xavier").dense_user_erasegate.bias.abs().sum() == 0
    m = model(eval_mean=True).eval()
    assert torch.equal(m.predict(b, "ics"), m.predict(b, "ics"))  # deterministic cold side
