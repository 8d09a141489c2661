"""AGNN network (Qian et al., TKDE 2020), following the authors' PyTorch code.

Blocks, in the order of the forward pass (B = batch, K = neighbours incl. self, D = embed size):

* ``attribute_interaction`` (paper: attribute interaction layer, Bi-Interaction pooling after
  He & Chua 2017): ``LeakyReLU(W_bi * 0.5 * ((sum_f e_f)^2 - sum_f e_f^2)) +
  LeakyReLU(W_si * sum_f e_f)``.
* node input: ``W [attribute_interaction(x) ; preference embedding]`` for the node itself
  (``*_cate_self``) and for each one-hop neighbour (``*_cate_hop1``).
* ``gated_gnn`` (paper: gated-GNN layer): add gate ``a_j = sigmoid(W_a [h_self ; h_j])`` per
  neighbour and dimension, erase gate ``e = sigmoid(W_e [h_self ; mean_j h_j])``;
  ``h = LeakyReLU((1 - e) * h_self + mean_j(a_j * h_j))``.
* ``EVAE`` (paper: extended VAE, reconstruction loss ``KL + ||x' - m||``): encodes the attribute
  representation to (mu, log-variance), samples z, decodes a preference embedding; cold nodes
  use it in place of their untrained preference embedding at evaluation.
* prediction layer: ``R = MLP([p ; q]) + p . q + b_u + b_i + mu`` (one linear layer as MLP).

The authors' quirks are the defaults (see README "Deviations and quirks"); ``AGNNConfig`` turns
each one off.

Speed (README "Speed"; the same mathematics): ``AGNN.forward`` computes each distinct node of a
batch once, both sides' distinct nodes in one padded [2, U, ...] pass (``AGNN._node_inputs``,
``_NodeInputs``), and runs the item and the user side through their layers in one batched pass
(``paired*``, ``stack_pairs``, ``_Rows``, ``AGNN._evae_losses``); the per-side functions above
(``attribute_interaction``, ``gated_gnn``, ``EVAE``, ``kl_term``) are the reference the tests compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class AGNNConfig:
    """Sizes and the switches for the authors' quirks (defaults = authors' code)."""

    n_users: int
    n_items: int
    vocab: dict  # ids per field: gender, age, occupation, genre, director, writer, star, country
    embed_size: int = 30
    attention_size: int = 50  # unused by the authors' network; kept for the record
    dropout: float = 0.5  # unused by the authors' network; kept for the record
    kl: str = "authors"  # "authors": exp(z) in the KL term; "standard": exp(log-variance)
    user_self_linear: str = "onehop"  # "onehop": user self features use the one-hop W_si (authors)
    user_erase_init: str = "default"  # "default": PyTorch's Linear init (authors); "xavier"
    eval_mean: bool = False  # evaluate cold nodes with the eVAE mean instead of a sample


def _xavier(layer: nn.Module) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return _xavier(nn.Linear(n_in, n_out))


EVAE_LAYERS = ("dense_xh", "dense_hz_mu", "dense_hz_var", "dense_zh", "dense_hx")  # in forward order


class EVAE(nn.Module):
    """Extended VAE: attribute representation [B, D] -> reconstructed preference embedding [B, D].

    Q(z|x): ``h = ReLU(W_xh x)``, ``mu = W_mu h``, ``log_var = W_var h``; z = mu + exp(log_var/2) eps;
    P(x|z): ``W_hx ReLU(W_zh z)``. All layers D -> D, Xavier-initialised (authors' ``VAE``).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dense_xh = _linear(dim, dim)
        self.dense_hz_mu = _linear(dim, dim)
        self.dense_hz_var = _linear(dim, dim)
        self.dense_zh = _linear(dim, dim)
        self.dense_hx = _linear(dim, dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, D] -> (mu, log_var), each [B, D]."""
        h = F.relu(self.dense_xh(x))
        return self.dense_hz_mu(h), self.dense_hz_var(h)

    @staticmethod
    def sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """Reparameterised sample [B, D]."""
        return mu + torch.exp(log_var / 2) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dense_hx(F.relu(self.dense_zh(z)))

    def forward(self, x: torch.Tensor, mean: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, D] -> (reconstruction, z, mu, log_var), each [B, D]; ``mean`` decodes mu."""
        mu, log_var = self.encode(x)
        z = mu if mean else self.sample(mu, log_var)
        return self.decode(z), z, mu, log_var


def kl_term(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, kind: str) -> torch.Tensor:
    """Batch mean of ``0.5 * sum_d(exp(.) + mu^2 - 1 - log_var)`` (paper's KL in L_recon):
    [..., B, D] -> [...] (one value per side for the stacked [2, B, D] of :meth:`AGNN._evae_losses`).

    ``kind="authors"`` puts the sampled z in exp(.), as the authors' code does; ``"standard"``
    uses log_var (the closed-form KL(N(mu, var) || N(0, 1))).
    """
    inner = torch.exp(z) if kind == "authors" else torch.exp(log_var)
    return torch.mean(0.5 * torch.sum(inner + mu**2 - 1.0 - log_var, dim=-1), dim=-1)


def attribute_interaction(feat: torch.Tensor, dense_bi: nn.Linear, dense_si: nn.Linear) -> torch.Tensor:
    """Attribute interaction layer: Bi-Interaction pooling + linear sum over fields.

    feat: [..., F, D] field embeddings -> [..., D]. (The model computes the same from
    :func:`field_sums`, without materialising ``feat``.)
    """
    summed = feat.sum(dim=-2)
    bi = 0.5 * (summed.pow(2) - feat.pow(2).sum(dim=-2))
    return F.leaky_relu(dense_bi(bi)) + F.leaky_relu(dense_si(summed))


def _joined(tables: list[torch.Tensor]) -> torch.Tensor:
    """The field tables as one [rows, D] table: a view when they lie one after another in memory
    (as ``optim.FlatAdam`` keeps them), else a copy."""
    first = tables[0].detach()
    if len(tables) == 1:
        return first
    size, end = first.element_size(), first.data_ptr()
    for t in tables:
        if t.data_ptr() != end or not t.is_contiguous() or t.dtype != first.dtype or t.device != first.device:
            return torch.cat([t.detach() for t in tables])
        end += t.numel() * size
    return first.as_strided((sum(t.shape[0] for t in tables), first.shape[1]), (first.shape[1], 1))


class _FieldSums(torch.autograd.Function):
    """:func:`field_sums` with a hand-written backward (the attribute tables' gradient).

    Forward: two ``embedding_bag`` sums over the joined table ``W`` and ``W * W``. Backward: with
    ``G_s``, ``G_q`` the sums of the incoming gradients over the slots that look up each row,
    ``dW = G_s + 2 W G_q`` (scatter-adds, one per attribute column: no sort of the indices).
    """

    @staticmethod
    def forward(ctx, idx: torch.Tensor, *tables: torch.Tensor):
        w = _joined(list(tables))
        ctx.w, ctx.sizes = w, [t.shape[0] for t in tables]
        ctx.save_for_backward(idx)
        return F.embedding_bag(idx, w, mode="sum"), F.embedding_bag(idx, w * w, mode="sum")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_sum: torch.Tensor, g_sq: torch.Tensor):
        (idx,) = ctx.saved_tensors
        dw = _table_grad(idx, ctx.w, torch.cat([g_sum, g_sq], dim=1))
        return (None, *dw.split(ctx.sizes))


def field_sum_pair(attr: torch.Tensor, tables: list[torch.Tensor],
                   offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_f e_f`` and ``sum_f e_f^2`` over the attribute slots of each row: [N, D] each.

    attr: int [N, F] ids, column f looked up in the table of its field; tables: the fields' embedding
    weights, joined here into one table whose rows for column f start at ``offsets[f]``.
    ``embedding_bag`` sums over ``W`` and ``W * W`` give both without the [N, F, D] tensor of
    field embeddings that :func:`attribute_interaction` builds (the same sums; the summation order
    of the gradient differs, by float rounding only).
    """
    return _FieldSums.apply((attr + offsets).contiguous(), *tables)


def field_sums(attr: torch.Tensor, tables: list[torch.Tensor], offsets: torch.Tensor) -> torch.Tensor:
    """``[sum_f e_f ; sum_f e_f^2]``: :func:`field_sum_pair` as one [N, 2D] tensor."""
    return torch.cat(field_sum_pair(attr, tables, offsets), dim=1)


def bi_interaction(summed: torch.Tensor, squares: torch.Tensor, dense_bi: nn.Linear,
                   dense_si: nn.Linear) -> torch.Tensor:
    """Attribute interaction layer from the field sums (:func:`field_sums`): [..., D] -> [..., D]."""
    return interaction(0.5 * (summed.pow(2) - squares), summed, dense_bi, dense_si)


def interaction(bi: torch.Tensor, summed: torch.Tensor, dense_bi: nn.Linear, dense_si: nn.Linear) -> torch.Tensor:
    """Attribute interaction layer from the Bi-Interaction vector ``0.5 ((sum_f e_f)^2 - sum_f e_f^2)``
    and the field sum: ``LeakyReLU(W_bi bi) + LeakyReLU(W_si sum)``."""
    return F.leaky_relu(dense_bi(bi)) + F.leaky_relu(dense_si(summed))


def gated_gnn(
    h_self: torch.Tensor, h_nbr: torch.Tensor, dense_add: nn.Linear, dense_erase: nn.Linear
) -> torch.Tensor:
    """Gated-GNN layer: h_self [B, D], h_nbr [B, K, D] -> [B, D]."""
    k = h_nbr.shape[1]
    add_gate = torch.sigmoid(dense_add(torch.cat([h_self.unsqueeze(1).expand(-1, k, -1), h_nbr], dim=-1)))
    erase_gate = torch.sigmoid(dense_erase(torch.cat([h_self, h_nbr.mean(dim=1)], dim=-1)))
    return F.leaky_relu((1 - erase_gate) * h_self + (h_nbr * add_gate).mean(dim=1))


def stack_pairs(layers: list[tuple[nn.Linear, nn.Linear]],
                split: dict[int, int] = None) -> list[tuple[torch.Tensor, ...]]:
    """The item and user weights of each pair of ``layers`` stacked for :func:`paired`: per pair
    ``(W^T [2, in, out], b [2, 1, out])``; a pair whose index is in ``split`` gives
    ``(W[:, :c]^T, W[:, c:]^T, b)`` for ``c = split[index]``."""
    split = split or {}
    out = []
    for n, (a, b) in enumerate(layers):
        bias = torch.stack([a.bias, b.bias]).unsqueeze(1)
        if n in split:
            c = split[n]
            out.append((torch.stack([a.weight[:, :c], b.weight[:, :c]]).transpose(1, 2),
                        torch.stack([a.weight[:, c:], b.weight[:, c:]]).transpose(1, 2), bias))
        else:
            out.append((torch.stack([a.weight, b.weight]).transpose(1, 2), bias))
    return out


def paired(layers, x: torch.Tensor) -> torch.Tensor:
    """Two linear layers, one per side, on x [2, N, in] -> [2, N, out]: ``x[s] W_s^T + b_s``.

    layers: the two ``nn.Linear`` (item, user), or their stacked ``(W^T, b)`` (:func:`stack_pairs`)."""
    w_t, bias = stack_pairs([layers])[0] if isinstance(layers[0], nn.Module) else layers
    return torch.baddbmm(bias, x, w_t)


def paired_interaction(bi: torch.Tensor, summed: torch.Tensor, dense_bi: tuple, dense_si: tuple) -> torch.Tensor:
    """:func:`interaction` of both sides at once: bi, summed [2, B, D] -> [2, B, D]."""
    return F.leaky_relu(paired(dense_bi, bi)) + F.leaky_relu(paired(dense_si, summed))


class _Rows(torch.autograd.Function):
    """``src[idx]`` of each 2-d ``src`` [N, D_i] for one int64 ``idx`` of any shape ->
    [*idx.shape, D_i] each: ``index_select`` forward, one ``index_add_`` per source backward
    (advanced indexing's forward and its ``index_put_`` backward are several times slower on these
    sizes; the same sums)."""

    @staticmethod
    def forward(ctx, idx: torch.Tensor, *srcs: torch.Tensor):
        flat = idx.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.rows = [s.shape[0] for s in srcs]
        return tuple(s.index_select(0, flat).view(*idx.shape, s.shape[1]) for s in srcs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        (flat,) = ctx.saved_tensors
        grads = [g.reshape(flat.shape[0], -1) for g in grads]
        if len(grads) > 1 and len(set(ctx.rows)) == 1:  # one scatter-add of the joined rows
            g = torch.cat(grads, dim=1)
            acc = g.new_zeros(ctx.rows[0], g.shape[1]).index_add_(0, flat, g)
            return (None, *acc.split([x.shape[1] for x in grads], dim=1))
        return (None, *(g.new_zeros(n, g.shape[1]).index_add_(0, flat, g) for g, n in zip(grads, ctx.rows)))


def paired_gated_gnn(h_self: torch.Tensor, h_nodes: torch.Tensor, at: torch.Tensor, dense_add,
                     dense_erase) -> torch.Tensor:
    """:func:`gated_gnn` of both sides at once: h_self [2, B, D]; h_nodes [2, U, D] the distinct
    neighbours' inputs of each side (rows past a side's count unused) and ``at`` [2, B, K] their
    rows in ``h_nodes.view(2 U, D)`` (side s's slots + s U) -> [2, B, D].

    dense_add, dense_erase: the two ``nn.Linear`` of each gate (item, user), or their stacked
    weights (:func:`stack_pairs`; the add gate split ``(W_self^T, W_nbr^T, b)``).
    The add gate's ``W_a [h_self ; h_j] = W_a,self h_self + W_a,nbr h_j``: the neighbour half is a
    product over the distinct nodes, gathered into the B*K slots, instead of a product over the
    [B*K, 2D] concatenation (the same sum, rounded in another order)."""
    d = h_self.shape[-1]
    if isinstance(dense_add[0], nn.Module):
        dense_add, dense_erase = stack_pairs([dense_add, dense_erase], split={0: d})
    w_self, w_nbr, b_add = dense_add
    u = h_nodes.shape[1]
    nbr_part = torch.bmm(h_nodes, w_nbr)
    h_nbr, nbr_gate = _Rows.apply(at, h_nodes.view(2 * u, d), nbr_part.view(2 * u, d))
    add_gate = torch.sigmoid(nbr_gate + torch.baddbmm(b_add, h_self, w_self).unsqueeze(2))
    erase_gate = torch.sigmoid(paired(dense_erase, torch.cat([h_self, h_nbr.mean(dim=2)], dim=-1)))
    return F.leaky_relu((1 - erase_gate) * h_self + (h_nbr * add_gate).mean(dim=2))


def _table_grad(idx: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gradient of the joined table ``w`` [R, D] of :class:`_FieldSums` from the incoming
    ``g = [g_sum ; g_sq]`` [N, 2D]: ``G_s + 2 W G_q`` with ``G`` the scatter-add of ``g`` over the
    slots of ``idx`` [N, F] (one ``index_add_`` per attribute column: no sort of the indices)."""
    acc = g.new_zeros(w.shape[0], g.shape[1])
    for col in idx.t():
        acc.index_add_(0, col, g)
    d = w.shape[1]
    return torch.addcmul(acc[:, :d], w, acc[:, d:], value=2)


class _NodeInputs(torch.autograd.Function):
    """Both sides' distinct nodes of a batch: field sums, Bi-Interaction vector and ID embedding,
    padded to one [2, U, D] (side 0 item, 1 user; rows past a side's count are 0), and the same
    three for the B nodes themselves [2, B, D] (rows ``own`` of each side), as one autograd node.

    Forward (per side): ``S = sum_f e_f``, ``Q = sum_f e_f^2`` (two ``embedding_bag`` over the
    joined field tables, as :class:`_FieldSums`), ``bi = 0.5 (S^2 - Q)``, ``P`` = ID embedding rows.
    Backward: the own rows' gradients added into the nodes' (``index_add_``), ``dS = g_S + g_bi S``,
    ``dQ = -g_bi / 2``, the tables' gradient as :class:`_FieldSums`, the ID tables' by ``index_add_``."""

    @staticmethod
    def forward(ctx, idx: tuple, ids: tuple, own: torch.Tensor, n_tables: tuple, *weights):
        u = max(len(i) for i in ids)
        d = weights[0].shape[1]
        nt = n_tables[0]
        sides = (weights[:nt], weights[nt:nt + n_tables[1]])
        emb = weights[nt + n_tables[1]:]
        s_all, q_all, p_all = (weights[0].new_zeros(2, u, d) for _ in range(3))
        joined = []
        for s in range(2):
            w = _joined(list(sides[s]))
            joined.append(w)
            n = len(ids[s])
            s_all[s, :n] = F.embedding_bag(idx[s], w, mode="sum")
            q_all[s, :n] = F.embedding_bag(idx[s], w * w, mode="sum")
            torch.index_select(emb[s], 0, ids[s], out=p_all[s, :n])
        bi = 0.5 * (s_all.pow(2) - q_all)
        flat = own.reshape(-1)  # rows of the [2 U] nodes
        ctx.save_for_backward(s_all, flat)
        ctx.idx, ctx.ids, ctx.joined, ctx.u = idx, ids, joined, u
        ctx.sizes = [[t.shape[0] for t in side] for side in sides]
        ctx.emb_rows = [e.shape[0] for e in emb]
        outs = []
        for x in (bi, s_all, p_all):
            outs.append(x.view(2 * u, d).index_select(0, flat).view(*own.shape, d))
        return (bi, s_all, p_all, *outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_bi, g_s, g_p, go_bi, go_s, go_p):
        s_all, flat = ctx.saved_tensors
        u = ctx.u
        d = s_all.shape[-1]
        gs = []
        for g, go in ((g_bi, go_bi), (g_s, go_s), (g_p, go_p)):
            g = g.reshape(2 * u, d).clone()
            gs.append(g.index_add_(0, flat, go.reshape(-1, d)).view(2, u, d))
        g_bi, g_s, g_p = gs
        g = g_s.new_empty(2, u, 2 * d)
        torch.addcmul(g_s, g_bi, s_all, out=g[..., :d])  # dS = g_S + g_bi S
        torch.mul(g_bi, -0.5, out=g[..., d:])  # dQ = -g_bi / 2
        table_grads, emb_grads = [], []
        for s in range(2):
            n = len(ctx.ids[s])
            dw = _table_grad(ctx.idx[s], ctx.joined[s], g[s, :n])
            table_grads += list(dw.split(ctx.sizes[s]))
            emb_grads.append(g_p.new_zeros(ctx.emb_rows[s], d).index_add_(0, ctx.ids[s], g_p[s, :n]))
        return (None, None, None, None, *table_grads, *emb_grads)


class AGNN(nn.Module):
    """AGNN rating predictor. ``forward(batch, mode)`` -> (prediction [B], recon loss, KL loss).

    ``mode``: ``train`` or ``warm`` (both preference embeddings from the tables), ``ics`` (item
    preference from the eVAE), ``ucs`` (user preference from the eVAE).
    """

    ITEM_SLOTS = (("genre", 0, 6), ("director", 6, 9), ("writer", 9, 12), ("star", 12, 15), ("country", 15, 23))
    USER_SLOTS = ("gender", "age", "occupation")

    def __init__(self, cfg: AGNNConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_size
        # Preference embeddings (Xavier) and biases (zero), as in the authors' code.
        self.user_embed = nn.Embedding(cfg.n_users, d)
        self.item_embed = nn.Embedding(cfg.n_items, d)
        nn.init.xavier_uniform_(self.user_embed.weight)
        nn.init.xavier_uniform_(self.item_embed.weight)
        self.user_bias = nn.Embedding(cfg.n_users, 1)
        self.item_bias = nn.Embedding(cfg.n_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.global_bias = nn.Parameter(torch.zeros(1))
        # Attribute embeddings, normal(0, 0.05).
        self.attr_embed = nn.ModuleDict()
        for name in (*self.USER_SLOTS, *(s[0] for s in self.ITEM_SLOTS)):
            emb = nn.Embedding(cfg.vocab[name], d)
            nn.init.normal_(emb.weight, 0.0, 0.05)
            self.attr_embed[name] = emb
        # Attribute interaction layer: one (bi, si) pair per side and per self/one-hop.
        self.dense_item_self_biinter, self.dense_item_self_siinter = _linear(d, d), _linear(d, d)
        self.dense_item_onehop_biinter, self.dense_item_onehop_siinter = _linear(d, d), _linear(d, d)
        self.dense_user_self_biinter, self.dense_user_self_siinter = _linear(d, d), _linear(d, d)
        self.dense_user_onehop_biinter, self.dense_user_onehop_siinter = _linear(d, d), _linear(d, d)
        # Node input: [attribute representation ; preference embedding] -> D.
        self.dense_item_cate_self, self.dense_item_cate_hop1 = _linear(2 * d, d), _linear(2 * d, d)
        self.dense_user_cate_self, self.dense_user_cate_hop1 = _linear(2 * d, d), _linear(2 * d, d)
        # Gated-GNN gates. The authors never Xavier-initialise the user erase gate.
        self.dense_item_addgate, self.dense_item_erasegate = _linear(2 * d, d), _linear(2 * d, d)
        self.dense_user_addgate = _linear(2 * d, d)
        self.dense_user_erasegate = nn.Linear(2 * d, d)
        if cfg.user_erase_init == "xavier":
            _xavier(self.dense_user_erasegate)
        self.user_vae, self.item_vae = EVAE(d), EVAE(d)
        self.fc_pre = _linear(2 * d, 1)  # prediction MLP on [p ; q]
        # Row offsets of each attribute column in the concatenated field tables (field_sums); not
        # saved in checkpoints.
        self.register_buffer("item_attr_offsets", self._table_offsets(
            [n for n, a, e in self.ITEM_SLOTS for _ in range(a, e)]), persistent=False)
        self.register_buffer("user_attr_offsets", self._table_offsets(list(self.USER_SLOTS)), persistent=False)

    # ------------------------------------------------------------------ attribute embeddings
    def _table_offsets(self, columns: list[str]) -> torch.Tensor:
        """First row of each attribute column's field in the concatenation of the fields' tables."""
        start, first = 0, {}
        for name in dict.fromkeys(columns):
            first[name] = start
            start += self.cfg.vocab[name]
        return torch.tensor([first[n] for n in columns], dtype=torch.int64)

    @staticmethod
    def _distinct(ids: torch.Tensor, attr: torch.Tensor,
                  offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The distinct node ids of ``ids`` [N], their rows of the joined field tables
        (``attr`` [N, F] + ``offsets``) and each slot's position among them (inverse, [N]).

        Should one node have different attribute rows in different slots (a hand-made batch),
        every slot is its own node. CPU tensors go through numpy: the ids (small non-negative
        integers) marked in a table, whose running count gives each slot's position (the same sorted
        order and inverse as ``torch.unique`` / ``np.unique``, without a sort)."""
        ids_np = ids.numpy() if ids.device.type == "cpu" else None
        if ids_np is not None and len(ids_np) and ids_np.min() >= 0:
            attr_np = attr.numpy()
            seen = np.zeros(int(ids_np.max()) + 1, dtype=bool)
            seen[ids_np] = True
            uniq = np.flatnonzero(seen)
            inv = (np.cumsum(seen) - 1)[ids_np]
            rows = np.empty((len(uniq), attr_np.shape[1]), dtype=attr_np.dtype)
            rows[inv] = attr_np
            if np.array_equal(rows[inv], attr_np):  # one attribute row per node id: each node once
                return torch.from_numpy(uniq), torch.from_numpy(rows + offsets.numpy()), torch.from_numpy(inv)
            return ids, attr + offsets, torch.arange(len(ids))
        uniq, inv = torch.unique(ids, return_inverse=True)
        first = torch.empty_like(uniq).scatter_(0, inv, torch.arange(len(ids), device=ids.device))
        if torch.equal(attr[first][inv], attr):
            return uniq, attr[first] + offsets, inv
        return ids, attr + offsets, torch.arange(len(ids), device=ids.device)

    # ------------------------------------------------------------------ forward
    def _node_inputs(self, b):
        """Both sides' distinct nodes (``_distinct``; the nodes themselves are in the last
        neighbour slot) through :class:`_NodeInputs`: the Bi-Interaction vector, the field sum and
        the ID embedding of the distinct nodes [2, U, D] and of the B nodes themselves [2, B, D],
        and the neighbour slots' rows ``at`` [2, B, K] of the distinct nodes (``view(2 U, D)``)."""
        idx, ids, inv = [], [], []
        for own_ids, nbr_ids, own, nbr, offsets in (
                (b.item, b.item_nbr, b.item_attr, b.item_nbr_attr, self.item_attr_offsets),
                (b.user, b.user_nbr, b.user_attr, b.user_nbr_attr, self.user_attr_offsets)):
            bb, k, f = nbr.shape
            i, x, v = self._distinct(torch.cat([nbr_ids.reshape(bb * k), own_ids]),
                                     torch.cat([nbr.reshape(bb * k, f), own]), offsets)
            ids.append(i), idx.append(x), inv.append(v)
        u = max(len(i) for i in ids)
        bb, k = b.item_nbr.shape[0], b.item_nbr.shape[1]
        rows = torch.stack([inv[0], inv[1] + u]).view(2, -1)  # rows of the [2 U] distinct nodes
        item_tables = [self.attr_embed[n].weight for n, _, _ in self.ITEM_SLOTS]
        user_tables = [self.attr_embed[n].weight for n in self.USER_SLOTS]
        outs = _NodeInputs.apply((idx[0], idx[1]), (ids[0], ids[1]), rows[:, bb * k:], (len(item_tables), len(user_tables)),
                                 *item_tables, *user_tables, self.item_embed.weight, self.user_embed.weight)
        return (*outs, rows[:, :bb * k].view(2, bb, k))

    def forward(self, b, mode: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """b: data.Batch. Returns prediction [B], reconstruction loss [], KL loss []."""
        cfg = self.cfg
        d = cfg.embed_size
        # Both sides at once: [2, ...] tensors, side 0 = item, side 1 = user, each side through its
        # own weights (stacked in one autograd node, :func:`stack_pairs`, for ``baddbmm``).
        user_si = self.dense_user_onehop_siinter if cfg.user_self_linear == "onehop" else self.dense_user_self_siinter
        (hop_bi, hop_si, hop1, self_bi, self_si, cate_self, add, erase, *vae) = stack_pairs([
            (self.dense_item_onehop_biinter, self.dense_user_onehop_biinter),
            (self.dense_item_onehop_siinter, self.dense_user_onehop_siinter),
            (self.dense_item_cate_hop1, self.dense_user_cate_hop1),
            (self.dense_item_self_biinter, self.dense_user_self_biinter),
            (self.dense_item_self_siinter, user_si),
            (self.dense_item_cate_self, self.dense_user_cate_self),
            (self.dense_item_addgate, self.dense_user_addgate),
            (self.dense_item_erasegate, self.dense_user_erasegate),
            *((getattr(self.item_vae, n), getattr(self.user_vae, n)) for n in EVAE_LAYERS)], split={6: d})
        # Distinct nodes (one-hop neighbours, the last slot = the node itself, with their ID
        # embeddings): W_hop1 [attribute interaction (one-hop layers) ; ID embedding].
        bi, summed, pref_nodes, own_bi, own_sum, own_pref, at = self._node_inputs(b)
        h_nodes = paired(hop1, torch.cat([paired_interaction(bi, summed, hop_bi, hop_si), pref_nodes], dim=-1))
        # The nodes' own attribute representation uses the self layers.
        feat = paired_interaction(own_bi, own_sum, self_bi, self_si)
        pref = own_pref  # = item_embed(b.item), user_embed(b.user)
        if mode == "ics":  # cold item: preference reconstructed from attributes
            pref = torch.stack([self.item_vae(feat[0], mean=cfg.eval_mean)[0], own_pref[1]])
        elif mode == "ucs":  # cold user
            pref = torch.stack([own_pref[0], self.user_vae(feat[1], mean=cfg.eval_mean)[0]])
        h_self = paired(cate_self, torch.cat([feat, pref], dim=-1))
        q, p = paired_gated_gnn(h_self, h_nodes, at, add, erase)

        # eVAE losses (paper's L_recon): ||x' - m|| (Frobenius norm over the batch) + KL, item + user.
        recon, kl = self._evae_losses(feat, pref, vae)

        # Prediction layer.
        pred = (self.fc_pre(torch.cat([p, q], dim=1)).squeeze(-1) + (p * q).sum(1)
                + self.user_bias(b.user).squeeze(-1) + self.item_bias(b.item).squeeze(-1) + self.global_bias)
        return pred, recon, kl

    def _evae_losses(self, feat: torch.Tensor, pref: torch.Tensor, layers=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides' eVAE terms in one batched pass: feat, pref [2, B, D] (item, user).

        The same as ``item_vae(feat[0])`` then ``user_vae(feat[1])`` (the same noise, drawn in the
        same order), then
        ``||rec - pref||`` and :func:`kl_term` of each side, each summed over the two sides.
        layers: the stacked weights of ``EVAE_LAYERS`` (:func:`stack_pairs`; default: stacked here)."""
        if layers is None:
            layers = stack_pairs([(getattr(self.item_vae, n), getattr(self.user_vae, n)) for n in EVAE_LAYERS])
        xh, mu_l, var_l, zh, hx = layers
        h = F.relu(paired(xh, feat))
        mu, log_var = paired(mu_l, h), paired(var_l, h)
        # The noise of each side drawn on its own, item first: torch's normal sampler gives other
        # numbers for one [2, B, D] draw than for two [B, D] draws unless B * D is a multiple of 16.
        eps = torch.stack([torch.randn_like(mu[0]), torch.randn_like(mu[1])])
        z = mu + torch.exp(log_var / 2) * eps
        rec = paired(hx, F.relu(paired(zh, z)))
        recon = torch.linalg.vector_norm(rec - pref, dim=(1, 2)).sum()
        return recon, kl_term(z, mu, log_var, self.cfg.kl).sum()

    def loss(self, b, vae_lambda: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Authors' objective: summed squared error + vae_lambda * (recon + KL)."""
        pred, recon, kl = self(b, "train")
        main = F.mse_loss(pred, b.rating, reduction="sum")
        total = main + vae_lambda * (recon + kl)
        return total, {"sse": main.item(), "recon": recon.item(), "kl": kl.item()}

    @torch.inference_mode()
    def predict(self, b, mode: str) -> torch.Tensor:
        """Predicted ratings [B] in evaluation mode ``mode`` (ics | ucs | warm)."""
        return self(b, mode)[0]
