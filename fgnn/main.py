"""Train and evaluate FGNN (or the notebook's gated model) on session data; Recall@20, MRR@20.

    python -m fgnn.main                                  # fgnn on SR-GNN's sample, 10 epochs
    python -m fgnn.main --model gated                    # the notebook's GNNModel
    python -m fgnn.main --dataset diginetica --resume    # continue an interrupted run

Every epoch: one pass over the shuffled training examples (Adam, cross-entropy), then Recall@20
and MRR@20 (x100, as the authors print them) over the whole test split, ranking every item.
The run folder holds config.json, metrics.jsonl, TensorBoard scalars (tb/), a checkpoint after
every epoch (for --resume), summary.json and comparison.md.

Exit codes as in ``common/cli.py``: 0 finished, 2 a bad flag, 3 data, 4 diverged (``summary.json``
says ``"status": "diverged"``; the last good checkpoint is kept), 5 the output folder (already
holding a run without --resume/--overwrite, not writable, full).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging
import os
import random
import time
from typing import Any, Optional

import numpy as np
import torch

from common.cli import (DivergenceGuard, UserError, add_run_flags, nonnegative_float, nonnegative_int,
                        positive_float, positive_int, run_cli, writable_dir)
from common.jobs import reference_for
from common.metrics import full_ranks, mrr_at_k, recall_at_k
from common.runs import RunRecord, atomic_path, prepare_out
from fgnn.data import DATASETS, SessionBatches, SessionGraphs, load_dataset
from fgnn.model import SessionModel, build_model

log = logging.getLogger("fgnn")

# The authors' defaults (their main.py / the notebook's argparse), in one place.
DEFAULTS: dict[str, Any] = {
    "dataset": "sample",
    "model": "fgnn",
    "batch_size": 100,
    "hidden_size": 100,
    "epochs": 10,
    "lr": 1e-3,
    "lr_dc": 0.1,
    "lr_dc_step": 3,
    "l2": 1e-5,
    "top_k": 20,
    # fgnn (the authors' log tag s2s3_linear_gat8-1): WGAT 8 heads -> WGAT 1 head -> Set2Set 3 steps
    "heads": 8,
    "steps": 3,
    "activation": "relu",
    "wgat_softmax": "source",
    "init": "uniform",
    # gated (the notebook's GNNModel)
    "gated_layers": 2,
    "last_node": "last_new",
}

# Published and reference numbers, with their sources: fgnn/reference.json, keyed "<dataset>/<model>".


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m fgnn.main", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=d["dataset"], choices=sorted(DATASETS),
                   help="sample: SR-GNN's sample of Diginetica (the notebook's default); diginetica; "
                        "yoochoose1_64")
    g.add_argument("--source", default="auto", choices=["auto", "raw", "prepared"],
                   help="raw: run SR-GNN's preprocessing on the raw click log; prepared: read SR-GNN's "
                        "train.txt/test.txt pickles; auto: raw log if it can be had, else prepared")
    g.add_argument("--data-root", type=writable_dir, default=None,
                   help="folder for the cached session graphs (unset: <REPRO_DATA_DIR>/fgnn/<dataset>-<source>-v1)")
    g.add_argument("--loader", default="fast", choices=["fast", "pyg"],
                   help="fast: batches cut from the collated storage (fgnn.data.SessionBatches); pyg: "
                        "torch_geometric.loader.DataLoader (same batches, slower)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=d["model"], choices=["fgnn", "gated"],
                   help="fgnn: the paper's model (WGAT x2 + GRU-Set2Set); gated: the notebook's GNNModel "
                        "(GatedGraphConv + attention readout)")
    g.add_argument("--hidden-size", type=positive_int, default=d["hidden_size"], help="embedding and hidden size d")
    g.add_argument("--heads", type=positive_int, default=d["heads"], help="fgnn: heads of the first WGAT layer")
    g.add_argument("--steps", type=positive_int, default=d["steps"], help="fgnn: Set2Set processing steps")
    g.add_argument("--activation", default=d["activation"], choices=["relu", "none", "elu", "leaky_relu"],
                   help="fgnn: activation between the two WGAT layers (not fixed by the code; see README)")
    g.add_argument("--wgat-softmax", default=d["wgat_softmax"], choices=["source", "target"],
                   help="fgnn: WGAT attention normalised over each node's outgoing edges (source, the "
                        "notebook's softmax(alpha, edge_index[0])) or incoming edges (target, textbook GAT)")
    g.add_argument("--init", default=d["init"], choices=["uniform", "layers"],
                   help="fgnn: uniform = every parameter U(+-1/sqrt(d)) as the authors' model template; "
                        "layers = each layer's own init (glorot WGAT, orthogonal GRU, N(0,1) embedding)")
    g.add_argument("--gated-layers", type=positive_int, default=d["gated_layers"], help="gated: GatedGraphConv steps")
    g.add_argument("--last-node", default=d["last_node"], choices=["last_new", "last_click"],
                   help="gated: v_n of the readout = last node in node order (notebook: the last *new* "
                        "item) or the node of the last click (SR-GNN)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=d["epochs"], help="training epochs")
    g.add_argument("--batch-size", type=positive_int, default=d["batch_size"], help="sessions per batch")
    g.add_argument("--lr", type=positive_float, default=d["lr"], help="Adam learning rate")
    g.add_argument("--lr-dc", type=positive_float, default=d["lr_dc"], help="StepLR decay factor")
    g.add_argument("--lr-dc-step", type=positive_int, default=d["lr_dc_step"], help="StepLR: decay every this many epochs")
    g.add_argument("--l2", type=nonnegative_float, default=d["l2"], help="Adam weight decay")
    g.add_argument("--lr-step-before", action="store_true",
                   help="call scheduler.step() before each epoch as the notebook does (under PyTorch >= 1.1 "
                        "this decays one epoch early); default: after each epoch")
    g.add_argument("--top-k", type=positive_int, default=d["top_k"], help="K of Recall@K and MRR@K")
    g.add_argument("--max-train-batches", "--max-train-steps", dest="max_train_batches", type=nonnegative_int,
                   default=0, help="stop each training epoch after this many batches (0: all; smoke runs "
                                   "such as make reproduce QUICK=1, and timing)")
    g.add_argument("--max-eval-examples", type=positive_int, default=None,
                   help="evaluate on a fixed random subset of this many test examples (unset: the whole test "
                        "split; smoke runs only, e.g. make reproduce QUICK=1: the metrics are then not comparable)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=nonnegative_int, default=0, help="seed of initialisation and shuffling")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda if available)")
    g.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0: torch's default)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_run_flags(g, out_help="run folder (unset: fgnn/runs/<dataset>-<model>-seed<seed>); --resume continues "
                              "from its checkpoint.pt")
    return p.parse_args(argv)


def set_seed(seed: int) -> torch.Generator:
    """Seeds Python, numpy and torch; returns the generator that shuffles the training data."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_model(args: argparse.Namespace, n_items: int) -> SessionModel:
    if args.model == "fgnn":
        kw = dict(heads=args.heads, steps=args.steps, activation=args.activation,
                  softmax_over=args.wgat_softmax, init=args.init)
    else:
        kw = dict(num_layers=args.gated_layers, last_node=args.last_node)
    return build_model(args.model, n_items, args.hidden_size, **kw)


class _Permutation(torch.utils.data.Sampler):
    """``torch.randperm(n, generator)`` per epoch, the order SessionBatches uses."""

    def __init__(self, n: int, generator: Optional[torch.Generator]):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def loader(dataset: SessionGraphs, args: argparse.Namespace, shuffle: bool,
           generator: Optional[torch.Generator] = None):
    if args.loader == "pyg":
        from torch_geometric.loader import DataLoader

        # The sampler draws the same permutation as SessionBatches, so both loaders train identically.
        order = _Permutation(len(dataset), generator) if shuffle else None
        return DataLoader(dataset, batch_size=args.batch_size, sampler=order)
    return SessionBatches(dataset, args.batch_size, shuffle=shuffle, generator=generator)


def _bar(it, total: int, desc: str, disable: bool):
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, disable=disable,
                mininterval=1.0 if sys.stderr.isatty() else 60.0)


def train_epoch(model: SessionModel, batches, optimizer: torch.optim.Optimizer, device: torch.device,
                max_batches: int = 0, progress: bool = True, on_batch=None, desc: str = "train"
                ) -> dict[str, float]:
    """One pass over the training batches; returns mean loss, examples, seconds and compute share.

    ``on_batch(i, loss)`` is called after every step (the divergence guard, TensorBoard).
    """
    model.train()
    total_loss, n_batches, n_examples, compute = 0.0, 0, 0, 0.0
    t0 = time.perf_counter()
    steps = min(len(batches), max_batches) if max_batches else len(batches)
    for i, batch in enumerate(_bar(batches, steps, desc, not progress)):
        if max_batches and i >= max_batches:
            break
        batch = batch.to(device)
        tc = time.perf_counter()
        optimizer.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        optimizer.step()
        value = loss.item()
        compute += time.perf_counter() - tc
        total_loss += value
        n_batches += 1
        n_examples += batch.num_graphs
        if on_batch is not None:
            on_batch(i, value)
    seconds = time.perf_counter() - t0
    return {"train_loss": total_loss / max(n_batches, 1), "train_examples": n_examples,
            "train_seconds": seconds, "train_compute_seconds": compute}


@torch.inference_mode()
def evaluate(model: SessionModel, batches, device: torch.device, k: int = 20,
             progress: bool = True, desc: str = "test") -> dict[str, float]:
    """Recall@k and MRR@k (x100) over every test example, ranking all items (common.metrics)."""
    model.eval()
    ranks, total_loss, n = [], 0.0, 0
    t0 = time.perf_counter()
    for batch in _bar(batches, len(batches), desc, not progress):
        batch = batch.to(device)
        scores = model.full_sort(batch)
        targets = batch.y - 1
        total_loss += float(torch.nn.functional.cross_entropy(scores, targets, reduction="sum"))
        n += len(targets)
        ranks.append(full_ranks(scores, targets))
    r = np.concatenate(ranks)
    return {f"recall@{k}": 100 * recall_at_k(r, k), f"mrr@{k}": 100 * mrr_at_k(r, k),
            "test_loss": total_loss / max(n, 1), "eval_seconds": time.perf_counter() - t0}


def popularity(train: SessionGraphs, test: SessionGraphs, n_items: int, k: int = 20,
               indices: Optional[torch.Tensor] = None) -> dict[str, float]:
    """A popularity ranking: every test session (or those in ``indices``) gets the items by their count
    as training target."""
    counts = torch.bincount(train._data.y - 1, minlength=n_items).double()
    targets = test._data.y - 1
    if indices is not None:
        targets = targets[indices]
    r = np.concatenate([full_ranks(counts.expand(len(t), -1), t) for t in targets.split(1000)])
    return {f"recall@{k}": 100 * recall_at_k(r, k), f"mrr@{k}": 100 * mrr_at_k(r, k)}


def resolve_device(name: str) -> torch.device:
    """``--device``: auto (cuda if available), or a device that must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a torch device: use cpu, cuda, cuda:1, ... or auto.") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or
                                  (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {name}: no such CUDA device on this machine ({torch.cuda.device_count()} "
                        f"visible). Use --device cpu or --device auto.")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: only cpu and cuda are supported; use --device cpu or --device auto.")
    return device


def eval_subset(n_test: int, size: Optional[int]) -> Optional[torch.Tensor]:
    """``--max-eval-examples``: a fixed random subset of the test split (the same for every seed and epoch)."""
    if size is None or size >= n_test:
        return None
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(0))[:size].sort().values


def run(argv: Optional[list[str]] = None) -> dict[str, Any]:
    """Train and evaluate; returns the metrics, the popularity baseline, the history and the run folder."""
    args = parse_args(argv)
    out = Path(args.out or Path(__file__).resolve().parent / "runs" / f"{args.dataset}-{args.model}-seed{args.seed}")
    prepare_out(out, args.resume, args.overwrite)  # before anything is loaded or written
    device = resolve_device(args.device)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt_path = out / "checkpoint.pt"
    if args.resume and not ckpt_path.is_file():
        log.info("--resume: no checkpoint in %s; starting from scratch", out)

    t_data = time.perf_counter()
    train, test, info = load_dataset(args.dataset, args.source, args.data_root)
    log.info("data %s: %d train / %d test examples, %d items, from %s (%.1f s)", args.dataset,
             info["train"], info["test"], info["n_items"], info["source"], time.perf_counter() - t_data)
    subset = eval_subset(len(test), args.max_eval_examples)
    if subset is not None:
        log.info("--max-eval-examples %d: evaluating on a fixed random %d of the %d test examples (not comparable "
                 "with full-split numbers)", args.max_eval_examples, len(subset), len(test))
    pop = popularity(train, test, info["n_items"], args.top_k, subset)
    log.info("popularity ranking: Recall@%d %.2f, MRR@%d %.2f", args.top_k, pop[f"recall@{args.top_k}"],
             args.top_k, pop[f"mrr@{args.top_k}"])

    generator = set_seed(args.seed)
    model = make_model(args, info["n_items"]).to(device)
    # fused=True: the same Adam update in one kernel (10x faster on the 4.3M-entry item embedding).
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.l2,
                                 fused=device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_dc_step, gamma=args.lr_dc)
    config = {**vars(args), "out": str(out), "source": info["source"], "n_items": info["n_items"],
              "train_examples": info["train"], "test_examples": info["test"],
              "eval_examples": info["test"] if subset is None else len(subset), "device": str(device)}
    guard = DivergenceGuard(hint=f"lower --lr (now {args.lr})")
    k = args.top_k
    keys = (f"recall@{k}", f"mrr@{k}")
    with RunRecord(out, paper="fgnn", dataset=args.dataset, setting=args.model, config=config,
                   resume=args.resume, overwrite=args.overwrite) as rec:
        done = 0
        if args.resume and ckpt_path.is_file():
            state = torch.load(ckpt_path, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"].cpu())
            torch.set_rng_state(state["torch_rng"].cpu())
            done = state["epoch"]
            log.info("resumed from %s after epoch %d", ckpt_path, done)
        # epochs logged after the last checkpoint (a kill between the two writes) are run again
        rec.history = [h for h in rec.history if h["epoch"] <= done]
        log.info("%s", model)

        train_batches = loader(train, args, shuffle=True, generator=generator)
        test_batches = (loader(test, args, shuffle=False) if subset is None
                        else SessionBatches(test, args.batch_size, indices=subset))
        if subset is not None and args.loader == "pyg":
            from torch_geometric.loader import DataLoader

            test_batches = DataLoader(test.index_select(subset), batch_size=args.batch_size)
        progress = not args.no_progress
        for epoch in range(rec.next_epoch, args.epochs + 1):
            if args.lr_step_before:
                scheduler.step()
            lr = optimizer.param_groups[0]["lr"]
            step0 = (epoch - 1) * len(train_batches)

            def on_batch(i: int, value: float, epoch: int = epoch, step0: int = step0) -> None:
                guard.loss(value, epoch, i + 1)
                if rec.tb is not None and i % 50 == 0:
                    rec.tb.add_scalar("loss/train_batch_loss", value, step0 + i)

            tag = f"epoch {epoch}/{args.epochs}"
            tr = train_epoch(model, train_batches, optimizer, device, args.max_train_batches, progress, on_batch,
                             desc=f"{tag} train")
            if not args.lr_step_before:
                scheduler.step()
            ev = evaluate(model, test_batches, device, k, progress, desc=f"{tag} test")
            guard.metrics({**{m: ev[m] for m in keys}, "test_loss": ev["test_loss"],
                           "train_loss": tr["train_loss"]}, epoch)
            rec.log_epoch(epoch, {**ev, **tr, "lr": lr,
                                  "sessions_per_second": tr["train_examples"] / max(tr["train_seconds"], 1e-9)})
            log.info("epoch %d/%d  loss %.4f  Recall@%d %.2f  MRR@%d %.2f  lr %.0e  train %.1f s (%.0f sessions/s)  "
                     "eval %.1f s", epoch, args.epochs, tr["train_loss"], k, ev[f"recall@{k}"], k, ev[f"mrr@{k}"],
                     lr, tr["train_seconds"], tr["train_examples"] / max(tr["train_seconds"], 1e-9),
                     ev["eval_seconds"])
            # only after the guard passed: the checkpoint on disk is always the last good epoch
            with atomic_path(ckpt_path) as tmp:
                torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                            "torch_rng": torch.get_rng_state()}, tmp)

        best = rec.best(keys[0]) or {}
        last = rec.history[-1] if rec.history else {}
        metrics = {
            "best": {**{m: best.get(m) for m in keys}, "epoch": best.get("epoch")},
            "last": {**{m: last.get(m) for m in keys}, "epoch": last.get("epoch")},
        }
        published = reference_for("fgnn", args.dataset, args.model, "published")
        reference = reference_for("fgnn", args.dataset, args.model, "reference")
        table = rec.finish(metrics, published=published["values"], reference=reference["values"],
                           epochs=args.epochs, seed=args.seed, device=str(device),
                           published_source=published["source"], reference_source=reference["source"],
                           headline={m: last.get(m) for m in keys}, selection="last epoch",
                           extra={"data": info, "model": args.model, "popularity": pop,
                                  "eval_examples": config["eval_examples"]})
    print(f"\n{args.model} on {args.dataset} ({info['source']}), run folder {out}")
    print(table)
    print(f"popularity ranking on the same test examples: Recall@{k} {pop[keys[0]]:.2f}, MRR@{k} {pop[keys[1]]:.2f}")
    return {"metrics": metrics, "popularity": pop, "history": rec.history, "out": str(out)}


def main(argv: Optional[list[str]] = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog="python -m fgnn.main"))
