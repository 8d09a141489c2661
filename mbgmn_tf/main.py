"""Train and evaluate MB-GMN (TensorFlow 1 graph mode) on Beibei or Tmall.

    python -m mbgmn_tf.main --dataset beibei                 # authors' settings, 100 epochs
    python -m mbgmn_tf.main --dataset beibei --epochs 10     # the notebook's 10 epochs
    python -m mbgmn_tf.main --out mbgmn_tf/runs/beibei --resume
    python -m mbgmn_tf.main --epochs 1 --max-train-steps 4 --test-users 2000   # smoke run (QUICK)
    python -m mbgmn_tf.main --dataset beibei --epochs 10 --eval both           # + full ranking

Every epoch: ``trn_num`` random users, per behaviour up to ``samp_num`` (positive, negative)
pairs per user, one Adam step per ``batch`` users. Test after epochs 1, 1 + test_every, ... and
after the last: each test user's held-out purchase among 99 items the user did not buy in
training, HR@10 and NDCG@10 (``common.metrics``); a popularity ranking (training purchases per
item) is scored on the same candidate lists. ``--eval full`` adds, at the last test, full ranking
(``full_hr@10``, ``full_ndcg@10``, and ``pop_full_*`` for popularity): the held-out purchase
against every item the user did not purchase in training, ties against it (``common.metrics``,
masked by ``baselines.full_test_ranks``, exactly as the baselines); ``--eval both`` at every
test. Writes config.json, metrics.jsonl, tb/, ckpt/
(``tf.train.Saver``), summary.json and comparison.md in ``--out``; ``--resume`` continues after
the last finished epoch, ``--overwrite`` clears the folder first (a folder holding a run is refused
without one of them). Exit codes are those of ``common/cli.py``: 2 bad flag, 3 data, 4 diverged
(a non-finite or exploding loss at some step, or a non-finite metric; ``summary.json`` says
``"status": "diverged"`` and the last good checkpoint is kept), 5 output folder.

TensorFlow is imported only after the flags and the run folder have been checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import logging
import os
import time
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from common.cli import (
    DivergenceGuard,
    OutputError,
    add_run_flags,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run_cli,
)
from common.jobs import reference_for
from common.metrics import ranking_metrics, sampled_ranks
from common.runs import RunRecord, atomic_path, prepare_out
from mbgmn_tf import HEADLINE  # summary.json's headline (last test epoch) = JOBS' metrics
from mbgmn_tf.baselines import full_test_ranks
from mbgmn_tf.data import (
    BEHAVIOURS,
    MultiBehaviourData,
    PairSampler,
    behaviour_adjacencies,
    global_adjacency,
    load_dataset,
    load_folder,
    popularity_scores,
    sample_large_graph,
    sample_test_negatives,
    symmetric_normalize,
)

log = logging.getLogger("mbgmn_tf")

# The authors' settings (their README and labcode.py argparse), per dataset.
_COMMON = dict(lr=1e-3, batch=256, reg=1e-2, latdim=32, rank=4, gnn_layer=2, att_head=2, samp_num=40,
               trn_num=10000, mult=100.0, decay=0.96, epochs=100, test_every=3, graph_sample=0)
PRESETS: dict[str, dict] = {
    "beibei": dict(_COMMON),
    "tmall": dict(_COMMON, rank=2),
}
N_NEGATIVES = 99  # 1 held-out purchase + 99 sampled items per test user
TOP_K = 10  # the notebook's --shoot




def existing_dir(text: str) -> str:
    """argparse type: a folder that exists."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing folder")
    return str(path)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="MB-GMN (SIGIR'21) multi-behaviour recommendation, TF1 graph mode. "
                    "Unset hyper-parameters take the authors' per-dataset settings: "
                    + "; ".join(f"{k}: {v}" for k, v in PRESETS.items())
                    + ". Exit codes: 0 finished, 2 bad flag, 3 data, 4 diverged, 5 output folder (common/cli.py).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), default="beibei", help="dataset (behaviours in the authors' order, purchase last)")
    p.add_argument("--data-dir", type=existing_dir, default=None,
                   help="read trn_<behaviour>/tst_int from this folder instead of common.datasets (same pickle format)")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (authors' README: 100; the notebook runs 10)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate")
    p.add_argument("--decay", type=positive_float, default=None, help="learning-rate decay factor every trn_num // batch steps (staircase)")
    p.add_argument("--batch", type=positive_int, default=None, help="users per training step (and per test step)")
    p.add_argument("--reg", type=nonnegative_float, default=None, help="weight of the squared L2 norm of the registered parameters")
    p.add_argument("--latdim", type=positive_int, default=None, help="embedding size d (base embeddings have d/2; even, a multiple of --att-head)")
    p.add_argument("--rank", type=positive_int, default=None, help="rank r of the generated behaviour-specific transformations")
    p.add_argument("--gnn-layer", type=positive_int, default=None, help="message-passing layers")
    p.add_argument("--att-head", type=positive_int, default=None, help="heads of the light self-attention across behaviours")
    p.add_argument("--samp-num", type=positive_int, default=None, help="max (positive, negative) pairs per user and behaviour per step")
    p.add_argument("--trn-num", type=positive_int, default=None, help="users drawn per training epoch")
    p.add_argument("--mult", type=positive_float, default=None, help="multiplier of the predicted scores")
    p.add_argument("--test-every", type=positive_int, default=None, help="test after epochs 1, 1 + N, 1 + 2N, ... and after the last")
    p.add_argument("--graph-sample", type=nonnegative_int, default=None,
                   help="0: full graph; N > 0: each step runs on a sub-graph of N users and items per hop "
                        "around its users (the notebook's sampleLargeGraph; for graphs that do not fit)")
    p.add_argument("--max-train-steps", type=nonnegative_int, default=0,
                   help="stop each epoch after N steps (0: the full trn_num // batch; for smoke runs, e.g. QUICK)")
    p.add_argument("--test-users", type=nonnegative_int, default=0, help="evaluate only the first N test users (0: all)")
    p.add_argument("--fixed-test-negatives", action="store_true",
                   help="draw the 99 test negatives once from --seed (comparable across runs); "
                        "default, as the authors: redraw them at every test")
    p.add_argument("--eval", choices=("sampled", "full", "both"), default="sampled",
                   help="sampled: 1 + 99 candidates at every test (the authors'); full: also rank against all "
                        "items not purchased in training at the last test; both: at every test")
    p.add_argument("--full-rows", type=positive_int, default=32768,
                   help="(user, item) rows scored per session call in full ranking (memory: ~40 KB per row)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of numpy sampling and TF initialisation")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="TF intra-op threads (0: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_run_flags(p, out_help="run folder (default mbgmn_tf/runs/<dataset>-seed<seed>)")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                "--overwrite deletes it")
    if args.latdim % 2 or args.latdim % args.att_head:
        p.error(f"--latdim {args.latdim} must be even (base embeddings have d/2) and a multiple of "
                f"--att-head {args.att_head}")
    if args.eval != "sampled" and args.graph_sample > 0:
        p.error(f"--eval {args.eval} needs the full graph: it cannot be combined with --graph-sample "
                f"{args.graph_sample} (use --eval sampled or --graph-sample 0)")
    if args.out is None:
        args.out = str(Path(__file__).resolve().parent / "runs" / f"{args.dataset}-seed{args.seed}")
    return args


# ----------------------------------------------------------------------------- checkpoints
class Checkpointer:
    """``tf.train.Saver`` checkpoints made atomic: a new prefix per epoch, then ``latest.json``
    (written atomically) points at it; older prefixes are deleted afterwards."""

    def __init__(self, folder: Path, saver):
        self.folder, self.saver = folder, saver
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, sess, epoch: int, extra: dict) -> None:
        prefix = self.folder / f"model-ep{epoch}"
        self.saver.save(sess, str(prefix), write_meta_graph=False, write_state=False)
        with atomic_path(self.folder / "latest.json") as tmp:
            tmp.write_text(json.dumps({"prefix": prefix.name, "epoch": epoch, **extra}))
        for f in self.folder.glob("model-ep*"):
            if not f.name.startswith(prefix.name + "."):
                f.unlink(missing_ok=True)

    def latest(self) -> Optional[dict]:
        p = self.folder / "latest.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except ValueError as e:
            raise OutputError(f"--resume: {p} is not valid JSON ({e}); the run in {self.folder.parent} cannot be "
                              f"continued. Run again with --overwrite to start it afresh, or choose another --out.") from e

    def restore(self, sess, state: dict) -> None:
        import tensorflow.compat.v1 as tf

        try:
            self.saver.restore(sess, str(self.folder / state["prefix"]))
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OutputError(
                f"--resume: the checkpoint {self.folder / state['prefix']} does not fit this model ({first[:200]}). "
                f"Resume with the flags of {self.folder.parent / 'config.json'}, or run again with --overwrite "
                f"to start afresh.") from e


# ----------------------------------------------------------------------------- train / test
class Trainer:
    """The notebook's ``trainEpoch``/``testEpoch`` around one static graph and one session."""

    def __init__(self, args: argparse.Namespace, data: MultiBehaviourData):
        import tensorflow.compat.v1 as tf

        from mbgmn_tf.model import MBGMN, HParams

        self.tf, self.args, self.data = tf, args, data
        self.rng = np.random.default_rng(args.seed)
        self.samplers = [PairSampler(m) for m in data.trn_mats]
        self.popularity = popularity_scores(data)
        self.subgraph = args.graph_sample > 0
        hp = HParams(latdim=args.latdim, rank=args.rank, gnn_layer=args.gnn_layer, att_head=args.att_head,
                     mult=args.mult, reg=args.reg, lr=args.lr, decay=args.decay,
                     decay_step=max(args.trn_num // args.batch, 1))
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(args.seed)
            self.model = MBGMN(data.n_users, data.n_items, len(data.behaviours), hp, subgraph=self.subgraph)
            self.saver = tf.train.Saver(max_to_keep=None)
            init = tf.global_variables_initializer()
        config = tf.ConfigProto(intra_op_parallelism_threads=args.threads, inter_op_parallelism_threads=args.threads)
        self.sess = tf.Session(graph=self.graph, config=config)
        self.sess.run(init)
        t0 = time.time()
        if self.subgraph:
            self.adj, self.tpadj = global_adjacency(data.trn_mats)
        else:
            adjs, tp_adjs = behaviour_adjacencies(data.trn_mats)
            self.model.load_graph(self.sess, adjs, tp_adjs)
        self.graph_seconds = time.time() - t0
        self.fixed_negatives = None
        if args.fixed_test_negatives:
            self.fixed_negatives = sample_test_negatives(
                self.test_users(), data.target, N_NEGATIVES, np.random.default_rng([args.seed, 1]))
        self.sess_seconds = 0.0

    def test_users(self) -> np.ndarray:
        users = self.data.tst_users
        return users[: self.args.test_users] if self.args.test_users > 0 else users

    def _run(self, fetches, feed):
        t0 = time.time()
        out = self.sess.run(fetches, feed)
        self.sess_seconds += time.time() - t0
        return out

    def _subgraph_feed(self, users: np.ndarray, items: Optional[np.ndarray]):
        """Sub-graph around ``users`` (and ``items``): (feed, local ids of users, sub_items, sub mats)."""
        mats, tps, sub_users, sub_items = sample_large_graph(
            self.data.trn_mats, self.adj, self.tpadj, users, items, samp_num=self.args.graph_sample, rng=self.rng)
        adjs = [symmetric_normalize(m) for m in mats]
        tp_adjs = [symmetric_normalize(m) for m in tps]
        feed = self.model.graph_feed(adjs, tp_adjs)
        feed[self.model.sub_users], feed[self.model.sub_items] = sub_users.astype(np.int32), sub_items.astype(np.int32)
        return feed, np.searchsorted(sub_users, users), sub_items, mats

    def train_epoch(self, epoch: int, guard: Optional[DivergenceGuard] = None) -> dict:
        """One epoch of Adam steps; ``guard`` checks every step's loss (raises ``Diverged``)."""
        args, m = self.args, self.model
        users = self.rng.permutation(self.data.n_users)[: args.trn_num]
        steps = int(np.ceil(len(users) / args.batch))
        if args.max_train_steps:
            steps = min(steps, args.max_train_steps)
        totals = np.zeros(3)
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{args.epochs} train", leave=False, disable=args.no_progress)
        for step in bar:
            batch = users[step * args.batch:(step + 1) * args.batch]
            if self.subgraph:
                feed, local, _, mats = self._subgraph_feed(batch, None)
                pairs = [PairSampler(mat).sample(local, args.samp_num, self.rng) for mat in mats]
            else:
                feed = {}
                pairs = [s.sample(batch, args.samp_num, self.rng) for s in self.samplers]
            feed.update(m.pair_feed(pairs))
            _, pre, reg, loss = self._run([m.train_op, m.pre_loss, m.reg_loss, m.loss], feed)
            if guard is not None:
                guard.loss(loss, epoch, step + 1)
            totals += (pre, reg, loss)
            bar.set_postfix(loss=f"{loss:.2f}", reg=f"{reg:.2f}")
        pre, reg, loss = totals / steps
        lr = float(self.sess.run(m.learning_rate))
        return {"loss": loss, "pre_loss": pre, "reg_loss": reg, "lr": lr}

    def test_epoch(self, epoch: int, full: bool = False) -> dict:
        """HR@10 / NDCG@10 of MB-GMN and of popularity on the same 1 + 99 candidate lists; with
        ``full`` also against all items (``full_*``, ``pop_full_*``, :meth:`full_ranking`)."""
        args, m = self.args, self.model
        users = self.test_users()
        negatives = self.fixed_negatives
        if negatives is None:  # the authors redraw the negatives at every test
            negatives = sample_test_negatives(users, self.data.target, N_NEGATIVES, self.rng)
        positives = self.data.tst_int[users]
        candidates = np.concatenate([negatives, positives[:, None]], axis=1)  # positive last, as the notebook
        embeddings = None if self.subgraph else self._run(m.test_embeddings, {})
        scores = np.empty(candidates.shape, dtype=np.float32)
        bs = args.batch
        for st in tqdm(range(0, len(users), bs), desc=f"epoch {epoch}/{args.epochs} test", leave=False,
                       disable=args.no_progress):
            u, c = users[st:st + bs], candidates[st:st + bs]
            if self.subgraph:
                feed, local, sub_items, _ = self._subgraph_feed(u, np.unique(c))
                uids, iids = np.repeat(local, c.shape[1]), np.searchsorted(sub_items, c.reshape(-1))
                feed.update(m.score_feed(uids.astype(np.int32), iids.astype(np.int32)))
            else:
                feed = m.score_feed(np.repeat(u, c.shape[1]).astype(np.int32), c.reshape(-1).astype(np.int32), embeddings)
            scores[st:st + bs] = self._run(m.target_scores, feed).reshape(c.shape)
        out = _rank_metrics(scores, candidates)
        out.update({f"pop_{k}": v for k, v in _rank_metrics(self.popularity[candidates], candidates).items()})
        if full:
            out.update(self.full_ranking(epoch, embeddings))
        return out

    def full_ranking(self, epoch: int, embeddings: list) -> dict:
        """Each test user's held-out purchase against all items not purchased in training:
        ``full_hr@10``, ``full_ndcg@10`` (and ``pop_full_*``), the baselines' masking."""
        m, users = self.model, self.test_users()
        n_items = self.data.n_items
        chunk = max(1, self.args.full_rows // n_items)
        ranks, pop_ranks = [], []
        for st in tqdm(range(0, len(users), chunk), desc=f"epoch {epoch}/{self.args.epochs} full ranking",
                       leave=False, disable=self.args.no_progress):
            u = users[st:st + chunk]
            feed = m.score_feed(np.repeat(u, n_items).astype(np.int32),
                                np.tile(np.arange(n_items, dtype=np.int32), len(u)), embeddings)
            scores = self._run(m.target_scores, feed).reshape(len(u), n_items)
            purchases, targets = self.data.target[u], self.data.tst_int[u]
            ranks.append(full_test_ranks(scores, purchases, targets))
            pop_ranks.append(full_test_ranks(np.tile(self.popularity.astype(np.float32), (len(u), 1)), purchases, targets))
        out = {}
        for prefix, r in (("full_", ranks), ("pop_full_", pop_ranks)):
            out.update({prefix + k: v for k, v in _ranks_to_metrics(np.concatenate(r)).items()})
        return out


def _ranks_to_metrics(ranks: np.ndarray) -> dict:
    return ranking_metrics(ranks, ks=(TOP_K,), names=("hr", "ndcg"))


def _rank_metrics(scores: np.ndarray, candidates: np.ndarray) -> dict:
    """HR@10 / NDCG@10 with the positive in the last column. A negative that is the held-out
    item itself (the notebook can draw it) is ignored, as the notebook's ``calcRes`` does."""
    scores = np.array(scores, dtype=np.float64)
    dup = candidates[:, :-1] == candidates[:, -1:]
    scores[:, :-1][dup] = -np.inf
    return _ranks_to_metrics(sampled_ranks(scores, pos_col=candidates.shape[1] - 1))


def load(args: argparse.Namespace) -> MultiBehaviourData:
    if args.data_dir:
        return load_folder(args.data_dir, BEHAVIOURS[args.dataset], args.dataset)
    return load_dataset(args.dataset)


def run(argv: Optional[list[str]] = None) -> dict:
    """Train and test; returns the metrics of summary.json ({} when no epoch was tested)."""
    args = parse_args(argv)
    prepare_out(args.out, args.resume, args.overwrite)  # refuse a used folder before anything is loaded
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t_start = time.time()
    data = load(args)
    log.info(data.summary())
    published = reference_for("mbgmn_tf", args.dataset, kind="published")
    reference = reference_for("mbgmn_tf", args.dataset, kind="reference")
    guard = DivergenceGuard(hint=f"lower --lr (now {args.lr})")
    with RunRecord(args.out, paper="mbgmn_tf", dataset=args.dataset, config=vars(args), resume=args.resume,
                   overwrite=args.overwrite) as rec:
        trainer = Trainer(args, data)
        try:
            log.info("graph built and adjacency loaded in %.1f s (data loading %.1f s)", trainer.graph_seconds,
                     time.time() - t_start - trainer.graph_seconds)
            ckpt = Checkpointer(Path(args.out) / "ckpt", trainer.saver)
            start = 1
            if args.resume:
                state = ckpt.latest()
                if state is None:
                    log.info("--resume: no checkpoint in %s, starting from epoch 1", args.out)
                else:
                    ckpt.restore(trainer.sess, state)
                    trainer.rng.bit_generator.state = state["rng"]
                    start = state["epoch"] + 1
                    log.info("resumed after epoch %d", state["epoch"])
            for epoch in range(start, args.epochs + 1):
                t0, s0 = time.time(), trainer.sess_seconds
                row = trainer.train_epoch(epoch, guard)
                row["train_seconds"] = time.time() - t0
                row["outside_session_share"] = 1 - (trainer.sess_seconds - s0) / row["train_seconds"]
                if (epoch - 1) % args.test_every == 0 or epoch == args.epochs:
                    t1 = time.time()
                    full = args.eval == "both" or (args.eval == "full" and epoch == args.epochs)
                    row.update(trainer.test_epoch(epoch, full=full))
                    row["test_seconds"] = time.time() - t1
                guard.metrics(row, epoch)  # a diverged epoch is neither logged nor checkpointed
                rec.log_epoch(epoch, row)
                ckpt.save(trainer.sess, epoch, {"rng": trainer.rng.bit_generator.state})
                log.info("epoch %d/%d %s", epoch, args.epochs,
                         ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))
        finally:
            trainer.sess.close()
        tested = [h for h in rec.history if "hr@10" in h]
        if not tested:
            log.info("no test epoch in this run")
            return {}
        best = max(tested, key=lambda h: h["hr@10"])
        metrics = {"last": {k: tested[-1][k] for k in HEADLINE}, "best": {k: best[k] for k in HEADLINE},
                   "popularity_last": {k: tested[-1][f"pop_{k}"] for k in HEADLINE}}
        if f"full_{HEADLINE[0]}" in tested[-1]:  # --eval full / both
            metrics["full_last"] = {f"full_{k}": tested[-1][f"full_{k}"] for k in HEADLINE}
            metrics["popularity_full_last"] = {f"full_{k}": tested[-1][f"pop_full_{k}"] for k in HEADLINE}
        # The authors select nothing (no validation set): the headline is the last test epoch; "best"
        # is the maximum over test passes, kept in metrics but optimistic.
        table = rec.finish(metrics, published=published["values"], reference=reference["values"],
                           epochs=tested[-1]["epoch"], seed=args.seed, published_source=published["source"],
                           reference_source=reference["source"],
                           headline={k: tested[-1][k] for k in HEADLINE}, selection="last epoch",
                           extra={"best_epoch": best["epoch"], "last_epoch": tested[-1]["epoch"],
                                  "fixed_test_negatives": args.fixed_test_negatives})
    print(table)
    return metrics


def main(argv: Optional[list[str]] = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
