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
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


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


def causal_attention_mask(seq: torch.Tensor) -> torch.Tensor:
    """Additive left-to-right mask [B, 1, L, L]: 0 where query i may see key j (j <= i, j real), else -10000."""
    L = seq.shape[1]
    allowed = (seq > 0)[:, None, None, :] & torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
    return (1.0 - allowed.float()) * -10000.0


# ----------------------------------------------------------------------------- the model
class GCSAN(nn.Module):
    """Item embedding -> session graph GNN (Eq. 1-6) -> self-attention (Eq. 7-9) -> Eq. 10, 11."""

    def __init__(self, n_items: int, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_size: int = 256, hidden_dropout: float = 0.5, attn_dropout: float = 0.5,
                 hidden_act: str = "gelu", layer_norm_eps: float = 1e-12, step: int = 1,
                 weight: float = 0.6, reg_weight: float = 5e-5, loss_type: str = "CE",
                 initializer_range: float = 0.02, last_query_only: bool = True):
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight ω must lie in [0, 1], got {weight}")
        if loss_type not in ("CE", "BPR"):
            raise ValueError(f"loss_type must be 'CE' or 'BPR', got {loss_type!r}")
        self.n_items, self.hidden_size = n_items, hidden_size
        self.weight, self.reg_weight, self.loss_type = weight, reg_weight, loss_type
        self.initializer_range = initializer_range
        self.last_query_only = last_query_only  # speed only: identical outputs (see forward)
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

    def emb_loss(self) -> torch.Tensor:
        """RecBole's EmbLoss on the item table: its unsquared Frobenius norm divided by its rows."""
        emb = self.item_embedding.weight
        return torch.norm(emb, p=2) / emb.shape[0]
