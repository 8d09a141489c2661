"""Adam over one flat buffer: the authors' optimiser (Adam with L2 weight decay), one kernel call.

``torch.optim.Adam(fused=True)`` runs its fused kernel once per parameter tensor; for AGNN's 65
tensors with a gradient the per-tensor cost (the ``step`` read, the set-up of each call, the Python
bookkeeping of ``Adam.step``) is most of the optimizer's time. :class:`FlatAdam` is that optimiser
with a faster ``step``: at its first step it moves the parameters that have a gradient, their
``exp_avg`` and ``exp_avg_sq``, into three flat buffers (each parameter becomes a view of its
slice, with the same values) and gives them one shared ``step`` tensor; every step then copies
the gradients into one flat buffer and calls the same fused kernel (``torch._fused_adam_``) once
over the whole buffer. The update of every element is the same formula with the same constants
(README "Speed": checked bit for bit against ``Adam(fused=True)``).

The state stays in ``self.state`` (a view per parameter), so ``state_dict`` / ``load_state_dict``
and checkpoints are those of ``torch.optim.Adam``. Whenever the layout no longer holds (a loaded
state, parameters moved by ``model.to``, a parameter gaining or losing its gradient, a second
parameter group, options the fast path does not cover) the step re-packs or falls back to
``Adam.step``.
"""

from __future__ import annotations

import torch


class FlatAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, lr, weight_decay=..., fused=True)`` with one kernel call per step."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, weight_decay=weight_decay, fused=True)
        self._pack = None  # (params, flat param, flat exp_avg, flat exp_avg_sq, step, expected data_ptrs)

    # ------------------------------------------------------------------ layout
    def _fast_ok(self) -> bool:
        if len(self.param_groups) != 1:
            return False
        g = self.param_groups[0]
        return (g["fused"] and not g["amsgrad"] and not g["maximize"] and not g["capturable"]
                and not g["differentiable"] and not g.get("decoupled_weight_decay", False))

    def _valid(self, params: list) -> bool:
        pk = self._pack
        if pk is None or len(pk[0]) != len(params):
            return False
        state = self.state
        for p, q, ptr in zip(params, pk[0], pk[5]):
            if p is not q or p.data_ptr() != ptr:
                return False
            s = state.get(p)
            if not s or s["step"] is not pk[4]:
                return False
        return True

    def _unshare(self) -> None:
        """Give every parameter its own ``step`` tensor again (before ``Adam.step`` runs: its
        per-tensor ``_foreach_add_`` would count a shared one once per parameter)."""
        self._pack = None
        seen = set()
        for s in self.state.values():
            t = s.get("step")
            if t is not None:
                if id(t) in seen:
                    s["step"] = t.clone()
                seen.add(id(s["step"]))

    def state_dict(self):
        """``Adam.state_dict`` with one ``step`` tensor per parameter (loadable by plain Adam)."""
        sd = super().state_dict()
        sd["state"] = {k: {**v, "step": v["step"].clone()} if "step" in v else v for k, v in sd["state"].items()}
        return sd

    def _repack(self, params: list) -> bool:
        """Move ``params`` and their Adam state into flat buffers; False where it cannot."""
        self._unshare()
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device or p.is_sparse or p.grad.is_sparse
               or not p.dtype.is_floating_point for p in params):
            return False
        states = [self.state.get(p) or {} for p in params]
        fresh = [not s for s in states]
        if not all(fresh):
            if any(fresh):
                return False
            steps = {float(s["step"]) for s in states}
            if len(steps) != 1:
                return False  # parameters stepped a different number of times: per tensor
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            if all(fresh):
                m, v = torch.zeros_like(flat), torch.zeros_like(flat)
                step = torch.zeros((), dtype=torch.float32, device=first.device)  # as Adam(fused=True)
            else:
                m = torch.cat([s["exp_avg"].detach().reshape(-1).to(flat) for s in states])
                v = torch.cat([s["exp_avg_sq"].detach().reshape(-1).to(flat) for s in states])
                step = states[0]["step"].detach().clone().to(torch.float32)
        start, ptrs = 0, []
        for p in params:
            n = p.numel()
            p.data = flat[start:start + n].view(p.shape)
            self.state[p] = {"step": step, "exp_avg": m[start:start + n].view(p.shape),
                             "exp_avg_sq": v[start:start + n].view(p.shape)}
            ptrs.append(p.data_ptr())
            start += n
        self._pack = (list(params), flat, m, v, step, ptrs)
        return True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``Optimizer.zero_grad`` without its per-call bookkeeping for the default ``set_to_none``."""
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self._fast_ok():
            self._unshare()
            return super().step(closure)
        g = self.param_groups[0]
        params = [p for p in g["params"] if p.grad is not None]
        if not params:
            return None
        if not self._valid(params) and not self._repack(params):
            return super().step(closure)
        _, flat, m, v, step, _ = self._pack
        grad = torch.cat([p.grad.reshape(-1) for p in params])
        beta1, beta2 = g["betas"]
        lr = g["lr"]
        torch._foreach_add_([step], 1)
        torch._fused_adam_([flat], [grad], [m], [v], [], [step], amsgrad=False,
                           lr=lr.item() if torch.is_tensor(lr) else lr, beta1=float(beta1), beta2=float(beta2),
                           weight_decay=g["weight_decay"], eps=g["eps"], maximize=False, grad_scale=None,
                           found_inf=None)
        return None
