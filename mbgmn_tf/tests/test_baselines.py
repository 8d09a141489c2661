"""baselines.py: each baseline against a hand-worked answer, the protocol (main.py's test lists, the
authors' exclusion rule, pessimistic ties), the validation carve, and tuning that never reads test."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mbgmn_tf.baselines import (GramBlocks, ItemItem, Popularity, bpr_step, bpr_train,
                                carve_validation, cosine_similarity, ease_weights, evaluate_test, gram,
                                fixed_test_negatives, keep_top_k, knn_thresholds, main, weighted_sum)
from mbgmn_tf.data import MultiBehaviourData, load_folder, popularity_scores, sample_test_negatives
from mbgmn_tf.tests.conftest import TINY_BEHAVIOURS

R2 = 1 / np.sqrt(2)
# 3 users x 4 items; columns (1,1,0), (1,0,1), (0,1,1), (0,0,1): norms sqrt2, sqrt2, sqrt2, 1
X34 = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]], dtype=np.float32))
FAST = ["--no-progress", "--knn-k", "1", "0", "--knn-shrink", "0", "5", "--pv-weights", "0", "1",
        "--other-weights", "0", "1", "--ease-lambda", "1", "10", "--bpr-factors", "4", "--bpr-lr", "0.05",
        "--bpr-reg", "0.01", "--bpr-epochs", "1", "3", "--bpr-batch", "64", "--val-users", "0"]


def test_itemknn_cosine_scores_by_hand():
    s = cosine_similarity(gram(X34, X34), shrink=0)
    hand = np.array([[0, .5, .5, 0], [.5, 0, .5, R2], [.5, .5, 0, R2], [0, R2, R2, 0]])
    np.testing.assert_allclose(s, hand, rtol=1e-6)
    # shrink: x_0 . x_1 = 1 over |x_0||x_1| + 1 = 3; x_1 . x_3 = 1 over sqrt2 + 1
    s1 = cosine_similarity(gram(X34, X34), shrink=1)
    np.testing.assert_allclose([s1[0, 1], s1[1, 3]], [1 / 3, 1 / (np.sqrt(2) + 1)], rtol=1e-6)
    # user 0 holds items 0 and 1: all neighbours -> item 2: .5 + .5, item 3: 0 + 1/sqrt2
    full = ItemItem(X34, keep_top_k(s, None)).full(np.array([0]))[0]
    np.testing.assert_allclose(full, [.5, .5, 1, R2], rtol=1e-6)
    # k = 1: item 2's nearest neighbour is item 3 (1/sqrt2), so items 0 and 1 no longer vote for it;
    # item 3's column ties (items 1, 2 at 1/sqrt2): both kept
    top1 = keep_top_k(s, knn_thresholds(s, [1])[1])
    np.testing.assert_allclose(top1[:, 2], [0, 0, 0, R2], rtol=1e-6)
    np.testing.assert_allclose(top1[:, 3], [0, R2, R2, 0], rtol=1e-6)
    np.testing.assert_allclose(ItemItem(X34, top1).full(np.array([0]))[0][2:], [0, R2], rtol=1e-6)
    # the candidate gather equals the dense product, in any chunking
    cands = np.array([[3, 2, 0], [1, 3, 2], [0, 1, 2]])
    for budget in (1, 5, 10**6):
        scorer = ItemItem(X34, top1, budget=budget)
        dense = scorer.full(np.arange(3))
        np.testing.assert_allclose(scorer.candidates(np.arange(3), cands), np.take_along_axis(dense, cands, 1),
                                   rtol=1e-6)


def test_itemknn_all_weighted_sum_from_gram_blocks():
    pv = sp.csr_matrix(np.array([[1, 1], [1, 0]], dtype=np.float32))
    cart = sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32))
    buy = sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32))
    x = weighted_sum([pv, cart, buy], [0.5, 0.0, 1.0])  # [[1.5, .5], [.5, 0]]
    np.testing.assert_allclose(x.toarray(), [[1.5, .5], [.5, 0]])
    blocks = GramBlocks([pv, cart, buy])
    np.testing.assert_allclose(blocks.combine([0.5, 0.0, 1.0]), [[2.5, .75], [.75, .25]], rtol=1e-6)
    rng = np.random.default_rng(0)
    mats = [sp.csr_matrix((rng.random((7, 5)) < 0.4).astype(np.float32)) for _ in range(3)]
    w = [0.3, 0.7, 1.0]
    xw = weighted_sum(mats, w).toarray()
    np.testing.assert_allclose(GramBlocks(mats).combine(w), xw.T @ xw, rtol=1e-5)
    # reuse: only blocks touching the changed (purchase) matrix are recomputed
    new_buy = [*mats[:2], sp.csr_matrix(np.ones((7, 5), dtype=np.float32))]
    first = GramBlocks(mats)
    first.combine(w)
    second = GramBlocks(new_buy, reuse=first, changed=(2,))
    xw = weighted_sum(new_buy, w).toarray()
    np.testing.assert_allclose(second.combine(w), xw.T @ xw, rtol=1e-5)
    assert second.block(0, 1) is first.block(0, 1) and second.block(0, 2) is not first.block(0, 2)


def test_ease_closed_form_by_hand():
    # X = [[1,1],[1,0],[0,1]], lambda 1: min (1-b)^2 + b^2 + 1 + b^2 -> b = 1/3 (both directions)
    x = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float32))
    np.testing.assert_allclose(ease_weights(gram(x, x), 1.0), [[0, 1 / 3], [1 / 3, 0]], rtol=1e-5)
    rng = np.random.default_rng(1)
    xr = (rng.random((30, 6)) < 0.4).astype(np.float64)
    g = xr.T @ xr
    p = np.linalg.inv(g + 5 * np.eye(6))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0)
    np.testing.assert_allclose(ease_weights(g.astype(np.float32), 5.0), b, rtol=1e-4, atol=1e-6)


def test_bpr_step_by_hand_and_training_learns_two_groups():
    P = np.array([[1.0, 0.0]], dtype=np.float32)
    Q = np.zeros((2, 2), dtype=np.float32)
    b = np.zeros(2, dtype=np.float32)
    loss = bpr_step(P, Q, b, np.array([0]), np.array([0]), np.array([1]), lr=0.1, reg=0.5)
    # x = 0: loss ln 2 + 0.5 * |p|^2; sigmoid(-x) = 1/2
    assert np.isclose(loss, np.log(2) + 0.5)
    np.testing.assert_allclose(P, [[1 - 0.1 * 0.5, 0]], rtol=1e-6)
    np.testing.assert_allclose(Q, [[0.05, 0], [-0.05, 0]], rtol=1e-6)
    np.testing.assert_allclose(b, [0.05, -0.05], rtol=1e-6)
    # users 0-9 buy among items 0-4, users 10-19 among items 5-9; each misses one item of its group
    dense = np.zeros((20, 10), dtype=np.float32)
    for u in range(20):
        group = range(0, 5) if u < 10 else range(5, 10)
        dense[u, [i for i in group if i != group[u % 5]]] = 1
    model = bpr_train(sp.csr_matrix(dense), 8, 0.1, 1e-3, 60, 16, np.random.default_rng(0))
    scores = model.full(np.arange(20))
    missing = np.array([(range(0, 5) if u < 10 else range(5, 10))[u % 5] for u in range(20)])
    other = np.array([[i for i in range(10) if (i < 5) != (u < 10)] for u in range(20)])
    assert (scores[np.arange(20), missing] > np.take_along_axis(scores, other, 1).max(1)).mean() >= 0.9


def _hand_data() -> MultiBehaviourData:
    """3 users x 6 items; item purchases per column 2, 1, 1, 0, 0, 0; users 0 and 1 are test users."""
    buy = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    mats = [buy.copy(), buy.copy(), buy]
    return MultiBehaviourData("hand", ("pv", "cart", "buy"), mats, np.array([1, 3, -1]), np.array([0, 1]))


def test_popularity_sampled_and_full_ranking_by_hand():
    data = _hand_data()
    scorer = Popularity(popularity_scores(data))
    np.testing.assert_allclose(scorer.counts, [2, 1, 1, 0, 0, 0])
    # user 0 (target 1, count 1): negatives 2 (tie, counts against it), 3, 1 (the target again: ignored)
    # user 1 (target 3, count 0): negatives 4, 5 tie with it, 2 (count 1) is above: rank 3
    negatives = np.array([[2, 3, 1], [4, 5, 2]])
    out = evaluate_test(scorer, data, negatives)
    ranks_sampled = np.array([1, 3])
    np.testing.assert_allclose(out["hr@10"], 1.0)
    np.testing.assert_allclose(out["ndcg@10"], np.mean(1 / np.log2(ranks_sampled + 2)))
    # full: user 0's purchases 0 and 2 are excluded -> item 1 first; user 1's (0, 1) excluded ->
    # items 2 (count 1) above, 4 and 5 tie: rank 3
    np.testing.assert_allclose(out["full_ndcg@10"], np.mean([1.0, 1 / np.log2(3 + 2)]))
    out1 = evaluate_test(scorer, data, negatives, batch=1)
    assert out1 == out


def test_test_lists_are_mains_fixed_negatives(tiny_folder, tmp_path):
    from mbgmn_tf.main import Trainer, parse_args

    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    args = parse_args(["--data-dir", str(tiny_folder), "--fixed-test-negatives", "--seed", "3", "--threads", "1",
                       "--out", str(tmp_path / "run")])
    trainer = Trainer(args, data)
    try:
        np.testing.assert_array_equal(trainer.fixed_negatives, fixed_test_negatives(data, 3))
    finally:
        trainer.sess.close()
    assert not np.array_equal(fixed_test_negatives(data, 0), fixed_test_negatives(data, 3))


def test_validation_carve(tiny_folder):
    data = load_folder(tiny_folder, TINY_BEHAVIOURS)
    val = carve_validation(data.trn_mats, seed=0)
    buy = data.target
    assert set(val.users) == set(np.flatnonzero(np.diff(buy.indptr) >= 2))
    assert np.asarray(buy[val.users, val.items]).all()  # a training purchase ...
    assert not np.asarray(val.mats[-1][val.users, val.items]).any()  # ... held out of the purchases
    assert (buy - val.mats[-1]).nnz == len(val.users) and (buy - val.mats[-1]).min() == 0
    for a, b in zip(val.mats[:-1], data.trn_mats[:-1]):  # views and carts untouched
        assert (a != b).nnz == 0
    assert not np.asarray(val.mats[-1][np.repeat(val.users, 99), val.negatives.reshape(-1)]).any()
    np.testing.assert_array_equal(
        val.negatives, sample_test_negatives(val.users, val.mats[-1], 99, np.random.default_rng([0, 3])))
    small = carve_validation(data.trn_mats, seed=0, n_users=5)
    assert len(small.users) == 5 and (buy - small.mats[-1]).nnz == 5
    again = carve_validation(data.trn_mats, seed=0, n_users=5)
    np.testing.assert_array_equal(small.items, again.items)


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_tuning_never_reads_test(tiny_folder, tmp_path):
    """Poisoned test targets (random items) change the test numbers, never the tuning."""
    poisoned = tmp_path / "poisoned"
    shutil.copytree(tiny_folder, poisoned)
    with open(tiny_folder / "tst_int", "rb") as f:
        tst = pickle.load(f)
    rng = np.random.default_rng(7)
    with open(poisoned / "tst_int", "wb") as f:
        pickle.dump([None if t is None else int(rng.integers(130)) for t in tst], f)
    assert main(["--data-dir", str(tiny_folder), "--out", str(tmp_path / "a"), *FAST]) == 0
    assert main(["--data-dir", str(poisoned), "--out", str(tmp_path / "b"), *FAST]) == 0
    a, b = _summary(tmp_path / "a"), _summary(tmp_path / "b")
    assert a["chosen"] == b["chosen"] and a["tuning"] == b["tuning"]
    assert set(a["chosen"]) == {"popularity", "itemknn", "itemknn_all", "ease", "bpr"}
    assert a["headline"] != b["headline"]


def test_cli_record_resume_and_help(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data-dir", str(tiny_folder), "--out", str(out), "--baselines", "popularity", *FAST]) == 0
    first = _summary(out)
    assert first["selection"] == "tuned on validation carved from training" and first["setting"] == ""
    assert set(first["headline"]) == {f"popularity/{m}" for m in ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10")}
    for k in ("grids", "chosen", "tuning", "validation", "protocol"):
        assert k in first
    assert main(["--data-dir", str(tiny_folder), "--out", str(out), "--baselines", "ease", "--resume", *FAST]) == 0
    second = _summary(out)
    assert set(second["chosen"]) == {"popularity", "ease"}
    assert second["headline"]["popularity/hr@10"] == first["headline"]["popularity/hr@10"]
    assert second["seconds"]["popularity"] == first["seconds"]["popularity"]  # kept, not rerun
    # itemknn_all brings in itemknn, whose choice its first stage uses
    assert main(["--data-dir", str(tiny_folder), "--out", str(out), "--baselines", "itemknn_all", "--resume",
                 *FAST]) == 0
    third = _summary(out)
    knn = third["chosen"]["itemknn"]
    stage1 = [r for r in third["tuning"]["itemknn_all"] if r["stage"] == 1]
    assert {(r["shrink"], r["k"]) for r in stage1} == {(knn["shrink"], knn["k"])} and len(stage1) == 4
    # the run folder rule: refuses a second fresh run
    cmd = [sys.executable, "-m", "mbgmn_tf.baselines"]
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([*cmd, "--data-dir", str(tiny_folder), "--out", str(out), *FAST], cwd=root,
                       capture_output=True, text=True)
    assert r.returncode == 5 and "--resume" in r.stderr
    r = subprocess.run([*cmd, "--knn-k", "-1"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 2 and "--knn-k" in r.stderr
    r = subprocess.run([*cmd, "--help"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0
    for flag in ("--baselines", "--val-users", "--test-seed", "--ease-lambda", "--bpr-epochs", "--overwrite"):
        assert flag in r.stdout
    r = subprocess.run([sys.executable, "-c", "import sys, mbgmn_tf.baselines; "
                        "assert 'tensorflow' not in sys.modules"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
