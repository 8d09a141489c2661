"""Train and evaluate MB-GMN (TensorFlow 1 graph mode) on Beibei or Tmall.

    python -m mbgmn_tf.main --dataset beibei                 # authors' settings, 100 epochs
    python -m mbgmn_tf.main --dataset beibei --epochs 10     # the notebook's 10 epochs
    python -m mbgmn_tf.main --out mbgmn_tf/runs/beibei --resume

Every epoch: ``trn_num`` random users, per behaviour up to ``samp_num`` (positive, negative)
pairs per user, one Adam step per ``batch`` users. Test after epochs 1, 1 + test_every, ... and
after the last: each test user's held-out purchase among 99 items the user did not buy in
training, HR@10 and NDCG@10 (``common.metrics``); a popularity ranking (training purchases per
item) is scored on the same candidate lists. Writes config.json, metrics.jsonl, tb/, ckpt/
(``tf.train.Saver``), summary.json and comparison.md in ``--out``; ``--resume`` continues after
the last finished epoch.
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

from common.metrics import ranking_metrics, sampled_ranks
from common.runs import RunRecord, atomic_path
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
PUBLISHED = {"hr@10": "not available offline", "ndcg@10": "not available offline"}
PUBLISHED_SOURCE = ("not available offline (arXiv 2110.03969 Table 2 cannot be opened here; "
                    "see ../shared/docs/PUBLISHED.md)")
REFERENCE = {"hr@10": "not available", "ndcg@10": "not available"}
REFERENCE_SOURCE = ("authors' notebook on this machine: timing only so far (~140 s per epoch, "
                    "20-30 s per test pass; ../shared/docs/REFERENCE_RUNS.md)")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="MB-GMN (SIGIR'21) multi-behaviour recommendation, TF1 graph mode. "
                    "Unset hyper-parameters take the authors' per-dataset settings: "
                    + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), default="beibei", help="dataset (behaviours in the authors' order, purchase last)")
    p.add_argument("--data-dir", default=None,
                   help="read trn_<behaviour>/tst_int from this folder instead of common.datasets (same pickle format)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (authors' README: 100; the notebook runs 10)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    p.add_argument("--decay", type=float, default=None, help="learning-rate decay factor every trn_num // batch steps (staircase)")
    p.add_argument("--batch", type=int, default=None, help="users per training step (and per test step)")
    p.add_argument("--reg", type=float, default=None, help="weight of the squared L2 norm of the registered parameters")
    p.add_argument("--latdim", type=int, default=None, help="embedding size d (base embeddings have d/2)")
    p.add_argument("--rank", type=int, default=None, help="rank r of the generated behaviour-specific transformations")
    p.add_argument("--gnn-layer", type=int, default=None, help="message-passing layers")
    p.add_argument("--att-head", type=int, default=None, help="heads of the light self-attention across behaviours")
    p.add_argument("--samp-num", type=int, default=None, help="max (positive, negative) pairs per user and behaviour per step")
    p.add_argument("--trn-num", type=int, default=None, help="users drawn per training epoch")
    p.add_argument("--mult", type=float, default=None, help="multiplier of the predicted scores")
    p.add_argument("--test-every", type=int, default=None, help="test after epochs 1, 1 + N, 1 + 2N, ... and after the last")
    p.add_argument("--graph-sample", type=int, default=None,
                   help="0: full graph; N > 0: each step runs on a sub-graph of N users and items per hop "
                        "around its users (the notebook's sampleLargeGraph; for graphs that do not fit)")
    p.add_argument("--test-users", type=int, default=0, help="evaluate only the first N test users (0: all)")
    p.add_argument("--fixed-test-negatives", action="store_true",
                   help="draw the 99 test negatives once from --seed (comparable across runs); "
                        "default, as the authors: redraw them at every test")
    p.add_argument("--seed", type=int, default=0, help="seed of numpy sampling and TF initialisation")
    p.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: all cores)")
    p.add_argument("--out", default=None, help="run folder (default mbgmn_tf/runs/<dataset>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
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
        return json.loads(p.read_text()) if p.is_file() else None

    def restore(self, sess, state: dict) -> None:
        self.saver.restore(sess, str(self.folder / state["prefix"]))


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

    def train_epoch(self, epoch: int) -> dict:
        args, m = self.args, self.model
        users = self.rng.permutation(self.data.n_users)[: args.trn_num]
        steps = int(np.ceil(len(users) / args.batch))
        totals = np.zeros(3)
        bar = tqdm(range(steps), desc=f"epoch {epoch} train", leave=False, disable=args.no_progress)
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
            totals += (pre, reg, loss)
            bar.set_postfix(loss=f"{loss:.2f}", reg=f"{reg:.2f}")
        pre, reg, loss = totals / steps
        lr = float(self.sess.run(m.learning_rate))
        return {"loss": loss, "pre_loss": pre, "reg_loss": reg, "lr": lr}

    def test_epoch(self, epoch: int) -> dict:
        """HR@10 / NDCG@10 of MB-GMN and of popularity on the same 1 + 99 candidate lists."""
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
        for st in tqdm(range(0, len(users), bs), desc=f"epoch {epoch} test", leave=False, disable=args.no_progress):
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
        return out


def _rank_metrics(scores: np.ndarray, candidates: np.ndarray) -> dict:
    """HR@10 / NDCG@10 with the positive in the last column. A negative that is the held-out
    item itself (the notebook can draw it) is ignored, as the notebook's ``calcRes`` does."""
    scores = np.array(scores, dtype=np.float64)
    dup = candidates[:, :-1] == candidates[:, -1:]
    scores[:, :-1][dup] = -np.inf
    return ranking_metrics(sampled_ranks(scores, pos_col=candidates.shape[1] - 1), ks=(TOP_K,), names=("hr", "ndcg"))


def load(args: argparse.Namespace) -> MultiBehaviourData:
    if args.data_dir:
        return load_folder(args.data_dir, BEHAVIOURS[args.dataset], args.dataset)
    return load_dataset(args.dataset)


def main(argv: Optional[list[str]] = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t_start = time.time()
    data = load(args)
    log.info(data.summary())
    rec = RunRecord(args.out, paper="mbgmn_tf", dataset=args.dataset, config=vars(args), resume=args.resume)
    trainer = Trainer(args, data)
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
        row = trainer.train_epoch(epoch)
        row["train_seconds"] = time.time() - t0
        row["outside_session_share"] = 1 - (trainer.sess_seconds - s0) / row["train_seconds"]
        if (epoch - 1) % args.test_every == 0 or epoch == args.epochs:
            t1 = time.time()
            row.update(trainer.test_epoch(epoch))
            row["test_seconds"] = time.time() - t1
        rec.log_epoch(epoch, row)
        ckpt.save(trainer.sess, epoch, {"rng": trainer.rng.bit_generator.state})
        log.info("epoch %d/%d %s", epoch, args.epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))
    tested = [h for h in rec.history if "hr@10" in h]
    if not tested:
        log.info("no test epoch in this run")
        return {}
    keys = ("hr@10", "ndcg@10")
    best = max(tested, key=lambda h: h["hr@10"])
    metrics = {"last": {k: tested[-1][k] for k in keys}, "best": {k: best[k] for k in keys},
               "popularity_last": {k: tested[-1][f"pop_{k}"] for k in keys}}
    table = rec.finish(metrics, published=PUBLISHED, reference=REFERENCE, epochs=tested[-1]["epoch"],
                       seed=args.seed, published_source=PUBLISHED_SOURCE, reference_source=REFERENCE_SOURCE,
                       extra={"best_epoch": best["epoch"], "last_epoch": tested[-1]["epoch"],
                              "fixed_test_negatives": args.fixed_test_negatives})
    print(table)
    trainer.sess.close()
    return metrics


if __name__ == "__main__":
    main()
