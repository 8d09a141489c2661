"""Train and evaluate GC-SAN; RecBole's trainer behaviour (Adam, early stopping, full-sort eval).

    python -m gcsan.main --dataset ml-100k                      # RecBole ML-1m protocol on ML-100k
    python -m gcsan.main --dataset diginetica --protocol srgnn  # the paper's own protocol (SR-GNN splits)
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

from common.metrics import full_ranks, ranking_metrics
from common.runs import RunRecord, atomic_path
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

PUBLISHED = {
    "ml-1m": ({"recall@10": 0.2674, "mrr@10": 0.1142, "ndcg@10": 0.1500, "hit@10": 0.2674,
               "precision@10": 0.0267},
              "RecBole benchmark/hyper/sequential/GCSAN-ml-1m_seq.md, benchmark/md/ml-1m_seq.md "
              "(commit 5ebaece); valid NDCG@10 0.1642"),
    "ml-100k": ({"recall@10": "ML-1m: 0.2674", "mrr@10": "ML-1m: 0.1142", "ndcg@10": "ML-1m: 0.1500"},
                "no published ML-100k number; the ML-1m targets (RecBole benchmark) shown for orientation"),
    "diginetica": ({"recall@10": 0.4127, "mrr@10": 0.1881, "ndcg@10": 0.2408},
                   "RecBole-GNN results/sequential/diginetica.md"),
    "diginetica-srgnn": ({"recall@20": "SR-GNN: 0.5073", "mrr@20": "SR-GNN: 0.1759"},
                         "GC-SAN's own numbers not available offline; SR-GNN's Diginetica P@20 50.73 / "
                         "MRR@20 17.59 (AAAI'19 as quoted in rn5l/session-rec issue #27 and Hindawi MPE "
                         "2020 art. 9290576 Table 5)"),
    "yoochoose1_64-srgnn": ({"recall@20": "SR-GNN: 0.7057", "mrr@20": "SR-GNN: 0.3094"},
                            "GC-SAN's own numbers not available offline; SR-GNN's Yoochoose 1/64 "
                            "(Hindawi MPE 2020 art. 9290576 Table 5)"),
}
REFERENCE = {
    "ml-100k": ({"recall@10": 0.0437, "mrr@10": 0.0133, "ndcg@10": 0.0202},
                "RecBole 1.2.1 GCSAN on ML-100k after only 2 epochs (shared/docs/REFERENCE_RUNS.md)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k",
                   choices=sorted({d for d, _ in PRESETS}),
                   help="dataset; ml-1m needs ratings.dat, diginetica (recbole) the raw CIKM log")
    p.add_argument("--protocol", default="recbole", choices=["recbole", "srgnn"],
                   help="recbole: k-core + leave-one-out + full sort (published rows); "
                        "srgnn: SR-GNN's train.txt/test.txt splits (the paper's protocol)")
    p.add_argument("--max-len", type=int, default=None,
                   help="history length kept (default: 50 ML, 20 Diginetica recbole, untruncated srgnn)")
    p.add_argument("--valid-portion", type=float, default=None,
                   help="srgnn only: share of training examples held out for model selection "
                        "(default 0 = SR-GNN's behaviour: no validation, selection on test)")
    for k, v in {**MODEL_DEFAULTS, **TRAIN_DEFAULTS}.items():
        flag = "--" + k.replace("_", "-")
        helps = {
            "hidden_size": "embedding / hidden size d", "n_layers": "self-attention blocks k",
            "n_heads": "attention heads", "inner_size": "feed-forward inner size",
            "hidden_dropout": "dropout on hidden states", "attn_dropout": "dropout on attention scores",
            "hidden_act": "feed-forward activation", "layer_norm_eps": "LayerNorm epsilon",
            "step": "GNN propagation steps", "weight": "ω in Eq. 10 (share of the self-attention output)",
            "reg_weight": "weight of the embedding L2 term", "loss_type": "CE (all items) or BPR (1 negative)",
            "initializer_range": "std of the normal initialization", "lr": "Adam learning rate",
            "batch_size": "training batch size", "eval_batch_size": "evaluation batch size",
            "max_epochs": "maximum training epochs", "patience": "stop after more than this many "
                                                                 "epochs without a better validation metric",
        }
        p.add_argument(flag, type=type(v), default=None,
                       help=f"{helps[k]} (default {v}, or the dataset preset)")
    p.add_argument("--valid-metric", default=None,
                   help="metric for model selection / early stopping (default: ndcg@10 ML, mrr@10 "
                        "Diginetica recbole, mrr@20 srgnn)")
    p.add_argument("--bucket-batches", action="store_true",
                   help="speed option, not RecBole's: batch examples of similar history length together "
                        "(within windows of 50 random batches) to cut padding; off by default")
    p.add_argument("--max-train-batches", type=int, default=None,
                   help="stop each epoch after this many batches (smoke tests and timing only)")
    p.add_argument("--seed", type=int, default=2020, help="random seed (RecBole's default 2020)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="run folder (default gcsan/runs/<dataset>-<protocol>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.ckpt")
    p.add_argument("--no-cache", action="store_true", help="rebuild the processed dataset")
    return p


def resolve_config(args: argparse.Namespace) -> dict:
    key = (args.dataset, args.protocol)
    if key not in PRESETS:
        raise SystemExit(f"no preset for --dataset {args.dataset} --protocol {args.protocol}; "
                         f"valid pairs: {sorted(PRESETS)}")
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
                rng: np.random.Generator, desc: str) -> dict[str, float]:
    """One shuffled pass; returns mean loss and the time split between batching and forward/backward."""
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
    for idx in tqdm(batches, desc=desc, leave=False, mininterval=5):
        t0 = time.perf_counter()
        seq, length, target = to_torch(data.train.batch(idx), cfg["device"])
        negative = None
        if cfg["loss_type"] == "BPR":
            negative = torch.randint(1, data.n_items, target.shape, device=target.device)
            clash = negative == target
            negative[clash] = negative[clash] % (data.n_items - 1) + 1
        t1 = time.perf_counter()
        loss = model.loss(seq, length, target, negative)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        total += loss.item() * len(target)
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


def run(cfg: dict) -> dict:
    """Train with early stopping, evaluate the best-validation checkpoint on test; returns the summary metrics."""
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    device = cfg["device"]
    data = load(cfg["data"], max_len=cfg.get("max_len"), valid_portion=cfg["valid_portion"],
                seed=cfg["seed"], use_cache=not cfg.get("no_cache"))
    out = Path(cfg.get("out") or Path(__file__).resolve().parent / "runs" / f"{cfg['dataset']}-{cfg['protocol']}")
    cfg = {**cfg, "out": str(out), "data_stats": data.stats}
    rec = RunRecord(out, paper="gcsan", dataset=cfg["data"], config=cfg, resume=cfg.get("resume", False))
    select_split = data.valid if data.valid is not None and len(data.valid) else data.test
    select_name = "valid" if select_split is data.valid else "test"
    metric = cfg["valid_metric"]

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
        print(f"[resume] from epoch {ck['epoch']} (best {metric} {state['best']:.4f} at epoch {state['best_epoch']})")
    start = rec.next_epoch

    print(f"[run] {cfg['dataset']} / {cfg['protocol']}: {len(data.train)} train, "
          f"{len(data.valid) if data.valid is not None else 0} valid, {len(data.test)} test examples, "
          f"{data.n_items - 1} items; selection on {select_name} {metric}")
    if start == 1:
        pop = popularity_metrics(data, data.test)
        rec.log_epoch(0, {**{f"test/{k}": v for k, v in evaluate(model, data.test, cfg["eval_batch_size"], device).items()},
                          **{f"popularity_test/{k}": v for k, v in pop.items()}})
        print(f"[epoch 0] untrained test {metric} {rec.history[-1][f'test/{metric}']:.4f}; "
              f"popularity test {metric} {pop[metric]:.4f}")
    for epoch in range(start, cfg["max_epochs"] + 1):
        if state["bad_epochs"] > cfg["patience"]:  # a resumed run that had already stopped early
            break
        tr = train_epoch(model, opt, data, cfg, rng, desc=f"epoch {epoch}")
        t0 = time.perf_counter()
        sel = evaluate(model, select_split, cfg["eval_batch_size"], device)
        eval_seconds = time.perf_counter() - t0
        row = {**tr, "eval_seconds": eval_seconds, **{f"{select_name}/{k}": v for k, v in sel.items()}}
        if select_name == "valid":  # cheap enough at these sizes; gives the test learning curve
            row.update({f"test/{k}": v for k, v in evaluate(model, data.test, cfg["eval_batch_size"], device).items()})
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
        print(f"[epoch {epoch}] loss {tr['loss']:.4f} ({tr['train_seconds']:.1f}s, "
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
    popularity = popularity_metrics(data, data.test)
    pub, pub_src = PUBLISHED.get(cfg["data"], ({}, ""))
    ref, ref_src = REFERENCE.get(cfg["data"], ({}, ""))
    # Both are test-set numbers: keyed "test/<metric>" they fill the test rows only, not the valid ones.
    pub, ref = ({f"test/{k}": v for k, v in d.items()} for d in (pub, ref))
    epochs_run = max(h["epoch"] for h in rec.history)
    table = rec.finish(final, published=pub, reference=ref, epochs=epochs_run, seed=cfg["seed"],
                       device=device, published_source=pub_src, reference_source=ref_src,
                       extra={"best_epoch": ck["epoch"], "selected_on": f"{select_name}/{metric}",
                              "data_stats": data.stats, "popularity_test": popularity})
    print(table)
    print(f"popularity baseline (test): " + ", ".join(f"{k} {popularity[k]:.4f}" for k in ("recall@10", "mrr@10", "ndcg@10", "recall@20", "mrr@20")))
    return {**final, "popularity_test": popularity}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    return run(resolve_config(args))


if __name__ == "__main__":
    main()
