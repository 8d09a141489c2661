"""GC-SAN (Xu et al., IJCAI'19) as RecBole implements it: the network only.

Equation numbers refer to the paper (arXiv-free IJCAI version, Section 3):
  Eq. 1    session graph: normalized incoming / outgoing adjacency of the session's item graph
  Eq. 2-6  gated graph neural network (one GRU-style update per ``step``)
  Eq. 7-9  self-attention layers with point-wise feed-forward and residual connections
           (RecBole's Transformer encoder: multi-head, LayerNorm eps 1e-12, gelu, causal mask)
  Eq. 10   session representation S_f = ω · E^(k)_n + (1 − ω) · h_n   (ω = ``weight``)
  Eq. 11   scores ŷ = softmax(S_f^T v_i) over every item; cross-entropy loss + L2 on embeddings
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from common.parallel import submit_draw  # noqa: F401  (gcsan.model.submit_draw: the draw-ahead worker)


# ----------------------------------------------------------------------------- Eq. 1
def session_graph(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Session graphs of a right-padded batch, vectorized (no Python loop over sessions).

    Nodes are the distinct ids of a row in ascending order (the padding id 0 is a node, with no
    edges, whenever the row is padded, exactly as RecBole's ``np.unique`` gives). An edge u -> v
    exists (weight 1, repeats collapsed) for each consecutive pair of real items.

    Args:
        seq: [B, L] item ids, 0 = padding after the last real item.
    Returns:
        alias [B, L]: node index of each position;
        A [B, L, 2L]: [:, i, :L] = in-edges of node i / in-degree(i), [:, i, L:] = out-edges / out-degree(i);
        items [B, L]: item id of each node (0 beyond the last node).
    """
    B, L = seq.shape
    sorted_ids, order = seq.sort(dim=1)
    new = torch.ones_like(seq, dtype=torch.bool)
    new[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    node_of_sorted = new.long().cumsum(1) - 1
    alias = torch.empty_like(seq).scatter_(1, order, node_of_sorted)
    slot = torch.where(new, node_of_sorted, torch.full_like(node_of_sorted, L))
    items = torch.zeros(B, L + 1, dtype=seq.dtype, device=seq.device).scatter_(1, slot, sorted_ids)[:, :L]

    adj = torch.zeros(B, L, L, dtype=torch.float32, device=seq.device)
    real_edge = seq[:, 1:] != 0
    b = torch.arange(B, device=seq.device)[:, None].expand(B, L - 1)
    adj[b[real_edge], alias[:, :-1][real_edge], alias[:, 1:][real_edge]] = 1.0
    in_deg = adj.sum(1).clamp(min=1.0)  # [B, L] column sums
    out_deg = adj.sum(2).clamp(min=1.0)  # [B, L] row sums
    A = torch.cat([adj.transpose(1, 2) / in_deg[:, :, None], adj / out_deg[:, :, None]], dim=2)
    return alias, A, items


class SessionEdges(NamedTuple):
    """The session graphs of a batch as flat node and edge lists (what :func:`session_graph` holds densely).

    Nodes of all rows are numbered consecutively (row b's k-th node is ``offset[b] + k``); only the
    nodes that exist are listed (a row's distinct ids, the padding id 0 included when padded), not
    the empty slots up to L that the dense form carries. Edge e goes ``src[e] -> dst[e]`` (repeats
    collapsed); ``w_in[e]`` = 1 / in-degree(dst), ``w_out[e]`` = 1 / out-degree(src): the nonzero
    entries of A[:, :, :L] (at [dst, src]) and of A[:, :, L:] (at [src, dst])."""

    alias: torch.Tensor  # [B, L] flat node index of each position
    items: torch.Tensor  # [N] item id of each node
    src: torch.Tensor  # [E]
    dst: torch.Tensor  # [E]
    w_in: torch.Tensor  # [E] float
    w_out: torch.Tensor  # [E] float


def session_edges(seq: torch.Tensor) -> SessionEdges:
    """Sparse form of :func:`session_graph` (same nodes, edges and weights; tested equal)."""
    B, L = seq.shape
    sorted_ids, order = seq.sort(dim=1)
    new = torch.ones_like(seq, dtype=torch.bool)
    new[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    node_of_sorted = new.long().cumsum(1) - 1
    n_nodes = node_of_sorted[:, -1] + 1
    offset = n_nodes.cumsum(0) - n_nodes
    alias = torch.empty_like(seq).scatter_(1, order, node_of_sorted) + offset[:, None]
    items = sorted_ids[new]  # row-major: row b's distinct ids in ascending order
    real_edge = seq[:, 1:] != 0
    n = len(items)
    edge_id = torch.unique(alias[:, :-1][real_edge] * n + alias[:, 1:][real_edge])  # repeats collapsed
    src, dst = edge_id // n, edge_id % n
    ones = torch.ones(len(edge_id), dtype=torch.float32, device=seq.device)
    in_deg = torch.zeros(n, dtype=torch.float32, device=seq.device).index_add_(0, dst, ones)
    out_deg = torch.zeros(n, dtype=torch.float32, device=seq.device).index_add_(0, src, ones)
    return SessionEdges(alias, items, src, dst, 1.0 / in_deg[dst], 1.0 / out_deg[src])


# ----------------------------------------------------------------------------- Eq. 2-6
class GatedGraphNetwork(nn.Module):
    """SR-GNN's gated GNN cell applied ``step`` times.

    a_t = [A_in (H W_in + b_in), A_out (H W_out + b_out)]                          (Eq. 2)
    z = σ(W_z a + U_z h), r = σ(W_r a + U_r h)                                      (Eq. 3, 4)
    h̃ = tanh(W_o a + r ⊙ U_o h), h' = (1 − z) ⊙ h + z ⊙ h̃                          (Eq. 5, 6)

    A_in / A_out are applied as edge lists (:class:`SessionEdges`) on the batch's existing nodes:
    the same sums as the dense [B, L, 2L] product without its zeros and empty node slots.
    """

    def __init__(self, hidden_size: int, step: int = 1):
        super().__init__()
        self.step = step
        self.w_ih = nn.Parameter(torch.empty(3 * hidden_size, 2 * hidden_size))
        self.w_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.b_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.b_hh = nn.Parameter(torch.empty(3 * hidden_size))
        self.linear_edge_in = nn.Linear(hidden_size, hidden_size)
        self.linear_edge_out = nn.Linear(hidden_size, hidden_size)
        stdv = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -stdv, stdv)

    def cell(self, g: SessionEdges, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, D] (one row per node) -> [N, D]."""
        x_in, x_out = self.linear_edge_in(hidden), self.linear_edge_out(hidden)
        input_in = torch.zeros_like(x_in).index_add_(0, g.dst, x_in[g.src] * g.w_in[:, None])
        input_out = torch.zeros_like(x_out).index_add_(0, g.src, x_out[g.dst] * g.w_out[:, None])
        gi = F.linear(torch.cat([input_in, input_out], 1), self.w_ih, self.b_ih)
        gh = F.linear(hidden, self.w_hh, self.b_hh)
        return self.gates(gi, gh, hidden)

    @staticmethod
    def gates(gi: torch.Tensor, gh: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Eq. 3-6 from gi = W a + b_ih and gh = U h + b_hh, both [N, 3D] (r, z, candidate)."""
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        reset_gate = torch.sigmoid(i_r + h_r)
        update_gate = torch.sigmoid(i_z + h_z)
        candidate = torch.tanh(i_n + reset_gate * h_n)
        return (1 - update_gate) * hidden + update_gate * candidate

    def forward(self, g: SessionEdges, hidden: torch.Tensor) -> torch.Tensor:
        for _ in range(self.step):
            hidden = self.cell(g, hidden)
        return hidden

    def forward_from_items(self, g: SessionEdges, emb: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` of ``emb[g.items]`` (emb: the item table [I, D]), the first step on the table.

        The first step's H holds item embeddings, so everything linear in H is computed once per item
        and spread over the nodes by sparse products: W_ih [A_in (H W_in^T + b_in), A_out (H W_out^T +
        b_out)] = M T with T = [E (W_ih,1 W_in)^T + W_ih,1 b_in ; E (W_ih,2 W_out)^T + W_ih,2 b_out]
        ([2I, 3D]) and M the sparse [N, 2I] matrix holding A_in's weights at (node, item of the
        in-neighbour) and A_out's at (node, I + item of the out-neighbour); U H + b_hh = (E U^T +
        b_hh)[items]. The r and z gates only need gi + gh, so [M, S] (S: 1 at (node, 2I + its item))
        times [T_rz; E U_rz^T + b_hh,rz + b_ih,rz] gives their pre-activations in one product. The same
        sums, reassociated, with no [N, D] x [D, 3D] product; see :class:`_FirstGnnStep`."""
        D = emb.shape[1]
        w_in, w_out = self.w_ih[:, :D], self.w_ih[:, D:]
        t_in = F.linear(emb, w_in @ self.linear_edge_in.weight, w_in @ self.linear_edge_in.bias)  # [I, 3D]
        t_out = F.linear(emb, w_out @ self.linear_edge_out.weight, w_out @ self.linear_edge_out.bias)
        t_h_rz = F.linear(emb, self.w_hh[:2 * D], self.b_hh[:2 * D] + self.b_ih[:2 * D])
        t_h_n = F.linear(emb, self.w_hh[2 * D:], self.b_hh[2 * D:])
        hidden = _FirstGnnStep.apply(torch.cat([t_in[:, :2 * D], t_out[:, :2 * D], t_h_rz]),
                                     torch.cat([t_in[:, 2 * D:], t_out[:, 2 * D:]]), t_h_n, self.b_ih[2 * D:],
                                     emb.index_select(0, g.items), node_item_matrices(g, emb.shape[0]))
        for _ in range(self.step - 1):
            hidden = self.cell(g, hidden)
        return hidden


class NodeItemMatrices(NamedTuple):
    """The sparse matrices of :meth:`GatedGraphNetwork.forward_from_items` (CSR), with the row of each
    stored entry (for products with their transposes, :func:`transposed_product`)."""

    m: torch.Tensor  # [N, 2I]: A_in at (node, item of the in-neighbour), A_out at (node, I + item of the out-neighbour)
    ms: torch.Tensor  # [N, 3I] = [m, S], S: 1 at (node, 2I + item of the node)
    m_rows: torch.Tensor  # [nnz(m)] node of each entry of m, in m's order
    ms_rows: torch.Tensor  # [nnz(ms)]
    items: torch.Tensor  # [N] item of each node


def _csr(crow: torch.Tensor, col: torch.Tensor, value: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, value, shape, check_invariants=False)


def _row_starts(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return crow


def node_item_matrices(g: SessionEdges, n_items: int) -> NodeItemMatrices:
    """A node's in-neighbours are distinct nodes of its own row, so of distinct items: no entry of M
    repeats. Columns are sorted within each row."""
    I, N, dev = n_items, len(g.items), g.items.device
    rows = torch.cat([g.dst, g.src])
    cols = torch.cat([g.items[g.src], g.items[g.dst] + I])
    values = torch.cat([g.w_in, g.w_out])
    order = torch.argsort(rows * (2 * I) + cols)
    crow, col, value = _row_starts(rows, N), cols[order], values[order]
    # [M, S]: one more entry at the end of each row (its column 2I + item is past all of M's)
    crow_s = crow + torch.arange(N + 1, device=dev)
    node = torch.arange(N, device=dev)
    m_rows = torch.repeat_interleave(node, crow.diff())
    at = torch.arange(len(col), device=dev) + m_rows
    col_s = torch.empty(len(col) + N, dtype=col.dtype, device=dev)
    value_s = torch.ones(len(col) + N, dtype=value.dtype, device=dev)
    col_s[at], value_s[at] = col, value
    col_s[crow_s[1:] - 1] = g.items + 2 * I
    return NodeItemMatrices(_csr(crow, col, value, (N, 2 * I)), _csr(crow_s, col_s, value_s, (N, 3 * I)),
                            m_rows, torch.repeat_interleave(node, crow_s.diff()), g.items)


# Stored entries per chunk of transposed_product: the chunk's [chunk, C] rows stay in the L2 cache.
TRANSPOSE_CHUNK = 4096


def transposed_product(a: torch.Tensor, rows: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``a^T @ d`` for a CSR matrix ``a`` [N, K] (``rows``: the row of each stored entry) and d [N, C] -> [K, C].

    Entry by entry in a's order (by row, then column): ``out[col] += value * d[row]``, in chunks of
    :data:`TRANSPOSE_CHUNK` entries (gather, scale, ``index_add_``). Each output row receives its terms
    in ascending row of ``a``, the order in which a CSR copy of ``a^T`` sums them: on ML-100k batches the
    result equalled torch's CSR product with ``a^T`` bit for bit, at about twice its speed on this CPU
    (gcsan/README.md, Speed), and no transposed copy is built."""
    col, val = a.col_indices(), a.values()
    out = d.new_zeros(a.shape[1], d.shape[1])
    buf = d.new_empty(min(len(rows), TRANSPOSE_CHUNK), d.shape[1])
    for i in range(0, len(rows), TRANSPOSE_CHUNK):
        r = rows[i:i + TRANSPOSE_CHUNK]
        src = torch.index_select(d, 0, r, out=buf[:len(r)]).mul_(val[i:i + TRANSPOSE_CHUNK, None])
        out.index_add_(0, col[i:i + TRANSPOSE_CHUNK], src)
    return out


class _FirstGnnStep(torch.autograd.Function):
    """Eq. 2-6 of the first step from the item tables, forward and backward by hand (few passes):
    r, z = σ([M, S] T_rz), h̃ = tanh(M T_n + b_ih,n + r ⊙ h_n) with h_n = T_hn[items],
    h' = h + z ⊙ (h̃ − h) (= (1 − z) ⊙ h + z ⊙ h̃). Gradients of the tables are M^T-products
    (:func:`transposed_product`)."""

    @staticmethod
    def forward(ctx, table_rz: torch.Tensor, table_n: torch.Tensor, table_hn: torch.Tensor, b_n: torch.Tensor,
                hidden: torch.Tensor, mats: NodeItemMatrices) -> torch.Tensor:
        D = hidden.shape[1]
        rz = (mats.ms @ table_rz).sigmoid_()  # [N, 2D]
        h_n = table_hn.index_select(0, mats.items)
        candidate = (mats.m @ table_n).add_(b_n).addcmul_(rz[:, :D], h_n).tanh_()
        ctx.save_for_backward(rz, h_n, candidate, hidden)
        ctx.mats, ctx.n_items = mats, table_hn.shape[0]
        return torch.lerp(hidden, candidate, rz[:, D:])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rz, h_n, candidate, hidden = ctx.saved_tensors
        mats, D = ctx.mats, hidden.shape[1]
        d_pre = torch.empty_like(rz)
        torch.sub(candidate, hidden, out=d_pre[:, D:]).mul_(grad)  # d z
        d_candidate = grad * rz[:, D:]
        d_hidden = grad - d_candidate
        d_n = torch.ops.aten.tanh_backward(d_candidate, candidate)  # d (i_n + r ⊙ h_n)
        torch.mul(d_n, h_n, out=d_pre[:, :D])  # d r
        torch.ops.aten.sigmoid_backward.grad_input(d_pre, rz, grad_input=d_pre)
        d_table_hn = grad.new_zeros(ctx.n_items, D).index_add_(0, mats.items, d_n * rz[:, :D])
        return (transposed_product(mats.ms, mats.ms_rows, d_pre), transposed_product(mats.m, mats.m_rows, d_n),
                d_table_hn, d_n.sum(0), d_hidden, None)


# ----------------------------------------------------------------------------- Eq. 7-9
class MultiHeadSelfAttention(nn.Module):
    """F = softmax(Q K^T / √d + mask) V, then dense, dropout, residual and LayerNorm (Eq. 7)."""

    def __init__(self, n_heads: int, hidden_size: int, hidden_dropout: float, attn_dropout: float,
                 layer_norm_eps: float):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.head_size = n_heads, hidden_size // n_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.out_dropout = nn.Dropout(hidden_dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                query_index: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, D], additive mask [B, 1, Q, L] -> [B, Q, D].

        Q = L, or Q = 1 when ``query_index`` [B] picks one query position per row.
        """
        xq = x if query_index is None else x.gather(1, query_index[:, None, None].expand(-1, 1, x.shape[2]))
        q, k, v = self._heads(self.query(xq)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + mask
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(xq.shape)
        return self.LayerNorm(self.out_dropout(self.dense(context)) + xq)

    def forward_packed(self, x: torch.Tensor, pk: "Packing", shape: tuple[int, int]) -> torch.Tensor:
        """:meth:`forward` on the packed real positions x [n, D] of a [B, L] batch -> [n, D]."""
        (B, L), H, dh = shape, self.n_heads, self.head_size
        qkv = F.linear(x, torch.cat([self.query.weight, self.key.weight, self.value.weight]),
                       torch.cat([self.query.bias, self.key.bias, self.value.bias]))  # [n, 3D], one matmul
        d = draw_dropout(self.attn_dropout, (B, H, L, L), x)
        context = grouped_causal_attention(qkv, pk, H, d)
        out = dropout_rows(self.out_dropout, self.dense(context), (B, L, H * dh), pk.flat)
        return self.LayerNorm(out + x)

    def forward_packed_last(self, x: torch.Tensor, pk: "Packing", shape: tuple[int, int]) -> torch.Tensor:
        """:meth:`forward` for each row's last position only (``query_index`` = length - 1) on the
        packed real positions x [n, D] -> [B, D], rows in ``pk.order``.

        The keys and values of all n positions are never formed: with W_k, W_v split by head,
        q·(W_k x_j + b_k) = (q W_k)·x_j + q·b_k and Σ_j p_j (W_v x_j + b_v) = W_v (Σ_j p_j x_j) + b_v Σ_j p_j
        (p after dropout), so per head only [B, D] vectors meet the rows x_j (same sums, reassociated)."""
        (B, L), H, dh = shape, self.n_heads, self.head_size
        D = H * dh
        xq = x.index_select(0, pk.last)
        q = self.query(xq).view(B, H, dh)
        u = torch.einsum("bhd,hde->bhe", q, self.key.weight.view(H, dh, D))  # q W_k per head
        c = torch.einsum("bhd,hd->bh", q, self.key.bias.view(H, dh))[:, :, None]  # q·b_k per head
        d = draw_dropout(self.attn_dropout, (B, H, 1, L), x)
        rows = [m for _, _, m, _ in pk.groups]
        z, mass = [], []
        for (l, t0, m, p0), xg, ug, cg in zip(pk.groups, x.split([m * l for l, _, m, _ in pk.groups]),
                                              u.split(rows), c.split(rows)):
            xg = xg.view(m, l, D)
            # every key is real and at or before the query: no mask
            probs = torch.softmax((torch.bmm(ug, xg.transpose(1, 2)) + cg) / math.sqrt(dh), dim=-1)  # [m, H, l]
            if d is not None:
                probs = probs * d.multiplier(d.mask[pk.order[t0:t0 + m], :, 0, :l])
            z.append(torch.bmm(probs, xg))  # [m, H, D]
            mass.append(probs.sum(-1, keepdim=True))  # [m, H, 1]
        z, mass = torch.cat(z), torch.cat(mass)
        context = (torch.einsum("bhe,hde->bhd", z, self.value.weight.view(H, dh, D))
                   + mass * self.value.bias.view(H, dh)).reshape(B, D)
        out = dropout_rows(self.out_dropout, self.dense(context), (B, 1, D), pk.order)
        return self.LayerNorm(out + xq)


class PointWiseFeedForward(nn.Module):
    """E = LayerNorm(x + Dropout(W_2 gelu(W_1 x + b_1) + b_2)) (Eq. 8)."""

    def __init__(self, hidden_size: int, inner_size: int, hidden_dropout: float, hidden_act: str,
                 layer_norm_eps: float):
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.act = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu, "tanh": torch.tanh,
                    "sigmoid": torch.sigmoid}[hidden_act]  # F.gelu is the erf form RecBole uses
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense_2(self.act(self.dense_1(x)))) + x)

    def forward_rows(self, x: torch.Tensor, shape: tuple[int, ...], rows: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on the rows ``rows`` (x [R, D]) of a [..., D] input of ``shape``."""
        return self.LayerNorm(dropout_rows(self.dropout, self.dense_2(self.act(self.dense_1(x))), shape, rows) + x)


class SelfAttentionLayer(nn.Module):
    """One self-attention block: attention (Eq. 7) then feed-forward (Eq. 8); stacked k times (Eq. 9)."""

    def __init__(self, n_heads: int, hidden_size: int, inner_size: int, hidden_dropout: float,
                 attn_dropout: float, hidden_act: str, layer_norm_eps: float):
        super().__init__()
        self.multi_head_attention = MultiHeadSelfAttention(n_heads, hidden_size, hidden_dropout,
                                                           attn_dropout, layer_norm_eps)
        self.feed_forward = PointWiseFeedForward(hidden_size, inner_size, hidden_dropout, hidden_act,
                                                 layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                query_index: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(self.multi_head_attention(x, mask, query_index))

    def forward_packed(self, x: torch.Tensor, pk: "Packing", shape: tuple[int, int]) -> torch.Tensor:
        D = x.shape[1]
        return self.feed_forward.forward_rows(self.multi_head_attention.forward_packed(x, pk, shape),
                                              (*shape, D), pk.flat)

    def forward_packed_last(self, x: torch.Tensor, pk: "Packing", shape: tuple[int, int]) -> torch.Tensor:
        B, D = shape[0], x.shape[1]
        return self.feed_forward.forward_rows(self.multi_head_attention.forward_packed_last(x, pk, shape),
                                              (B, 1, D), pk.order)


MASK_VALUE = -10000.0  # the authors' additive attention mask value (GCSAN.get_attention_mask)


def causal_attention_mask(seq: torch.Tensor) -> torch.Tensor:
    """Additive left-to-right mask [B, 1, L, L]: 0 where query i may see key j (j <= i, j real), else -10000."""
    L = seq.shape[1]
    allowed = (seq > 0)[:, None, None, :] & torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
    return (1.0 - allowed.float()) * MASK_VALUE


# ----------------------------------------------------------------------------- packed real positions
class Packing(NamedTuple):
    """The real (non-padding) positions of a right-padded batch, rows grouped by length.

    Rows are visited in ``order`` (ascending length, stable; inside the step only: results come
    back in the batch's order). Packed row ``r`` is position ``flat[r] % L`` of row ``flat[r] // L``;
    the rows of one length l are consecutive, so group ``(l, t0, m, p0)`` (rows ``order[t0:t0+m]``)
    is the contiguous block ``[p0, p0 + m*l)`` of packed rows, viewable as [m, l, D]."""

    order: torch.Tensor  # [B] row ids, by length
    rank: torch.Tensor  # [B] inverse of order: rank[order[t]] = t
    flat: torch.Tensor  # [n] dense position b * L + i of each packed row
    last: torch.Tensor  # [B] packed row of the last position of row order[t]
    groups: list[tuple[int, int, int, int]]  # (length l, first row t0 in order, rows m, first packed row p0)


def pack_positions(seq: torch.Tensor, length: torch.Tensor) -> Packing:
    """:class:`Packing` of ``seq`` [B, L] (0 = padding after the ``length`` real items of each row)."""
    B, L = seq.shape
    if not torch.equal(seq != 0, torch.arange(L, device=seq.device)[None, :] < length[:, None]):
        raise ValueError("seq must hold exactly length[b] nonzero item ids, then only padding 0")
    sorted_len, order = torch.sort(length, stable=True)
    ends = sorted_len.cumsum(0)
    starts = ends - sorted_len
    n = int(ends[-1])
    flat = (torch.repeat_interleave(order * L, sorted_len) + torch.arange(n, device=seq.device)
            - torch.repeat_interleave(starts, sorted_len))
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(B, device=seq.device))
    lens, counts = torch.unique_consecutive(sorted_len, return_counts=True)
    groups, t0, p0 = [], 0, 0
    for l, m in zip(lens.tolist(), counts.tolist()):
        groups.append((l, t0, m, p0))
        t0, p0 = t0 + m, p0 + m * l
    return Packing(order, rank, flat, ends - 1, groups)


class DropoutDraw(NamedTuple):
    """A dropout mask drawn at a dense shape: ``x * mask * scale`` is ``F.dropout(x)``."""

    mask: torch.Tensor  # bool, True = kept
    scale: float  # 1 / (1 - p), rounded as F.dropout rounds it (in the tensor's dtype)

    def multiplier(self, kept: torch.Tensor) -> torch.Tensor:
        """What F.dropout multiplies by where ``kept`` (entries of ``mask``): scale or 0, as floats."""
        return torch.mul(kept, self.scale)


def draw_dropout(module: nn.Module, shape: tuple[int, ...], like: torch.Tensor) -> DropoutDraw | None:
    """The mask ``module`` (an ``nn.Dropout``, train mode) would draw for a tensor of ``shape``, with the
    same draws as ``F.dropout`` on the CPU: ``bernoulli_(1 - p)`` on a tensor of that shape (here a
    bool one: the same draws, 1 byte a value; on the CPU through :func:`bernoulli_from_integers_`, the
    same values faster), none for p = 0 or in eval mode (None), all dropped
    without a draw for p = 1. ``x.mul(mask).mul_(scale)`` is bit-identical to ``module(x)``, and the
    random stream is left where ``module(x)`` leaves it (tested). When :meth:`GCSAN.draw_ahead` has
    drawn the mask already (on :func:`submit_draw`'s thread, in this same order), that mask is taken."""
    p = module.p
    if not module.training or p == 0:
        return None
    ahead = getattr(module, "drawn_ahead", None)
    if ahead:
        drawn_shape, future = ahead.popleft()
        if drawn_shape != tuple(shape):
            raise RuntimeError(f"dropout mask drawn ahead for shape {drawn_shape}, asked for {tuple(shape)}: "
                               "GCSAN.dropout_plan no longer follows forward_packed's draws")
        return future.result()
    return _draw_mask(p, tuple(shape), like.device, like.dtype)


def _draw_mask(p: float, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> DropoutDraw:
    """:func:`draw_dropout`'s draw for rate p (0 < p <= 1)."""
    if p == 1:
        return DropoutDraw(torch.zeros(shape, dtype=torch.bool, device=device), 1.0)
    mask = torch.empty(shape, dtype=torch.bool, device=device)
    if device.type == "cpu" and _integer_draws_are_bernoulli():
        bernoulli_from_integers_(mask, 1 - p)
    else:
        mask.bernoulli_(1 - p)
    return DropoutDraw(mask, torch.ones((), dtype=dtype).div_(1 - p).item())


# Values per chunk of bernoulli_from_integers_ (2 MB of int64: the chunk and its mask stay in the L2 cache).
DRAW_CHUNK = 1 << 18


def bernoulli_from_integers_(mask: torch.Tensor, q: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``mask.bernoulli_(q)`` on the CPU, the same values and the same random stream, about twice as fast.

    torch's CPU ``bernoulli_`` with a scalar q draws, value by value, one 64-bit word u from the
    generator (two mt19937 outputs), forms the double ``(u mod 2^53) 2^-53`` and keeps it if below q.
    ``torch.randint(0, 2^53)`` draws the same words in the same order and returns ``u mod 2^53``, so the
    test ``u mod 2^53 < ceil(q 2^53)`` (exact: scaling by 2^53 is exact in doubles) gives the same mask
    and leaves the generator in the same state. The words go through a reused int64 buffer of
    :data:`DRAW_CHUNK` values. Checked against ``bernoulli_`` once per process
    (:func:`_integer_draws_are_bernoulli`; ``bernoulli_`` is used otherwise) and in the tests."""
    if not mask.is_contiguous():  # bernoulli_ would fill it in its own iteration order, not memory order
        raise ValueError("bernoulli_from_integers_ needs a contiguous mask")
    flat = mask.view(-1)
    n = flat.numel()
    bound = math.ceil(q * 2.0 ** 53)
    buf = torch.empty(min(n, DRAW_CHUNK), dtype=torch.int64)
    for i in range(0, n, DRAW_CHUNK):
        k = min(DRAW_CHUNK, n - i)
        torch.randint(0, 2 ** 53, (k,), out=buf[:k], generator=generator)
        torch.lt(buf[:k], bound, out=flat[i:i + k])
    return mask


_integer_draw_check: bool | None = None


def _integer_draws_are_bernoulli() -> bool:
    """Whether :func:`bernoulli_from_integers_` equals this torch build's ``bernoulli_`` (masks and the
    generator's state after them), tried once on a private generator."""
    global _integer_draw_check
    if _integer_draw_check is None:
        ok = True
        for q in (0.5, 0.3, 1 / 3, 0.9):
            a, b = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
            want = torch.empty(1000, dtype=torch.bool).bernoulli_(q, generator=a)
            got = bernoulli_from_integers_(torch.empty(1000, dtype=torch.bool), q, generator=b)
            ok = ok and torch.equal(want, got) and torch.equal(a.get_state(), b.get_state())
        _integer_draw_check = ok
    return _integer_draw_check


def dropout_rows(module: nn.Dropout, x: torch.Tensor, shape: tuple[int, ...], rows: torch.Tensor) -> torch.Tensor:
    """``module`` applied to a tensor of ``shape`` [..., D] of which ``x`` [R, D] holds the rows
    ``rows`` of its [-1, D] view: the full mask is drawn (same random stream), its rows applied."""
    d = draw_dropout(module, shape, x)
    return x if d is None else x * d.multiplier(d.mask.view(-1, shape[-1]).index_select(0, rows))


_causal_cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}


def causal_mask(l: int, like: torch.Tensor) -> torch.Tensor:
    """Additive [l, l] mask: 0 for key j <= query i, -10000 above the diagonal (the same values as
    :func:`causal_attention_mask` at real positions)."""
    key = (l, like.device, like.dtype)
    if key not in _causal_cache:
        allowed = torch.ones(l, l, dtype=torch.bool, device=like.device).tril()
        _causal_cache[key] = (1.0 - allowed.to(like.dtype)) * MASK_VALUE
    return _causal_cache[key]


def grouped_causal_attention(qkv: torch.Tensor, pk: Packing, n_heads: int, d: DropoutDraw | None) -> torch.Tensor:
    """softmax(Q K^T / √dh + causal) V per head on packed rows, each length group on its own.

    qkv [n, 3D] (Q, K, V side by side, heads inside each) -> context [n, D]; ``d``: the attention
    dropout drawn at the dense [B, H, L, L] shape (its [rows, h, :l, :l] entries are applied)."""
    return _GroupedCausalAttention.apply(qkv, pk, n_heads, d)


class _GroupedCausalAttention(torch.autograd.Function):
    """The attention core with its backward by hand: per group and head, strided views of qkv go
    straight into batched matmuls (no head permutes, no per-group concatenations), and the products
    are written into the [n, D] context and [n, 3D] gradient in place. The same operations and
    rounding steps as the dense autograd graph (scores / √dh + mask, softmax, dropout product,
    probs @ V; backward: dropout product, softmax backward, / √dh)."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, pk: Packing, H: int, d: DropoutDraw | None) -> torch.Tensor:
        n, D = qkv.shape[0], qkv.shape[1] // 3
        dh = D // H
        context = qkv.new_empty(n, D)
        saved = []
        for l, t0, m, p0 in pk.groups:
            g = qkv[p0:p0 + m * l].view(m, l, 3, H, dh)
            c = context[p0:p0 + m * l].view(m, l, H, dh)
            causal = causal_mask(l, qkv)
            mult = None if d is None else d.multiplier(d.mask[pk.order[t0:t0 + m], :, :l, :l])  # [m, H, l, l]
            heads = []
            for h in range(H):
                scores = torch.bmm(g[:, :, 0, h], g[:, :, 1, h].transpose(1, 2)).div_(math.sqrt(dh)).add_(causal)
                probs = torch.softmax(scores, dim=-1)
                dropped = probs if mult is None else probs * mult[:, h]
                c[:, :, h] = torch.bmm(dropped, g[:, :, 2, h])
                heads.append((probs, dropped))
            saved.append((mult, heads))
        ctx.save_for_backward(qkv)
        ctx.pk, ctx.H, ctx.saved = pk, H, saved
        return context

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (qkv,) = ctx.saved_tensors
        pk, H = ctx.pk, ctx.H
        n, D = qkv.shape[0], qkv.shape[1] // 3
        dh = D // H
        grad = grad.contiguous()
        dqkv = torch.empty_like(qkv)
        for (l, t0, m, p0), (mult, heads) in zip(pk.groups, ctx.saved):
            g = qkv[p0:p0 + m * l].view(m, l, 3, H, dh)
            dg = dqkv[p0:p0 + m * l].view(m, l, 3, H, dh)
            dc = grad[p0:p0 + m * l].view(m, l, H, dh)
            for h, (probs, dropped) in enumerate(heads):
                dg[:, :, 2, h] = torch.bmm(dropped.transpose(1, 2), dc[:, :, h])  # dV
                dprobs = torch.bmm(dc[:, :, h], g[:, :, 2, h].transpose(1, 2))
                if mult is not None:
                    dprobs = dprobs.mul_(mult[:, h])
                dscores = torch._softmax_backward_data(dprobs, probs, -1, probs.dtype).div_(math.sqrt(dh))
                dg[:, :, 0, h] = torch.bmm(dscores, g[:, :, 1, h])  # dQ
                dg[:, :, 1, h] = torch.bmm(dscores.transpose(1, 2), g[:, :, 0, h])  # dK
        return dqkv, None, None, None


# ----------------------------------------------------------------------------- the model
class GCSAN(nn.Module):
    """Item embedding -> session graph GNN (Eq. 1-6) -> self-attention (Eq. 7-9) -> Eq. 10, 11."""

    def __init__(self, n_items: int, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_size: int = 256, hidden_dropout: float = 0.5, attn_dropout: float = 0.5,
                 hidden_act: str = "gelu", layer_norm_eps: float = 1e-12, step: int = 1,
                 weight: float = 0.6, reg_weight: float = 5e-5, loss_type: str = "CE",
                 initializer_range: float = 0.02, last_query_only: bool = True, packed: bool = True):
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight ω must lie in [0, 1], got {weight}")
        if loss_type not in ("CE", "BPR"):
            raise ValueError(f"loss_type must be 'CE' or 'BPR', got {loss_type!r}")
        self.n_items, self.hidden_size = n_items, hidden_size
        self.weight, self.reg_weight, self.loss_type = weight, reg_weight, loss_type
        self.initializer_range = initializer_range
        self.last_query_only = last_query_only  # speed only: identical outputs (see forward)
        self.packed = packed  # speed only: the same outputs up to float rounding (see forward_packed)
        self.item_embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
        self.gnn = GatedGraphNetwork(hidden_size, step)
        self.self_attention = nn.ModuleList(
            SelfAttentionLayer(n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout,
                               hidden_act, layer_norm_eps) for _ in range(n_layers))
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # normal(0, 0.02) for every Linear and the Embedding (padding row included, as in RecBole);
        # the GNN's raw gate matrices keep their uniform(±1/√d) initialization.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def forward(self, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Session representation S_f.

        Args:
            seq: [B, L] right-padded item ids; length: [B] number of real items (>= 1).
        Returns:
            [B, D]
        """
        if self.packed and self.last_query_only:
            return self.forward_packed(seq, length)
        return self.forward_dense(seq, length)

    def forward_packed(self, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_dense` with the self-attention blocks on the real positions only.

        Under the causal + padding mask a real query position attends only real keys (j <= i <
        length), and padded positions reach the output only as keys or values of real queries, whose
        softmax weight there is exactly 0 (exp of a score lowered by 10000 underflows), or through
        padded queries that nothing real reads. So every block runs on the packed real positions
        [n, D], and the attention per group of rows of one length l, [m, H, l, l], with the causal
        mask only. Dropout masks are drawn at the dense shapes in the same order (same random
        stream) and their real entries applied.
        """
        B, L = seq.shape
        g = session_edges(seq)
        emb = self.item_embedding.weight
        if self.item_embedding.padding_idx is not None:  # as nn.Embedding: no gradient to the padding row
            pad = self.item_embedding.padding_idx
            emb = torch.cat([emb[:pad], emb[pad:pad + 1].detach(), emb[pad + 1:]])
        hidden = self.gnn.forward_from_items(g, emb)  # [N, D] per node
        h_t = hidden[g.alias[torch.arange(B, device=seq.device), length - 1]]  # last click's GNN state
        pk = pack_positions(seq, length)
        x = hidden.index_select(0, g.alias.view(-1)[pk.flat])  # [n, D]
        for layer in self.self_attention[:-1]:
            x = layer.forward_packed(x, pk, (B, L))
        a_t = self.self_attention[-1].forward_packed_last(x, pk, (B, L))[pk.rank]
        return self.weight * a_t + (1 - self.weight) * h_t  # Eq. 10

    def forward_dense(self, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Session representation S_f on the padded [B, L] batch (the reference form)."""
        g = session_edges(seq)
        hidden = self.gnn(g, self.item_embedding(g.items))  # [N, D] per node
        seq_hidden = hidden[g.alias]  # [B, L, D]
        last = (length - 1)[:, None, None].expand(-1, 1, self.hidden_size)
        h_t = seq_hidden.gather(1, last).squeeze(1)  # last click's GNN state
        mask = causal_attention_mask(seq)
        out = seq_hidden
        for layer in self.self_attention[:-1]:
            out = layer(out, mask)
        if self.last_query_only:
            # Only position length-1 of the last block is used: evaluate that block for that query
            # alone (keys/values from every position). Same output as the full block (causal mask).
            a_t = self.self_attention[-1](out, mask.expand(-1, -1, seq.shape[1], -1).gather(
                2, (length - 1)[:, None, None, None].expand(-1, 1, 1, seq.shape[1])),
                query_index=length - 1).squeeze(1)
        else:
            out = self.self_attention[-1](out, mask)
            a_t = out.gather(1, last).squeeze(1)
        return self.weight * a_t + (1 - self.weight) * h_t  # Eq. 10

    def full_sort(self, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Scores of every item id (padding included) [B, n_items] (Eq. 11 before softmax)."""
        return self.forward(seq, length) @ self.item_embedding.weight.t()

    def loss(self, seq: torch.Tensor, length: torch.Tensor, target: torch.Tensor,
             negative: torch.Tensor | None = None) -> torch.Tensor:
        """CE over all item ids (padding column included, as RecBole) or BPR, plus reg_weight · EmbLoss."""
        s = self.forward(seq, length)
        if self.loss_type == "CE":
            main = F.cross_entropy(s @ self.item_embedding.weight.t(), target)
        else:
            if negative is None:
                raise ValueError("BPR loss needs negative item ids")
            pos = (s * self.item_embedding(target)).sum(-1)
            neg = (s * self.item_embedding(negative)).sum(-1)
            main = -torch.log(1e-10 + torch.sigmoid(pos - neg)).mean()
        return main + self.reg_weight * self.emb_loss()

    def dropout_plan(self, batch: int, length: int) -> list[tuple[nn.Module, tuple[int, ...]]]:
        """(dropout module, dense shape) of every mask :meth:`forward_packed` draws for a [batch, length]
        batch, in its order: per block attention probabilities [B, H, L, L], attention output and
        feed-forward output [B, L, D]; the last block's for its one query ([B, H, 1, L], [B, 1, D] x 2)."""
        plan = []
        for i, layer in enumerate(self.self_attention):
            a, q = layer.multi_head_attention, (length if i < len(self.self_attention) - 1 else 1)
            plan += [(a.attn_dropout, (batch, a.n_heads, q, length)), (a.out_dropout, (batch, q, self.hidden_size)),
                     (layer.feed_forward.dropout, (batch, q, self.hidden_size))]
        return plan

    def draw_ahead(self, batch: int, length: int) -> int:
        """Start drawing the dropout masks of the next :meth:`forward_packed` (training mode, CPU) on a
        second thread, in the order the forward would draw them, and return how many were queued.

        Speed only: the draws (one 64-bit word of torch's generator per value, 48 M values per ML-100k
        batch of 4096; :func:`bernoulli_from_integers_`) are serial; drawn while this thread runs the GNN and
        the first projections, they overlap with them. The masks and the generator's final state are
        exactly those of drawing inline (tested), provided nothing else draws from torch's generator
        until the forward has taken them: call it after the step's other draws (BPR negatives)."""
        dtype, device = self.item_embedding.weight.dtype, self.item_embedding.weight.device
        if not (self.training and self.packed and self.last_query_only and device.type == "cpu"):
            return 0  # on a GPU the draws are asynchronous kernels already
        plan = [(m, shape) for m, shape in self.dropout_plan(batch, length) if m.training and m.p > 0]
        if any(getattr(m, "drawn_ahead", None) for m, _ in plan):
            raise RuntimeError("dropout masks drawn ahead for an earlier step were not all used: the random "
                               "stream would no longer match drawing inline")
        for m, shape in plan:
            if getattr(m, "drawn_ahead", None) is None:
                m.drawn_ahead = deque()
            m.drawn_ahead.append((shape, submit_draw(_draw_mask, m.p, shape, device, dtype)))
        return len(plan)

    def emb_loss(self) -> torch.Tensor:
        """RecBole's EmbLoss on the item table: its unsquared Frobenius norm divided by its rows."""
        emb = self.item_embedding.weight
        return torch.norm(emb, p=2) / emb.shape[0]
