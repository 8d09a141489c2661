"""agnn.baselines on hand-made data with answers worked by hand, and tuning that never reads the test file."""

import json

import numpy as np
import pytest

from agnn import baselines as bl
from agnn.baselines import Setting

VOCAB = {"gender": 2, "age": 7, "occupation": 21, "genre": 19, "director": 5, "writer": 5, "star": 5, "country": 4}


def setting(mode, train, test, user_attr=None, item_attr=None, n_users=None, n_items=None):
    train, test = np.asarray(train, float), np.asarray(test, float)
    n_users = n_users or int(max(train[:, 0].max(), test[:, 0].max())) + 1
    n_items = n_items or int(max(train[:, 1].max(), test[:, 1].max())) + 1
    if user_attr is None:
        user_attr = np.zeros((n_users, 3), np.int64)
    if item_attr is None:
        item_attr = np.zeros((n_items, 23), np.int64)
    return Setting(mode, n_users, n_items, np.asarray(user_attr), np.asarray(item_attr), VOCAB, train, test)


def rows_of(R):
    """[[user, item, rating]] of the non-zero entries of a small dense matrix."""
    u, i = np.nonzero(R)
    return np.stack([u, i, np.asarray(R)[u, i]], axis=1).astype(float)


# ----------------------------------------------------------------------------- bias model
def test_bias_additive_matrix_is_fitted_exactly_and_cold_user_gets_zero_bias():
    # r = 3 + b_u + b_i with b_u = (+1, -1), b_i = (+0.5, -0.5); user 2 and item 2 have no rating.
    train = [[0, 0, 4.5], [0, 1, 3.5], [1, 0, 2.5], [1, 1, 1.5]]
    mu, b_u, b_i = bl.fit_biases(np.asarray(train), 3, 3, reg_user=0.0, reg_item=0.0)
    assert mu == 3.0
    np.testing.assert_allclose(b_u, [1, -1, 0], atol=1e-12)
    np.testing.assert_allclose(b_i, [0.5, -0.5, 0], atol=1e-12)
    pred = bl.bias_predict(mu, b_u, b_i, np.array([[2, 0], [0, 2], [2, 2]]))
    np.testing.assert_allclose(pred, [3.5, 4.0, 3.0])  # cold user: mu + b_i; unseen item: mu + b_u


def test_bias_regularised_by_hand():
    # One user rates 5 and 3 (mu = 4), reg 1 on both sides: b_i0 = (1 - b_u) / 2, b_i1 = (-1 - b_u) / 2,
    # b_u = ((1 - b_i0) + (-1 - b_i1)) / 3 = b_u / 3, so b_u = 0 and b_i = (0.5, -0.5).
    mu, b_u, b_i = bl.fit_biases(np.array([[0, 0, 5.0], [0, 1, 3.0]]), 2, 2, reg_user=1.0, reg_item=1.0)
    np.testing.assert_allclose(b_u, [0, 0], atol=1e-9)
    np.testing.assert_allclose(b_i, [0.5, -0.5], atol=1e-9)
    assert bl.bias_predict(mu, b_u, b_i, np.array([[1, 0]]))[0] == pytest.approx(4.5)  # cold user 1


def test_bias_solution_is_the_ridge_stationary_point():
    rng = np.random.default_rng(0)
    rows = np.array([[u, i, rng.integers(1, 6)] for u in range(6) for i in range(7) if rng.random() < 0.6], float)
    mu, b_u, b_i = bl.fit_biases(rows, 8, 9, reg_user=2.0, reg_item=3.0)
    u, i, r = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]
    np.testing.assert_allclose(b_u * (2.0 + np.bincount(u, minlength=8)),
                               np.bincount(u, r - mu - b_i[i], minlength=8), atol=1e-8)
    np.testing.assert_allclose(b_i * (3.0 + np.bincount(i, minlength=9)),
                               np.bincount(i, r - mu - b_u[u], minlength=9), atol=1e-8)
    assert b_u[6] == b_u[7] == 0 and b_i[7] == b_i[8] == 0  # no rating: bias 0


# ----------------------------------------------------------------------------- kNN
R_WARM = np.array([[2, 4, 0, 0],
                   [2, 0, 4, 0],
                   [0, 4, 4, 2]], float)


def test_item_knn_cosine_scores_of_a_3x4_matrix():
    # Item columns (2,2,0), (4,0,4), (0,4,4), (0,0,2): cos(0,1) = 8/16, cos(0,2) = 8/16, cos(0,3) = 0,
    # cos(1,2) = 16/32, cos(1,3) = cos(2,3) = 8/(4*sqrt(2)*2) = 1/sqrt(2).
    S = bl.cosine(R_WARM.T)
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(S, [[1, .5, .5, 0], [.5, 1, .5, h], [.5, .5, 1, h], [0, h, h, 1]], atol=1e-12)
    # user 0 (item 0: 2, item 1: 4) on item 3: neighbours item 1 (sim 1/sqrt2) then item 0 (sim 0).
    # user 1 (item 0: 2, item 2: 4) on item 1: items 0 and 2 tie at 0.5, so k=1 keeps both.
    s = setting("warm", rows_of(R_WARM), [[0, 3, 1], [1, 1, 1]])
    preds, missing = bl.knn_predictions("warm", s, s.train, s.test, [1, 2])
    assert missing == 0
    np.testing.assert_allclose(preds[(1, "uniform")], [4, 3])
    np.testing.assert_allclose(preds[(1, "similarity")], [4, 3])
    np.testing.assert_allclose(preds[(2, "uniform")], [3, 3])        # (2 + 4) / 2
    np.testing.assert_allclose(preds[(2, "similarity")], [4, 3])     # (0 * 2 + h * 4) / h


def test_user_attribute_knn_for_a_cold_user():
    # Cold user 3 = (gender 0, age 2, occupation 5). Training users who rated item 0: user 0 identical
    # (cosine 3/3, rating 5), user 1 shares gender and age (2/3, rating 3), user 2 shares nothing (0, rating 1).
    user_attr = [[0, 2, 5], [0, 2, 7], [1, 4, 9], [0, 2, 5]]
    s = setting("ucs", [[0, 0, 5], [1, 0, 3], [2, 0, 1], [2, 1, 4]], [[3, 0, 1], [3, 2, 1]], user_attr=user_attr)
    np.testing.assert_allclose(bl.cosine(bl.user_attribute_matrix(s))[3], [1, 2 / 3, 0, 1])
    preds, missing = bl.knn_predictions("ucs", s, s.train, s.test, [1, 2, 3, 50])
    assert missing == 1  # item 2 has no rating in training: the global mean (13 / 4)
    assert [preds[(k, "uniform")][0] for k in (1, 2, 3, 50)] == pytest.approx([5, 4, 3, 3])
    assert [preds[(k, "similarity")][0] for k in (1, 2, 3)] == pytest.approx([5, 4.2, 4.2])  # (5 + 2) / (5/3)
    assert preds[(1, "uniform")][1] == pytest.approx(13 / 4)


def test_item_attribute_knn_for_a_cold_item():
    # Cold item 3 has genre 1, director 2. User 0 rated item 0 (genre 1, director 2: cosine 1) 4,
    # item 1 (genre 1 only: 1/sqrt2) 2, item 2 (country 3: 0) 5.
    item_attr = np.zeros((4, 23), np.int64)
    item_attr[0, [0, 6]] = [1, 2]
    item_attr[1, 0] = 1
    item_attr[2, 15] = 3
    item_attr[3, [0, 6]] = [1, 2]
    s = setting("ics", [[0, 0, 4], [0, 1, 2], [0, 2, 5], [1, 1, 3]], [[0, 3, 1]], item_attr=item_attr)
    preds, _ = bl.knn_predictions("ics", s, s.train, s.test, [1, 2, 3])
    h = 1 / np.sqrt(2)
    assert [preds[(k, "uniform")][0] for k in (1, 2, 3)] == pytest.approx([4, 3, 11 / 3])
    assert preds[(2, "similarity")][0] == pytest.approx((4 + 2 * h) / (1 + h))


def test_attribute_matrix_keeps_user_zero_ids_and_drops_empty_item_slots():
    s = setting("ucs", [[0, 0, 1]], [[0, 0, 1]], user_attr=[[0, 0, 0]])
    assert bl.user_attribute_matrix(s).toarray()[0].nonzero()[0].tolist() == [0, 2, 9]  # offsets 0, 2, 9
    assert bl.item_attribute_matrix(s).nnz == 0


# ----------------------------------------------------------------------------- ridge
def test_ridge_by_hand():
    # Users differ only in gender (0 rates 5, 1 rates 3; mu = 4); the item has no attribute. Columns
    # (gender 0, gender 1, age 2, occupation 5): w = (c, -c, 0, 0) solves (X'X + a I) w = X'(r - mu)
    # = (1, -1, 0, 0) with c = 1 / (1 + a); a = 1: predictions 4.5 and 3.5.
    s = setting("warm", [[0, 0, 5], [1, 0, 3]], [[0, 0, 5]], user_attr=[[0, 2, 5], [1, 2, 5]])
    X = bl.ridge_features(s, s.train)
    mu, w = bl.fit_ridge(X, s.train[:, 2], alpha=1.0)
    np.testing.assert_allclose(mu + X @ w, [4.5, 3.5], atol=1e-9)


def test_ridge_equals_dense_closed_form():
    s = synthetic("warm", seed=1)
    X = bl.ridge_features(s, s.train)
    mu, w = bl.fit_ridge(X, s.train[:, 2], alpha=3.0)
    D = X.toarray()
    used = D.any(axis=0)
    ref = np.linalg.solve(D[:, used].T @ D[:, used] + 3.0 * np.eye(used.sum()), D[:, used].T @ (s.train[:, 2] - mu))
    np.testing.assert_allclose(w[used], ref, atol=1e-7)
    assert not w[~used].any()


# ----------------------------------------------------------------------------- tuning never reads the test file
def synthetic(mode, seed=0, n_users=40, n_items=30):
    """Random attributes; ratings = rounded bias + attribute effect + noise; the test side cold like AGNN's."""
    rng = np.random.default_rng(seed)
    user_attr = np.stack([rng.integers(0, 2, n_users), rng.integers(0, 7, n_users), rng.integers(0, 21, n_users)], 1)
    item_attr = np.zeros((n_items, 23), np.int64)
    item_attr[:, 0] = rng.integers(1, 19, n_items)
    item_attr[:, 6] = rng.integers(0, 5, n_items)
    item_attr[:, 15] = rng.integers(1, 4, n_items)
    b_u, b_i = rng.normal(0, 0.5, n_users), rng.normal(0, 0.7, n_items)
    rows = np.array([[u, i, np.clip(np.rint(3.5 + b_u[u] + b_i[i] + 0.3 * user_attr[u, 0] * (item_attr[i, 0] % 2)
                                            + rng.normal(0, 0.6)), 1, 5)]
                     for u in range(n_users) for i in range(n_items) if rng.random() < 0.5], float)
    if mode == "warm":
        is_test = rng.random(len(rows)) < 0.2
    else:
        col = 0 if mode == "ucs" else 1
        is_test = np.isin(rows[:, col], rng.choice(n_users if mode == "ucs" else n_items, 8, replace=False))
    return Setting(mode, n_users, n_items, user_attr, item_attr, VOCAB, rows[~is_test], rows[is_test])


GRIDS = dict(bias_regs=(0.0, 1.0, 10.0, 100.0), knn_ks=(1, 3, 10, 100), ridge_alphas=(0.1, 10.0, 1000.0))


@pytest.mark.parametrize("mode", ["ucs", "ics", "warm"])
def test_poisoned_test_ratings_do_not_move_the_chosen_values(mode):
    s = synthetic(mode)
    clean = bl.tune_and_test(s, **GRIDS)
    rng = np.random.default_rng(7)
    poisoned_test = s.test.copy()
    poisoned_test[:, 2] = rng.integers(1, 6, len(s.test))                       # random ratings
    poisoned_test[:, 1 if mode == "ucs" else 0] = rng.permutation(poisoned_test[:, 1 if mode == "ucs" else 0])
    poisoned = bl.tune_and_test(Setting(**{**s.__dict__, "test": poisoned_test}), **GRIDS)
    assert poisoned["chosen"] == clean["chosen"]
    assert poisoned["grids"] == clean["grids"] and poisoned["tuning"] == clean["tuning"]
    assert poisoned["test"]["bias"] != clean["test"]["bias"]  # the poison did reach the test scores
    # the cold side is really cold in the tuning split, like the test file
    fit, held = bl.tuning_split(s.train, mode, 0.2, np.random.default_rng(0))
    if mode != "warm":
        col = 0 if mode == "ucs" else 1
        assert not set(fit[:, col]) & set(held[:, col])
    assert len(fit) + len(held) == len(s.train)


# ----------------------------------------------------------------------------- CLI and run record
def test_main_writes_one_record_with_every_baseline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bl, "load_setting", lambda mode: synthetic(mode))
    out = tmp_path / "run"
    assert bl.main(["--mode", "all", "--out", str(out), "--no-progress", "--knn-ks", "1", "5", "--bias-regs", "0", "10",
                    "--ridge-alphas", "1", "100"]) == 0
    for mode in ("ics", "ucs", "warm"):
        s = json.loads((out / mode / "summary.json").read_text())
        knn = "item_knn" if mode == "warm" else "attr_knn"
        assert list(s["headline"]) == [f"{n}/{m}" for n in ("global_mean", "bias", knn, "ridge") for m in ("rmse", "mae")]
        assert s["selection"] == "tuned on validation carved from training"
        assert s["setting"] == f"{mode}-baselines" and s["status"] == "finished"
        assert set(s["chosen"]) == {"bias", knn, "ridge"} and len(s["grids"]["bias"]) == 4
    assert "chosen" in capsys.readouterr().out


def test_cli_errors_exit_codes(tmp_path, monkeypatch, capsys):
    from common.cli import run_cli

    monkeypatch.setattr(bl, "load_setting", lambda mode: synthetic(mode))
    with pytest.raises(SystemExit) as e:
        bl.parse_args(["--knn-ks", "0"])
    assert e.value.code == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("taken")
    assert run_cli(bl.main, ["--out", str(tmp_path / "full"), "--no-progress"]) == 5
