"""Speed of the FGNN pipeline: graph building, training throughput, loader overhead, evaluation.

    python -m fgnn.bench --dataset diginetica --batches 30 --threads 1

Measures, on the chosen dataset, with one thread count throughout:

* the training step split into phases (data, forward, backward, optimizer), per step and per
  epoch; its FLOPs (``torch.utils.flop_counter``) and GFLOP/s; the machine's sgemm rate timed in
  the same run and the share of it the step reaches; the same for the score block alone (Eq. 8's
  ``s E^T`` against all items + cross-entropy, forward and backward: 98% of the step's FLOPs);
* graph building: reading the examples, building every session graph with arrays (cold), the
  notebook's per-session dictionary loop on a sample of examples (extrapolated), loading the cache;
* training: sessions per second over ``--batches`` batches, and the share of that time spent
  outside forward/backward/optimizer step (batching, copies), for the fast batches and PyG's
  ``DataLoader``;
* readouts: the segment (scatter) readouts against the notebook's ``torch.split`` loops;
* evaluation: seconds for ``--eval-batches`` test batches (0: the whole test split).

The machine's load average is recorded with the numbers: on a shared CPU they move with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import tempfile
import time
from typing import Any, Optional

import numpy as np
import torch

from common.bench import Phases, emit_json, sgemm_rate, share_line, torch_flops
from common.cli import nonnegative_int, positive_int
from common.runs import hardware, write_json
from fgnn.data import DATASETS, SessionBatches, build_graphs, load_dataset, load_splits, resolve_source
from fgnn.main import evaluate, make_model, parse_args as main_args, train_epoch
from fgnn.model import AttentionReadout, GRUSet2Set, score_cross_entropy
from fgnn.notebook_reference import embedding2score_loop, gru_set2set_loop, notebook_graph


def _time(fn, repeat: int = 5) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def bench_graphs(name: str, source: str, sample: int = 5000) -> dict[str, Any]:
    t = time.perf_counter()
    train, test = load_splits(name, source)
    read = time.perf_counter() - t
    t = time.perf_counter()
    build_graphs(train)
    build_graphs(test)
    build = time.perf_counter() - t
    n = len(train) + len(test)
    idx = np.random.default_rng(0).choice(len(train), min(sample, len(train)), replace=False)
    seqs = [train.items[train.ptr[i]:train.ptr[i + 1]].tolist() for i in idx]
    t = time.perf_counter()
    for s in seqs:
        notebook_graph(s)
    loop = (time.perf_counter() - t) / len(seqs) * n
    with tempfile.TemporaryDirectory() as tmp:
        load_dataset(name, source, tmp)  # builds the cache
        t = time.perf_counter()
        load_dataset(name, source, tmp)
        cached = time.perf_counter() - t
    return {"examples": n, "read_seconds": read, "build_seconds_arrays": build,
            "build_seconds_notebook_loop_extrapolated": loop, "cached_load_seconds": cached}


def bench_steps(args: argparse.Namespace, train, n_items: int) -> dict[str, Any]:
    """Phases of ``--batches`` training steps (after 3 warm-up steps), FLOPs and the share of sgemm."""
    margs = main_args(["--model", args.model])
    torch.manual_seed(0)
    model = make_model(margs, n_items)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
    batches = SessionBatches(train, 100, shuffle=True, generator=torch.Generator().manual_seed(0))
    it = iter(batches)
    model.train()

    def step(batch, phases):
        with phases("forward"):
            opt.zero_grad()
            loss = model.loss(batch)
        with phases("backward"):
            loss.backward()
        with phases("optimizer"):
            opt.step()

    for _ in range(3):
        step(next(it), Phases())
    phases = Phases()
    for _ in range(args.batches):
        with phases("data"):
            batch = next(it)
        step(batch, phases)
    step_s = phases.total() / args.batches
    flops = torch_flops(lambda: model.loss(batch).backward())  # forward + backward of the last batch
    # The score block alone on the same batch: s E^T against every item, cross-entropy, both gradients.
    s = model._session_and_table(batch)[0].detach().requires_grad_()
    target = batch.y - 1

    def score_block():
        score_cross_entropy(s, model.embedding.weight, target, model.score_buffer).backward()

    score_flops = 3 * 2 * s.size(0) * s.size(1) * n_items  # the three matmuls
    score_s = min(_time(score_block, 1) for _ in range(5))
    # The matmuls' own time inside the score block: aten::mm self time under the profiler.
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(3):
            score_block()
    mm_s = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key == "aten::mm") / 1e6 / 3
    return {"phases": phases, "step_s": step_s, "epoch_s": step_s * len(batches), "steps_per_epoch": len(batches),
            "flops": flops, "score_flops": score_flops, "score_s": score_s, "score_mm_s": mm_s}


def bench_training(args: argparse.Namespace, train, n_items: int, loader_kind: str) -> dict[str, Any]:
    margs = main_args(["--model", args.model, "--loader", loader_kind])
    torch.manual_seed(0)
    model = make_model(margs, n_items)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
    if loader_kind == "pyg":
        from torch_geometric.loader import DataLoader

        batches = DataLoader(train, batch_size=100, shuffle=True)
    else:
        batches = SessionBatches(train, 100, shuffle=True, generator=torch.Generator().manual_seed(0))
    train_epoch(model, batches, opt, torch.device("cpu"), max_batches=3, progress=False)  # warm-up
    r = train_epoch(model, batches, opt, torch.device("cpu"), max_batches=args.batches, progress=False)
    per_batch = r["train_seconds"] / args.batches
    return {"sessions_per_second": r["train_examples"] / r["train_seconds"],
            "seconds_per_batch": per_batch,
            "share_outside_forward_backward": 1 - r["train_compute_seconds"] / r["train_seconds"],
            "epoch_seconds_extrapolated": per_batch * len(batches)}


def bench_readouts(nodes_per_graph: int = 5, graphs: int = 100, dim: int = 100) -> dict[str, float]:
    torch.manual_seed(0)
    sizes = torch.randint(1, 2 * nodes_per_graph, (graphs,))
    batch = torch.repeat_interleave(torch.arange(graphs), sizes)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    x = torch.randn(int(sizes.sum()), dim)
    s2s, att = GRUSet2Set(dim, 3), AttentionReadout(dim)
    with torch.no_grad():
        return {
            "set2set_segment_ms": 1e3 * _time(lambda: s2s(x, batch, graphs)),
            "set2set_per_graph_loop_ms": 1e3 * _time(lambda: gru_set2set_loop(s2s, x, batch)),
            "attention_segment_ms": 1e3 * _time(lambda: att(x, batch, ptr[1:] - 1)),
            "attention_notebook_split_ms": 1e3 * _time(lambda: embedding2score_loop(att, x, batch)),
        }


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m fgnn.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="diginetica", choices=sorted(DATASETS), help="dataset to measure on")
    p.add_argument("--source", default="auto", choices=["auto", "raw", "prepared"], help="as in fgnn.main")
    p.add_argument("--model", default="fgnn", choices=["fgnn", "gated"], help="model to time")
    p.add_argument("--batches", type=positive_int, default=30, help="training batches timed per loader")
    p.add_argument("--eval-batches", type=nonnegative_int, default=50, help="test batches timed (0: the whole test split)")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--skip", nargs="*", default=[], choices=["graphs", "pyg", "readouts", "eval"],
                   help="parts not to measure")
    p.add_argument("--out", default=None, help="JSON file for the results (default: fgnn/runs/bench-<dataset>-<model>.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    source = resolve_source(args.dataset, args.source)
    res: dict[str, Any] = {"dataset": args.dataset, "source": source, "model": args.model,
                           "hardware": hardware("cpu"), "torch_threads": torch.get_num_threads(),
                           "load_average_start": os.getloadavg()}
    if "graphs" not in args.skip:
        res["graphs"] = bench_graphs(args.dataset, source)
        print("graphs:", json.dumps(res["graphs"], indent=1))
    train, test, info = load_dataset(args.dataset, source)
    sgemm = sgemm_rate()
    st = bench_steps(args, train, info["n_items"])
    print(f"training step ({args.model}, {args.dataset}, batch 100, {torch.get_num_threads()} thread(s), "
          f"{args.batches} steps):")
    print(st["phases"].table(args.batches))
    print(f"per training epoch ({st['steps_per_epoch']} steps, from the same timings):")
    for k, v in st["phases"].seconds.items():
        print(f"  {k:<12} {v / args.batches * st['steps_per_epoch']:10.1f} s/epoch")
    print(f"  {'total':<12} {st['epoch_s']:10.1f} s/epoch")
    print(share_line(st["flops"], st["step_s"], sgemm))
    print(share_line(st["score_flops"], st["score_s"], sgemm,
                     "score block (3 matmuls' FLOPs; time includes the softmax)"))
    print(share_line(st["score_flops"], st["score_mm_s"], sgemm, "score matmuls alone (aten::mm time, profiler)"))
    res["step"] = {"step_s": st["step_s"], "epoch_s": st["epoch_s"], "flops": st["flops"],
                   "phases_ms": {k: 1e3 * v / args.batches for k, v in st["phases"].seconds.items()},
                   "score_flops": st["score_flops"], "score_s": st["score_s"], "score_mm_s": st["score_mm_s"],
                   "sgemm_gflops": sgemm}
    res["train_fast"] = bench_training(args, train, info["n_items"], "fast")
    print("train (fast batches):", json.dumps(res["train_fast"], indent=1))
    if "pyg" not in args.skip:
        res["train_pyg"] = bench_training(args, train, info["n_items"], "pyg")
        print("train (PyG DataLoader):", json.dumps(res["train_pyg"], indent=1))
    if "readouts" not in args.skip:
        res["readouts"] = bench_readouts()
        print("readouts:", json.dumps(res["readouts"], indent=1))
    if "eval" not in args.skip:
        torch.manual_seed(0)
        model = make_model(main_args(["--model", args.model]), info["n_items"])
        batches = SessionBatches(test, 100)
        if args.eval_batches:
            batches = [b for _, b in zip(range(args.eval_batches), batches)]
        ev = evaluate(model, batches, torch.device("cpu"), progress=False)
        full = len(SessionBatches(test, 100))
        res["eval"] = {"batches": len(batches), "seconds": ev["eval_seconds"],
                       "test_split_seconds_extrapolated": ev["eval_seconds"] / len(batches) * full}
        print("eval:", json.dumps(res["eval"], indent=1))
    res["load_average_end"] = os.getloadavg()
    out = Path(args.out or Path(__file__).resolve().parent / "runs" / f"bench-{args.dataset}-{args.model}.json")
    write_json(out, res)
    print(f"written to {out}")
    step = res["step"]
    emit_json({"step_s": step["step_s"], "epoch_s": step["epoch_s"], "score_s": step["score_s"],
               "eval_s": res["eval"]["seconds"] / res["eval"]["batches"] if "eval" in res else float("nan"),
               "gflops_per_s": step["flops"] / step["step_s"] / 1e9,
               "score_gflops_per_s": step["score_flops"] / step["score_s"] / 1e9, "sgemm_gflops": sgemm,
               "score_mm_gflops_per_s": step["score_flops"] / step["score_mm_s"] / 1e9,
               **{f"{k}_s": v / 1e3 for k, v in step["phases_ms"].items()}})
    return res


if __name__ == "__main__":
    main()
