"""Speed of the GC-SAN pipeline on real data: where a training step's time goes, against the machine's matmul rate.

    python -m gcsan.bench --dataset ml-100k --threads 1
    python -m gcsan.bench --dataset diginetica --protocol srgnn --batches 2 --threads 1

Prints, with one torch thread count throughout:
- preprocessing time (built from raw, then from cache);
- a training step (``--batches`` batches of the epoch's shuffled order, after one warm-up batch)
  split into data (batch assembly, numpy -> torch), forward (loss), backward and optimizer (Adam),
  and the estimated training epoch (the same split times the number of batches);
- the FLOPs of one step (forward + backward, torch's FLOP counter: matmuls and attention only;
  sparse products counted by their nonzeros) and the achieved GFLOP/s, against the float32 matmul
  (sgemm) rate timed in the same process;
- the time to full-sort every test example, and at ML-1m scale (random ids);
- last, a ``BENCH_JSON`` line for ``python -m common.bench compare``.

The allocator setting of ``main.py`` (``keep_freed_memory``) is applied first, as in training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from common.bench import Phases, emit_json, sgemm_rate, share_line
from common.cli import positive_int, run_cli
from common.runs import hardware
from gcsan.data import Split, load
from gcsan.main import MODEL_DEFAULTS, build_parser, evaluate, keep_freed_memory, resolve_config, to_torch
from gcsan.model import GCSAN


def torch_flops(fn) -> int:
    """FLOPs of one call of fn as torch's FLOP counter counts them (matmuls and attention), except
    that a product with a sparse (CSR) matrix counts 2 x nonzeros x dense columns, not the FLOPs of
    the dense product of the same shape (the counter looks at shapes only)."""
    from torch.utils.flop_counter import FlopCounterMode, addmm_flop, mm_flop

    def sparse_nnz(*ts) -> int | None:
        for t in ts:
            if isinstance(t, torch.Tensor) and t.layout != torch.strided:
                return t._nnz()
        return None

    def mm(a, b, *args, out_val=None, **kwargs) -> int:
        nnz = sparse_nnz(a, b)
        return mm_flop(a.shape, b.shape) if nnz is None else 2 * nnz * (b.shape[1] if a.layout != torch.strided else a.shape[0])

    def addmm(bias, a, b, *args, out_val=None, **kwargs) -> int:
        nnz = sparse_nnz(a, b)
        return addmm_flop(bias.shape, a.shape, b.shape) if nnz is None else mm(a, b)

    mm._get_raw = addmm._get_raw = True
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.mm: mm, torch.ops.aten.addmm: addmm}) as counter:
        fn()
    return int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k", help="as in gcsan.main")
    p.add_argument("--protocol", default="recbole", choices=["recbole", "srgnn"], help="as in gcsan.main")
    p.add_argument("--batches", type=positive_int, default=3, help="training batches to time (after one warm-up)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="training batch size (default: preset)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-ml1m-scale", action="store_true", help="skip the ML-1m-scale evaluation timing")
    p.add_argument("--no-draw-ahead", action="store_true", help="draw the dropout masks inline (as gcsan.main)")
    a = p.parse_args(argv)
    allocator = keep_freed_memory()
    args = build_parser().parse_args(["--dataset", a.dataset, "--protocol", a.protocol, "--device", a.device]
                                     + (["--batch-size", str(a.batch_size)] if a.batch_size else []))
    cfg = resolve_config(args)
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    load(cfg["data"], valid_portion=cfg["valid_portion"], use_cache=False, verbose=False)
    t_raw = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = load(cfg["data"], valid_portion=cfg["valid_portion"], verbose=False)
    t_cache = time.perf_counter() - t0

    torch.manual_seed(0)
    model = GCSAN(data.n_items, **{k: cfg[k] for k in MODEL_DEFAULTS}).to(a.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    model.train()
    bs = cfg["batch_size"]
    order = np.random.default_rng(0).permutation(len(data.train))
    batches = [order[i:i + bs] for i in range(0, len(order), bs)]
    n_batches = len(batches)
    batches = [batches[i % n_batches] for i in range(a.batches + 1)]
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    def step(idx: np.ndarray, phases: Phases | None = None) -> None:
        ph = phases or (lambda name: _Null())
        with ph("data"):
            seq, length, target = to_torch(data.train.batch(idx), a.device)
        with ph("forward"):
            if not a.no_draw_ahead:
                model.draw_ahead(*seq.shape)  # as train_epoch
            loss = model.loss(seq, length, target)
            loss.item()
        with ph("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sync()
        with ph("optimizer"):
            opt.step()
            sync()

    step(batches[0])  # warm-up: first-touch of the activations' memory, lazy initializations
    phases = Phases()
    for idx in batches[1:]:
        step(idx, phases)
    step_s = phases.total() / a.batches
    full_idx = batches[1] if len(batches[1]) == bs else batches[0]

    def fwd_bwd() -> None:
        seq, length, target = to_torch(data.train.batch(full_idx), a.device)
        model.loss(seq, length, target).backward()

    flops = torch_flops(fwd_bwd)
    opt.zero_grad(set_to_none=True)
    sgemm = sgemm_rate()

    t0 = time.perf_counter()
    evaluate(model, data.test, cfg["eval_batch_size"], a.device)
    t_eval = time.perf_counter() - t0
    t_ml1m = None
    if not a.no_ml1m_scale:
        # ML-1m scale (6,040 test users x 3,124 items, histories of 50), random ids: timing only
        rng = np.random.default_rng(0)
        ml1m = Split(rng.integers(1, 3125, 6040 * 50), np.arange(6040) * 50, np.full(6040, 50),
                     rng.integers(1, 3125, 6040))
        big = GCSAN(3125, **{k: cfg[k] for k in MODEL_DEFAULTS}).to(a.device)
        t0 = time.perf_counter()
        evaluate(big, ml1m, cfg["eval_batch_size"], a.device)
        t_ml1m = time.perf_counter() - t0

    fwd_bwd_s = (phases.seconds["forward"] + phases.seconds["backward"]) / a.batches
    print(f"[bench] {a.dataset}/{a.protocol} on {hardware(a.device)}, torch {torch.__version__}, "
          f"{threads} thread(s) throughout; glibc keep_freed_memory: {allocator}")
    print(f"preprocessing: from raw {t_raw:.2f} s, from cache {t_cache:.3f} s")
    print(f"training step (batch {bs}, mean of {a.batches} after 1 warm-up; {n_batches} batches per epoch):")
    print(phases.table(per=a.batches, unit="step"))
    print(f"training epoch (estimated, {n_batches} x step): {step_s * n_batches:.1f} s  ("
          + ", ".join(f"{k} {v / a.batches * n_batches:.1f} s" for k, v in phases.seconds.items()) + ")")
    print(f"sgemm 2048^3, {threads} thread(s): {sgemm:.1f} GFLOP/s (torch)")
    print(share_line(flops, fwd_bwd_s, sgemm, "forward + backward"))
    print(share_line(flops, step_s, sgemm, "training step (data and optimizer included)"))
    print(f"full-sort evaluation: {len(data.test)} test examples in {t_eval:.2f} s; "
          + (f"ML-1m scale (6,040 x 3,124 items, L 50): {t_ml1m:.2f} s" if t_ml1m is not None else "ML-1m scale skipped"))
    res = {"step_s": step_s, "epoch_s": step_s * n_batches, "eval_s": t_eval,
           "gflops_per_s": flops / step_s / 1e9, "sgemm_gflops": sgemm, "flops_per_step": flops,
           "sgemm_share": flops / step_s / 1e9 / sgemm, "threads": threads, "batches_per_epoch": n_batches,
           "preprocess_from_raw_s": t_raw, "preprocess_from_cache_s": t_cache, "eval_ml1m_scale_s": t_ml1m,
           **{f"{k}_per_step_s": v / a.batches for k, v in phases.seconds.items()}}
    emit_json(res)
    return res


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(run_cli(lambda argv: main(argv) and 0))
