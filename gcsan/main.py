"""Train and evaluate GC-SAN; RecBole's trainer behaviour (Adam, early stopping, full-sort eval).

    python -m gcsan.main --dataset ml-100k                      # RecBole ML-1m protocol on ML-100k
    python -m gcsan.main --dataset diginetica --protocol srgnn  # the paper's own protocol (SR-GNN splits)

Exit codes as in ``common/cli.py``: 2 a bad flag, 3 data, 4 diverged, 5 the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm.auto import tqdm

from common.cli import (DivergenceGuard, UserError, add_run_flags, nonnegative_float, nonnegative_int,
                        positive_float, positive_int, probability, run_cli)
from common.jobs import reference_for
from common.memory import keep_freed_memory  # noqa: F401  (gcsan.main.keep_freed_memory: bench, compare_steps)
from common.metrics import full_ranks, ranking_metrics
from common.runs import RunRecord, atomic_path, prepare_out
from gcsan.data import SeqData, Split, load
from gcsan.model import GCSAN

# ----------------------------------------------------------------------------- defaults
# RecBole GCSAN.yaml defaults + the published benchmark configs (see README).
MODEL_DEFAULTS = dict(hidden_size=64, n_layers=2, n_heads=2, inner_size=256, hidden_dropout=0.5,
                      attn_dropout=0.5, hidden_act="gelu", layer_norm_eps=1e-12, step=1, weight=0.6,
                      reg_weight=5e-5, loss_type="CE", initializer_range=0.02)
TRAIN_DEFAULTS = dict(lr=1e-3, batch_size=4096, eval_batch_size=4096, max_epochs=500, patience=10)
# (dataset, protocol) -> data key and settings that differ from the defaults above
PRESETS = {
    ("ml-1m", "recbole"): dict(data="ml-1m", valid_metric="ndcg@10"),
    ("ml-100k", "recbole"): dict(data="ml-100k", valid_metric="ndcg@10"),
    # RecBole-GNN results/sequential/diginetica.md: 1 layer, 1 head, dropout 0.2, step 1
    ("diginetica", "recbole"): dict(data="diginetica", valid_metric="mrr@10", n_layers=1, n_heads=1,
                                    hidden_dropout=0.2, attn_dropout=0.2),
    ("diginetica-sample", "recbole"): dict(data="diginetica-sample", valid_metric="mrr@10", n_layers=1,
                                           n_heads=1, hidden_dropout=0.2, attn_dropout=0.2),
    ("diginetica", "srgnn"): dict(data="diginetica-srgnn", valid_metric="mrr@20", n_layers=1, n_heads=1,
                                  hidden_dropout=0.2, attn_dropout=0.2, valid_portion=0.0),
    ("yoochoose1_64", "srgnn"): dict(data="yoochoose1_64-srgnn", valid_metric="mrr@20", n_layers=1,
                                     n_heads=1, hidden_dropout=0.2, attn_dropout=0.2, valid_portion=0.0),
}
METRIC_NAMES = ("recall", "mrr", "ndcg", "hit", "precision")
KS = (10, 20)

# Published and reference numbers: gcsan/reference.json, keyed "<dataset>/<protocol>".


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1] (ω of Eq. 10: 0 and 1 keep one branch only)."""
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, 1]")
    return value


# flag -> (argparse type or choices, help)
FLAG_TYPES = {
    "hidden_size": (positive_int, "embedding / hidden size d"),
    "n_layers": (positive_int, "self-attention blocks k"),
    "n_heads": (positive_int, "attention heads (must divide --hidden-size)"),
    "inner_size": (positive_int, "feed-forward inner size"),
    "hidden_dropout": (probability, "dropout on hidden states"),
    "attn_dropout": (probability, "dropout on attention scores"),
    "hidden_act": (["gelu", "relu", "swish", "tanh", "sigmoid"], "feed-forward activation"),
    "layer_norm_eps": (positive_float, "LayerNorm epsilon"),
    "step": (positive_int, "GNN propagation steps"),
    "weight": (unit_interval, "ω in Eq. 10 (share of the self-attention output), in [0, 1]"),
    "reg_weight": (nonnegative_float, "weight of the embedding L2 term"),
    "loss_type": (["CE", "BPR"], "CE (all items) or BPR (1 negative)"),
    "initializer_range": (positive_float, "std of the normal initialization"),
    "lr": (positive_float, "Adam learning rate"),
    "batch_size": (positive_int, "training batch size"),
    "eval_batch_size": (positive_int, "evaluation batch size"),
    "max_epochs": (positive_int, "maximum training epochs (alias --epochs)"),
    "patience": (nonnegative_int, "stop after more than this many epochs without a better selection metric"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k",
                   choices=sorted({d for d, _ in PRESETS}),
                   help="dataset; ml-1m needs ratings.dat, diginetica (recbole) the raw CIKM log")
    p.add_argument("--protocol", default="recbole", choices=["recbole", "srgnn"],
                   help="recbole: k-core + leave-one-out + full sort (published rows); "
                        "srgnn: SR-GNN's train.txt/test.txt splits (the paper's protocol)")
    p.add_argument("--max-len", type=positive_int, default=None,
                   help="history length kept (default: 50 ML, 20 Diginetica recbole, untruncated srgnn)")
    p.add_argument("--valid-portion", type=probability, default=None,
                   help="srgnn only: share of training examples held out for model selection "
                        "(default 0 = SR-GNN's behaviour: no validation, selection on test)")
    for k, v in {**MODEL_DEFAULTS, **TRAIN_DEFAULTS}.items():
        kind, help_text = FLAG_TYPES[k]
        flags = ["--" + k.replace("_", "-")] + (["--epochs"] if k == "max_epochs" else [])
        typed = dict(choices=kind) if isinstance(kind, list) else dict(type=kind)
        p.add_argument(*flags, dest=k, default=None, **typed,
                       help=f"{help_text} (default {v}, or the dataset preset)")
    p.add_argument("--valid-metric", default=None, choices=[f"{m}@{k}" for m in METRIC_NAMES for k in KS],
                   help="metric for model selection / early stopping (default: ndcg@10 ML, mrr@10 "
                        "Diginetica recbole, mrr@20 srgnn)")
    p.add_argument("--bucket-batches", action="store_true",
                   help="speed option, not RecBole's: batch examples of similar history length together "
                        "(within windows of 50 random batches) to cut padding; off by default")
    p.add_argument("--no-draw-ahead", action="store_true",
                   help="draw the dropout masks inline instead of on a second thread while the step's first "
                        "layers run (the same masks and results either way; for timing)")
    p.add_argument("--max-train-batches", "--max-train-steps", dest="max_train_batches", type=positive_int,
                   default=None, help="stop each epoch after this many batches (smoke runs and timing only)")
    p.add_argument("--max-eval-examples", type=positive_int, default=None,
                   help="evaluate on a fixed random subset of this many valid/test examples "
                        "(smoke runs only, e.g. make reproduce QUICK=1; the metrics are then not comparable)")
    p.add_argument("--seed", type=nonnegative_int, default=2020, help="random seed (RecBole's default 2020)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-cache", action="store_true", help="rebuild the processed dataset")
    add_run_flags(p, out_help="run folder (default gcsan/runs/<dataset>-<protocol>); --resume continues "
                              "from <out>/last.ckpt")
    return p


def resolve_config(args: argparse.Namespace) -> dict:
    key = (args.dataset, args.protocol)
    if key not in PRESETS:
        raise UserError(f"no preset for --dataset {args.dataset} --protocol {args.protocol}; valid pairs: "
                        + ", ".join(f"--dataset {d} --protocol {p}" for d, p in sorted(PRESETS)) + ".")
    cfg = {**MODEL_DEFAULTS, **TRAIN_DEFAULTS, "valid_portion": 0.0, **PRESETS[key]}
    for k, v in vars(args).items():
        if v is not None and v is not False or k not in cfg:
            cfg[k] = v
    return cfg


# ----------------------------------------------------------------------------- evaluation
def to_torch(batch: tuple[np.ndarray, ...], device: str) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(x, device=device) for x in batch)


@torch.no_grad()
def evaluate(model: GCSAN, split: Split, batch_size: int, device: str) -> dict[str, float]:
    """Full-sort metrics: every item scored, only the padding id masked (RecBole for sequential models:
    its FullSortEvalDataLoader passes no history index, so items already in the history stay rankable)."""
    model.eval()
    ranks = []
    by_length = np.argsort(split.length, kind="stable")  # metrics are means: order is free, padding is not
    for lo in range(0, len(split), batch_size):
        seq, length, target = to_torch(split.batch(by_length[lo:lo + batch_size]), device)
        scores = model.full_sort(seq, length)
        scores[:, 0] = -torch.inf
        ranks.append(full_ranks(scores, target))
    return ranking_metrics(np.concatenate(ranks), ks=KS, names=METRIC_NAMES)


def popularity_metrics(data: SeqData, split: Split) -> dict[str, float]:
    """A non-personal baseline: items ranked by how often they are a training target."""
    counts = np.bincount(data.train.target, minlength=data.n_items).astype(np.float64)
    counts[0] = -np.inf
    scores = np.broadcast_to(counts, (len(split), data.n_items))
    return ranking_metrics(full_ranks(scores, split.target), ks=KS, names=METRIC_NAMES)


# ----------------------------------------------------------------------------- training
def train_epoch(model: GCSAN, opt: torch.optim.Optimizer, data: SeqData, cfg: dict,
                rng: np.random.Generator, desc: str, guard: DivergenceGuard | None = None,
                epoch: int = 0) -> dict[str, float]:
    """One shuffled pass; returns mean loss and the time split between batching and forward/backward.

    ``guard`` sees every batch's loss before the optimizer step, so a non-finite or exploding loss
    stops the run before it reaches the weights."""
    model.train()
    order = rng.permutation(len(data.train))
    bs = cfg["batch_size"]
    batches = [order[i:i + bs] for i in range(0, len(order), bs)]
    if cfg.get("bucket_batches"):
        # speed option (not RecBole): within windows of 50 random batches, batch examples of similar
        # history length together, then shuffle the batches; padding per batch shrinks accordingly
        window = 50 * bs
        chunks = [order[i:i + window] for i in range(0, len(order), window)]
        chunks = [c[np.argsort(data.train.length[c], kind="stable")] for c in chunks]
        batches = [c[i:i + bs] for c in chunks for i in range(0, len(c), bs)]
        batches = [batches[j] for j in rng.permutation(len(batches))]
    if cfg.get("max_train_batches"):
        batches = batches[:cfg["max_train_batches"]]
    total, t_batch, t_step, seen = 0.0, 0.0, 0.0, 0
    t_epoch = time.perf_counter()
    for step, idx in enumerate(tqdm(batches, desc=desc, leave=False, mininterval=5,
                                    disable=cfg.get("no_progress", False)), 1):
        t0 = time.perf_counter()
        seq, length, target = to_torch(data.train.batch(idx), cfg["device"])
        negative = None
        if cfg["loss_type"] == "BPR":
            negative = torch.randint(1, data.n_items, target.shape, device=target.device)
            clash = negative == target
            negative[clash] = negative[clash] % (data.n_items - 1) + 1
        if not cfg.get("no_draw_ahead"):
            model.draw_ahead(*seq.shape)  # after the negatives: nothing else draws until the forward is done
        t1 = time.perf_counter()
        loss = model.loss(seq, length, target, negative)
        loss_value = loss.item()
        if guard is not None:
            guard.loss(loss_value, epoch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        total += loss_value * len(target)
        seen += len(target)
        t_batch += t1 - t0
        t_step += t2 - t1
    wall = time.perf_counter() - t_epoch
    return {"loss": total / max(seen, 1), "examples": seen, "train_seconds": wall, "examples_per_second": seen / wall,
            "outside_forward_backward_share": 1.0 - t_step / wall, "batching_seconds": t_batch}


def plot_curve(history: list[dict], metric: str, path: Path) -> None:
    """Learning curve PNG: training loss and validation/test metric per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if h.get("epoch", 0) >= 1]
    if not rows:
        return
    ep = [h["epoch"] for h in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(ep, [h.get("loss", np.nan) for h in rows], "o-")
    ax[0].set_xlabel("epoch"), ax[0].set_ylabel("training loss")
    for split in ("valid", "test"):
        vals = [h.get(f"{split}/{metric}") for h in rows]
        if any(v is not None for v in vals):
            ax[1].plot(ep, [np.nan if v is None else v for v in vals], "o-", label=split)
    ax[1].set_xlabel("epoch"), ax[1].set_ylabel(metric), ax[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def eval_subset(split: Split | None, n: int | None, seed: int) -> Split | None:
    """A fixed random subset of ``n`` examples (``--max-eval-examples``, smoke runs only)."""
    if split is None or not n or n >= len(split):
        return split
    return split.subset(np.sort(np.random.default_rng(seed).permutation(len(split))[:n]))


def selection_rule(select_name: str) -> str:
    return "best validation epoch" if select_name == "valid" else "best test epoch (authors' rule)"


def run(cfg: dict) -> dict:
    """Train with early stopping, evaluate the best-selection checkpoint on test; returns the summary metrics.

    ``cfg["out"]`` must have passed :func:`common.runs.prepare_out` (``run_from_args`` does it)."""
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    device = cfg["device"]
    out = Path(cfg["out"])
    data = load(cfg["data"], max_len=cfg.get("max_len"), valid_portion=cfg["valid_portion"],
                seed=cfg["seed"], use_cache=not cfg.get("no_cache"))
    if cfg.get("max_eval_examples"):
        data.valid = eval_subset(data.valid, cfg["max_eval_examples"], cfg["seed"])
        data.test = eval_subset(data.test, cfg["max_eval_examples"], cfg["seed"])
        data.stats = {**data.stats, "eval_subset": cfg["max_eval_examples"]}
    cfg = {**cfg, "data_stats": data.stats}
    select_split = data.valid if data.valid is not None and len(data.valid) else data.test
    select_name = "valid" if select_split is data.valid else "test"
    metric = cfg["valid_metric"]
    key = f"{cfg['dataset']}/{cfg['protocol']}"
    published = reference_for("gcsan", cfg["dataset"], cfg["protocol"], "published")
    reference = reference_for("gcsan", cfg["dataset"], cfg["protocol"], "reference")
    headline_names = {"recbole": ("recall@10", "mrr@10", "ndcg@10"), "srgnn": ("recall@20", "mrr@20")}[cfg["protocol"]]
    guard = DivergenceGuard(hint=f"lower --lr (now {cfg['lr']})")

    with RunRecord(out, paper="gcsan", dataset=cfg["dataset"], setting=cfg["protocol"], config=cfg,
                   resume=cfg.get("resume", False), overwrite=cfg.get("overwrite", False)) as rec:
        model = GCSAN(data.n_items, **{k: cfg[k] for k in MODEL_DEFAULTS}).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        rng = np.random.default_rng(cfg["seed"])
        state = {"best": -np.inf, "best_epoch": 0, "bad_epochs": 0}
        last_ckpt, best_ckpt = out / "last.ckpt", out / "best.ckpt"
        if cfg.get("resume") and last_ckpt.is_file():
            ck = torch.load(last_ckpt, map_location=device, weights_only=False)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            rng.bit_generator.state = ck["rng"]
            torch.set_rng_state(ck["torch_rng"].cpu())  # map_location may have moved it
            state = ck["state"]
            # epochs logged after the last checkpoint (killed between the two writes) are trained again
            rec.history = [h for h in rec.history if h["epoch"] <= ck["epoch"]]
            print(f"[resume] from epoch {ck['epoch']} (best {metric} {state['best']:.4f} at epoch {state['best_epoch']})")
        elif cfg.get("resume"):
            rec.history = []  # no checkpoint: start again from epoch 0
        start = rec.next_epoch

        print(f"[run] {key}: {len(data.train)} train, "
              f"{len(data.valid) if data.valid is not None else 0} valid, {len(data.test)} test examples, "
              f"{data.n_items - 1} items; selection on {select_name} {metric}")
        if start == 1:
            pop = popularity_metrics(data, data.test)
            untrained = evaluate(model, data.test, cfg["eval_batch_size"], device)
            rec.log_epoch(0, {**{f"test/{k}": v for k, v in untrained.items()},
                              **{f"popularity_test/{k}": v for k, v in pop.items()}})
            print(f"[epoch 0] untrained test {metric} {untrained[metric]:.4f}; "
                  f"popularity test {metric} {pop[metric]:.4f}")
        max_epochs = cfg["max_epochs"]
        for epoch in range(start, max_epochs + 1):
            if state["bad_epochs"] > cfg["patience"]:  # a resumed run that had already stopped early
                break
            tr = train_epoch(model, opt, data, cfg, rng, desc=f"epoch {epoch}/{max_epochs}", guard=guard, epoch=epoch)
            t0 = time.perf_counter()
            sel = evaluate(model, select_split, cfg["eval_batch_size"], device)
            eval_seconds = time.perf_counter() - t0
            row = {**tr, "eval_seconds": eval_seconds, **{f"{select_name}/{k}": v for k, v in sel.items()}}
            if select_name == "valid":  # cheap enough at these sizes; gives the test learning curve
                row.update({f"test/{k}": v for k, v in evaluate(model, data.test, cfg["eval_batch_size"], device).items()})
            guard.metrics(row, epoch)  # before any checkpoint: a diverged epoch is never "best"
            value = sel[metric]
            if value >= state["best"]:  # RecBole's early_stopping: ties count as improvement
                state.update(best=value, best_epoch=epoch, bad_epochs=0)
                with atomic_path(best_ckpt) as tmp:
                    torch.save({"model": model.state_dict(), "epoch": epoch}, tmp)
            else:
                state["bad_epochs"] += 1
            rec.log_epoch(epoch, row)
            with atomic_path(last_ckpt) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "state": state}, tmp)
            plot_curve(rec.history, metric, out / "learning_curve.png")
            print(f"[epoch {epoch}/{max_epochs}] loss {tr['loss']:.4f} ({tr['train_seconds']:.1f}s, "
                  f"{tr['examples_per_second']:.0f} ex/s) {select_name} {metric} {value:.4f} "
                  f"(eval {eval_seconds:.2f}s) best {state['best']:.4f}@{state['best_epoch']}", flush=True)
            if state["bad_epochs"] > cfg["patience"]:
                print(f"[stop] no improvement for {state['bad_epochs']} epochs")
                break

        ck = torch.load(best_ckpt, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        final = {"test": evaluate(model, data.test, cfg["eval_batch_size"], device)}
        if data.valid is not None and len(data.valid):
            final["valid"] = evaluate(model, data.valid, cfg["eval_batch_size"], device)
        guard.metrics(final, ck["epoch"])
        popularity = popularity_metrics(data, data.test)
        # Both are test-set numbers: keyed "test/<metric>" they fill the test rows only, not the valid ones.
        pub, ref = ({f"test/{k}": v for k, v in d["values"].items()} for d in (published, reference))
        epochs_run = max(h["epoch"] for h in rec.history)
        table = rec.finish(final, published=pub, reference=ref, epochs=epochs_run, seed=cfg["seed"],
                           device=device, published_source=published["source"],
                           reference_source=reference["source"],
                           headline={k: final["test"][k] for k in headline_names},
                           selection=selection_rule(select_name),
                           extra={"best_epoch": ck["epoch"], "selected_on": f"{select_name}/{metric}",
                                  "data_stats": data.stats, "popularity_test": popularity})
    print(table)
    print(f"popularity baseline (test): " + ", ".join(f"{k} {popularity[k]:.4f}" for k in ("recall@10", "mrr@10", "ndcg@10", "recall@20", "mrr@20")))
    return {**final, "popularity_test": popularity}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags, checked together where argparse cannot (exit 2, nothing written)."""
    p = build_parser()
    args = p.parse_args(argv)
    if (args.dataset, args.protocol) not in PRESETS:
        p.error(f"no preset for --dataset {args.dataset} --protocol {args.protocol}; valid pairs: "
                + ", ".join(f"--dataset {d} --protocol {q}" for d, q in sorted(PRESETS)))
    hidden = args.hidden_size or MODEL_DEFAULTS["hidden_size"]
    heads = args.n_heads or PRESETS[(args.dataset, args.protocol)].get("n_heads", MODEL_DEFAULTS["n_heads"])
    if hidden % heads:
        p.error(f"--hidden-size {hidden} is not a multiple of --n-heads {heads}: choose heads that divide it")
    if args.valid_portion and args.protocol != "srgnn":
        p.error("--valid-portion applies to --protocol srgnn only (recbole holds out each user's "
                "second-to-last example)")
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other: continue the run, or start it again")
    if args.out is None:
        args.out = str(Path(__file__).resolve().parent / "runs" / f"{args.dataset}-{args.protocol}")
    return args


def run_from_args(argv: list[str] | None = None) -> dict:
    """Parse, check the run folder before anything is read or written, train; returns the final metrics."""
    args = parse_args(argv)
    prepare_out(args.out, args.resume, args.overwrite)
    return run(resolve_config(args))


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    run_from_args(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
