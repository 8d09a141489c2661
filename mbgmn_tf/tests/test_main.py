"""main.py: end-to-end runs on the tiny dataset (record, checkpoints, --resume, sub-graphs) and a
short real Beibei run that must beat a popularity ranking on the same candidate lists."""

from __future__ import annotations

import json

import numpy as np

import scipy.sparse as sp

from common.metrics import full_ranks, ranking_metrics
from common.testing import need_file
from mbgmn_tf.baselines import full_test_ranks
from mbgmn_tf.main import Trainer, _rank_metrics, load, parse_args, run as main

TINY = ["--trn-num", "60", "--batch", "30", "--samp-num", "5", "--test-every", "2", "--no-progress", "--threads", "2"]


def _history(out):
    return [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_then_resume(tiny_folder, tmp_path):
    out = tmp_path / "run"
    main(["--data-dir", str(tiny_folder), "--epochs", "2", "--out", str(out), *TINY])
    for f in ("config.json", "metrics.jsonl", "summary.json", "comparison.md", "ckpt/latest.json"):
        assert (out / f).is_file(), f
    assert list((out / "tb").iterdir())
    hist = _history(out)
    assert [h["epoch"] for h in hist] == [1, 2] and "hr@10" in hist[0] and "pop_hr@10" in hist[1]
    assert 0 <= hist[0]["hr@10"] <= 1 and hist[0]["lr"] > 0
    state = json.loads((out / "ckpt/latest.json").read_text())
    assert state["epoch"] == 2 and sorted(p.name for p in (out / "ckpt").glob("model-ep*"))[0].startswith("model-ep2.")
    main(["--data-dir", str(tiny_folder), "--epochs", "3", "--out", str(out), "--resume", *TINY])
    hist2 = _history(out)
    assert [h["epoch"] for h in hist2] == [1, 2, 3]
    assert hist2[:2] == hist  # earlier epochs kept, not retrained
    # staircase decay continued from the restored global step: 2 steps per epoch, decay every 2
    assert np.isclose(hist2[2]["lr"], 1e-3 * 0.96 ** 3, rtol=1e-4)
    from mbgmn_tf.plot import plot_run

    assert [r["epoch"] for r in plot_run(out, tmp_path / "curve.png")] == [1, 2, 3]  # 2: last of the first run
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_tiny_run_on_sampled_subgraphs(tiny_folder, tmp_path):
    metrics = main(["--data-dir", str(tiny_folder), "--epochs", "1", "--graph-sample", "15",
                    "--fixed-test-negatives", "--out", str(tmp_path / "sub"), *TINY])
    assert 0 <= metrics["last"]["hr@10"] <= 1


def test_rank_metrics_ignore_a_negative_that_is_the_positive():
    cands = np.array([[5, 6, 7, 9], [1, 2, 3, 4]])
    scores = np.array([[0.1, 0.9, 0.2, 0.5], [0.4, 0.3, 0.2, 0.1]])
    # row 0: item 9 ranks 2nd (6 above it); row 1: item 4 ranks last
    m = _rank_metrics(scores, cands)
    assert np.isclose(m["hr@10"], 1.0) and np.isclose(m["ndcg@10"], (1 / np.log2(3) + 1 / np.log2(5)) / 2)
    dup = np.array([[9, 6, 7, 9]])  # the held-out item drawn as a negative with the same score
    assert np.isclose(_rank_metrics(np.array([[0.5, 0.9, 0.2, 0.5]]), dup)["ndcg@10"], 1 / np.log2(3))


def test_full_test_ranks_mask_purchases_on_a_hand_made_matrix():
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.2, 0.2, 0.8, 0.3]], dtype=np.float32)
    purchases = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0]]))
    targets = np.array([2, 1])
    # row 0: the purchased item 0 (0.9) is not a candidate: the target (0.7) ranks first;
    # row 1: item 3 (0.3) above, item 0 ties (0.2, counted against the target), item 2 masked
    ranks = full_test_ranks(scores.copy(), purchases, targets)
    assert ranks.tolist() == [0, 2]
    masked = scores.copy()
    masked[0, 0] = masked[1, 2] = -np.inf
    assert full_ranks(masked, targets).tolist() == [0, 2] and full_ranks(scores, targets).tolist() == [1, 3]
    assert np.isclose(ranking_metrics(ranks, ks=(10,), names=("hr", "ndcg"))["ndcg@10"], (1 + 1 / np.log2(4)) / 2)


def test_model_full_ranking_masks_training_purchases(tiny_folder, tmp_path):
    """Trainer.full_ranking (chunks of 2 users) equals scoring every (test user, item) with
    ``target_scores``, masking the training purchases by hand and ranking with common.metrics."""
    args = parse_args(["--data-dir", str(tiny_folder), "--eval", "both", "--full-rows", "300",
                       "--out", str(tmp_path / "x"), *TINY])
    data = load(args)
    tr = Trainer(args, data)
    m, users, n = tr.model, tr.test_users(), data.n_items
    emb = tr.sess.run(m.test_embeddings)
    got = tr.full_ranking(1, emb)
    scores = tr.sess.run(m.target_scores, m.score_feed(np.repeat(users, n).astype(np.int32),
                                                       np.tile(np.arange(n, dtype=np.int32), len(users)), emb))
    scores = scores.reshape(len(users), n).astype(np.float64)
    unmasked = full_ranks(scores, data.tst_int[users])
    for row, u in enumerate(users):
        scores[row, data.target[u].indices] = -np.inf
    ranks = full_ranks(scores, data.tst_int[users])
    want = ranking_metrics(ranks, ks=(10,), names=("hr", "ndcg"))
    assert np.isclose(got["full_hr@10"], want["hr@10"]) and np.isclose(got["full_ndcg@10"], want["ndcg@10"])
    assert (unmasked >= ranks).all() and (unmasked > ranks).any()  # purchases outranked some targets
    pop = np.tile(tr.popularity, (len(users), 1))
    pop[np.isinf(scores)] = -np.inf
    want_pop = ranking_metrics(full_ranks(pop, data.tst_int[users]), ks=(10,), names=("hr", "ndcg"))
    assert np.isclose(got["pop_full_hr@10"], want_pop["hr@10"]) and np.isclose(got["pop_full_ndcg@10"], want_pop["ndcg@10"])
    tr.sess.close()


def test_tiny_run_with_full_ranking(tiny_folder, tmp_path):
    out = tmp_path / "both"
    metrics = main(["--data-dir", str(tiny_folder), "--epochs", "2", "--eval", "both", "--out", str(out), *TINY])
    hist = _history(out)
    assert all(0 <= h["full_hr@10"] <= 1 and 0 <= h["full_ndcg@10"] <= 1 for h in hist)
    assert {"full_hr@10", "full_ndcg@10", "pop_full_hr@10", "pop_full_ndcg@10"} <= set(hist[0]) and "full_hr@10" in hist[1]
    assert metrics["full_last"]["full_hr@10"] == hist[-1]["full_hr@10"]
    summary = json.loads((out / "summary.json").read_text())
    assert "full_last" in json.dumps(summary)
    sampled = main(["--data-dir", str(tiny_folder), "--epochs", "2", "--out", str(tmp_path / "s"), *TINY])
    assert "full_last" not in sampled and "full_hr@10" not in _history(tmp_path / "s")[-1]
    assert sampled["last"] == metrics["last"]  # --eval does not change the sampled numbers


def test_short_real_beibei_run_beats_popularity(tmp_path):
    """160 steps of 64 users at the authors' learning rate (1e-3, 20 pairs per user and
    behaviour), all 10,000 test users with fixed negatives: HR@10 and NDCG@10 must beat
    purchase popularity on the same 100-candidate lists. Popularity is strong on Beibei (HR@10
    0.603 on these lists); exploratory runs of this configuration gave 0.6224 / 0.3591 (seed 0)
    and 0.6208 / 0.3569 (seed 1) against 0.6030 / 0.3402 and 0.6058 / 0.3390, while 160 steps of
    32 users with 10 pairs at lr 3e-3 or 1e-2 stayed below it (see README, "Tests")."""
    for f in ("trn_pv", "trn_cart", "trn_buy", "tst_int"):
        need_file("beibei", f)
    metrics = main(["--dataset", "beibei", "--epochs", "1", "--trn-num", "10240", "--batch", "64",
                    "--samp-num", "20", "--lr", "1e-3", "--test-users", "0", "--fixed-test-negatives",
                    "--no-progress", "--out", str(tmp_path / "beibei")])
    print(metrics)
    ours, pop = metrics["last"], metrics["popularity_last"]
    assert ours["hr@10"] > pop["hr@10"]
    assert ours["ndcg@10"] > pop["ndcg@10"]
