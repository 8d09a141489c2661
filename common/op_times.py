"""Every operator of a training step, timed inside the step and alone: how far eager PyTorch can go.

A training step of these models is a few thousand ATen operators. ``OpTimes`` is a dispatch mode that,
while it is active, times each operator call where it runs (wall clock around the kernel) and, for the
first call of each signature (operator, input shapes, strides, layouts and scalars), replays it
``repeats`` times right after, on the same operands, keeping the best time: the operator **alone**, its
operands warm in the caches and nothing else between its calls, its output written into one reused tensor
(the operator's ``out=`` form, where it has one). Operands it writes (in-place and ``out=`` forms) are
replayed on copies, so the step's values are not changed; random operators are not replayed
(they would move torch's generator), their time in the step stands for both.

The sum over the step of count x best-alone time is what the same operators cost when each runs as fast
as this machine runs it alone: no reordering or memory reuse of these operators makes the step faster
than that; only fewer operators (fused kernels) or faster kernels can. ``OpTimes.summary`` groups the
operators into matrix products, random draws, views (no arithmetic) and the rest (element-wise passes,
reductions, gathers and scatters, copies).

Used by ``gcsan/bench_ops.py`` and ``mpm/bench_ops.py``. A benchmark: never a test. The mode's own
bookkeeping (a Python call per operator) slows the step it watches; the step's own time is measured
without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "_sparse_mm", "_sparse_addmm"}
RANDOM = {"randint", "random_", "uniform_", "normal_", "bernoulli_", "bernoulli", "rand", "randn",
          "randperm", "exponential_", "multinomial", "native_dropout"}


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            return f"{str(x.layout).replace('torch.', '')}{list(x.shape)}nnz{x._nnz()}"
        s = "x".join(map(str, x.shape)) or "scalar"
        if x.dim() >= 2 and not x.is_contiguous():
            s += "^T" if x.transpose(-1, -2).is_contiguous() else f"@{tuple(x.stride())}"
        return s + ("" if x.dtype == torch.float32 else f":{str(x.dtype).replace('torch.', '')}")
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(_describe(y) for y in x) + "]"
    return repr(x) if isinstance(x, (int, float, bool, str, type(None))) else type(x).__name__


def product_flops(name: str, args) -> int:
    """2 x multiply-adds of a matrix product call (a sparse operand counts its nonzeros); 0 for others."""
    if name not in PRODUCTS or name == "matmul":
        return 0
    a, b = (args[1], args[2]) if name in ("addmm", "baddbmm", "_sparse_addmm") else (args[0], args[1])
    for sp, other, left in ((a, b, True), (b, a, False)):
        if sp.layout != torch.strided:
            return 2 * sp._nnz() * (other.shape[-1] if left else other.shape[0])
    if a.dim() == 3:
        return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


@dataclass
class Row:
    name: str
    signature: str
    kind: str
    count: int = 0
    step_s: float = 0.0
    alone_s: float = 0.0        # best single call alone (first call's operands)
    flops: int = 0              # per call

    @property
    def alone_total_s(self) -> float:
        return self.alone_s * self.count


class OpTimes(TorchDispatchMode):
    """Dispatch mode: every operator's time inside the step and (first call of each signature) alone."""

    def __init__(self, repeats: int = 3):
        super().__init__()
        self.repeats = repeats
        self.rows: dict[tuple, Row] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        dt = time.perf_counter() - t0
        key = (str(func), _describe(args), _describe(kwargs))
        row = self.rows.get(key)
        if row is None:
            kind = ("product" if name in PRODUCTS else "random" if name in RANDOM
                    else "view" if func.is_view or name in ("detach", "alias", "lift_fresh") else "other")
            row = self.rows[key] = Row(name, f"{key[1]} {key[2] if kwargs else ''}".strip(), kind,
                                       flops=product_flops(name, args))
            row.alone_s = dt if kind == "random" else self._alone(func, args, kwargs)
        row.count += 1
        row.step_s += dt
        return out

    def _alone(self, func, args, kwargs) -> float:
        """Best of ``repeats`` calls of func on these operands, the written ones replaced by copies."""
        schema = func._schema
        written = {a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write}
        args, kwargs = list(args), dict(kwargs)
        for i, a in enumerate(schema.arguments):
            if a.name in written:
                if a.kwarg_only or i >= len(args):
                    if a.name in kwargs and isinstance(kwargs[a.name], torch.Tensor):
                        kwargs[a.name] = _scratch(kwargs[a.name])
                elif isinstance(args[i], torch.Tensor):
                    args[i] = _scratch(args[i])
        if not written:                             # write into one reused output where an out= form exists
            func, kwargs = _out_form(func, args, kwargs)
        best = float("inf")
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            func(*args, **kwargs)
            best = min(best, time.perf_counter() - t0)
        return best

    def total(self, kind: str | None = None, alone: bool = False) -> float:
        return sum(r.alone_total_s if alone else r.step_s for r in self.rows.values() if kind in (None, r.kind))

    def calls(self, kind: str | None = None) -> int:
        return sum(r.count for r in self.rows.values() if kind in (None, r.kind))

    def flops(self) -> int:
        return sum(r.flops * r.count for r in self.rows.values())

    def summary(self, top: int = 15) -> str:
        """A table by kind (calls, seconds in the step, seconds alone) and the ``top`` operators by time alone."""
        lines = [f"{'kind':<8} {'signatures':>10} {'calls':>6} {'in step s':>10} {'alone s':>8}"]
        for kind in ("product", "other", "random", "view", None):
            rows = [r for r in self.rows.values() if kind in (None, r.kind)]
            lines.append(f"{kind or 'all':<8} {len(rows):>10} {self.calls(kind):>6} {self.total(kind):>10.3f} "
                         f"{self.total(kind, alone=True):>8.3f}")
        lines.append(f"top {top} operators by total time alone (calls x best alone):")
        lines.append(f"{'operator':<28} {'calls':>5} {'in step ms':>10} {'alone ms':>9}  operands")
        for r in sorted(self.rows.values(), key=lambda r: -r.alone_total_s)[:top]:
            lines.append(f"{r.name:<28} {r.count:>5} {r.step_s * 1e3:>10.1f} {r.alone_total_s * 1e3:>9.1f}  "
                         f"{r.signature[:90]}")
        return "\n".join(lines)


def _out_form(func, args, kwargs):
    """(func's out= overload, kwargs with a preallocated, touched output) for an operator that returns one
    strided tensor and has such an overload; else (func, kwargs) unchanged. Fresh outputs of a few hundred MB
    would otherwise be mapped and faulted in on every replay."""
    packet = func.overloadpacket
    overload = getattr(packet, "out", None) or getattr(packet, "grad_input", None)
    if overload is None:
        return func, kwargs
    names = [a.name for a in overload._schema.arguments if a.kwarg_only and a.alias_info is not None
             and a.alias_info.is_write]
    ref = func(*args, **kwargs)
    if len(names) != 1 or not isinstance(ref, torch.Tensor) or ref.layout != torch.strided:
        return func, kwargs
    out_kwargs = {**kwargs, names[0]: torch.zeros_like(ref)}   # "out", or e.g. gelu_backward's "grad_input"
    try:                                           # the out= form may take other arguments (ones_like's dtype)
        overload(*args, **out_kwargs)
    except (RuntimeError, TypeError):
        return func, kwargs
    return overload, out_kwargs


def _scratch(t: torch.Tensor) -> torch.Tensor:
    if t.layout != torch.strided:
        return t.clone()
    c = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    return c.copy_(t)
