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
batch once (``_side_inputs``, ``_FieldSums``) and runs the item and the user side through their
layers in one batched pass (``paired*``, ``AGNN._evae_losses``); the per-side functions above
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
    """Batch mean of ``0.5 * sum_d(exp(.) + mu^2 - 1 - log_var)`` (paper's KL in L_recon).

    ``kind="authors"`` puts the sampled z in exp(.), as the authors' code does; ``"standard"``
    uses log_var (the closed-form KL(N(mu, var) || N(0, 1))).
    """
    inner = torch.exp(z) if kind == "authors" else torch.exp(log_var)
    return torch.mean(0.5 * torch.sum(inner + mu**2 - 1.0 - log_var, dim=1))


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
        w = ctx.w
        g = torch.cat([g_sum, g_sq], dim=1)
        acc = g.new_zeros(w.shape[0], g.shape[1])
        for col in idx.t():  # a handful of columns; each a scatter-add of the [N, 2D] gradient
            acc.index_add_(0, col, g)
        d = w.shape[1]
        dw = torch.addcmul(acc[:, :d], w, acc[:, d:], value=2)  # G_s + 2 W G_q
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


def paired(layers: tuple[nn.Linear, nn.Linear], x: torch.Tensor) -> torch.Tensor:
    """Two linear layers, one per side, on x [2, N, in] -> [2, N, out]: ``x[s] W_s^T + b_s``."""
    w = torch.stack([l.weight for l in layers])
    bias = torch.stack([l.bias for l in layers])
    return torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2))


def paired_interaction(bi: torch.Tensor, summed: torch.Tensor, dense_bi: tuple, dense_si: tuple) -> torch.Tensor:
    """:func:`interaction` of both sides at once: bi, summed [2, B, D] -> [2, B, D]."""
    return F.leaky_relu(paired(dense_bi, bi)) + F.leaky_relu(paired(dense_si, summed))


def paired_gated_gnn(h_self: torch.Tensor, h_nodes: tuple, slots: tuple, dense_add: tuple,
                     dense_erase: tuple) -> torch.Tensor:
    """:func:`gated_gnn` of both sides at once: h_self [2, B, D]; per side the distinct nodes'
    inputs h_nodes[s] [U_s, D] and the slots[s] [B, K] (h_nbr = h_nodes[s][slots[s]]) -> [2, B, D].

    The add gate's ``W_a [h_self ; h_j] = W_a,self h_self + W_a,nbr h_j``: the neighbour half is a
    product over the U_s distinct nodes, gathered into the B*K slots, instead of a product over the
    [B*K, 2D] concatenation (the same sum, rounded in another order)."""
    d = h_self.shape[-1]
    rows = torch.cat([h_nodes[0], h_nodes[1]])
    nbr_part = torch.cat([F.linear(h, l.weight[:, d:]) for h, l in zip(h_nodes, dense_add)])
    at = torch.stack([slots[0], slots[1] + h_nodes[0].shape[0]])  # [2, B, K] rows of the joined tables
    h_nbr = rows[at]
    self_part = torch.baddbmm(torch.stack([l.bias for l in dense_add]).unsqueeze(1), h_self,
                              torch.stack([l.weight[:, :d] for l in dense_add]).transpose(1, 2))
    add_gate = torch.sigmoid(nbr_part[at] + self_part.unsqueeze(2))
    erase_gate = torch.sigmoid(paired(dense_erase, torch.cat([h_self, h_nbr.mean(dim=2)], dim=-1)))
    return F.leaky_relu((1 - erase_gate) * h_self + (h_nbr * add_gate).mean(dim=2))


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

    def _side_inputs(self, side: str, own_ids: torch.Tensor, nbr_ids: torch.Tensor, own: torch.Tensor,
                     nbr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One side's (``"item"`` or ``"user"``) one-hop neighbour inputs and the nodes' own field sums.

        own_ids [B], nbr_ids [B, K]: node ids; own [B, F], nbr [B, K, F]: their attribute ids.
        A neighbour's input ``W_hop1 [attribute_interaction ; ID embedding]`` depends on the
        neighbour alone, so it is computed once per distinct node of the batch (the nodes themselves
        are in the last neighbour slot) and gathered into the slots; the field sums come from one
        :func:`field_sums` lookup over those nodes.
        Returns the one-hop inputs of the distinct nodes h [U, D], the slots [B, K] (rows of h), and
        for the B nodes themselves the Bi-Interaction vector ``0.5 ((sum_f e_f)^2 - sum_f e_f^2)``,
        the field sum ``sum_f e_f`` and the ID (preference) embedding, [B, D] each (the same rows as
        a lookup of own_ids: the nodes are in the last slot).
        """
        if side == "item":
            fields, offsets, embed = [n for n, _, _ in self.ITEM_SLOTS], self.item_attr_offsets, self.item_embed
            dense_bi, dense_si = self.dense_item_onehop_biinter, self.dense_item_onehop_siinter
            dense_hop1 = self.dense_item_cate_hop1
        else:
            fields, offsets, embed = self.USER_SLOTS, self.user_attr_offsets, self.user_embed
            dense_bi, dense_si = self.dense_user_onehop_biinter, self.dense_user_onehop_siinter
            dense_hop1 = self.dense_user_cate_hop1
        b, k, f = nbr.shape
        ids, idx, inv = self._distinct(torch.cat([nbr_ids.reshape(b * k), own_ids]),
                                       torch.cat([nbr.reshape(b * k, f), own]), offsets)
        summed, squares = _FieldSums.apply(idx, *[self.attr_embed[n].weight for n in fields])
        bi = 0.5 * (summed.pow(2) - squares)
        pref = embed(ids)
        h = dense_hop1(torch.cat([interaction(bi, summed, dense_bi, dense_si), pref], dim=-1))
        own_rows = inv[b * k:]
        return h, inv[: b * k].view(b, k), bi[own_rows], summed[own_rows], pref[own_rows]

    @staticmethod
    def _distinct(ids: torch.Tensor, attr: torch.Tensor,
                  offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The distinct node ids of ``ids`` [N], their rows of the joined field tables
        (``attr`` [N, F] + ``offsets``) and each slot's position among them (inverse, [N]).

        Should one node have different attribute rows in different slots (a hand-made batch),
        every slot is its own node. CPU tensors go through numpy (the same sorted order and
        inverse as ``torch.unique``, fewer and cheaper calls)."""
        if ids.device.type == "cpu":
            ids_np, attr_np = ids.numpy(), attr.numpy()
            uniq, first, inv = np.unique(ids_np, return_index=True, return_inverse=True)
            rows = attr_np[first]
            if np.array_equal(rows[inv], attr_np):  # one attribute row per node id: each node once
                return (torch.from_numpy(uniq), torch.from_numpy(rows + offsets.numpy()),
                        torch.from_numpy(inv.reshape(-1)))
            return ids, attr + offsets, torch.arange(len(ids))
        uniq, inv = torch.unique(ids, return_inverse=True)
        first = torch.empty_like(uniq).scatter_(0, inv, torch.arange(len(ids), device=ids.device))
        if torch.equal(attr[first][inv], attr):
            return uniq, attr[first] + offsets, inv
        return ids, attr + offsets, torch.arange(len(ids), device=ids.device)

    # ------------------------------------------------------------------ forward
    def forward(self, b, mode: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """b: data.Batch. Returns prediction [B], reconstruction loss [], KL loss []."""
        cfg = self.cfg
        # Item side, then user side. One-hop neighbours (last slot = the node itself) use their ID
        # embeddings; the nodes' own attribute representation uses the self layers.
        item_nodes, item_slots, item_bi, item_sum, item_emb = self._side_inputs(
            "item", b.item, b.item_nbr, b.item_attr, b.item_nbr_attr)
        user_nodes, user_slots, user_bi, user_sum, user_emb = self._side_inputs(
            "user", b.user, b.user_nbr, b.user_attr, b.user_nbr_attr)
        user_si = self.dense_user_onehop_siinter if cfg.user_self_linear == "onehop" else self.dense_user_self_siinter
        # From here on both sides go through the same layers (each with its own weights): one
        # batched pass over [2, B, ...] tensors, side 0 = item, side 1 = user (:func:`paired`).
        feat = paired_interaction(torch.stack([item_bi, user_bi]), torch.stack([item_sum, user_sum]),
                                  (self.dense_item_self_biinter, self.dense_user_self_biinter),
                                  (self.dense_item_self_siinter, user_si))
        item_pref, user_pref = item_emb, user_emb  # = item_embed(b.item), user_embed(b.user)
        if mode == "ics":  # cold item: preference reconstructed from attributes
            item_pref = self.item_vae(feat[0], mean=cfg.eval_mean)[0]
        elif mode == "ucs":  # cold user
            user_pref = self.user_vae(feat[1], mean=cfg.eval_mean)[0]
        pref = torch.stack([item_pref, user_pref])
        h_self = paired((self.dense_item_cate_self, self.dense_user_cate_self), torch.cat([feat, pref], dim=-1))
        q, p = paired_gated_gnn(h_self, (item_nodes, user_nodes), (item_slots, user_slots),
                                (self.dense_item_addgate, self.dense_user_addgate),
                                (self.dense_item_erasegate, self.dense_user_erasegate))

        # eVAE losses (paper's L_recon): ||x' - m|| (Frobenius norm over the batch) + KL, item + user.
        recon, kl = self._evae_losses(feat, pref)

        # Prediction layer.
        pred = (self.fc_pre(torch.cat([p, q], dim=1)).squeeze(-1) + (p * q).sum(1)
                + self.user_bias(b.user).squeeze(-1) + self.item_bias(b.item).squeeze(-1) + self.global_bias)
        return pred, recon, kl

    def _evae_losses(self, feat: torch.Tensor, pref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides' eVAE terms in one batched pass: feat, pref [2, B, D] (item, user).

        The same as ``item_vae(feat[0])`` then ``user_vae(feat[1])`` (the same noise, drawn in the
        same order), then
        ``||rec - pref||`` and :func:`kl_term` of each side, each summed over the two sides."""
        vaes = (self.item_vae, self.user_vae)

        def dense(name: str, x: torch.Tensor) -> torch.Tensor:
            return paired(tuple(getattr(v, name) for v in vaes), x)

        h = F.relu(dense("dense_xh", feat))
        mu, log_var = dense("dense_hz_mu", h), dense("dense_hz_var", h)
        # The noise of each side drawn on its own, item first: torch's normal sampler gives other
        # numbers for one [2, B, D] draw than for two [B, D] draws unless B * D is a multiple of 16.
        eps = torch.stack([torch.randn_like(mu[0]), torch.randn_like(mu[1])])
        z = mu + torch.exp(log_var / 2) * eps
        rec = dense("dense_hx", F.relu(dense("dense_zh", z)))
        recon = torch.linalg.vector_norm(rec - pref, dim=(1, 2)).sum()
        inner = torch.exp(z) if self.cfg.kl == "authors" else torch.exp(log_var)
        kl = (0.5 * torch.sum(inner + mu**2 - 1.0 - log_var, dim=2)).mean(dim=1).sum()
        return recon, kl

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
