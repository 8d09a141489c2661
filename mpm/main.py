"""Train and evaluate MPM (arXiv 2112.11023) with the authors' protocol.

    python -m mpm.main --dataset ml-100k                  # the run these offline machines can make
    python -m mpm.main                                    # ML-1m (needs the raw ratings.dat)
    python -m mpm.main --split official                   # ML-1m, the authors' released test negatives
    python -m mpm.main --dataset ml-100k --valid          # the paper's protocol: select the epoch on validation

Every epoch: 4 negatives per training entry drawn uniformly (never one of the user's training
targets), one shuffled pass of BCE-with-logits + Adam, then HR@10 / NDCG@10 of the test item among
its 100 candidates (before training too). Writes config.json, metrics.jsonl, tb/, checkpoint.pt,
summary.json and comparison.md in ``--out``; ``--resume`` continues after the last finished epoch,
``--overwrite`` starts again in a folder that holds a run.

Exit codes as in ``common/cli.py``: 2 a bad flag, 3 data, 4 diverged, 5 the output folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging
import time
from typing import Any, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from common.cli import (DataError, DivergenceGuard, add_run_flags, existing_file, nonnegative_int,
                        positive_float, positive_int, probability, run_cli, writable_dir)
from common.datasets import DatasetUnavailableError, fetch_file
from common.jobs import reference_for
from common.memory import keep_freed_memory
from common.metrics import full_ranks, ranking_metrics, sampled_ranks
from common.parallel import spare_core
from common.runs import RunRecord, atomic_path, comparison_table, prepare_out
from mpm.data import (OFFICIAL_DATASET, RAW_FILES, TIE_ORDERS, MPMData, load, load_official_test,
                      load_official_train, with_official_split)
from mpm.model import MPM

log = logging.getLogger("mpm")

# The authors' defaults (their argparse blocks and training script), in one place, except the epochs:
# the notebook runs 2; 20 here (the paper's count could not be read offline; the notebook's own
# 20-epoch ML-100k run still improved at epoch 20, ../shared/docs/REFERENCE_RUNS.md).
DEFAULTS: dict[str, Any] = dict(
    dataset="ml-1m", epochs=20, batch_size=2048, negatives=4, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
    seed=3, topk=10, embed_dim=32, history_size=9, test_negatives=99, min_ratings=20, preprocess_seed=0,
    tcn_levels=5, tcn_kernel=3, tcn_dropout=0.25,
)
# Published numbers (only relative gains offline) and the reference runs of the notebook's code:
# mpm/reference.json, keyed "<dataset>" or "<dataset>/tie-order stable" (common.jobs.reference_for).


def torch_device(text: str) -> str:
    """argparse type: a torch device this machine has (cpu, cuda, cuda:N)."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device: use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device; use --device cpu")
    return text


def run_setting(args: argparse.Namespace) -> str:
    """The run's setting for records and reference.json: "" for the authors' tie order."""
    return "" if args.tie_order == "authors" else f"tie-order {args.tie_order}"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        description="MPM (arXiv 2112.11023): train and evaluate HR@10/NDCG@10 with 1 + 99 candidates; "
                    "defaults are the authors'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(RAW_FILES), default=d["dataset"],
                   help="raw ratings fetched through common.datasets (ML-1m is the paper's; only ml-100k is "
                        "complete in the offline mirror)")
    p.add_argument("--ratings-file", type=existing_file, default=None,
                   help="use this local ratings file instead of the registered one (format from --dataset)")
    p.add_argument("--split", choices=("ours", "official"), default="ours",
                   help="ours: test cases and negatives from mpm.data (seeded); official: the authors' released "
                        "ML-1m test_ratings.csv/test_negative.csv (and train_ratings.csv when it can be had)")
    p.add_argument("--valid", action="store_true",
                   help="hold out each user's second-to-last item as a validation case (99 negatives) and pick "
                        "the reported epoch on it (the paper's protocol; the official code has no validation set)")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"], help="training epochs (the notebook runs 2)")
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"], help="training examples per step")
    p.add_argument("--negatives", type=positive_int, default=d["negatives"], help="training negatives per positive")
    p.add_argument("--neg-exclude", choices=("train", "rated"), default="train",
                   help="items never drawn as a training negative of a user: train = the user's training targets "
                        "(official sampler); rated = every item the user rated, test and history included")
    p.add_argument("--lr", type=positive_float, default=d["lr"], help="Adam learning rate")
    p.add_argument("--beta1", type=probability, default=d["beta1"], help="Adam beta1, in [0, 1)")
    p.add_argument("--beta2", type=probability, default=d["beta2"], help="Adam beta2, in [0, 1)")
    p.add_argument("--eps", type=positive_float, default=d["eps"], help="Adam epsilon")
    p.add_argument("--seed", type=nonnegative_int, default=d["seed"],
                   help="seed of torch (init, dropout) and of the per-epoch negative sampling and shuffling")
    p.add_argument("--topk", type=positive_int, default=d["topk"], help="K of HR@K and NDCG@K")
    p.add_argument("--embed-dim", type=positive_int, default=d["embed_dim"], help="user/item embedding size")
    p.add_argument("--history-size", type=positive_int, default=d["history_size"], help="history items per case")
    p.add_argument("--test-negatives", type=positive_int, default=d["test_negatives"],
                   help="negatives per test user")
    p.add_argument("--min-ratings", type=positive_int, default=d["min_ratings"],
                   help="users with fewer ratings are dropped")
    p.add_argument("--tie-order", choices=TIE_ORDERS, default="authors",
                   help="order of a user's same-second ratings: authors = the notebook's pandas sort_values "
                        "(default quicksort) on the datetime column; stable = file order (changes about a quarter "
                        "of ML-100k's test items, see README)")
    p.add_argument("--preprocess-seed", type=nonnegative_int, default=d["preprocess_seed"],
                   help="seed of the test (and validation) negatives drawn in preprocessing")
    p.add_argument("--tcn-init", choices=("official", "normal"), default="official",
                   help="official: PyTorch's default conv init (the official normal_(0, 0.01) after weight_norm "
                        "is a no-op); normal: the N(0, 0.01) conv weights the code intended")
    p.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--draw-ahead", choices=("auto", "on", "off"), default="auto",
                   help="draw each step's dropout masks on a second thread while the TCN runs (the same masks and "
                        "random stream, speed only); auto: when torch uses fewer threads than the machine has "
                        "cores (e.g. --threads 1 on 2 cores), off otherwise, where it measured no gain")
    p.add_argument("--eval-batch-users", type=positive_int, default=64,
                   help="test users scored per evaluation batch (each with its 100 candidates)")
    p.add_argument("--max-train-steps", type=positive_int, default=None,
                   help="stop each epoch after this many steps (smoke runs only; full epochs when unset)")
    p.add_argument("--cache-dir", type=writable_dir, default=None,
                   help="folder of the preprocessed-data cache (default: <REPRO_DATA_DIR>/mpm-preprocessed)")
    p.add_argument("--eval", choices=("sampled", "full", "both"), default="sampled",
                   help="sampled: HR/NDCG over the 1 + 99 candidates (the authors'); full and both also rank each "
                        "test item against every item not among the user's other ratings (full_hr@K, full_ndcg@K "
                        "per epoch; epochs are still chosen on the sampled numbers); the headline shows the full "
                        "numbers (full) or both (both)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_run_flags(p, out_help="run folder (default: mpm/runs/<dataset>-<split>[-valid]-s<seed>); --resume "
                              "continues from <out>/checkpoint.pt")
    args = p.parse_args(argv)
    # Flag combinations argparse cannot check: one line and exit 2, like a bad value.
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                "--overwrite deletes it")
    if args.split == "official" and (args.dataset != "ml-1m" or args.valid):
        p.error("--split official is the authors' ML-1m test split without a validation set: use it with "
                "--dataset ml-1m and without --valid")
    if args.out is None:
        name = f"{args.dataset}-{args.split}{'-valid' if args.valid else ''}-s{args.seed}"
        args.out = str(Path(__file__).resolve().parent / "runs" / name)
    return args


# ----------------------------------------------------------------------------- data
def prepare_data(args: argparse.Namespace) -> MPMData:
    """Preprocessed arrays for the run; with ``--split official`` the test cases are the authors'."""
    kw = dict(history_size=args.history_size, negatives=args.test_negatives, seed=args.preprocess_seed,
              min_ratings=args.min_ratings, valid=args.valid, cache=args.cache_dir, tie_order=args.tie_order)
    if args.split == "ours":
        return load(args.dataset, path=args.ratings_file, fmt=RAW_FILES[args.dataset][2] if args.ratings_file else None, **kw)
    official = load_official_test()
    train = None
    try:
        train = load_official_train(fetch_file(OFFICIAL_DATASET, "train_ratings.csv"), args.history_size)
    except DatasetUnavailableError as e:
        log.info("official train_ratings.csv unavailable (%s); training entries from raw ML-1m", str(e).splitlines()[0])
    try:
        data = load("ml-1m", path=args.ratings_file, fmt="::" if args.ratings_file else None, **kw)
    except DatasetUnavailableError as e:
        if train is None:
            raise DataError("--split official needs training data: either mpm-ml-1m/train_ratings.csv or raw "
                            f"ml-1m/ratings.dat (or --ratings-file), and neither can be had here. "
                            + " ".join(str(e).split())) from None
        s = official.summary
        z = np.empty(0, np.int64)
        keys = np.unique(train[0] * s["items"] + train[1])
        data = MPMData(s["users"], s["items"], s["history_size"], z, z, z.reshape(0, s["history_size"]),
                       z, z, z.reshape(0, s["history_size"]), z.reshape(0, 99), z, z,
                       z.reshape(0, s["history_size"]), z.reshape(0, 99), keys)
    agree = None
    if len(data.test_items):
        agree = float((data.test_items == official.items).mean())
        log.info("official test items equal to ours for %.1f%% of users", 100 * agree)
    return with_official_split(data, official, train)


def sample_epoch(users: np.ndarray, items: np.ndarray, exclude: np.ndarray, nb_items: int, negatives: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch of training examples, shuffled, as in the official ``CFTrainDataset``.

    Each training entry i appears once as a positive (its target, label 1) and ``negatives`` times
    with an item drawn uniformly from all items and redrawn while (user, item) is in ``exclude``
    (label 0); every example keeps entry i's user and history.

    users, items [N]; exclude: sorted keys ``user * nb_items + item``.
    Returns entry index [M], item [M], label [M] (float32) with M = N (1 + negatives), shuffled.
    """
    n = len(users)
    neg_users = np.repeat(users, negatives)
    neg_items = rng.integers(0, nb_items, size=n * negatives)
    todo = np.arange(n * negatives)
    while len(todo):
        keys = neg_users[todo] * nb_items + neg_items[todo]
        pos = np.searchsorted(exclude, keys).clip(max=len(exclude) - 1)
        todo = todo[exclude[pos] == keys]
        neg_items[todo] = rng.integers(0, nb_items, size=len(todo))
    entry = np.concatenate([np.arange(n), np.repeat(np.arange(n), negatives)])
    item = np.concatenate([items, neg_items])
    label = np.concatenate([np.ones(n, np.float32), np.zeros(n * negatives, np.float32)])
    perm = rng.permutation(len(entry))
    return entry[perm], item[perm], label[perm]


# ----------------------------------------------------------------------------- train / evaluate
def use_draw_ahead(setting: str, device: str = "cpu") -> bool:
    """Whether ``train_epoch`` draws the dropout masks ahead (``--draw-ahead``): on, off, or auto = on the CPU
    when torch's thread count leaves a core free (README "Speed": ~10% per step at 1 thread on 2 cores; no
    consistent gain when both cores run torch's threads)."""
    return spare_core(setting, device)



def train_epoch(model: MPM, optimizer: torch.optim.Optimizer, data: MPMData, exclude: np.ndarray,
                args: argparse.Namespace, epoch: int, rng: np.random.Generator,
                guard: Optional[DivergenceGuard] = None) -> dict[str, float]:
    """One shuffled pass; returns mean loss, examples, and where the time went.

    ``rng`` draws the negatives and the shuffle: one stream seeded once by ``--seed`` (its state is
    checkpointed, so that ``--resume`` continues the same stream). ``guard`` sees every step's loss
    before the optimizer step (it draws no random numbers), so a non-finite or exploding loss stops
    the run before it reaches the weights.
    """
    t0 = time.perf_counter()
    entry, item, label = sample_epoch(data.train_users, data.train_items, exclude, data.nb_items,
                                      args.negatives, rng)
    dev = torch.device(args.device)
    users_t = torch.from_numpy(data.train_users).to(dev)
    hist_t = torch.from_numpy(data.train_history).to(dev)
    entry_t, item_t, label_t = (torch.from_numpy(a).to(dev) for a in (entry, item, label))
    sample_seconds = time.perf_counter() - t0
    model.train()
    steps = (len(entry) + args.batch_size - 1) // args.batch_size
    if args.max_train_steps:
        steps = min(steps, args.max_train_steps)
    loss_sum, seen, model_seconds = 0.0, 0, 0.0
    ahead = use_draw_ahead(getattr(args, "draw_ahead", "off"), args.device)
    bar = tqdm(range(steps), desc=f"epoch {epoch}/{args.epochs}", disable=args.no_progress, leave=False)
    for s in bar:
        sl = slice(s * args.batch_size, (s + 1) * args.batch_size)
        e = entry_t[sl]
        u, h, i, y = users_t[e], hist_t[e], item_t[sl], label_t[sl]
        t1 = time.perf_counter()
        if ahead:
            model.draw_ahead(len(y))
        loss = model.loss(u, i, h, y)
        lv = loss.item()
        if guard is not None:
            guard.loss(lv, epoch, s + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model_seconds += time.perf_counter() - t1
        loss_sum += lv * len(y)
        seen += len(y)
        if s % 20 == 0:
            bar.set_postfix(loss=f"{lv:.4f}")
    total = time.perf_counter() - t0
    return {"loss": loss_sum / max(seen, 1), "examples": seen, "train_seconds": total,
            "model_seconds": model_seconds, "sample_seconds": sample_seconds,
            "outside_share": (total - model_seconds) / total if total else 0.0}


@torch.no_grad()
def score_candidates(model: MPM, users: np.ndarray, history: np.ndarray, candidates: np.ndarray,
                     batch_users: int = 1024, device: str = "cpu") -> np.ndarray:
    """Logits of every candidate [U, C] for users [U], history [U, H], candidates [U, C]."""
    model.eval()
    out = []
    for start in range(0, len(users), batch_users):
        sl = slice(start, start + batch_users)
        u, h, c = (torch.from_numpy(np.ascontiguousarray(a[sl])).to(device) for a in (users, history, candidates))
        out.append(model.score(u, h, c).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, candidates.shape[1]), np.float32)


def evaluate(model: MPM, users: np.ndarray, items: np.ndarray, history: np.ndarray, negatives: np.ndarray,
             k: int = 10, batch_users: int = 1024, device: str = "cpu") -> dict[str, float]:
    """HR@K and NDCG@K of each user's held-out item among itself and its negatives [U, 99].

    Ties count against the held-out item (common.metrics), as in the official code, where it is the
    last candidate and ``heapq.nlargest`` keeps earlier items first among equal scores.
    """
    t0 = time.perf_counter()
    scores = score_candidates(model, users, history, np.c_[items, negatives], batch_users, device)
    m = ranking_metrics(sampled_ranks(scores, pos_col=0), ks=(k,))
    m["eval_seconds"] = time.perf_counter() - t0
    return m


@torch.no_grad()
def evaluate_full(model: MPM, users: np.ndarray, items: np.ndarray, history: np.ndarray, seen: np.ndarray,
                  nb_items: int, k: int = 10, batch_users: int = 4, device: str = "cpu") -> dict[str, float]:
    """``full_hr@K`` / ``full_ndcg@K``: each user's held-out item ranked against ALL items, the user's other
    rated items (``seen``: sorted keys ``user * nb_items + item``, the held-out item's own key ignored) masked
    to -inf; ties count against the held-out item. Scores ``batch_users`` users x all items at a time."""
    t0 = time.perf_counter()
    model.eval()
    every_item = torch.arange(nb_items, device=device)
    scores = np.concatenate([model.score(torch.from_numpy(users[s:s + batch_users]).to(device),
                                         torch.from_numpy(history[s:s + batch_users]).to(device),
                                         every_item.expand(len(users[s:s + batch_users]), -1)).float().cpu().numpy()
                             for s in range(0, len(users), batch_users)])
    seen = np.setdiff1d(seen, users * nb_items + items)
    seen = seen[np.isin(seen // nb_items, users)]
    order = np.argsort(users, kind="stable")
    scores[order[np.searchsorted(users[order], seen // nb_items)], seen % nb_items] = -np.inf
    m = {f"full_{name}": v for name, v in ranking_metrics(full_ranks(scores, items), ks=(k,)).items()}
    m["full_eval_seconds"] = time.perf_counter() - t0
    return m


def popularity_metrics(data: MPMData, k: int = 10) -> dict[str, float]:
    """The trivial baseline: rank candidates by how often they are a training target."""
    counts = np.bincount(data.train_items, minlength=data.nb_items).astype(np.float64)
    return ranking_metrics(sampled_ranks(counts[np.c_[data.test_items, data.test_negatives]]), ks=(k,))


def official_best(history: list[dict[str, Any]], k: int = 10, prefix: str = "") -> Optional[dict[str, Any]]:
    """The epoch the official code reports: after each epoch, if HR >= best HR *or* NDCG >= best NDCG,
    that epoch (both of its numbers) becomes the best. Epoch 0 (untrained) is not a candidate."""
    best, hr_key, nd_key = None, f"{prefix}hr@{k}", f"{prefix}ndcg@{k}"
    bh, bn = 0.0, 0.0
    for h in sorted((h for h in history if h["epoch"] >= 1), key=lambda h: h["epoch"]):
        if h[hr_key] >= bh or h[nd_key] >= bn:
            bh, bn, best = h[hr_key], h[nd_key], h
    return best


def plot_curves(history: list[dict[str, Any]], path: Path, k: int = 10, title: str = "") -> None:
    """PNG of test HR@K and NDCG@K (and validation HR@K when logged) per epoch, epoch 0 = untrained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for key, label in ((f"hr@{k}", f"test HR@{k}"), (f"ndcg@{k}", f"test NDCG@{k}"), (f"valid_hr@{k}", f"valid HR@{k}")):
        if all(key in h for h in history):
            ax.plot(ep, [h[key] for h in history], marker="o", ms=3, label=label)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = untrained)")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def build_model(data: MPMData, args: argparse.Namespace) -> MPM:
    return MPM(data.nb_users, data.nb_items, args.embed_dim, data.history_size, DEFAULTS["tcn_levels"],
               DEFAULTS["tcn_kernel"], DEFAULTS["tcn_dropout"], tcn_init=args.tcn_init)


def row_value(table: dict[str, Any], group: str, name: str) -> Any:
    """A published/reference value for the comparison row ``group/name``: the full key where
    reference.json has it (``epoch_1/hr@10``), else the headline name the group stands for
    (``hr@10`` for the authors'-rule or validation epoch, ``last_hr@10`` for the last epoch)."""
    if f"{group}/{name}" in table:
        return table[f"{group}/{name}"]
    if group == "last":
        return table.get(f"last_{name}", table.get(name))
    if group in ("best_test_epoch_official_rule", "best_valid_epoch"):
        return table.get(name)
    return None


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    out = prepare_out(args.out, args.resume, args.overwrite)  # before any data loading or write
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    keep_freed_memory()  # allocator only: outputs bit-identical (README "Speed")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ckpt_path = out / "checkpoint.pt"
    from_checkpoint = args.resume and ckpt_path.is_file()
    if args.resume and not from_checkpoint:
        log.info("--resume: no checkpoint at %s, starting from scratch", ckpt_path)

    t0 = time.perf_counter()
    data = prepare_data(args)
    log.info("data %s in %.1f s: %s", args.dataset, time.perf_counter() - t0, data.summary())
    exclude = data.train_positive_keys() if args.neg_exclude == "train" else data.rated
    if len(data.train_users) == 0:
        raise DataError(f"no training entries in {args.ratings_file or args.dataset}: every user has at most "
                        f"{args.history_size + 1 + int(args.valid)} ratings; lower --history-size or use more ratings")
    no_negative = np.bincount(exclude // data.nb_items, minlength=data.nb_users) >= data.nb_items
    if no_negative.any():  # sample_epoch would redraw forever
        raise DataError(f"user {int(np.flatnonzero(no_negative)[0])} has every one of the {data.nb_items} items "
                        f"excluded as a training negative (--neg-exclude {args.neg_exclude}): no negative can be drawn; "
                        f"use --neg-exclude train or a ratings file with more items")
    model = build_model(data, args).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    config = {k: v for k, v in vars(args).items()}
    config.update(data.summary(), parameters=sum(p.numel() for p in model.parameters()))
    setting = run_setting(args)
    published = reference_for("mpm", args.dataset, setting, "published")
    # The reference runs are the notebook's code: its own split, no validation set.
    reference = (reference_for("mpm", args.dataset, setting, "reference") if args.split == "ours" and not args.valid
                 else {"source": "", "values": {}})
    guard = DivergenceGuard(hint=f"lower --lr (now {args.lr})")
    k, dev, ebu = args.topk, args.device, args.eval_batch_users

    def eval_all() -> dict[str, float]:
        m = evaluate(model, data.test_users, data.test_items, data.test_history, data.test_negatives, k, ebu, dev)
        if args.eval != "sampled":  # as many scored pairs per batch as the sampled evaluation's
            m.update(evaluate_full(model, data.test_users, data.test_items, data.test_history, data.rated,
                                   data.nb_items, k, max(1, ebu * (1 + args.test_negatives) // data.nb_items), dev))
            log.info("full ranking: HR@%d %.4f NDCG@%d %.4f (%.2f s)", k, m[f"full_hr@{k}"], k, m[f"full_ndcg@{k}"],
                     m["full_eval_seconds"])
        if data.has_valid:
            v = evaluate(model, data.valid_users, data.valid_items, data.valid_history, data.valid_negatives, k, ebu, dev)
            m.update({f"valid_{name}": val for name, val in v.items() if name != "eval_seconds"})
            m["eval_seconds"] += v["eval_seconds"]
        return m

    with RunRecord(out, paper="mpm", dataset=args.dataset, config=config, resume=args.resume,
                   overwrite=args.overwrite, setting=setting) as rec:
        rng = np.random.default_rng(args.seed)
        if from_checkpoint:
            state = torch.load(ckpt_path, map_location=args.device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it
            rng.bit_generator.state = state["numpy_rng"]
            start = state["epoch"] + 1
            log.info("resumed from %s after epoch %d", ckpt_path, state["epoch"])
        else:
            rec.history.clear()  # a fresh start: rows of an earlier attempt without checkpoint are dropped
            m = eval_all()
            guard.metrics(m, 0)
            rec.log_epoch(0, m)
            log.info("untrained: HR@%d %.4f NDCG@%d %.4f (%.2f s)", k, m[f"hr@{k}"], k, m[f"ndcg@{k}"],
                     m["eval_seconds"])
            start = 1
        for epoch in range(start, args.epochs + 1):
            t = train_epoch(model, optimizer, data, exclude, args, epoch, rng, guard)
            m = eval_all()
            guard.metrics({**t, **m}, epoch)  # before the record and the checkpoint: the last good one stays
            rec.log_epoch(epoch, {**t, **m})
            with atomic_path(ckpt_path) as tmp:
                torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state}, tmp)
            log.info("epoch %d/%d: loss %.4f HR@%d %.4f NDCG@%d %.4f%s | train %.1f s (%.0f ex/s, %.1f%% outside "
                     "forward/backward) eval %.2f s", epoch, args.epochs, t["loss"], k, m[f"hr@{k}"], k,
                     m[f"ndcg@{k}"], f" (valid HR {m[f'valid_hr@{k}']:.4f})" if data.has_valid else "",
                     t["train_seconds"], t["examples"] / t["train_seconds"], 100 * t["outside_share"],
                     m["eval_seconds"])

        hist = rec.history
        keys = (f"hr@{k}", f"ndcg@{k}") + ((f"full_hr@{k}", f"full_ndcg@{k}") if args.eval != "sampled" else ())
        pick = lambda h: {**{kk: h[kk] for kk in keys if kk in h}, "epoch": h["epoch"]} if h else {}  # noqa: E731
        trained = [h for h in hist if h["epoch"] >= 1]
        metrics: dict[str, Any] = {
            "untrained": pick(next((h for h in hist if h["epoch"] == 0), None)),
            "epoch_1": pick(next((h for h in hist if h["epoch"] == 1), None)),
            "best_test_epoch_official_rule": pick(official_best(hist, k)),
            "last": pick(trained[-1] if trained else None),
            "popularity": popularity_metrics(data, k),
        }
        if data.has_valid:
            metrics["best_valid_epoch"] = pick(max(trained, key=lambda h: h[f"valid_hr@{k}"]) if trained else None)
        # The run's headline for `make report`: the epoch the authors' code reports (or the best validation
        # epoch with --valid), and the last epoch beside it.
        chosen = metrics.get("best_valid_epoch") if data.has_valid else metrics["best_test_epoch_official_rule"]
        headline = {f"hr@{k}": (chosen or {}).get(f"hr@{k}"), f"ndcg@{k}": (chosen or {}).get(f"ndcg@{k}"),
                    f"last_hr@{k}": metrics["last"].get(f"hr@{k}"),
                    f"last_ndcg@{k}": metrics["last"].get(f"ndcg@{k}")}
        if args.eval != "sampled":
            full = {f"{last}full_{m}@{k}": (g or {}).get(f"full_{m}@{k}") for last, g in (("", chosen), ("last_",
                    metrics["last"])) for m in ("hr", "ndcg")}
            headline = full if args.eval == "full" else {**headline, **full}
        selection = ("best validation epoch" if data.has_valid else "best test epoch (authors' rule)") + \
            "; last_*: last epoch"
        rec.finish(metrics, published=published["values"], reference=reference["values"], epochs=args.epochs,
                   seed=args.seed, device=args.device, published_source=published["source"],
                   reference_source=reference["source"],
                   extra={"split": args.split, "valid": args.valid, "data": data.summary(),
                          "reference_selection": reference.get("selection", "")},
                   headline=headline, selection=selection)
    # Own table instead of rec.finish's: one row per (group, metric) without the groups' "epoch"
    # entries (named in a line below the table instead); the published column applies to the
    # trained rows only, the reference column to the rows it was measured for.
    flat = {f"{g}/{name}": v for g, m in metrics.items() for name, v in m.items() if name != "epoch"}
    pub_rows = {n: row_value(published["values"], *n.split("/", 1)) for n in flat}
    ref_rows = {n: row_value(reference["values"], *n.split("/", 1)) for n in flat}
    table = comparison_table(flat, pub_rows, ref_rows, published["source"], reference["source"])
    epochs_of = ", ".join(f"{g} = epoch {m['epoch']}" for g, m in metrics.items() if "epoch" in m)
    table += f"\n({epochs_of})"
    with atomic_path(out / "comparison.md") as tmp:
        tmp.write_text(table + "\n")
    plot_curves(hist, out / "curves.png", k, f"MPM on {args.dataset}, {args.split} split, seed {args.seed}")
    print(f"\nMPM on {args.dataset} ({args.split} split{', validation' if args.valid else ''}), run {out}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
