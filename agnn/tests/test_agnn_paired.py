"""The batched two-side layers (``model.paired*``, ``AGNN._evae_losses``) against the per-side
reference functions, values and gradients in float64 (README "Speed")."""

import torch

from agnn.model import (AGNN, AGNNConfig, gated_gnn, interaction, kl_term, paired_gated_gnn,
                        paired_interaction)
from agnn.tests.test_agnn_model import VOCAB


def linears(n, d_in, d_out):
    return tuple(torch.nn.Linear(d_in, d_out).double() for _ in range(n))


def grads(out, tensors):
    return torch.autograd.grad(out.pow(2).sum(), tensors)


def test_paired_interaction_is_interaction_per_side():
    torch.manual_seed(0)
    bi, summed = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True), torch.randn(2, 7, 5, dtype=torch.float64)
    dense_bi, dense_si = linears(2, 5, 5), linears(2, 5, 5)
    got = paired_interaction(bi, summed, dense_bi, dense_si)
    want = torch.stack([interaction(bi[s], summed[s], dense_bi[s], dense_si[s]) for s in range(2)])
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    params = [l.weight for l in dense_bi + dense_si] + [bi]
    for a, b in zip(grads(got, params), grads(want, params)):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_paired_gated_gnn_is_gated_gnn_per_side():
    torch.manual_seed(1)
    b, k, d = 6, 4, 5
    h_self = torch.randn(2, b, d, dtype=torch.float64, requires_grad=True)
    nodes = tuple(torch.randn(u, d, dtype=torch.float64, requires_grad=True) for u in (9, 3))
    slots = tuple(torch.randint(len(n), (b, k)) for n in nodes)
    add, erase = linears(2, 2 * d, d), linears(2, 2 * d, d)
    got = paired_gated_gnn(h_self, nodes, slots, add, erase)
    want = torch.stack([gated_gnn(h_self[s], nodes[s][slots[s]], add[s], erase[s]) for s in range(2)])
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    params = [h_self, *nodes] + [p for l in add + erase for p in (l.weight, l.bias)]
    for a, b_ in zip(grads(got, params), grads(want, params)):
        assert torch.allclose(a, b_, rtol=0, atol=1e-12)


def test_evae_losses_are_the_per_side_evaes_with_the_same_noise():
    torch.manual_seed(2)
    model = AGNN(AGNNConfig(6, 8, VOCAB, embed_size=5)).double()
    feat = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    pref = torch.randn(2, 7, 5, dtype=torch.float64)
    torch.manual_seed(3)
    recon, kl = model._evae_losses(feat, pref)
    torch.manual_seed(3)  # the reference draws the item noise, then the user noise
    item_rec, item_z, item_mu, item_lv = model.item_vae(feat[0])
    user_rec, user_z, user_mu, user_lv = model.user_vae(feat[1])
    recon_want = torch.norm(item_rec - pref[0]) + torch.norm(user_rec - pref[1])
    kl_want = kl_term(item_z, item_mu, item_lv, "authors") + kl_term(user_z, user_mu, user_lv, "authors")
    assert torch.allclose(recon, recon_want, rtol=0, atol=1e-12)
    assert torch.allclose(kl, kl_want, rtol=0, atol=1e-12)
    params = [feat] + list(model.item_vae.parameters()) + list(model.user_vae.parameters())
    for a, b in zip(grads(recon + kl, params), grads(recon_want + kl_want, params)):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def reference_forward(m, b, mode):
    """The forward pass of the code before the two-side batching (commit e73d588's structure:
    each side on its own, gated_gnn on the [B, K] slots, the eVAEs one after the other)."""
    import torch.nn.functional as F

    from agnn.model import bi_interaction, field_sums

    def side(s, own_ids, nbr_ids, own, nbr):
        fields = [n for n, _, _ in m.ITEM_SLOTS] if s == "item" else list(m.USER_SLOTS)
        tables = [m.attr_embed[n].weight for n in fields]
        offsets = m.item_attr_offsets if s == "item" else m.user_attr_offsets
        d = tables[0].shape[1]
        bk, f = nbr_ids.numel(), nbr.shape[-1]
        both = field_sums(nbr.reshape(bk, f), tables, offsets)
        hop_bi, hop_si = getattr(m, f"dense_{s}_onehop_biinter"), getattr(m, f"dense_{s}_onehop_siinter")
        embed = getattr(m, f"{s}_embed")
        h = getattr(m, f"dense_{s}_cate_hop1")(torch.cat(
            [bi_interaction(both[:, :d], both[:, d:], hop_bi, hop_si), embed(nbr_ids.reshape(bk))], -1))
        own_both = field_sums(own, tables, offsets)
        return h.view(*nbr_ids.shape, -1), own_both[:, :d], own_both[:, d:]

    item_nbr, s_, q_ = side("item", b.item, b.item_nbr, b.item_attr, b.item_nbr_attr)
    item_feat = bi_interaction(s_, q_, m.dense_item_self_biinter, m.dense_item_self_siinter)
    item_pref = m.item_vae(item_feat)[0] if mode == "ics" else m.item_embed(b.item)
    q = gated_gnn(m.dense_item_cate_self(torch.cat([item_feat, item_pref], -1)), item_nbr,
                  m.dense_item_addgate, m.dense_item_erasegate)
    user_nbr, s_, q_ = side("user", b.user, b.user_nbr, b.user_attr, b.user_nbr_attr)
    user_feat = bi_interaction(s_, q_, m.dense_user_self_biinter, m.dense_user_onehop_siinter)
    user_pref = m.user_vae(user_feat)[0] if mode == "ucs" else m.user_embed(b.user)
    p = gated_gnn(m.dense_user_cate_self(torch.cat([user_feat, user_pref], -1)), user_nbr,
                  m.dense_user_addgate, m.dense_user_erasegate)
    item_rec, item_z, item_mu, item_lv = m.item_vae(item_feat)
    user_rec, user_z, user_mu, user_lv = m.user_vae(user_feat)
    recon = torch.norm(item_rec - item_pref) + torch.norm(user_rec - user_pref)
    kl = kl_term(item_z, item_mu, item_lv, "authors") + kl_term(user_z, user_mu, user_lv, "authors")
    pred = (m.fc_pre(torch.cat([p, q], 1)).squeeze(-1) + (p * q).sum(1) + m.user_bias(b.user).squeeze(-1)
            + m.item_bias(b.item).squeeze(-1) + m.global_bias)
    return pred, recon, kl


def test_forward_equals_the_per_side_forward_on_an_odd_batch_size():
    """B * D not a multiple of 16 (torch's normal sampler then draws differently for one joint
    draw): the eVAE noise must still be drawn per side, item first, in every mode."""
    import numpy as np

    from agnn.data import BatchBuilder
    from agnn.tests.test_agnn_model import tiny_data

    data = tiny_data()
    b = BatchBuilder(data, 4, 4).build(data.train[:7], np.random.default_rng(0))
    torch.manual_seed(0)
    m = AGNN(AGNNConfig(6, 8, VOCAB, embed_size=5)).double()
    for mode in ("train", "ucs", "ics"):
        torch.manual_seed(4)
        got = m(b, mode)
        draws_after = torch.randn(3)
        torch.manual_seed(4)
        want = reference_forward(m, b, mode)
        assert torch.equal(draws_after, torch.randn(3))  # the same amount of noise consumed
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=0, atol=1e-10), (mode, (g - w).abs().max().item())
