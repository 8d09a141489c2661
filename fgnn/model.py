"""FGNN networks: the paper's model (``fgnn``) and the notebook's ``GNNModel`` (``gated``).

Both map a batch of session graphs (``torch_geometric.data.Batch`` from :mod:`fgnn.data`) to
scores over every item, ``[graphs, n_items]``; item ids in the data start at 1, the embedding row
of item ``i`` is ``i - 1`` (as in the notebook). Readouts work on the whole batch with
``torch_geometric.utils`` segment operations (``scatter``, ``softmax``), not per-graph loops.

The paper's PDF cannot be read on these machines, so blocks are named after the paper's
components (WGAT, the Set2Set readout with a GRU) and the notebook's equation labels
(Eq. 6-8 of its ``Embedding2Score``); where the code chooses, README "Deviations and quirks" says so.
"""

from __future__ import annotations

import math
import weakref
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GatedGraphConv, MessagePassing
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.utils import add_self_loops, scatter, softmax


class WGAT(MessagePassing):
    r"""Weighted graph attention (the paper's WGAT; the notebook's ``WeightedGATConv``).

    .. math::
        e_{ij} = \mathrm{LeakyReLU}\big(\mathbf{a}^\top [\mathbf{W}x_i \,\Vert\, \mathbf{W}x_j
                 \,\Vert\, w_{ij}]\big), \qquad
        \alpha_{ij} = \mathrm{softmax}_{\text{group}}(e_{ij}), \qquad
        x'_i = \sum_{j \to i} \alpha_{ij} \mathbf{W} x_j + b

    per head, for every edge ``j -> i`` of the graph plus one self loop per node (weight 1),
    where ``w_ij`` is the edge weight (transition count). ``i`` is the edge's receiver (where
    messages are summed, PyG's default flow) and ``j`` its sender.

    ``softmax_over`` picks the groups the coefficients are normalised over:

    * ``"source"`` (default, the notebook and the authors' code): ``softmax(e, edge_index[0])``,
      i.e. over the edges *leaving* each node. The layer was written against PyG 1.1, whose
      ``GATConv`` did the same while already summing messages at ``edge_index[1]``; today's PyG
      keeps that meaning, so the coefficients summed at a node need not sum to 1.
    * ``"target"``: over the edges *entering* each node, the ones it sums (textbook GAT,
      PyG >= 1.2 ``GATConv``).

    Shapes: ``x`` [nodes, in_channels], ``edge_index`` [2, edges], ``edge_weight`` [edges] ->
    [nodes, heads * out_channels] (``concat``) or [nodes, out_channels] (mean of heads).
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, softmax_over: str = "source", bias: bool = True):
        super().__init__(aggr="add", node_dim=0)
        if softmax_over not in ("source", "target"):
            raise ValueError(f"softmax_over must be 'source' or 'target', got {softmax_over!r}")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope, self.softmax_over = concat, negative_slope, softmax_over
        self.weight = nn.Parameter(torch.empty(in_channels, heads * out_channels))
        # a = [a_receiver | a_sender | a_weight]: the notebook's att of size 2 * out + 1 per head.
        self.att = nn.Parameter(torch.empty(1, heads, 2 * out_channels + 1))
        self.bias = nn.Parameter(torch.empty(heads * out_channels if concat else out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot(self.weight)
        glorot(self.att)
        zeros(self.bias)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None,
                return_attention: bool = False):
        n = x.size(0)
        edge_index, edge_weight = add_self_loops(edge_index, edge_weight, fill_value=1.0, num_nodes=n)
        h = (x @ self.weight).view(n, self.heads, self.out_channels)  # W x  [nodes, heads, out]
        c = self.out_channels
        # a^T [W x_i || W x_j || w_ij] split into its three parts, computed per node once.
        score_receiver = (h * self.att[..., :c]).sum(-1)  # [nodes, heads]
        score_sender = (h * self.att[..., c:2 * c]).sum(-1)
        sender, receiver = edge_index
        e = score_receiver[receiver] + score_sender[sender]
        if edge_weight is not None:
            e = e + edge_weight.view(-1, 1) * self.att[0, :, 2 * c]
        e = F.leaky_relu(e, self.negative_slope)
        group = sender if self.softmax_over == "source" else receiver
        alpha = softmax(e, group, num_nodes=n)  # [edges + nodes, heads]
        out = self.propagate(edge_index, h=h, alpha=alpha)  # sums at the receiver
        out = out.reshape(n, self.heads * c) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        return (out, (edge_index, alpha)) if return_attention else out

    def message(self, h_j: Tensor, alpha: Tensor) -> Tensor:
        return h_j * alpha.unsqueeze(-1)

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Optional[Tensor] = None,
                  dim_size: Optional[int] = None) -> Tensor:
        # The sum at the receiver as a row-wise index_add_: PyG's scatter_add_ broadcasts the index to
        # every entry of the [edges, heads, out] messages, several times slower on CPU.
        return inputs.new_zeros(dim_size, *inputs.shape[1:]).index_add_(0, index, inputs)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads}, concat={self.concat}, softmax_over={self.softmax_over})")


class GRUSet2Set(nn.Module):
    r"""The paper's readout: Set2Set with a GRU instead of an LSTM (the notebook's ``GRUSet2Set``).

    .. math::
        q_t = \mathrm{GRU}(q^*_{t-1}), \quad
        a_{i,t} = \mathrm{softmax}_{i \in G}(x_i \cdot q_t), \quad
        r_t = \sum_{i \in G} a_{i,t} x_i, \quad
        q^*_t = q_t \,\Vert\, r_t,

    ``q^*_0 = 0`` and the GRU state starts at 0; the output is ``q^*_T`` after ``steps`` steps.

    Shapes: ``x`` [nodes, dim], ``batch`` [nodes] (graph of each node) -> [graphs, 2 * dim].
    """

    def __init__(self, dim: int, steps: int = 3):
        super().__init__()
        self.dim, self.steps = dim, steps
        self.rnn = nn.GRU(2 * dim, dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        for w in self.rnn.parameters():
            if w.dim() > 1:
                nn.init.orthogonal_(w)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        if self.steps == 0:
            return x.new_zeros(num_graphs, 2 * self.dim)
        # Step 1: q*_0 = 0 and the state 0, so q_1 = GRU(0, 0) comes from the biases alone and is the same
        # for every graph: computed once, without the products W_ih 0 and W_hh 0 (which are exactly 0).
        q = self._first_query()  # [dim]
        a = softmax(x @ q, batch, num_nodes=num_graphs)  # x_i . q_1  [nodes]
        q = q.expand(num_graphs, -1)
        state = q.unsqueeze(0).contiguous()
        for t in range(self.steps):
            if t > 0:
                q, state = self.rnn(q_star.unsqueeze(0), state)
                q = q.squeeze(0)  # [graphs, dim]
                a = softmax((x * q[batch]).sum(-1), batch, num_nodes=num_graphs)  # [nodes]
            r = x.new_zeros(num_graphs, self.dim).index_add_(0, batch, a.unsqueeze(-1) * x)
            q_star = torch.cat([q, r], dim=-1)
        return q_star

    def _first_query(self) -> Tensor:
        """``GRU(0, 0)``: torch's GRU cell with zero input and state (gates = biases), [dim]."""
        i_r, i_z, i_n = self.rnn.bias_ih_l0.chunk(3)
        h_r, h_z, h_n = self.rnn.bias_hh_l0.chunk(3)
        reset = torch.sigmoid(h_r + i_r)
        update = torch.sigmoid(h_z + i_z)
        new = torch.tanh(i_n + h_n * reset)
        return (-new) * update + new  # (h - n) z + n at h = 0


class AttentionReadout(nn.Module):
    r"""The notebook's ``Embedding2Score`` (its Eq. 6-8, SR-GNN's session embedding).

    .. math::
        \alpha_i = q^\top \sigma(W_1 v_n + W_2 v_i) \;\text{(Eq. 6)}, \quad
        s_g = \sum_{i \in G} \alpha_i v_i, \quad
        s_h = W_3 [v_n \,\Vert\, s_g] \;\text{(Eq. 7)}

    ``v_n`` is the embedding of the graph's *last node*, given per graph by ``last`` (node index
    into ``x``). The scores ``s_h E^T`` (Eq. 8) are taken by the model.

    Shapes: ``x`` [nodes, dim], ``batch`` [nodes], ``last`` [graphs] -> [graphs, dim].
    """

    def __init__(self, dim: int):
        super().__init__()
        self.W_1 = nn.Linear(dim, dim)
        self.W_2 = nn.Linear(dim, dim)
        self.q = nn.Linear(dim, 1)
        self.W_3 = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor, batch: Tensor, last: Tensor) -> Tensor:
        v_n = x[last]  # [graphs, dim]
        alpha = self.q(torch.sigmoid(self.W_1(v_n)[batch] + self.W_2(x)))  # Eq. 6, [nodes, 1]
        s_g = scatter(alpha * x, batch, dim=0, dim_size=last.numel(), reduce="sum")
        return self.W_3(torch.cat([v_n, s_g], dim=-1))  # Eq. 7


def last_nodes(batch, last_node: str) -> Tensor:
    """Index of each graph's "last node" [graphs].

    ``"last_new"`` (notebook): the last node in node order, i.e. the last *new* item of the
    session (``v_i[-1]`` after ``torch.split``). ``"last_click"``: the node of the last click.
    """
    if last_node == "last_new":
        return batch.ptr[1:] - 1
    if last_node == "last_click":
        return batch.last_node_index
    raise ValueError(f"last_node must be 'last_new' or 'last_click', got {last_node!r}")


# Items per block of the score products: on one core, MKL multiplies [100, 100] x [100, 43097] at about a
# third of its sgemm rate in one call and near it in blocks of 1,024 items, whose operands and output stay
# in the 1 MB L2 cache (fgnn/README.md, Speed). SCORE_BLOCK for the evaluation scores, LOSS_BLOCK for the
# training loss (256 to 4,096 measured: 1,024 and 2,048 the fastest).
SCORE_BLOCK = 1024
LOSS_BLOCK = 1024


def item_scores(s: Tensor, weight: Tensor) -> Tensor:
    """Eq. 8's scores ``s E^T`` [graphs, n_items] from ``s`` [graphs, d] and the item table ``weight``
    [n_items, d], computed block by block over the items (same products, faster on CPU). Plain
    ``s @ weight.t()`` when autograd needs it (training goes through :func:`score_cross_entropy`)."""
    if torch.is_grad_enabled() and (s.requires_grad or weight.requires_grad) or s.device.type != "cpu":
        return s @ weight.t()
    n = weight.size(0)
    out = s.new_empty(s.size(0), n)
    for i in range(0, n, SCORE_BLOCK):
        torch.mm(s, weight[i:i + SCORE_BLOCK].t(), out=out[:, i:i + SCORE_BLOCK])
    return out


class ScoreBuffer:
    """The [B, n_items] buffer of :class:`ScoreCrossEntropy`, kept between training steps (one per model).

    A fresh 17 MB tensor per step costs page faults whenever the allocator has given the last one back
    to the system. The buffer is lent to one loss at a time, from its forward until its backward has run
    (or its graph is freed); a loss made while it is lent (two losses before one backward) gets a fresh one.
    """

    def __init__(self):
        self.tensor: Optional[Tensor] = None
        self._borrower = None  # weak reference to the autograd context of the loss using the buffer

    def __deepcopy__(self, memo) -> "ScoreBuffer":
        return ScoreBuffer()  # a copied model gets its own (empty) buffer

    def __getstate__(self) -> dict:
        return {"tensor": None, "_borrower": None}

    @property
    def lent(self) -> bool:
        ctx = self._borrower() if self._borrower is not None else None
        return ctx is not None and not ctx.done

    def take(self, numel: int, like: Tensor, ctx) -> Tensor:
        """A flat tensor of ``numel`` entries of ``like``'s dtype and device, lent to ``ctx`` (which sets
        ``ctx.done`` once it no longer needs it)."""
        if self.lent:
            return like.new_empty(numel)
        t = self.tensor
        if t is None or t.numel() < numel or t.dtype != like.dtype or t.device != like.device:
            self.tensor = t = None  # free the old one before making the new one
            self.tensor = t = like.new_empty(numel)
        self._borrower = weakref.ref(ctx)
        return t[:numel]


class ScoreCrossEntropy(torch.autograd.Function):
    r"""``F.cross_entropy(s @ weight.t(), target)`` (batch mean) in one autograd node, for CPU speed.

    The items are taken in blocks of ``LOSS_BLOCK`` (``E_k``, rows of the item table), each block's work
    done while its scores are in the L2 cache, with the softmax's maximum taken per block and the blocks
    rescaled at the end (as in "online" softmax):

    * forward, per block: ``x_k = s E_k^T``; ``m_k = max_j x_k``; ``p_k = exp(x_k - m_k)`` (kept for
      the backward); ``z_k = sum_j p_k``; and, for the gradient of ``s``, ``t_k = p_k E_k`` [B, d].
      Then ``m = max_k m_k``, ``Z = sum_k z_k exp(m_k - m)`` and ``loss = mean(m + log Z - x_target)``
      with ``x_target = <s, E_target>``.
    * backward: ``softmax_k = p_k c_k`` with ``c_k = exp(m_k - m) / Z`` per row, so with
      ``G = (softmax - onehot) / B``: ``grad_s = sum_k c_k t_k / B - E_target / B`` and, per block,
      ``grad_E_k = p_k^T (c_k s) / B``, then ``- s / B`` added at the target rows.

    The same mathematics as ``log_softmax`` + ``nll_loss`` and their backward, up to float rounding:
    the ``softmax`` and ``onehot`` parts of ``G`` are multiplied out separately and the per-row
    factors applied to the small operands (``s``, ``t_k``) instead of the [B, n_items] scores. The
    scores are exponentiated once, while in cache, and read once more in the backward.
    """

    @staticmethod
    def forward(ctx, s: Tensor, weight: Tensor, target: Tensor, buffer: Optional[ScoreBuffer] = None) -> Tensor:
        (b, d), n = s.shape, weight.size(0)
        starts = range(0, n, LOSS_BLOCK)
        ctx.done = False
        p = s.new_empty(b * n) if buffer is None else buffer.take(b * n, s, ctx)
        m = s.new_empty(len(starts), b)  # per-block maxima
        z = s.new_empty(len(starts), b)  # per-block sums of exp(x - m_k)
        t = s.new_empty(len(starts), b, d) if ctx.needs_input_grad[0] else None
        for k, i in enumerate(starts):
            e = weight[i:i + LOSS_BLOCK]
            p_k = p[b * i:b * (i + e.size(0))].view(b, e.size(0))  # block k, contiguous
            torch.mm(s, e.t(), out=p_k)
            torch.amax(p_k, 1, out=m[k])
            p_k.sub_(m[k].unsqueeze(1)).exp_()
            torch.sum(p_k, 1, out=z[k])
            if t is not None:
                torch.mm(p_k, e, out=t[k])
        m_all = m.amax(0)
        rescale = (m - m_all).exp_()  # exp(m_k - m) [blocks, B]
        total = (z * rescale).sum(0)
        e_target = weight[target]
        loss = (m_all + total.log() - (s * e_target).sum(1)).mean()
        ctx.save_for_backward(s, weight, e_target, target, p, rescale.div_(total))
        ctx.t = t
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor):
        if ctx.done:
            raise RuntimeError("ScoreCrossEntropy's backward reuses its buffer: it cannot run twice "
                               "(retain_graph=True is not supported)")
        ctx.done = True
        s, weight, e_target, target, p, c = ctx.saved_tensors  # c = exp(m_k - m) / Z [blocks, B]
        b, n = s.size(0), weight.size(0)
        scale = grad_loss / b
        c = c * scale
        grad_s = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_s = (c.unsqueeze(2) * ctx.t).sum(0).sub_(e_target * scale)
        if ctx.needs_input_grad[1]:
            cs = c.unsqueeze(2) * s  # c_k s for every block [blocks, B, d]
            grad_w = torch.empty_like(weight)
            for k, i in enumerate(range(0, n, LOSS_BLOCK)):
                w = min(LOSS_BLOCK, n - i)
                torch.mm(p[b * i:b * (i + w)].view(b, w).t(), cs[k], out=grad_w[i:i + w])
            grad_w.index_add_(0, target, s * -scale)
        ctx.t = None
        return grad_s, grad_w, None, None


def score_cross_entropy(s: Tensor, weight: Tensor, target: Tensor, buffer: Optional[ScoreBuffer] = None) -> Tensor:
    """``F.cross_entropy(s @ weight.t(), target)`` (Eq. 8 + the notebook's loss), fused on CPU when
    autograd needs it; ``buffer`` keeps the score buffer between calls (:class:`ScoreBuffer`)."""
    if s.device.type != "cpu":
        return F.cross_entropy(s @ weight.t(), target)
    if not (torch.is_grad_enabled() and (s.requires_grad or weight.requires_grad)):
        return F.cross_entropy(item_scores(s, weight), target)
    return ScoreCrossEntropy.apply(s, weight, target, buffer)


class EmbeddingLookup(torch.autograd.Function):
    """``(weight[idx], weight)``: the node embeddings and the item table, as one autograd node.

    Both uses of the item table (the lookup and the scores of Eq. 8) reach autograd through this node,
    so their gradients meet in its backward: the lookup's rows are added in place (``index_add_``)
    into the dense table gradient the scores produce, instead of autograd building a second dense
    [n_items, d] gradient (zeros + scatter) and adding the two (three passes over 17 MB on Diginetica).
    The table gradient is always a fresh tensor made by the score backward (:class:`ScoreCrossEntropy`
    or ``mm``'s), so adding into it is safe.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(idx)
        ctx.table_shape = weight.shape
        return F.embedding(idx, weight), weight

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_x: Optional[Tensor], grad_table: Optional[Tensor]):
        (idx,) = ctx.saved_tensors
        if grad_table is None:
            grad_table = grad_x.new_zeros(ctx.table_shape)
        elif not grad_table.is_contiguous():
            grad_table = grad_table.contiguous()
        if grad_x is not None:
            grad_table.index_add_(0, idx, grad_x)
        return grad_table, None


class SessionModel(nn.Module):
    """Interface shared by both models: ``forward``/``full_sort`` scores, ``loss``.

    A model defines ``session_embedding(batch, x)`` [graphs, d] from the node embeddings ``x``
    [nodes, d]; the scores are ``session_embedding E^T`` (Eq. 8).
    """

    n_items: int
    embedding: nn.Embedding

    def __init__(self):
        super().__init__()
        self.score_buffer = ScoreBuffer()  # the training loss's score buffer, kept between steps

    def session_embedding(self, batch, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _session_and_table(self, batch) -> tuple[Tensor, Tensor]:
        """The session embeddings [graphs, d] and the item table E [n_items, d] (one autograd path)."""
        x, table = EmbeddingLookup.apply(self.embedding.weight, batch.x.view(-1) - 1)
        return self.session_embedding(batch, x), table

    def forward(self, batch) -> Tensor:
        return item_scores(*self._session_and_table(batch))  # [graphs, n_items]

    def full_sort(self, batch) -> Tensor:
        """Scores of every item, [graphs, n_items]; column ``i`` is item id ``i + 1``."""
        return self(batch)

    def loss(self, batch) -> Tensor:
        """Cross-entropy of the next item (the notebook's ``nn.CrossEntropyLoss``, batch mean)."""
        s, table = self._session_and_table(batch)
        return score_cross_entropy(s, table, batch.y - 1, self.score_buffer)

    def uniform_init(self) -> None:
        """Every parameter ~ U(-1/sqrt(d), 1/sqrt(d)) (the notebook's ``reset_parameters``)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            w.data.uniform_(-stdv, stdv)


class FGNN(SessionModel):
    """The paper's FGNN as the authors' script tags it (``s2s3_linear_gat8-1``).

    item embedding -> WGAT (8 heads, concatenated) -> activation -> WGAT (1 head)
    -> GRU-Set2Set readout (3 steps) -> linear 2d -> d -> dot product with every item embedding.
    """

    def __init__(self, n_items: int, hidden_size: int = 100, heads: int = 8, steps: int = 3,
                 activation: str = "relu", softmax_over: str = "source", init: str = "uniform"):
        super().__init__()
        self.n_items, self.hidden_size = n_items, hidden_size
        self.embedding = nn.Embedding(n_items, hidden_size)
        self.wgat1 = WGAT(hidden_size, hidden_size, heads=heads, concat=True, softmax_over=softmax_over)
        self.wgat2 = WGAT(heads * hidden_size, hidden_size, heads=1, concat=True, softmax_over=softmax_over)
        self.readout = GRUSet2Set(hidden_size, steps)
        self.linear = nn.Linear(2 * hidden_size, hidden_size)
        acts = {"relu": F.relu, "none": lambda t: t, "elu": F.elu, "leaky_relu": F.leaky_relu}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.activation = acts[activation]
        if init == "uniform":
            self.uniform_init()
        elif init != "layers":
            raise ValueError(f"init must be 'uniform' or 'layers', got {init!r}")

    def session_embedding(self, batch, x: Tensor) -> Tensor:
        """[graphs, d] from the node embeddings ``x`` [nodes, d]."""
        h = self.activation(self.wgat1(x, batch.edge_index, batch.edge_attr))  # [nodes, 8d]
        h = self.wgat2(h, batch.edge_index, batch.edge_attr)  # [nodes, d]
        return self.linear(self.readout(h, batch.batch, batch.num_graphs))  # [graphs, d]


class GatedGNN(SessionModel):
    """The notebook's ``GNNModel``: GatedGraphConv (2 steps) + attention readout (Eq. 6-8).

    Edge counts are not used (the notebook passes no ``edge_attr``); every parameter starts
    U(+-1/sqrt(d)).
    """

    def __init__(self, n_items: int, hidden_size: int = 100, num_layers: int = 2,
                 last_node: str = "last_new"):
        super().__init__()
        self.n_items, self.hidden_size, self.last_node = n_items, hidden_size, last_node
        self.embedding = nn.Embedding(n_items, hidden_size)
        self.gated = GatedGraphConv(hidden_size, num_layers=num_layers)
        self.readout = AttentionReadout(hidden_size)
        self.uniform_init()

    def session_embedding(self, batch, x: Tensor) -> Tensor:
        """``s_h`` [graphs, d] from the node embeddings ``x`` [nodes, d]."""
        h = self.gated(x, batch.edge_index)  # [nodes, d]
        return self.readout(h, batch.batch, last_nodes(batch, self.last_node))  # s_h [graphs, d]


def build_model(name: str, n_items: int, hidden_size: int = 100, **kw) -> SessionModel:
    """``fgnn`` or ``gated`` with the given options (unknown options for a model are an error)."""
    if name == "fgnn":
        return FGNN(n_items, hidden_size, **kw)
    if name == "gated":
        return GatedGNN(n_items, hidden_size, **kw)
    raise ValueError(f"unknown model {name!r}; valid: fgnn, gated")
