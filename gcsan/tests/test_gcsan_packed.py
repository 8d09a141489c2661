"""The packed forward (real positions only, GNN first step on the item table) against the dense
reference form (``GCSAN.forward_dense``, the padded computation): same outputs, losses and gradients
up to float rounding, with dropout on and the same random stream, on batches of many lengths."""

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gcsan.model as gcsan_model
from gcsan.model import (GCSAN, bernoulli_from_integers_, draw_dropout, node_item_matrices, pack_positions,
                          session_edges, submit_draw, transposed_product)


def _batch(B: int, L: int, n_items: int, seed: int, width: int | None = None):
    """Right-padded rows of every length 1..L (then random lengths), few item ids (repeated items,
    repeated edges), padded to ``width`` >= L columns."""
    gen = torch.Generator().manual_seed(seed)
    length = torch.cat([torch.arange(1, L + 1), torch.randint(1, L + 1, (B - L,), generator=gen)])
    length = length[torch.randperm(B, generator=gen)]
    width = width or L
    seq = torch.randint(1, n_items, (B, width), generator=gen)
    seq[torch.arange(width)[None, :] >= length[:, None]] = 0
    return seq, length, torch.randint(1, n_items, (B,), generator=gen)


def _run(model: GCSAN, packed: bool, seq, length, target, seed: int):
    model.packed = packed
    model.zero_grad()
    torch.manual_seed(seed)
    rep = model(seq, length)
    torch.manual_seed(seed)
    loss = model.loss(seq, length, target)
    loss.backward()
    after = torch.get_rng_state()
    return rep.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, after


@pytest.mark.parametrize("n_layers,n_heads,step,p,width", [
    (2, 2, 1, 0.5, None),  # the ML-100k preset's shape
    (1, 1, 1, 0.2, None),  # the Diginetica presets' shape
    (3, 2, 2, 0.3, 14),  # more blocks, two GNN steps, extra all-padding columns
    (2, 4, 1, 0.0, None),  # no dropout draws at all
])
def test_packed_equals_dense_with_dropout(n_layers, n_heads, step, p, width):
    torch.set_num_threads(1)
    seq, length, target = _batch(96, 11, 9, seed=n_layers + 10 * n_heads, width=width)
    torch.manual_seed(0)
    model = GCSAN(9, hidden_size=16, n_layers=n_layers, n_heads=n_heads, inner_size=32, step=step,
                  hidden_dropout=p, attn_dropout=p)
    for train in (True, False):
        model.train(train)
        rep_d, loss_d, grads_d, rng_d = _run(model, False, seq, length, target, seed=5)
        rep_p, loss_p, grads_p, rng_p = _run(model, True, seq, length, target, seed=5)
        assert torch.equal(rng_d, rng_p)  # the same draws: the random stream ends in the same place
        torch.testing.assert_close(rep_p, rep_d, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss_p, loss_d, rtol=1e-6, atol=1e-6)
        for name in grads_d:
            torch.testing.assert_close(grads_p[name], grads_d[name], rtol=1e-4, atol=1e-7, msg=name)
    assert grads_p["item_embedding.weight"][0].abs().sum() > 0  # row 0: scores and EmbLoss only, as dense
    model.eval()
    with torch.no_grad():
        model.packed = True
        fast = model.full_sort(seq, length)
        model.packed = False
        torch.testing.assert_close(fast, model.full_sort(seq, length), rtol=1e-5, atol=1e-6)


def test_dropout_draw_is_f_dropout_bit_for_bit():
    x = torch.randn(40, 7, 33)
    for p in (0.5, 0.2, 0.3, 1 / 3, 0.9, 1.0):
        torch.manual_seed(3)
        want = F.dropout(x, p, training=True)
        state = torch.get_rng_state()
        torch.manual_seed(3)
        d = draw_dropout(nn.Dropout(p).train(), tuple(x.shape), x)
        assert torch.equal(torch.get_rng_state(), state)
        got = x * d.multiplier(d.mask)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32)), p  # signed zeros too
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert draw_dropout(nn.Dropout(0.0).train(), (3, 4), x) is None
    assert draw_dropout(nn.Dropout(0.5).eval(), (3, 4), x) is None
    assert torch.equal(torch.get_rng_state(), state)


def test_bernoulli_from_integers_is_bernoulli_bit_for_bit(monkeypatch):
    """The integer form of the dropout draws: the same mask as bernoulli_ and the same generator state
    after it, across chunk boundaries (a chunk of 1,000 values here; odd sizes, one value, a partial last
    chunk), for rates whose q 2^53 is and is not an integer, on the global and on a private generator."""
    monkeypatch.setattr(gcsan_model, "DRAW_CHUNK", 1000)
    for q in (0.5, 0.8, 0.7, 1 / 3, 0.1, 1e-9, 1.0, 0.0):
        for shape in ((1,), (999,), (1000,), (3, 1001), (7, 5, 211)):
            torch.manual_seed(5)
            want = torch.empty(shape, dtype=torch.bool).bernoulli_(q)
            state = torch.get_rng_state()
            torch.manual_seed(5)
            got = bernoulli_from_integers_(torch.empty(shape, dtype=torch.bool), q)
            assert torch.equal(got, want), (q, shape)
            assert torch.equal(torch.get_rng_state(), state), (q, shape)
        g, h = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        want = torch.empty(2500, dtype=torch.bool).bernoulli_(q, generator=g)
        assert torch.equal(bernoulli_from_integers_(torch.empty(2500, dtype=torch.bool), q, generator=h), want)
        assert torch.equal(g.get_state(), h.get_state())
    with pytest.raises(ValueError, match="contiguous"):
        bernoulli_from_integers_(torch.empty(4, 6, dtype=torch.bool).t(), 0.5)
    assert gcsan_model._integer_draws_are_bernoulli()  # so draw_dropout uses it on the CPU
    # and draw_dropout with it is F.dropout bit for bit over several chunks
    x = torch.randn(3, 1234)
    torch.manual_seed(3)
    want = F.dropout(x, 0.5, training=True)
    state = torch.get_rng_state()
    torch.manual_seed(3)
    d = draw_dropout(nn.Dropout(0.5).train(), tuple(x.shape), x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal((x * d.multiplier(d.mask)).view(torch.int32), want.view(torch.int32))


def test_packing_groups_rows_by_length_and_keeps_positions():
    seq = torch.tensor([[4, 5, 6, 0, 0], [7, 0, 0, 0, 0], [1, 2, 3, 4, 5], [8, 9, 0, 0, 0], [3, 3, 3, 0, 0]])
    length = torch.tensor([3, 1, 5, 2, 3])
    pk = pack_positions(seq, length)
    assert pk.order.tolist() == [1, 3, 0, 4, 2]
    assert [(l, m) for l, _, m, _ in pk.groups] == [(1, 1), (2, 1), (3, 2), (5, 1)]
    assert seq.view(-1)[pk.flat].tolist() == [7, 8, 9, 4, 5, 6, 3, 3, 3, 1, 2, 3, 4, 5]
    assert seq.view(-1)[pk.flat[pk.last]].tolist() == [7, 9, 6, 3, 5]
    assert torch.equal(pk.order[pk.rank], torch.arange(5))
    with pytest.raises(ValueError):
        pack_positions(torch.tensor([[4, 0, 6]]), torch.tensor([3]))  # a hole
    with pytest.raises(ValueError):
        pack_positions(torch.tensor([[4, 5, 6]]), torch.tensor([2]))  # length disagrees


def test_node_item_matrices_hold_the_edge_sums(monkeypatch):
    seq, _, _ = _batch(50, 8, 6, seed=1)
    g = session_edges(seq)
    n_items, N = 6, len(g.items)
    mats = node_item_matrices(g, n_items)
    table = torch.randn(3 * n_items, 5, dtype=torch.float64)
    t_in, t_out, t_s = table[:n_items], table[n_items:2 * n_items], table[2 * n_items:]
    want = torch.zeros(N, 5, dtype=torch.float64)
    want.index_add_(0, g.dst, t_in[g.items[g.src]] * g.w_in[:, None].double())
    want.index_add_(0, g.src, t_out[g.items[g.dst]] * g.w_out[:, None].double())
    m, ms = mats.m.to(torch.float64), mats.ms.to(torch.float64)
    torch.testing.assert_close(m @ table[:2 * n_items], want)
    torch.testing.assert_close(ms @ table, want + t_s[g.items])
    # the transposed products of the backward, against the dense transposes, chunk boundaries included
    for chunk in (7, 4096):
        monkeypatch.setattr(gcsan_model, "TRANSPOSE_CHUNK", chunk)
        for a, rows in ((m, mats.m_rows), (ms, mats.ms_rows)):
            d = torch.randn(N, 3, dtype=torch.float64)
            torch.testing.assert_close(transposed_product(a, rows, d), a.to_dense().t() @ d)
            assert torch.equal(rows, torch.repeat_interleave(torch.arange(N), a.crow_indices().diff()))


def test_bench_counts_sparse_products_by_nonzeros():
    from gcsan.bench import torch_flops

    a = torch.eye(6).to_sparse_csr()
    b = torch.randn(6, 4)
    assert torch_flops(lambda: a @ b) == 2 * 6 * 4
    assert torch_flops(lambda: torch.randn(5, 6) @ b) == 2 * 5 * 6 * 4


@pytest.mark.parametrize("n_layers,n_heads,p,loss_type", [(2, 2, 0.5, "CE"), (1, 1, 0.2, "CE"), (3, 2, 0.3, "BPR"),
                                                          (2, 2, 1.0, "CE")])
def test_draw_ahead_is_drawing_inline_bit_for_bit(n_layers, n_heads, p, loss_type):
    """Masks drawn ahead on the worker thread: the same loss, gradients and generator state, bit for bit,
    over several steps (a second call before the first masks are used is refused)."""
    torch.manual_seed(0)
    model = GCSAN(40, hidden_size=8, n_layers=n_layers, n_heads=n_heads, inner_size=16, hidden_dropout=p,
                  attn_dropout=p, loss_type=loss_type).train()
    runs = {}
    for ahead in (False, True):
        out = []
        torch.manual_seed(11)
        for k in range(3):
            seq, length, target = _batch(23 + k, 9 - k, 40, k)
            negative = torch.randint(1, 40, target.shape) if loss_type == "BPR" else None  # as train_epoch: first
            if ahead:
                assert model.draw_ahead(*seq.shape) == 3 * n_layers
            model.zero_grad()
            loss = model.loss(seq, length, target, negative)
            loss.backward()
            out.append((loss.detach(), [q.grad.clone() for q in model.parameters()], torch.get_rng_state()))
        runs[ahead] = out
    for (l0, g0, s0), (l1, g1, s1) in zip(runs[False], runs[True]):
        assert torch.equal(l0, l1) and torch.equal(s0, s1)
        assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    seq, length, _ = _batch(12, 5, 40, 7)
    model.draw_ahead(*seq.shape)
    with pytest.raises(RuntimeError, match="not all used"):
        model.draw_ahead(*seq.shape)
    assert model.eval().draw_ahead(*seq.shape) == 0


def test_submit_draw_runs_tasks_in_order_on_one_worker_thread():
    """The draw-ahead worker: tasks in submission order, on one thread other than the caller's, and
    draws there continue the caller's random stream."""
    seen = []
    futures = [submit_draw(lambda k=k: seen.append((k, threading.current_thread().name))) for k in range(200)]
    for f in futures:
        f.result()
    assert [k for k, _ in seen] == list(range(200))
    names = {n for _, n in seen}
    assert len(names) == 1 and threading.current_thread().name not in names
    torch.manual_seed(3)
    want = [torch.rand(5) for _ in range(4)]
    torch.manual_seed(3)
    got = [submit_draw(torch.rand, 5) for _ in range(4)]
    assert all(torch.equal(w, g.result()) for w, g in zip(want, got))
