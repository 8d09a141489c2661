"""Session graph, causal mask, padding invariance and the last-query shortcut of the model."""

import numpy as np
import torch

from gcsan.model import GCSAN, causal_attention_mask, session_graph


def notebook_graph(row: list[int], width: int):
    """The notebook's per-session loop (RecBole ``_get_slice``), as a test oracle."""
    u_input = np.array(row + [0] * (width - len(row)))
    node = np.unique(u_input)
    items = node.tolist() + (width - len(node)) * [0]
    u_A = np.zeros((width, width))
    for i in np.arange(len(u_input) - 1):
        if u_input[i + 1] == 0:
            break
        u = np.where(node == u_input[i])[0][0]
        v = np.where(node == u_input[i + 1])[0][0]
        u_A[u][v] = 1
    s_in = u_A.sum(0)
    s_in[s_in == 0] = 1
    s_out = u_A.sum(1)
    s_out[s_out == 0] = 1
    A = np.concatenate([u_A / s_in, u_A.T / s_out]).T
    alias = [np.where(node == i)[0][0] for i in u_input]
    return alias, A, items


SESSIONS = [[5, 3, 5, 7, 3], [4, 4, 4], [9, 2], [6], [2, 8, 2, 8, 2, 8]]


def test_session_graph_matches_notebook_loop_with_repeats_and_padding():
    width = max(map(len, SESSIONS))
    seq = torch.tensor([s + [0] * (width - len(s)) for s in SESSIONS])
    alias, A, items = session_graph(seq)
    for b, s in enumerate(SESSIONS):
        a_ref, A_ref, it_ref = notebook_graph(s, width)
        assert alias[b].tolist() == a_ref
        assert items[b].tolist() == it_ref
        np.testing.assert_allclose(A[b].numpy(), A_ref, atol=1e-7)


def test_session_graph_hand_checked():
    # [5, 3, 5, 7, 3] + pad: nodes (0, 3, 5, 7) -> edges 5->3, 3->5, 5->7, 7->3
    alias, A, items = session_graph(torch.tensor([[5, 3, 5, 7, 3, 0]]))
    assert items[0, :4].tolist() == [0, 3, 5, 7] and alias[0].tolist() == [2, 1, 2, 3, 1, 0]
    L = 6
    # node 3 (index 1): in-edges from 5 and 7 (each 1/2), out-edge to 5 (1)
    assert A[0, 1, :L].tolist() == [0, 0, 0.5, 0.5, 0, 0]
    assert A[0, 1, L:].tolist() == [0, 0, 1, 0, 0, 0]
    # node 5 (index 2): in from 3; out to 3 and 7 (1/2 each); padding node 0 has no edges
    assert A[0, 2, L:].tolist() == [0, 0.5, 0, 0.5, 0, 0]
    assert A[0, 0].abs().sum() == 0


def test_attention_mask_is_causal_and_hides_padding():
    m = causal_attention_mask(torch.tensor([[3, 4, 5, 0]]))[0, 0]
    allowed = m == 0
    assert allowed.tolist() == [[True, False, False, False], [True, True, False, False],
                                [True, True, True, False], [True, True, True, False]]


def _model(n_items=20, **kw):
    torch.manual_seed(0)
    return GCSAN(n_items, **kw).eval()


def test_padded_batch_gives_same_output_as_sequence_alone():
    model = _model()
    alone = torch.tensor([[3, 7, 3, 9]])
    with torch.no_grad():
        out_alone = model(alone, torch.tensor([4]))
        batch = torch.tensor([[3, 7, 3, 9, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7], [8, 0, 0, 0, 0, 0, 0]])
        out_batch = model(batch, torch.tensor([4, 7, 1]))
    torch.testing.assert_close(out_batch[0], out_alone[0], atol=1e-5, rtol=1e-5)


def test_last_query_shortcut_equals_full_last_block():
    model = _model(n_layers=2)
    seq = torch.tensor([[3, 7, 3, 9, 0], [1, 2, 3, 4, 5], [8, 0, 0, 0, 0]])
    length = torch.tensor([4, 5, 1])
    with torch.no_grad():
        fast = model(seq, length)
        model.last_query_only = False
        full = model(seq, length)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


def test_loss_and_full_sort_shapes_and_gradients():
    model = _model(n_items=30).train()
    seq = torch.tensor([[3, 7, 3, 9, 0], [1, 2, 3, 4, 5]])
    length, target = torch.tensor([4, 5]), torch.tensor([11, 12])
    loss = model.loss(seq, length, target)
    loss.backward()
    assert torch.isfinite(loss) and model.item_embedding.weight.grad.abs().sum() > 0
    assert model.full_sort(seq, length).shape == (2, 30)
    bpr = GCSAN(30, loss_type="BPR").loss(seq, length, target, negative=torch.tensor([1, 2]))
    assert torch.isfinite(bpr)
