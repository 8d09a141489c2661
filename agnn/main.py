"""Train and evaluate AGNN on ML-100k (item cold start, user cold start, warm start).

    python -m agnn.main --mode ucs                       # authors' graph, 20 epochs
    python -m agnn.main --mode ics --graph built         # ICS: the authors' ICS graph is not in the mirror
    python -m agnn.main --mode all                       # the three settings one after another

Every epoch: train over the shuffled training file (summed squared error + eVAE loss), then RMSE
and MAE on the validation file with the cold side's preference embedding reconstructed by the
eVAE. Writes config.json, metrics.jsonl, tb/, checkpoint.pt, summary.json and comparison.md in
``--out``; ``--resume`` continues from the last checkpointed epoch, ``--overwrite`` starts again.
Exit codes: ``common/cli.py`` (2 bad flag, 3 data, 4 diverged, 5 output folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging
import os
import time
from typing import TYPE_CHECKING, Optional

from common.cli import (DivergenceGuard, UserError, add_run_flags, nonnegative_float, nonnegative_int,
                        positive_float, positive_int, probability, run_cli)
from common.jobs import reference_for
from common.parallel import spare_core
from common.runs import RunRecord, atomic_path, hardware, prepare_out

if TYPE_CHECKING:
    import numpy as np

    from agnn.data import AGNNData, BatchBuilder
    from agnn.model import AGNN

# numpy, torch and the model are imported after the flags are checked, so a bad flag answers at once.
# Same values as agnn.data.MODES and agnn.data.DATASET (tests/test_agnn_failures.py checks).
MODES = ("ics", "ucs", "warm")
DATASET = "agnn-ml100k"

log = logging.getLogger("agnn")

# The authors' defaults (their argparse block and training loop), in one place.
DEFAULTS = dict(
    lr=5e-4, weight_decay=1e-3, batch_size=128, epochs=20, embed_size=30, attention_size=50,
    dropout=0.5, user_neighbours=10, item_neighbours=10, vae_lambda=1.0,
)
# The headline of a run: RMSE and MAE of the epoch with the lowest validation RMSE (the authors'
# notebook keeps the lowest RMSE on the file it reports on, their "test" file = our validation
# file); the last epoch's numbers are in summary.json's metrics too. Published and reference
# numbers: agnn/reference.json, keyed "agnn-ml100k/<mode>-<graph>".
SELECTION = "best test epoch by RMSE (authors' rule)"


def setting_name(mode: str, graph: str) -> str:
    """The setting of a run as ``__init__.JOBS`` and ``reference.json`` name it, e.g. ``ucs-authors``."""
    return f"{mode}-{graph}"


def graph_share(text: str) -> float:
    """argparse type: a share of the nodes in (0, 1]."""
    v = positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share in (0, 1]")
    return v


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        description="AGNN (TKDE'20) cold-start rating prediction on ML-100k; defaults are the authors'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", choices=(*MODES, "all"), default="ucs",
                   help="ics: item cold start; ucs: user cold start; warm: warm start; all: the three "
                        "in turn (ICS on the built graph when the authors' ICS file cannot be had)")
    p.add_argument("--graph", choices=("authors", "built"), default="authors",
                   help="neighbour lists: the authors' pickle, or built from raw attributes and the "
                        "training ratings (agnn/graph.py)")
    p.add_argument("--graph-share", type=graph_share, default=0.05,
                   help="built graph only: neighbours kept per node as a share of the nodes (authors' files: 5%%)")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"], help="training epochs")
    p.add_argument("--lr", type=positive_float, default=d["lr"], help="Adam learning rate")
    p.add_argument("--weight-decay", type=nonnegative_float, default=d["weight_decay"],
                   help="Adam weight decay (L2 on every parameter)")
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"],
                   help="ratings per batch (training and evaluation)")
    p.add_argument("--embed-size", type=positive_int, default=d["embed_size"], help="embedding size D")
    p.add_argument("--attention-size", type=positive_int, default=d["attention_size"],
                   help="authors' flag, unused by their network (recorded only)")
    p.add_argument("--dropout", type=probability, default=d["dropout"],
                   help="authors' flag, unused by their network (recorded only)")
    p.add_argument("--user-neighbours", type=positive_int, default=d["user_neighbours"],
                   help="one-hop neighbours sampled per user, the user itself in the last slot")
    p.add_argument("--item-neighbours", type=positive_int, default=d["item_neighbours"],
                   help="one-hop neighbours sampled per item, the item itself in the last slot")
    p.add_argument("--vae-lambda", type=nonnegative_float, default=d["vae_lambda"],
                   help="weight of the eVAE loss (recon + KL)")
    p.add_argument("--kl", choices=("authors", "standard"), default="authors",
                   help="authors: exp(z) in the KL term (their code); standard: exp(log-variance)")
    p.add_argument("--user-self-linear", choices=("onehop", "self"), default="onehop",
                   help="linear-sum layer of the user's own attributes: the one-hop layer (authors' code) or its own")
    p.add_argument("--user-erase-init", choices=("default", "xavier"), default="default",
                   help="user erase gate init: PyTorch default (authors' code forgot Xavier) or Xavier like the rest")
    p.add_argument("--eval-mean", action="store_true",
                   help="evaluate cold nodes with the eVAE mean (deterministic) instead of a sample (authors)")
    p.add_argument("--max-train-rows", type=nonnegative_int, default=0,
                   help="use only the first N shuffled training rows per epoch (smoke tests, QUICK; 0 = all)")
    p.add_argument("--max-eval-rows", type=nonnegative_int, default=0,
                   help="evaluate on the first N validation rows only (smoke tests, QUICK; 0 = all)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for torch and numpy (init, shuffling, sampling)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--prefetch", choices=("auto", "on", "off"), default="auto",
                   help="build the training batches (neighbour sampling, attribute lookups) in a child process, "
                        "ahead of the model (the same batches and random stream, speed only); auto: when torch "
                        "uses fewer threads than the machine has cores (e.g. --threads 1 on 2 cores), else off")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also REPRO_NO_PROGRESS=1)")
    add_run_flags(p, out_help="run folder (default agnn/runs/latest; with --mode all: one subfolder per setting)")
    args = p.parse_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                "--overwrite deletes it")
    if args.out is None:
        args.out = "agnn/runs/latest"
    return args


def use_prefetch(setting: str, device: str = "cpu") -> bool:
    """Whether training builds its batches in a child process (``--prefetch``, ``data.prefetched_batches``):
    on, off, or auto = on the CPU when torch's thread count leaves a core free (README "Speed")."""
    return spare_core(setting, device)


def make_optimizer(model: AGNN, lr: float, weight_decay: float, device: str = "cpu"):
    """Adam with L2 weight decay (the authors' optimiser). On CPU and CUDA: Adam's fused kernel, run
    once per step over all parameters kept in one flat buffer (``optim.FlatAdam``: the same update
    as the default per-tensor loop, up to float rounding; README "Speed")."""
    import torch

    if torch.device(device).type in ("cpu", "cuda"):
        from agnn.optim import FlatAdam

        return FlatAdam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def evaluate(model: AGNN, data: AGNNData, builder: BatchBuilder, batch_size: int, rng: np.random.Generator,
             device: str, progress: bool = False, max_rows: int = 0) -> dict[str, float]:
    """RMSE and MAE on the validation file (neighbours sampled as in training, not shuffled);
    ``max_rows`` > 0: on its first ``max_rows`` rows only (smoke tests)."""
    import torch
    from tqdm.auto import tqdm

    from common.metrics import mae, rmse

    model.eval()
    val = data.val[:max_rows] if max_rows else data.val
    preds = []
    batches = builder.batches(val, batch_size, rng, shuffle=False)
    for b in tqdm(batches, total=-(-len(val) // batch_size), desc="eval", leave=False, disable=not progress):
        preds.append(model.predict(b.to(device), data.mode).cpu())
    pred = torch.cat(preds)
    return {"rmse": rmse(pred, val[:, 2]), "mae": mae(pred, val[:, 2])}


def run(args: argparse.Namespace, mode: str, graph: str, out: Path) -> dict:
    """Train one setting; returns the summary metrics."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from agnn.data import BatchBuilder, load, prefetched_batches
    from agnn.model import AGNN, AGNNConfig
    from common.metrics import mae, rmse

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    data = load(mode, graph, built_graph_k=args.graph_share)
    log.info("%s: %d users, %d items, %d train / %d val ratings, graph=%s (%.1fs to load)",
             mode, data.n_users, data.n_items, len(data.train), len(data.val), graph, time.time() - t0)
    cfg = AGNNConfig(data.n_users, data.n_items, data.vocab, args.embed_size, args.attention_size, args.dropout,
                     args.kl, args.user_self_linear, args.user_erase_init, args.eval_mean)
    model = AGNN(cfg).to(args.device)
    opt = make_optimizer(model, args.lr, args.weight_decay, args.device)
    builder = BatchBuilder(data, args.user_neighbours, args.item_neighbours)
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "overwrite", "debug", "no_progress")}
    setting = setting_name(mode, graph)
    config.update(mode=mode, graph=graph, out=str(out))
    guard = DivergenceGuard(hint=f"lower --lr (now {args.lr})")
    with RunRecord(out, paper="agnn", dataset=DATASET, config=config, resume=args.resume,
                   overwrite=args.overwrite, setting=setting) as rec:
        ckpt = out / "checkpoint.pt"
        start = 1
        if args.resume and ckpt.is_file():
            state = torch.load(ckpt, map_location=args.device, weights_only=False)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it
            start = int(state["epoch"]) + 1
            log.info("resumed from %s after epoch %d", ckpt, state["epoch"])
        # Continue after the last *checkpointed* epoch: an epoch logged but killed before its
        # checkpoint was written runs again (same RNG state, so the same result) and replaces its entry.
        rec.history = [h for h in rec.history if h.get("epoch", 0) < start]
        global_mean = float(data.train[:, 2].mean())
        val = data.val[: args.max_eval_rows] if args.max_eval_rows else data.val  # the rows evaluate() scores
        baseline = {"rmse": rmse(np.full(len(val), global_mean), val[:, 2]),
                    "mae": mae(np.full(len(val), global_mean), val[:, 2])}
        progress = not args.no_progress and os.environ.get("REPRO_NO_PROGRESS") != "1"
        n_batches = -(-(args.max_train_rows or len(data.train)) // args.batch_size)
        prefetch = use_prefetch(getattr(args, "prefetch", "off"), args.device)
        for epoch in range(start, args.epochs + 1):
            model.train()
            t_ep = time.time()
            rows = data.train[rng.permutation(len(data.train))]
            if args.max_train_rows:
                rows = rows[: args.max_train_rows]
            sums = {"sse": 0.0, "recon": 0.0, "kl": 0.0}
            batches = (prefetched_batches(builder, rows, args.batch_size, rng) if prefetch
                       else builder.batches(rows, args.batch_size, rng, shuffle=False))
            bar = tqdm(batches, total=n_batches,
                       desc=f"epoch {epoch}/{args.epochs} {mode}", leave=False, disable=not progress)
            for step, b in enumerate(bar, 1):
                loss, parts = model.loss(b.to(args.device), args.vae_lambda)
                guard.loss(loss.item(), epoch, step)
                opt.zero_grad()
                loss.backward()
                opt.step()
                for k in sums:
                    sums[k] += parts[k]
            train_s = time.time() - t_ep
            t_ev = time.time()
            # Evaluation randomness (neighbour sampling, eVAE sample) from its own stream per epoch,
            # so a resumed run evaluates like an uninterrupted one.
            ev = evaluate(model, data, builder, args.batch_size, np.random.default_rng([args.seed, epoch]),
                          args.device, progress, args.max_eval_rows)
            eval_s = time.time() - t_ev
            metrics = {**ev, "train_rmse": float(np.sqrt(sums["sse"] / len(rows))),
                       "recon": sums["recon"] / n_batches, "kl": sums["kl"] / n_batches,
                       "train_seconds": train_s, "eval_seconds": eval_s}
            guard.metrics(metrics, epoch)  # a diverged epoch is never logged, checkpointed or picked as best
            rec.log_epoch(epoch, metrics)
            with atomic_path(ckpt) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, tmp)
            log.info("%s epoch %d/%d: val RMSE %.4f MAE %.4f | train RMSE %.4f | %.1fs train, %.1fs eval",
                     mode, epoch, args.epochs, ev["rmse"], ev["mae"], metrics["train_rmse"], train_s, eval_s)
        best = rec.best("rmse", mode="min")
        last = max(rec.history, key=lambda h: h["epoch"])
        metrics = {"rmse_best": best["rmse"], "mae_best": best["mae"], "best_epoch": best["epoch"],
                   "rmse_last": last["rmse"], "mae_last": last["mae"], "last_epoch": last["epoch"],
                   "global_mean_rmse": baseline["rmse"], "global_mean_mae": baseline["mae"]}
        pub = reference_for("agnn", DATASET, setting, "published")
        ref = reference_for("agnn", DATASET, setting, "reference")
        # reference.json holds the headline ("rmse", "mae": best epoch) and the last epoch's numbers.
        as_table = lambda v: {{"rmse": "rmse_best", "mae": "mae_best"}.get(k, k): x for k, x in v.items()}  # noqa: E731
        table = rec.finish(
            metrics, published=as_table(pub["values"]), reference=as_table(ref["values"]),
            epochs=args.epochs, seed=args.seed, device=args.device,
            published_source=pub["source"], reference_source=ref["source"],
            headline={"rmse": best["rmse"], "mae": best["mae"]}, selection=SELECTION,
            extra={"mode": mode, "graph": graph, "best_epoch": best["epoch"],
                   "mean_train_seconds_per_epoch": float(np.mean([h["train_seconds"] for h in rec.history])),
                   "mean_eval_seconds_per_epoch": float(np.mean([h["eval_seconds"] for h in rec.history]))})
    print(f"\n{mode} (graph={graph}, seed={args.seed}, {hardware(args.device)})\n{table}\n", flush=True)
    return metrics


def check_device(device: str) -> None:
    """A device torch cannot use here is the user's to fix, not a traceback."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a torch device: use cpu or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} asks for a GPU, but torch sees none here: run with --device cpu.")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    out = prepare_out(args.out, args.resume, args.overwrite)  # before any loading or writing
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    check_device(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.mode != "all":
        run(args, args.mode, args.graph, out)
        return 0
    for mode in MODES:
        graph = args.graph
        if mode == "ics" and graph == "authors":
            try:
                from agnn.data import GraphUnavailableError, load_neighbour_pickle

                load_neighbour_pickle("ics")
            except GraphUnavailableError:
                log.warning("the authors' ICS neighbour file cannot be had: ICS runs on the built graph")
                graph = "built"
        # Each setting's folder: the parent was checked (and cleared with --overwrite) above.
        run(args, mode, graph, out / f"{mode}_{graph}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
