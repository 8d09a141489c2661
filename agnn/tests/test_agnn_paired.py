"""The batched two-side layers (``model.paired*``, ``AGNN._evae_losses``) against the per-side
reference functions, values and gradients in float64 (README "Speed")."""

import torch

from agnn.model import (AGNN, AGNNConfig, _Rows, gated_gnn, interaction, kl_term, paired_gated_gnn,
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
    b, k, d, u = 6, 4, 5, 9
    h_self = torch.randn(2, b, d, dtype=torch.float64, requires_grad=True)
    nodes = torch.randn(2, u, d, dtype=torch.float64, requires_grad=True)  # side 1 uses its first 3 rows
    slots = (torch.randint(u, (b, k)), torch.randint(3, (b, k)))
    at = torch.stack([slots[0], slots[1] + u])
    add, erase = linears(2, 2 * d, d), linears(2, 2 * d, d)
    got = paired_gated_gnn(h_self, nodes, at, add, erase)
    want = torch.stack([gated_gnn(h_self[s], nodes[s][slots[s]], add[s], erase[s]) for s in range(2)])
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    params = [h_self, nodes] + [p for l in add + erase for p in (l.weight, l.bias)]
    for a, b_ in zip(grads(got, params), grads(want, params)):
        assert torch.allclose(a, b_, rtol=0, atol=1e-12)


def test_rows_is_indexing():
    """``_Rows`` (index_select forward, index_add_ backward) against advanced indexing, float64."""
    torch.manual_seed(5)
    srcs = [torch.randn(7, c, dtype=torch.float64, requires_grad=True) for c in (3, 4)]
    idx = torch.randint(7, (2, 5, 3))
    got = _Rows.apply(idx, *srcs)
    want = [s[idx] for s in srcs]
    gs = [torch.randn_like(w) for w in want]
    for a, b_ in zip(got, want):
        assert torch.equal(a, b_)
    ga = torch.autograd.grad(got, srcs, gs)
    gb = torch.autograd.grad(want, srcs, gs)
    for a, b_ in zip(ga, gb):
        assert torch.allclose(a, b_, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b_: _Rows.apply(idx, a, b_), tuple(srcs))


def node_inputs_reference(idx, ids, own, tables, embeds, u):
    """:class:`_NodeInputs` by autograd on plain operations: per side the field sums of the
    separate tables, the Bi-Interaction vector and the ID rows, padded to [2, u, D], and the own rows."""
    outs = [[], [], []]
    for s in range(2):
        w = torch.cat(tables[s])
        summed = (w[idx[s]]).sum(1)
        squares = (w[idx[s]] ** 2).sum(1)
        pad = torch.zeros(u - len(ids[s]), w.shape[1], dtype=w.dtype)
        for o, x in zip(outs, (0.5 * (summed.pow(2) - squares), summed, embeds[s][ids[s]])):
            o.append(torch.cat([x, pad]))
    full = [torch.stack(o) for o in outs]
    return (*full, *(f.reshape(2 * u, -1)[own] for f in full))


def test_node_inputs_against_autograd():
    """``_NodeInputs`` (hand-written backward) against autograd on the plain operations, float64:
    values and the gradients of every table, with a node appearing twice among the own rows."""
    from agnn.model import _NodeInputs

    gen = torch.Generator().manual_seed(6)
    d = 4
    vocab = ((3, 5), (2, 4, 3))  # item fields, user fields
    tables = [[torch.randn(v, d, generator=gen, dtype=torch.float64, requires_grad=True) for v in side]
              for side in vocab]
    embeds = [torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True) for n in (9, 6)]
    ids = (torch.tensor([0, 2, 3, 5, 8]), torch.tensor([1, 4, 5]))
    idx = []
    for side, n in zip(vocab, (5, 3)):  # joined-table rows: column c of field c
        off = torch.tensor([0, *torch.tensor(side).cumsum(0)[:-1].tolist()])
        idx.append(torch.stack([torch.randint(v, (n,), generator=gen) for v in side], 1) + off)
    u = 5
    own = torch.tensor([[0, 4, 4], [u + 2, u + 0, u + 2]])
    params = [t for side in tables for t in side] + embeds

    def fast(*ps):
        return _NodeInputs.apply(tuple(idx), ids, own, (2, 3), *ps)

    def ref(*ps):
        return node_inputs_reference(idx, ids, own, [list(ps[:2]), list(ps[2:5])], list(ps[5:]), u)

    got, want = fast(*params), ref(*params)
    for a, b_ in zip(got, want):
        assert torch.allclose(a, b_, rtol=0, atol=1e-12)
    gs = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in want]
    for a, b_ in zip(torch.autograd.grad(got, params, gs), torch.autograd.grad(want, params, gs)):
        assert torch.allclose(a, b_, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(fast, tuple(params))


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

