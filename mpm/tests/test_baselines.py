"""mpm.baselines: each baseline on a hand-made matrix with an answer worked by hand, the validation
case carved from training, evaluation (sampled and full ranking), and tuning that never reads test
(poisoned test cases leave the chosen hyperparameters unchanged)."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from common.testing import need_file
from mpm import baselines
from mpm.baselines import (bpr, cosine_similarity, ease, ease_weights, evaluate, itemknn, keep_top_k, main, popularity,
                           training_matrix, validation_split)
from mpm.data import build

# 3 users x 4 items. Item columns: i0 = (1,1,1), i1 = (1,0,1), i2 = (0,1,1), i3 = (0,0,1);
# norms sqrt3, sqrt2, sqrt2, 1; co-counts i0.i1 = i0.i2 = 2, every other pair 1.
X34 = sp.csr_matrix(np.array([[1, 1, 0, 0],
                              [1, 0, 1, 0],
                              [1, 1, 1, 1]], dtype=np.float64))
R6, R3, R2 = math.sqrt(6), math.sqrt(3), math.sqrt(2)


def test_popularity_counts_users_per_item():
    np.testing.assert_array_equal(popularity(X34)(np.array([0, 2])), [[3, 2, 2, 1], [3, 2, 2, 1]])


def test_itemknn_cosine_by_hand():
    s = cosine_similarity(X34)
    by_hand = np.array([[0, 2 / R6, 2 / R6, 1 / R3],
                        [2 / R6, 0, 1 / 2, 1 / R2],
                        [2 / R6, 1 / 2, 0, 1 / R2],
                        [1 / R3, 1 / R2, 1 / R2, 0]])
    np.testing.assert_allclose(s, by_hand)
    # shrinkage adds to the denominator: s01 = 2 / (sqrt6 + 10)
    assert cosine_similarity(X34, 10.0)[0, 1] == pytest.approx(2 / (R6 + 10))
    # every neighbour kept: user 0 (items 0, 1) scores item j with s0j + s1j
    np.testing.assert_allclose(itemknn(X34, k=3, shrink=0.0)(np.array([0]))[0],
                               [2 / R6, 2 / R6, 2 / R6 + 1 / 2, 1 / R3 + 1 / R2])
    # k = 1, one neighbour per column: col 0 -> item 1 (ties with item 2: lower id), col 1 -> item 0,
    # col 2 -> item 0, col 3 -> item 1 (ties with item 2)
    w = keep_top_k(s, 1)
    assert [tuple(np.flatnonzero(w[:, j])) for j in range(4)] == [(1,), (0,), (0,), (1,)]
    np.testing.assert_allclose(itemknn(X34, k=1, shrink=0.0)(np.array([0]))[0], [2 / R6, 2 / R6, 2 / R6, 1 / R2])


def test_ease_closed_form_by_hand():
    # Two items: with diag(B) = 0, B_01 = argmin |x_1 - x_0 b|^2 + lam b^2 = (x_0.x_1) / (x_0.x_0 + lam).
    x = sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 1]], dtype=np.float64))  # x0.x0 = 3, x1.x1 = 2, x0.x1 = 2
    score = ease(x, lam=1.0)
    np.testing.assert_allclose(score(np.array([0, 1])), [[2 / 3, 2 / 4], [0, 2 / 4]])
    # three items: each column of B solves its own ridge regression on the other columns
    lam = 2.0
    g = (X34.T @ X34).toarray()
    b = ease_weights(X34, lam)
    np.testing.assert_allclose(ease(X34, lam)(np.arange(3)), X34.toarray() @ b)
    for j in range(4):
        rest = [i for i in range(4) if i != j]
        ridge = np.linalg.solve(g[np.ix_(rest, rest)] + lam * np.eye(3), g[rest, j])
        np.testing.assert_allclose(b[rest, j], ridge, atol=1e-10)
        assert abs(b[j, j]) < 1e-10


def test_bpr_first_adam_step_by_hand():
    # Zero factors (init_std 0) get zero gradients; one batch of 2 triples (u, 0, j), j in {1, 2}:
    # d loss / d b_0 = -sigmoid(0) = -0.5 < 0, so Adam's first step raises b_0 by lr (its step is
    # lr * g / (|g| + eps)); items drawn as j go down by lr, an item never drawn stays at 0.
    x = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0]], dtype=np.float64))
    lr = 0.05
    scores = bpr(x, factors=4, reg=0.0, lr=lr, epochs=1, seed=0, batch_size=2, init_std=0.0)(np.array([0, 1]))
    np.testing.assert_allclose(scores[0], scores[1])
    assert scores[0, 0] == pytest.approx(lr, rel=1e-6)
    assert set(np.round(scores[0, 1:] / lr, 6)) <= {-1.0, 0.0} and scores[0, 1:].min() == pytest.approx(-lr)


def test_bpr_learns_two_groups_and_calls_checkpoints():
    # users 0-9 like items 0-4, users 10-19 items 5-9; each user lacks one item of its group
    rows = [(u, i) for u in range(20) for i in (range(5) if u < 10 else range(5, 10)) if i != u % 5 + 5 * (u >= 10)]
    x = sp.csr_matrix((np.ones(len(rows)), tuple(np.array(rows).T)), shape=(20, 10))
    seen = []
    score = bpr(x, 8, 1e-4, 0.05, 30, seed=1, batch_size=16, checkpoints=(10, 30),
                on_checkpoint=lambda e, s: seen.append(e))
    assert seen == [10, 30]
    s = score(np.arange(20))
    held_out = s[np.arange(20), np.arange(20) % 5 + 5 * (np.arange(20) >= 10)]
    other_group = np.where(np.arange(20)[:, None] < 10, s[:, 5:].max(1)[:, None], s[:, :5].max(1)[:, None])[:, 0]
    assert (held_out > other_group).all()


def ratings(n_users: int = 30, n_items: int = 25, seed: int = 0) -> pd.DataFrame:
    """Random ratings in file order: each user 8-14 distinct items at distinct times."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = rng.integers(8, 15)
        for t, i in enumerate(rng.choice(n_items, n, replace=False)):
            rows.append((u + 1, int(i) + 1, 1000 * u + t))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_validation_case_is_the_last_training_target_and_test_is_never_in_x():
    data = build(ratings(), history_size=3, negatives=5, min_ratings=5)
    x = training_matrix(data).toarray()
    assert not x[data.test_users, data.test_items].any()
    x_fit, vu, vi = validation_split(data)
    np.testing.assert_array_equal(vu, np.arange(data.nb_users))
    # the rows come latest target first within each user (mpm.data): the first row of a user is its last target
    first = np.unique(data.train_users, return_index=True)[1]
    np.testing.assert_array_equal(vi, data.train_items[first])
    # the last target is the test case's last history item
    np.testing.assert_array_equal(vi, data.test_history[:, -1])
    x_fit = x_fit.toarray()
    assert not x_fit[vu, vi].any()
    assert (x - x_fit).sum() == len(vu) and ((x - x_fit) >= 0).all()
    # every rating but the test item is a training interaction
    keys = np.unique(np.flatnonzero(x.reshape(-1)))
    np.testing.assert_array_equal(keys, np.setdiff1d(data.rated, data.test_users * data.nb_items + data.test_items))


def test_evaluate_sampled_and_full_ranking_by_hand():
    x = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]], dtype=np.float64))
    table = np.array([10.0, 1.0, 2.0, 3.0, 4.0, 3.0])
    score = lambda users: np.repeat(table[None], len(users), axis=0)  # noqa: E731
    # user 0: target 5 among (5, 1, 2): rank 0; all items, item 0 masked: 4 (4.0) and 3 (3.0, a tie) above -> rank 2
    # user 1: target 1 among (1, 2, 4): rank 2; all items, item 3 masked: 0, 2, 4, 5 above -> rank 4
    m = evaluate(score, x, np.array([0, 1]), np.array([5, 1]), np.array([[1, 2], [2, 4]]), k=3, batch_users=1)
    assert m["hr@3"] == 1.0 and m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert m["full_hr@3"] == 0.5 and m["full_ndcg@3"] == pytest.approx(1 / math.log2(4) / 2)


def poisoned(data, seed: int = 123):
    """The same data with random test items, histories and negatives."""
    rng = np.random.default_rng(seed)
    return dataclasses.replace(data, test_items=rng.integers(0, data.nb_items, len(data.test_users)),
                               test_history=rng.integers(0, data.nb_items, data.test_history.shape),
                               test_negatives=rng.integers(0, data.nb_items, data.test_negatives.shape))


def test_tuning_never_reads_test(tmp_path, monkeypatch):
    clean = build(ratings(), history_size=3, negatives=5, min_ratings=5)
    dirty = poisoned(clean)
    assert (dirty.test_items != clean.test_items).any()
    args = ["--knn-k", "2", "5", "20", "--knn-shrink", "0", "5", "--ease-lambda", "1", "10", "100",
            "--bpr-factors", "4", "8", "--bpr-reg", "0", "0.01", "--bpr-lr", "0.01", "0.05", "--bpr-epochs", "1", "3",
            "--bpr-batch-size", "32", "--no-progress", "--select", "ndcg"]
    summaries = []
    for name, data in (("clean", clean), ("dirty", dirty)):
        monkeypatch.setattr(baselines, "load", lambda *a, _d=data, **kw: _d)
        assert main(args + ["--out", str(tmp_path / name)]) == 0
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    a, b = summaries
    assert a["chosen"] == b["chosen"] and a["tuning"] == b["tuning"]
    assert a["headline"] != b["headline"]  # the poison did reach the test evaluation
    assert set(a["chosen"]) == set(baselines.BASELINES)
    assert a["selection"] == "tuned on validation carved from training" and a["setting"] == "baselines"
    assert set(a["headline"]) == {f"{n}/{m}" for n in baselines.BASELINES
                                  for m in ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10")}
    assert len(a["grids"]["itemknn"]) == 6 and len(a["tuning"]["bpr"]) == 16


def test_resume_skips_finished_baselines(tmp_path, monkeypatch):
    data = build(ratings(), history_size=3, negatives=5, min_ratings=5)
    monkeypatch.setattr(baselines, "load", lambda *a, **kw: data)
    out = str(tmp_path / "run")
    assert main(["--baselines", "popularity", "ease", "--ease-lambda", "5", "--no-progress", "--out", out]) == 0
    calls = []
    monkeypatch.setattr(baselines, "ease", lambda *a: calls.append(a) or popularity(a[0]))
    assert main(["--baselines", "popularity", "ease", "itemknn", "--knn-k", "3", "--knn-shrink", "0",
                 "--ease-lambda", "5", "--no-progress", "--out", out, "--resume"]) == 0
    assert calls == []
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(s["chosen"]) == {"popularity", "ease", "itemknn"} and s["chosen"]["ease"] == {"lambda": 5.0}
    # a changed grid runs that baseline again
    monkeypatch.undo()
    monkeypatch.setattr(baselines, "load", lambda *a, **kw: data)
    assert main(["--baselines", "ease", "--ease-lambda", "5", "50", "--no-progress", "--out", out, "--resume"]) == 0
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [g["lambda"] for g in s["grids"]["ease"]] == [5.0, 50.0] and set(s["chosen"]) == {"popularity", "ease",
                                                                                               "itemknn"}
    with pytest.raises(Exception, match="already holds a run"):
        main(["--baselines", "popularity", "--no-progress", "--out", out])


def test_popularity_on_ml100k(tmp_path):
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    assert main(["--dataset", "ml-100k", "--baselines", "popularity", "--no-progress", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["data"]["train_entries"] == 90_570 and s["test_items_in_training"] == 0
    assert s["headline"]["popularity/hr@10"] == pytest.approx(0.4104, abs=1e-4)
    assert s["headline"]["popularity/full_hr@10"] == pytest.approx(0.0785, abs=1e-4)
