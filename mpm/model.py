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

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm


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
        n = x.numel()
        words = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 7) // 8,), dtype=torch.int64)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self._threshold
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


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

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.network(history)


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
        instant = self.fine_grained_preference(self.item_embed(history))         # [B, H, D]
        return self._combine(instant, self.user_embed(user), self.item_embed(item))

    def score(self, user: torch.Tensor, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        instant = self.fine_grained_preference(self.item_embed(history))         # [U, H, D]
        return self._combine(instant.unsqueeze(1),                               # [U, 1, H, D]
                             self.user_embed(user).unsqueeze(1),                 # [U, 1, D]
                             self.item_embed(items)).squeeze(-1)                 # [U, C, D] -> [U, C]

    def loss(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
             label: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy with logits; label [B] in {0, 1}."""
        return F.binary_cross_entropy_with_logits(self(user, item, history).squeeze(-1), label)
