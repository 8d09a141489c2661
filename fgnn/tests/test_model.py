"""Model blocks against the notebook's formulation: WGAT normalisation groups, readouts vs loops."""

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.utils import scatter

from fgnn.data import SessionBatches, Split, build_graphs
from fgnn.notebook_reference import embedding2score_loop, gru_set2set_loop, notebook_wgat
from fgnn.model import (FGNN, LOSS_BLOCK, WGAT, AttentionReadout, GatedGNN, GRUSet2Set, ScoreBuffer, last_nodes,
                        score_cross_entropy)


def _random_batch(seed: int = 0, graphs: int = 7, n_items: int = 12):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (graphs,), generator=g)
    items = torch.randint(1, n_items + 1, (int(lengths.sum()),), generator=g).numpy()
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).numpy()
    labels = torch.randint(1, n_items + 1, (graphs,), generator=g).numpy()
    storage = build_graphs(Split(items, ptr, labels))
    return SessionBatches(storage, graphs).batch(torch.arange(graphs))


@pytest.mark.parametrize("softmax_over", ["source", "target"])
def test_wgat_attention_sums_to_one_over_its_groups_self_loops_included(softmax_over):
    torch.manual_seed(0)
    b = _random_batch()
    layer = WGAT(6, 4, heads=3, softmax_over=softmax_over)
    x = torch.randn(b.num_nodes, 6)
    _, (edge_index, alpha) = layer(x, b.edge_index, b.edge_attr, return_attention=True)
    n = b.num_nodes
    assert edge_index.size(1) == b.edge_index.size(1) + n  # one self loop per node, always added
    assert torch.equal(edge_index[:, -n:], torch.arange(n).repeat(2, 1))
    group = edge_index[0] if softmax_over == "source" else edge_index[1]
    sums = scatter(alpha, group, dim=0, dim_size=n, reduce="sum")
    assert torch.allclose(sums, torch.ones(n, 3), atol=1e-6)
    other = edge_index[1] if softmax_over == "source" else edge_index[0]
    other_sums = scatter(alpha, other, dim=0, dim_size=n, reduce="sum")
    assert not torch.allclose(other_sums, torch.ones(n, 3), atol=1e-3)  # the groups really differ


def test_wgat_equals_the_notebook_layer():
    torch.manual_seed(1)
    b = _random_batch(seed=3)
    for heads, concat in ((8, True), (1, True), (2, False)):
        layer = WGAT(5, 4, heads=heads, concat=concat)
        torch.nn.init.normal_(layer.bias)
        x = torch.randn(b.num_nodes, 5)
        out, (_, alpha) = layer(x, b.edge_index, b.edge_attr, return_attention=True)
        ref, ref_alpha = notebook_wgat(layer, x, b.edge_index, b.edge_attr)
        assert torch.allclose(alpha, ref_alpha, atol=1e-6)
        assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gru_set2set_segment_readout_equals_per_graph_loop(seed):
    torch.manual_seed(seed)
    b = _random_batch(seed=seed, graphs=9)
    module = GRUSet2Set(5, steps=3)
    x = torch.randn(b.num_nodes, 5)
    assert torch.allclose(module(x, b.batch, b.num_graphs), gru_set2set_loop(module, x, b.batch), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attention_readout_equals_notebook_loop(seed):
    torch.manual_seed(seed)
    b = _random_batch(seed=seed, graphs=9)
    m = AttentionReadout(6)
    x = torch.randn(b.num_nodes, 6)
    out = m(x, b.batch, last_nodes(b, "last_new"))
    assert torch.allclose(out, embedding2score_loop(m, x, b.batch), atol=1e-5)


def test_last_click_differs_from_last_new_node():
    data, slices = build_graphs(Split(torch.tensor([2, 9, 2]).numpy(), torch.tensor([0, 3]).numpy(),
                                      torch.tensor([5]).numpy()))
    assert data.last_node_index.tolist() == [0]  # last click is item 2, node 0; last new node is 1


@pytest.mark.parametrize("model_cls", [FGNN, GatedGNN])
def test_models_score_every_item_and_train(model_cls):
    torch.manual_seed(0)
    b = _random_batch(graphs=5, n_items=12)
    model = model_cls(12, hidden_size=8)
    scores = model.full_sort(b)
    assert scores.shape == (5, 12)
    # Scores are dot products with the item embeddings (Eq. 8).
    loss = model.loss(b)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.embedding.weight.grad.abs().sum() > 0
    if model_cls is FGNN:
        stdv = 1 / 8 ** 0.5
        assert all(p.abs().max() <= stdv for p in model.parameters())  # uniform init


@pytest.mark.parametrize("n_items, spread", [(2 * LOSS_BLOCK + 37, 1.0), (LOSS_BLOCK + 1, 60.0), (7, 1.0)])
def test_fused_score_cross_entropy_equals_cross_entropy_and_its_gradients(n_items, spread):
    """Blocks (the last one partial), the per-block maxima rescaled at the end (scores far apart: a
    single block's exp would underflow), repeated targets, the kept buffer reused, a grad_loss != 1."""
    torch.manual_seed(0)
    s = (torch.randn(30, 16) * spread).requires_grad_()
    weight = torch.randn(n_items, 16).requires_grad_()
    target = torch.randint(0, n_items, (30,))
    target[1] = target[0]
    ref = F.cross_entropy(s.double() @ weight.double().t(), target)
    ref_s, ref_w = (g.double() for g in torch.autograd.grad(ref * 3, (s, weight)))
    ref = ref.item()
    buffer = ScoreBuffer()
    for _ in range(2):
        loss = score_cross_entropy(s, weight, target, buffer)
        grad_s, grad_w = torch.autograd.grad(loss * 3, (s, weight))
        assert not buffer.lent
        scale = max(1.0, abs(ref))
        assert abs(loss.item() - ref) <= 1e-5 * scale
        assert torch.allclose(grad_s.double(), ref_s, rtol=0, atol=1e-5 * max(1.0, float(ref_s.abs().max())))
        assert torch.allclose(grad_w.double(), ref_w, rtol=0, atol=1e-5 * max(1.0, float(ref_w.abs().max())))
    with torch.no_grad():  # no autograd: plain cross-entropy of the blocked scores
        assert abs(float(score_cross_entropy(s, weight, target, buffer)) - ref) <= 1e-5 * scale


def test_fused_score_cross_entropy_lends_its_buffer_to_one_loss_at_a_time():
    torch.manual_seed(0)
    s = torch.randn(4, 3, requires_grad=True)
    weight = torch.randn(10, 3, requires_grad=True)
    target = torch.tensor([0, 3, 3, 9])
    buffer = ScoreBuffer()
    first = score_cross_entropy(s, weight, target, buffer)
    second = score_cross_entropy(s, weight, target, buffer)  # buffer lent: a fresh one
    assert buffer.lent
    grads = torch.autograd.grad(second + first, (s, weight), retain_graph=True)
    assert not buffer.lent
    ref = torch.autograd.grad(2 * F.cross_entropy(s @ weight.t(), target), (s, weight))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, ref))
    with pytest.raises(RuntimeError, match="cannot run twice"):
        torch.autograd.grad(first, (s, weight))
