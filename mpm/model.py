"""MPM, the Multi-Preferences Model (arXiv 2112.11023), as in the authors' code (chenjie04/MPM).

Paper components and the code blocks that implement them (the paper's equation numbers could not
be read offline, so blocks are named after its modules):

* embeddings -- user and item embeddings ``p_u``, ``q_i`` (dim 32, N(0, 0.01));
* **fine-grained preference module** -- :class:`TemporalConvNet`, a causal TCN over the 9 history
  item embeddings; its output at position t is the *instant preference* after the first t+1
  history items (one per history position);
* **unexpected-behaviour detector** -- :class:`PreferenceMLP` applied to (instant preference t ⊕
  target item) for t = 1..9: one MLP whose output says how the target fits each instant
  preference, so that a preference biased by an unexpected behaviour can be told apart;
* **general preference** -- the same :class:`PreferenceMLP` (shared weights, as in the official
  code) applied to (user ⊕ target item);
* **output module** -- :class:`OutputModule`, an MLP over the 9 + 1 concatenated vectors (320)
  down to one logit; it weighs the instant preferences against the general one.
"""

from __future__ import annotations

import math
from collections import deque

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from common.parallel import submit_draw


class Dropout(nn.Module):
    """Inverted dropout, as ``nn.Dropout``, with the mask drawn from random bytes.

    ``torch``'s CPU ``bernoulli_`` costs more than the whole TCN forward at these sizes; 8 random
    bytes come from one int64 draw, and ``byte >= 256 p`` keeps an element with probability
    exactly ``1 - p`` when ``256 p`` is an integer (p = 0.25 here). Other rates fall back to
    ``F.dropout``. Same distribution as ``nn.Dropout``; drawn from torch's seeded generator.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self._threshold = round(256 * p) if abs(256 * p - round(256 * p)) < 1e-9 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self._threshold is None or x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        keep = self.random_bytes(x.shape) >= self._threshold
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def random_bytes(self, shape: torch.Size) -> torch.Tensor:
        """The uint8 tensor [shape] whose entries >= ``256 p`` are kept, as ``forward`` draws it for an x of
        this shape (CPU, ``256 p`` an integer, training mode)."""
        n = math.prod(shape)
        words = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 7) // 8,), dtype=torch.int64)
        return words.view(torch.uint8)[:n].view(shape)


def time_major_keep(dropout: nn.Module, batch: int, length: int, channels: int, dtype: torch.dtype,
                    device: torch.device) -> "torch.Tensor | None":
    """What ``dropout`` multiplies an x [batch, length, channels] by, laid out time-major
    [length * batch, channels]: for our :class:`Dropout` the multiplier (0 or 1 / (1 - p)) of the mask its
    ``forward`` would draw; any other elementwise module (``nn.Dropout``, a fixed mask in a test) is
    applied to ones; None when x passes unchanged."""
    shape = torch.Size((batch, length, channels))
    if isinstance(dropout, Dropout):
        if not dropout.training or dropout.p == 0:
            return None
        if dropout._threshold is not None and device.type == "cpu":
            bytes_ = dropout.random_bytes(shape).transpose(0, 1).reshape(length * batch, channels)
            keep = torch.ge(bytes_, dropout._threshold, out=torch.empty(bytes_.shape, dtype=dtype))
            return keep.mul_(1.0 / (1.0 - dropout.p))                            # as Dropout.forward's product
    return dropout(torch.ones(shape, dtype=dtype, device=device)).transpose(0, 1).reshape(length * batch, channels)


def positive(a: torch.Tensor) -> torch.Tensor:
    """1.0 where a > 0, else 0.0, in a's dtype (a comparison written to a float tensor: on CPU several
    times faster than a bool result and its conversion)."""
    return torch.gt(a, 0, out=torch.empty_like(a))


def relu_dropout_multiplier(a: torch.Tensor, keep: "torch.Tensor | None") -> torch.Tensor:
    """m with dropout(relu(a)) = a * m: the dropout multiplier ``keep`` (0 or 1 / (1 - p)) where a > 0,
    else 0 (the same products as relu(a) * keep, up to the sign of zeros)."""
    return positive(a) if keep is None else positive(a).mul_(keep)


def causal_taps(kernel_size: int, dilation: int, length: int) -> tuple[tuple[int, int], ...]:
    """(tap j, shift s_j = (k - 1 - j) d) of the taps that read some x (s_j < length), last tap (s = 0) first."""
    return tuple((j, (kernel_size - 1 - j) * dilation) for j in reversed(range(kernel_size))
                 if (kernel_size - 1 - j) * dilation < length)


def _addmm_into(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """c += a @ b in place (``addmm`` with out=c: the same product as ``c.addmm_``, and one that
    torch's FLOP counter sees)."""
    return torch.addmm(c, a, b, out=c)


def _conv_forward(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, taps, batch: int) -> torch.Tensor:
    """Causal convolution, time-major: x [length * batch, c_in], wt [k, c_in, c_out] -> [length * batch, c_out].

    Rows t * batch .. (t + 1) * batch - 1 hold time t, so tap j (shift s) adds x[rows of t - s] @ W_j to
    the rows of t >= s: one matrix product per tap on the rows it reads, none on the zero padding."""
    n = x.shape[0]
    (j0, _), *rest = taps
    out = torch.addmm(bias, x, wt[j0])
    for j, shift in rest:
        r = shift * batch
        _addmm_into(out[r:], x[:n - r], wt[j])
    return out


def _conv_backward(g: torch.Tensor, x: torch.Tensor, wt: torch.Tensor, taps, batch: int,
                   gx: "torch.Tensor | None" = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`_conv_forward` for the output gradient g: input (added to gx when given),
    weight [c_out, c_in, k] (zero for the skipped taps) and bias."""
    n = x.shape[0]
    k, c_in, c_out = wt.shape
    gw = g.new_zeros(c_out, c_in, k)
    (j0, _), *rest = taps
    gx = torch.mm(g, wt[j0].t()) if gx is None else _addmm_into(gx, g, wt[j0].t())
    gw[:, :, j0] = g.t() @ x
    for j, shift in rest:
        r = shift * batch
        _addmm_into(gx[:n - r], g[r:], wt[j].t())
        gw[:, :, j] = g[r:].t() @ x[:n - r]
    return gx, gw, g.sum(0)


class _TemporalBlockFunction(torch.autograd.Function):
    """One TemporalBlock (no downsample) on time-major rows, with a hand-written backward.

    Forward: ``a1 = conv1(x)``, ``y1 = a1 * m1`` with ``m1 = keep1 * (a1 > 0)`` (ReLU and dropout as one
    multiplier: relu(a) * keep = a * (keep * (a > 0))), ``a2 = conv2(y1)``, ``out = relu(a2 * m2 + x)``.
    Saves x, y1, m1, m2, out; the backward multiplies by the same masks."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, keep1, keep2, taps1, taps2, batch):
        wt1, wt2 = w1.permute(2, 1, 0).contiguous(), w2.permute(2, 1, 0).contiguous()
        a1 = _conv_forward(x, wt1, b1, taps1, batch)
        m1 = relu_dropout_multiplier(a1, keep1)
        y1 = a1.mul_(m1)
        a2 = _conv_forward(y1, wt2, b2, taps2, batch)
        m2 = relu_dropout_multiplier(a2, keep2)
        out = a2.mul_(m2).add_(x).clamp_min_(0)
        ctx.save_for_backward(x, wt1, wt2, y1, m1, m2, out)
        ctx.taps, ctx.batch = (taps1, taps2), batch
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, wt1, wt2, y1, m1, m2, out = ctx.saved_tensors
        (taps1, taps2), batch = ctx.taps, ctx.batch
        g = positive(out).mul_(grad_out)
        gy1, gw2, gb2 = _conv_backward(g * m2, y1, wt2, taps2, batch)
        gx, gw1, gb1 = _conv_backward(gy1.mul_(m1), x, wt1, taps1, batch, gx=g)  # g: the residual's share
        return gx, gw1, gb1, gw2, gb2, None, None, None, None, None


def _relu_backward_(g: torch.Tensor, h: torch.Tensor, out: "torch.Tensor | None" = None) -> torch.Tensor:
    """g where h > 0, else 0 (ReLU's backward for its output h, the operator autograd uses), written to out
    (default: g itself)."""
    return torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g if out is None else out)


DETECTOR_CHUNK = 1024
"""Rows per block of :class:`_DetectorMLPFunction` (a [1024, 128] float32 activation is 512 KB: it stays in a
core's L2 cache between the products and element-wise passes that use it)."""


class _DetectorMLPFunction(torch.autograd.Function):
    """:meth:`PreferenceMLP.forward_time_major` for three layers, in blocks of rows, with a hand-written backward.

    The same products as the unchunked form, row block by row block: each block of rows of one time step goes
    through ``h1 = relu(left W1l^T + r)`` (``r = right W1r^T + b1``, right's share, computed once),
    ``h2 = relu(h1 W2^T + b2)``, ``h3 = relu(h2 W3^T + b3)`` while its activations are still in cache, instead
    of each layer writing a [rows, 128] activation (9.4 MB at batch 2048) that the next pass reads back. The
    backward walks the blocks the same way; the weight and bias gradients are summed over the blocks in place
    (``addmm`` with out=), right's share over the time steps. Saves h1, h2, h3 (the ReLU masks and the
    products' inputs). The output is batch-major, [batch, length * 32] (row b: time 0, 1, ... of example
    b), the layout in which the output module reads it: no transposed copy of it or of its gradient."""

    @staticmethod
    def forward(ctx, left, right, w1, b1, w2, b2, w3, b3, length, chunk):
        n, d = left.shape
        batch = right.shape[0]
        new = dict(dtype=left.dtype, device=left.device)
        r = torch.addmm(b1, right, w1[:, d:].t())                                 # [batch, 128]
        h1 = torch.empty(n, w1.shape[0], **new)
        h2 = torch.empty(n, w2.shape[0], **new)
        n3 = w3.shape[0]
        h3 = torch.empty(batch, length * n3, **new)                              # batch-major: row b, time t at columns t * n3 ..
        w1lt, w2t, w3t = (w.t().contiguous() for w in (w1[:, :d], w2, w3))      # MKL reads these a little faster
        for t in range(length):
            for b0 in range(0, batch, chunk):
                b1_ = min(b0 + chunk, batch)
                i, j = t * batch + b0, t * batch + b1_
                torch.mm(left[i:j], w1lt, out=h1[i:j]).add_(r[b0:b1_]).relu_()
                torch.addmm(b2, h1[i:j], w2t, out=h2[i:j]).relu_()
                torch.addmm(b3, h2[i:j], w3t, out=h3[b0:b1_, t * n3:(t + 1) * n3]).relu_()
        ctx.save_for_backward(left, right, w1, w2, w3, h1, h2, h3)
        ctx.length, ctx.chunk = length, chunk
        return h3

    @staticmethod
    def backward(ctx, grad_out):
        left, right, w1, w2, w3, h1, h2, h3 = ctx.saved_tensors
        length, chunk = ctx.length, ctx.chunk
        n, d = left.shape
        batch = right.shape[0]
        c = min(chunk, batch)
        new = dict(dtype=left.dtype, device=left.device)
        gw1l, gw2, gw3 = left.new_zeros(w1.shape[0], d), torch.zeros_like(w2), torch.zeros_like(w3)
        gb2, gb3 = left.new_zeros(1, w2.shape[0]), left.new_zeros(1, w3.shape[0])   # as rows: ones @ g
        gr = left.new_zeros(batch, w1.shape[0])                                   # gradient of r
        gleft = torch.empty(n, d, **new)
        ones = torch.ones(1, c, **new)
        g3buf, g2buf, g1buf = (torch.empty(c, w.shape[0], **new) for w in (w3, w2, w1))
        w1l = w1[:, :d]
        for t in range(length):
            for b0 in range(0, batch, chunk):
                b1_ = min(b0 + chunk, batch)
                i, j = t * batch + b0, t * batch + b1_
                m = j - i
                cols = slice(t * w3.shape[0], (t + 1) * w3.shape[0])
                g3 = _relu_backward_(grad_out[b0:b1_, cols], h3[b0:b1_, cols], out=g3buf[:m])
                _addmm_into(gw3, g3.t(), h2[i:j])
                _addmm_into(gb3, ones[:, :m], g3)
                g2 = _relu_backward_(torch.mm(g3, w3, out=g2buf[:m]), h2[i:j])
                _addmm_into(gw2, g2.t(), h1[i:j])
                _addmm_into(gb2, ones[:, :m], g2)
                g1 = _relu_backward_(torch.mm(g2, w2, out=g1buf[:m]), h1[i:j])
                _addmm_into(gw1l, g1.t(), left[i:j])
                gr[b0:b1_].add_(g1)
                torch.mm(g1, w1l, out=gleft[i:j])
        gw1 = torch.cat((gw1l, gr.t() @ right), 1)
        return (gleft, gr @ w1[:, d:], gw1, gr.sum(0), gw2, gb2.view(-1), gw3, gb3.view(-1), None, None)


class TemporalBlock(nn.Module):
    """One TCN level: two weight-normalised dilated causal convolutions with a residual.

    ``out = ReLU(x + Dropout(ReLU(CausalConv2(Dropout(ReLU(CausalConv1(x)))))))``. Position t of a
    causal convolution with kernel k and dilation d sees x[t - (k-1) d], ..., x[t - d], x[t]
    (zeros before the start): the official ``Conv1d(padding=(k-1) d)`` + ``Chomp1d``. It is
    computed here as one matrix product over the k shifted copies of the sequence (channels last),
    which is the same sum and faster than ``Conv1d`` on CPU at these sizes; the
    parameters are those of the official ``weight_norm(nn.Conv1d)`` (``weight = g v / |v|``).

    ``init``: ``"official"`` keeps PyTorch's default convolution init (the official code calls
    ``conv.weight.data.normal_(0, 0.01)`` *after* ``weight_norm``, which only overwrites a tensor
    that the weight-norm hook recomputes from ``g`` and ``v`` at the next forward: a no-op);
    ``"normal"`` gives the weights the N(0, 0.01) the code intended (``v`` ~ N(0, 0.01), ``g = |v|``).
    """

    def __init__(self, n_inputs: int, n_outputs: int, kernel_size: int, dilation: int,
                 dropout: float, init: str = "official"):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.conv1 = nn.Conv1d(n_inputs, n_outputs, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(n_outputs, n_outputs, kernel_size, dilation=dilation)
        if init == "normal":
            for conv in (self.conv1, self.conv2):
                conv.weight.data.normal_(0.0, 0.01)
        elif init != "official":
            raise ValueError(f"unknown TCN init {init!r}; valid: 'official', 'normal'")
        self.conv1, self.conv2 = weight_norm(self.conv1), weight_norm(self.conv2)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None
        if self.downsample is not None:
            self.downsample.weight.data.normal_(0.0, 0.01)

    def causal_conv(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x [batch, length, c_in] -> [batch, length, c_out].

        Tap j of the kernel reads x[t - s_j] with s_j = (k - 1 - j) d; taps with s_j >= length
        only ever read the zero padding and are skipped (e.g. all but the last at d = 16).
        """
        b, length, c = x.shape
        taps = [j for j in range(self.kernel_size) if (self.kernel_size - 1 - j) * self.dilation < length]
        shift = torch.tensor([(self.kernel_size - 1 - j) * self.dilation for j in taps], device=x.device)
        src = torch.arange(length, device=x.device)[:, None] - shift[None, :] + 1  # [length, taps]
        src = src.clamp(min=0).reshape(-1)                                        # 0 = the zero row
        padded = torch.cat((x.new_zeros(b, 1, c), x), dim=1)                      # [b, 1 + length, c]
        gathered = padded[:, src].reshape(b, length, len(taps) * c)               # [b, length, taps * c]
        w = conv.weight[:, :, taps]                                               # [c_out, c_in, taps]
        w = w.permute(0, 2, 1).reshape(w.shape[0], -1)                            # [c_out, taps * c_in]
        return F.linear(gathered, w, conv.bias)

    def forward_time_major(self, x: torch.Tensor, batch: int, length: int) -> torch.Tensor:
        """The same block on x [length * batch, channels] (row t * batch + b: time t of example b), the
        layout in which a causal shift is a slice of rows; no downsample. Dropout masks are drawn for
        [batch, length, channels], as ``forward`` draws them, and then laid out time-major."""
        keep1 = self._keep(self.dropout1, batch, length, x)
        keep2 = self._keep(self.dropout2, batch, length, x)
        taps = causal_taps(self.kernel_size, self.dilation, length)
        return _TemporalBlockFunction.apply(x, self.conv1.weight, self.conv1.bias, self.conv2.weight,
                                            self.conv2.bias, keep1, keep2, taps, taps, batch)

    @staticmethod
    def _keep(dropout: nn.Module, batch: int, length: int, x: torch.Tensor) -> "torch.Tensor | None":
        """:func:`time_major_keep` for x, or the multiplier drawn ahead for it (:meth:`TemporalConvNet.draw_ahead`)."""
        key = (batch, length, x.shape[1], x.dtype, x.device)
        ahead = getattr(dropout, "drawn_ahead", None)
        if ahead:
            want, future = ahead.popleft()
            if want != key:
                raise RuntimeError(f"a dropout mask was drawn ahead for {want} but the forward needs {key}: the "
                                   "random stream would no longer match drawing inline")
            return future.result()
        return time_major_keep(dropout, *key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, length, channels_in] -> [batch, length, channels_out] (channels last)."""
        out = self.dropout1(F.relu(self.causal_conv(self.conv1, x)))
        out = self.dropout2(F.relu(self.causal_conv(self.conv2, out)))
        res = x if self.downsample is None else self.downsample(x.transpose(1, 2)).transpose(1, 2)
        return F.relu(out + res)


class TemporalConvNet(nn.Module):
    """Fine-grained preference module: ``levels`` TemporalBlocks with dilation 1, 2, 4, ...

    Input [batch, history, dim] (item embeddings, oldest first) -> instant preferences
    [batch, history, dim]; position t depends only on history items 0..t.
    """

    def __init__(self, dim: int, levels: int = 5, kernel_size: int = 3, dropout: float = 0.25,
                 init: str = "official"):
        super().__init__()
        self.network = nn.Sequential(*[
            TemporalBlock(dim, dim, kernel_size, 2 ** i, dropout, init) for i in range(levels)])

    @property
    def time_major(self) -> bool:
        """Whether :meth:`forward_time_major` applies (no block needs a downsample)."""
        return all(block.downsample is None for block in self.network)

    def draw_ahead(self, batch: int, length: int, dtype: torch.dtype, device: torch.device) -> int:
        """Start drawing the dropout multipliers of the next :meth:`forward_time_major` on [batch, length]
        (training mode, CPU) on a second thread, in the order the forward would draw them (block by block,
        dropout1 then dropout2), and return how many were queued. Each block waits only for its own two.

        Speed only: the draws (``Dropout.random_bytes``, one int64 word of torch's generator per 8 values) and
        their time-major layout are serial work that overlaps with the convolutions on an otherwise idle
        core. The multipliers and the generator's final state are exactly those of drawing inline (tested),
        provided nothing else draws from torch's generator until the forward has taken them."""
        if not (self.training and self.time_major and device.type == "cpu"):
            return 0
        plan = [(block, d) for block in self.network for d in (block.dropout1, block.dropout2)]
        if any(getattr(d, "drawn_ahead", None) for _, d in plan):
            raise RuntimeError("dropout masks drawn ahead for an earlier step were not all used: the random "
                               "stream would no longer match drawing inline")
        for block, d in plan:
            if getattr(d, "drawn_ahead", None) is None:
                d.drawn_ahead = deque()
            channels = block.conv1.out_channels             # no downsample: in = out channels
            key = (batch, length, channels, dtype, device)
            d.drawn_ahead.append((key, submit_draw(time_major_keep, d, *key)))
        return len(plan)

    def forward_time_major(self, history: torch.Tensor) -> torch.Tensor:
        """history [batch, length, dim] -> instant preferences [length * batch, dim], row t * batch + b."""
        b, length, c = history.shape
        x = history.transpose(0, 1).reshape(length * b, c)
        for block in self.network:
            x = block.forward_time_major(x, b, length)
        return x

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        if not self.time_major:
            return self.network(history)
        b, length, c = history.shape
        return self.forward_time_major(history).view(length, b, c).transpose(0, 1)


def glorot_uniform_(layer: nn.Linear) -> None:
    limit = math.sqrt(6.0 / (layer.in_features + layer.out_features))
    layer.weight.data.uniform_(-limit, limit)


def lecun_uniform_(layer: nn.Linear) -> None:
    limit = math.sqrt(3.0 / layer.in_features)
    layer.weight.data.uniform_(-limit, limit)


class PreferenceMLP(nn.Module):
    """Shared MLP 64 -> 128 -> 64 -> 32, ReLU after every layer (Glorot-uniform weights).

    Used as the unexpected-behaviour detector on (instant preference ⊕ item) and for the general
    preference on (user ⊕ item). ``forward(left [..., D], right [..., D]) -> [..., 32]``.
    The first layer on the concatenation is computed as ``W_left left + W_right right + b``
    (the same sum), so the two halves may broadcast: when ranking C candidates, the 9 instant
    preferences of a user go through ``W_left`` once, not C times.
    """

    def __init__(self, sizes: tuple[int, ...] = (64, 128, 64, 32)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            glorot_uniform_(layer)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        first = self.layers[0]
        d = left.shape[-1]
        x = F.relu(F.linear(left, first.weight[:, :d]) + F.linear(right, first.weight[:, d:], first.bias),
                   inplace=True)
        for layer in self.layers[1:]:
            x = F.relu(layer(x), inplace=True)
        return x

    def forward_time_major(self, left: torch.Tensor, right: torch.Tensor, length: int,
                           chunk: "int | None" = DETECTOR_CHUNK) -> torch.Tensor:
        """``forward`` on left [length * batch, D] (row t * batch + b) and right [batch, D] -> [batch, length, 32]:
        the same products, on 2-D matrices, with right's share of the first layer broadcast over t (the output
        batch-major, as the output module reads it).

        ``chunk``: rows per block of :class:`_DetectorMLPFunction` (CPU, three layers); None: each layer
        on all rows at once (the form it restructures; any device and depth)."""
        if chunk and len(self.layers) == 3 and left.device.type == "cpu":
            (w1, b1), (w2, b2), (w3, b3) = ((layer.weight, layer.bias) for layer in self.layers)
            out = _DetectorMLPFunction.apply(left, right, w1, b1, w2, b2, w3, b3, length, chunk)
            return out.view(right.shape[0], length, -1)
        first = self.layers[0]
        d = left.shape[-1]
        x = F.linear(left, first.weight[:, :d]).view(length, right.shape[0], -1)
        x = F.relu(x + F.linear(right, first.weight[:, d:], first.bias), inplace=True).view(left.shape[0], -1)
        for layer in self.layers[1:]:
            x = F.relu(layer(x), inplace=True)
        return x.view(length, right.shape[0], -1).transpose(0, 1)


class OutputModule(nn.Module):
    """Output module: 320 -> 128 -> 64 -> 32 -> 1, ReLU between layers (LeCun-uniform weights).

    ``forward(detected [..., H, 32], general [..., 32]) -> logit [..., 1]``: the official code
    concatenates the 9 detector outputs and the general preference into 320 values; the first
    layer is computed here as the same sum over the two parts, without materialising the
    concatenation (``general`` may broadcast against ``detected``).
    """

    def __init__(self, in_features: int, sizes: tuple[int, ...] = (128, 64, 32, 1)):
        super().__init__()
        dims = (in_features, *sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        for layer in self.layers:
            lecun_uniform_(layer)

    def forward(self, detected: torch.Tensor, general: torch.Tensor) -> torch.Tensor:
        first = self.layers[0]
        flat = detected.flatten(-2)                                               # [..., H * 32]
        n = flat.shape[-1]
        x = F.relu(F.linear(flat, first.weight[:, :n]) + F.linear(general, first.weight[:, n:], first.bias),
                   inplace=True)
        for layer in self.layers[1:-1]:
            x = F.relu(layer(x), inplace=True)
        return self.layers[-1](x)


class MPM(nn.Module):
    """Multi-Preferences Model.

    ``forward(user [B], item [B], history [B, H]) -> logits [B, 1]`` (training);
    ``score(user [U], history [U, H], items [U, C]) -> logits [U, C]`` (ranking C candidates per
    user; the fine-grained preferences are computed once per user instead of once per candidate).
    """

    def __init__(self, nb_users: int, nb_items: int, embed_dim: int = 32, history_size: int = 9,
                 tcn_levels: int = 5, tcn_kernel: int = 3, tcn_dropout: float = 0.25,
                 mlp_sizes: tuple[int, ...] = (128, 64, 32), tcn_init: str = "official"):
        super().__init__()
        self.history_size = history_size
        self.user_embed = nn.Embedding(nb_users, embed_dim)
        self.item_embed = nn.Embedding(nb_items, embed_dim)
        nn.init.normal_(self.user_embed.weight, 0.0, 0.01)
        nn.init.normal_(self.item_embed.weight, 0.0, 0.01)
        self.fine_grained_preference = TemporalConvNet(embed_dim, tcn_levels, tcn_kernel, tcn_dropout, tcn_init)
        self.preference_mlp = PreferenceMLP((2 * embed_dim, *mlp_sizes))
        self.output_module = OutputModule(mlp_sizes[-1] * (history_size + 1))

    def _combine(self, instant: torch.Tensor, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """instant [..., H, D], user [..., D], item [..., D] (leading dims broadcast) -> logits [..., 1]."""
        # unexpected-behaviour detector: the shared MLP on each (instant preference, item) pair
        detected = self.preference_mlp(instant, item.unsqueeze(-2))               # [..., H, 32]
        # general preference: the same MLP on (user, item)
        general = self.preference_mlp(user, item)                                 # [..., 32]
        return self.output_module(detected, general)                              # [..., 1]

    def forward(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        tcn = self.fine_grained_preference
        if not tcn.time_major:
            instant = tcn(self.item_embed(history))                               # [B, H, D]
            return self._combine(instant, self.user_embed(user), self.item_embed(item))
        # the same computation with the instant preferences time-major, [H * B, D]: 2-D products throughout
        h = history.shape[1]
        instant = tcn.forward_time_major(self.item_embed(history))               # [H * B, D]
        item_e = self.item_embed(item)                                            # [B, D]
        detected = self.preference_mlp.forward_time_major(instant, item_e, h)     # [B, H, 32]
        general = self.preference_mlp(self.user_embed(user), item_e)              # [B, 32]
        return self.output_module(detected, general)                              # [B, 1]

    def draw_ahead(self, batch: int) -> int:
        """Start drawing the dropout masks of the next training forward on a batch of ``batch`` examples on a
        second thread (:meth:`TemporalConvNet.draw_ahead`); returns how many were queued (0 where it does not
        apply: evaluation mode, a GPU, a TCN with a downsample). Call it just before :meth:`loss`."""
        w = self.item_embed.weight
        return self.fine_grained_preference.draw_ahead(batch, self.history_size, w.dtype, w.device)

    def score(self, user: torch.Tensor, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        instant = self.fine_grained_preference(self.item_embed(history))         # [U, H, D]
        return self._combine(instant.unsqueeze(1),                               # [U, 1, H, D]
                             self.user_embed(user).unsqueeze(1),                 # [U, 1, D]
                             self.item_embed(items)).squeeze(-1)                 # [U, C, D] -> [U, C]

    def loss(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
             label: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy with logits; label [B] in {0, 1}."""
        return F.binary_cross_entropy_with_logits(self(user, item, history).squeeze(-1), label)
