"""mpm.model: shapes, gradients, causality, init quirks, and equality with the official layout
(Conv1d + Chomp1d TCN, a Python loop over the 9 branches, concatenation before the output module)."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mpm.model import MPM, Dropout, TemporalConvNet, submit_draw

U, I, H = 13, 29, 9


def official_forward(m: MPM, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """The official forward pass written the official way, on ``m``'s parameters (eval mode)."""
    x = m.item_embed(history).transpose(1, 2)                      # [B, D, H]
    for block in m.fine_grained_preference.network:
        res = x
        for conv in (block.conv1, block.conv2):
            pad = (conv.kernel_size[0] - 1) * conv.dilation[0]
            x = F.conv1d(x, conv.weight, conv.bias, padding=pad, dilation=conv.dilation)[:, :, :-pad]
            x = F.relu(x)
        x = F.relu(x + res)
    tcn = x.transpose(1, 2)                                        # [B, H, D]
    it = m.item_embed(item)

    def mlp(v):
        for layer in m.preference_mlp.layers:
            v = F.relu(layer(v))
        return v

    vectors = [mlp(torch.cat((tcn[:, i], it), 1)).unsqueeze(1) for i in range(H)]
    vectors.append(mlp(torch.cat((m.user_embed(user), it), 1)).unsqueeze(1))
    v = torch.cat(vectors, 1).flatten(1)
    for layer in m.output_module.layers[:-1]:
        v = F.relu(layer(v))
    return m.output_module.layers[-1](v)


def batch(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, U, (b,), generator=g), torch.randint(0, I, (b,), generator=g),
            torch.randint(0, I, (b, H), generator=g))


def test_forward_equals_official_layout_and_score_equals_forward():
    torch.manual_seed(0)
    m = MPM(U, I).eval()
    u, i, h = batch()
    with torch.no_grad():
        out = m(u, i, h)
        assert out.shape == (6, 1)
        torch.testing.assert_close(out, official_forward(m, u, i, h), rtol=1e-4, atol=1e-5)
        cands = torch.randint(0, I, (6, 5))
        s = m.score(u, h, cands)
        assert s.shape == (6, 5)
        flat = m(u.repeat_interleave(5), cands.reshape(-1), h.repeat_interleave(5, dim=0)).reshape(6, 5)
        torch.testing.assert_close(s, flat, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = MPM(U, I).train()
    u, i, h = batch(64)
    m.loss(u, i, h, (torch.arange(64) % 2).float()).backward()
    names = [n for n, p in m.named_parameters()]
    assert any("original0" in n for n in names)  # weight_norm's g and v are the parameters
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    conv = 32 * 32 * 3 + 32 + 32  # v, g, bias of one weight-normalised convolution
    mlp = (64 * 128 + 128) + (128 * 64 + 64) + (64 * 32 + 32)
    output = (320 * 128 + 128) + (128 * 64 + 64) + (64 * 32 + 32) + (32 + 1)
    assert sum(p.numel() for p in m.parameters()) == 32 * (U + I) + 10 * conv + mlp + output


def test_tcn_is_causal():
    torch.manual_seed(0)
    tcn = TemporalConvNet(8, levels=5).eval()
    x = torch.randn(3, H, 8)
    y = x.clone()
    y[:, 5] += 1.0
    with torch.no_grad():
        a, b = tcn(x), tcn(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert (a[:, 5:] - b[:, 5:]).abs().sum() > 0


def test_tcn_init_official_keeps_default_weights_and_normal_gives_std_001():
    torch.manual_seed(0)
    conv = MPM(U, I).fine_grained_preference.network[0].conv1
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    torch.testing.assert_close(conv.weight, v)  # g = |v|: the weight is PyTorch's default init
    assert torch.allclose(g.flatten(), v.flatten(1).norm(dim=1))
    assert v.std() > 0.05  # kaiming-uniform over fan-in 96, not N(0, 0.01)
    normal = MPM(U, I, tcn_init="normal").fine_grained_preference.network[0].conv1
    assert 0.007 < normal.weight.std() < 0.013
    m = MPM(U, I)
    assert 0.007 < m.item_embed.weight.std() < 0.013


def test_dropout_keeps_three_quarters_and_the_mean():
    torch.manual_seed(0)
    d = Dropout(0.25).train()
    x = torch.ones(200_000)
    y = d(x)
    assert abs((y > 0).float().mean().item() - 0.75) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(d.eval()(x), x)
    assert isinstance(Dropout(0.1).train()(x), torch.Tensor)  # non-multiple of 1/256: F.dropout


def test_detector_in_row_blocks_equals_the_unchunked_form_in_float64():
    """``PreferenceMLP.forward_time_major`` in row blocks (``_DetectorMLPFunction``, hand-written backward)
    against each layer on all rows at once (``chunk=None``, autograd), float64: outputs and the gradients of
    both inputs and every weight, for a batch that is not a multiple of the block size (37 examples, blocks
    of 16: 16, 16, 5 rows per time step) and a non-uniform output gradient."""
    from mpm.model import PreferenceMLP

    torch.manual_seed(0)
    length, b, d = 4, 37, 8
    mlp = PreferenceMLP((2 * d, 24, 12, 8)).double()
    left = torch.randn(length * b, d, dtype=torch.float64)
    right = torch.randn(b, d, dtype=torch.float64)
    gout = torch.randn(b, length, 8, dtype=torch.float64)
    results = []
    for chunk in (16, None):
        mlp.zero_grad(set_to_none=True)
        lf, rt = left.clone().requires_grad_(), right.clone().requires_grad_()
        out = mlp.forward_time_major(lf, rt, length, chunk=chunk)
        assert out.shape == (b, length, 8)
        assert 0.2 < float((out > 0).double().mean()) < 0.9          # the ReLUs cut somewhere
        out.backward(gout)
        results.append([out.detach(), lf.grad, rt.grad, *(p.grad for p in mlp.parameters())])
    for got, ref in zip(*results):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def _three_steps(model: MPM, ahead: bool, batch: int = 48):
    """Three seeded training steps (loss, backward, SGD); returns the losses, the last gradients and torch's
    generator state afterwards."""
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(5)
    losses = []
    for _ in range(3):
        user = torch.randint(0, 30, (batch,), generator=gen)
        item = torch.randint(0, 60, (batch,), generator=gen)
        history = torch.randint(0, 60, (batch, 9), generator=gen)
        label = torch.randint(0, 2, (batch,), generator=gen).float()
        if ahead:
            assert model.draw_ahead(batch) == 10
        loss = model.loss(user, item, history, label)
        model.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        losses.append(loss.detach())
    return losses, [p.grad.clone() for p in model.parameters()], torch.get_rng_state()


def test_masks_drawn_ahead_are_those_drawn_inline_bit_for_bit():
    """MPM.draw_ahead: the same dropout multipliers from the same generator words, so the same losses, every
    gradient and torch's generator state, bit for bit, over three steps (the second thread only moves the work)."""
    torch.manual_seed(0)
    a = MPM(30, 60)
    b = copy.deepcopy(a)
    a.train(), b.train()
    la, ga, sa = _three_steps(a, ahead=False)
    lb, gb, sb = _three_steps(b, ahead=True)
    assert all(torch.equal(x, y) for x, y in zip(la, lb))
    assert all(torch.equal(x, y) for x, y in zip(ga, gb))
    assert torch.equal(sa, sb)


def test_draw_ahead_refuses_what_would_break_the_stream():
    torch.manual_seed(0)
    m = MPM(30, 60)
    m.eval()
    assert m.draw_ahead(8) == 0                       # evaluation draws nothing
    m.train()
    assert m.draw_ahead(8) == 10
    with pytest.raises(RuntimeError, match="not all used"):
        m.draw_ahead(8)                               # the earlier step's masks were never taken
    with pytest.raises(RuntimeError, match="drawn ahead for"):
        m.loss(torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.long),
               torch.zeros(16, 9, dtype=torch.long), torch.zeros(16))   # batch 16, masks drawn for 8
    submit_draw(lambda: None).result()                # the queued draws done before other tests draw


def test_main_draws_ahead_only_where_a_core_is_free(monkeypatch):
    from common import parallel
    from mpm import main

    assert main.use_draw_ahead("on") and not main.use_draw_ahead("off")
    assert parallel.available_cores() >= 1
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    monkeypatch.setattr(main.torch, "get_num_threads", lambda: 1)
    assert main.use_draw_ahead("auto") and not main.use_draw_ahead("auto", "cuda")
    monkeypatch.setattr(main.torch, "get_num_threads", lambda: 2)
    assert not main.use_draw_ahead("auto")
    with pytest.raises(SystemExit):
        main.parse_args(["--draw-ahead", "sometimes"])
