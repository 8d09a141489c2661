"""mpm.data: preprocessing on a hand-made ML-1m-format file, ML-100k counts and invariants, the
authors' ML-100k split reproduced exactly (golden hashes), ML-1m counts, and the authors' released
ML-1m split."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.testing import need_file
from mpm.data import (MPMData, build, load, load_official_test, load_official_train, read_ratings,
                      sample_negatives, with_official_split)

# UserID::MovieID::Rating::Timestamp, as ML-1m's ratings.dat. User 20 has too few ratings; user 10
# has two ratings at t=400 (file order: item 11 then item 13).
HAND_MADE = """\
10::5::3::100
20::99::4::10
10::7::4::300
30::7::5::50
10::9::1::200
30::21::2::60
20::98::3::20
10::11::5::400
30::5::4::70
10::13::2::400
30::22::3::80
"""


@pytest.fixture
def hand_made(tmp_path: Path) -> Path:
    p = tmp_path / "ratings.dat"
    p.write_text(HAND_MADE)
    return p


def test_hand_made_file_gives_known_split(hand_made):
    df = read_ratings(hand_made, "::")
    assert len(df) == 11 and list(df.columns) == ["user_id", "item_id", "timestamp"]
    d = build(df, history_size=2, negatives=2, seed=0, min_ratings=4, tie_order="stable")
    # users 10 -> 0, 30 -> 1 (20 filtered); items by first appearance after the filter:
    # 5->0, 7->1, 9->2, 21->3, 11->4, 13->5, 22->6 (98, 99 belong to the filtered user)
    assert (d.nb_users, d.nb_items) == (2, 7)
    # user 0 in time order: 0, 2, 1, 4, 5 (the tie at t=400 keeps file order: 11 before 13)
    np.testing.assert_array_equal(d.test_users, [0, 1])
    np.testing.assert_array_equal(d.test_items, [5, 6])
    np.testing.assert_array_equal(d.test_history, [[1, 4], [3, 0]])
    # training entries, latest target first within a user (the notebook pops from the end)
    np.testing.assert_array_equal(d.train_users, [0, 0, 1])
    np.testing.assert_array_equal(d.train_items, [4, 1, 0])
    np.testing.assert_array_equal(d.train_history, [[2, 1], [0, 2], [1, 3]])
    # user 0 never rated exactly items 3 and 6; user 1 never rated 2, 4, 5
    assert sorted(d.test_negatives[0]) == [3, 6]
    assert set(d.test_negatives[1]) <= {2, 4, 5} and len(set(d.test_negatives[1])) == 2
    assert d.summary() == {"users": 2, "items": 7, "history_size": 2, "train_entries": 3, "test": 2}
    # the authors' quicksort is an insertion sort below 17 ratings: the same order here
    a = build(df, history_size=2, negatives=2, seed=0, min_ratings=4)
    np.testing.assert_array_equal(a.test_history, d.test_history)
    np.testing.assert_array_equal(a.train_history, d.train_history)


def test_hand_made_file_with_validation_holds_out_second_to_last(hand_made):
    d = build(read_ratings(hand_made, "::"), history_size=2, negatives=2, seed=0, min_ratings=4, valid=True)
    np.testing.assert_array_equal(d.valid_items, [4, 0])
    np.testing.assert_array_equal(d.valid_history, [[2, 1], [1, 3]])
    np.testing.assert_array_equal(d.test_items, [5, 6])
    np.testing.assert_array_equal(d.train_items, [1])
    np.testing.assert_array_equal(d.train_history, [[0, 2]])
    assert sorted(d.valid_negatives[0]) == [3, 6]


def test_negatives_are_seeded_and_never_rated():
    rated = np.array([0 * 50 + i for i in range(0, 50, 2)] + [1 * 50 + i for i in range(10)])
    users = np.array([0, 1])
    a = sample_negatives(users, rated, 50, 20, np.random.default_rng(7))
    b = sample_negatives(users, rated, 50, 20, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert all(len(set(r)) == 20 for r in a)
    assert not np.isin(users[:, None] * 50 + a, rated).any()
    with pytest.raises(ValueError, match="cannot draw"):
        sample_negatives(users, rated, 50, 26, np.random.default_rng(0))


def test_cache_returns_the_same_arrays(hand_made, tmp_path):
    kw = dict(path=hand_made, fmt="::", history_size=2, negatives=2, min_ratings=4, cache=tmp_path / "c")
    first = load("hand", **kw)
    assert len(list((tmp_path / "c").glob("hand-*.npz"))) == 1
    second = load("hand", **kw)
    for name in ("train_history", "test_negatives", "rated", "valid_users"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.nb_items == 7 and isinstance(second.nb_items, int)


def test_ml100k_counts_and_invariants(tmp_path):
    path = need_file("ml-100k", "u.data")
    raw = read_ratings(path, "tab")
    assert (raw.user_id.nunique(), raw.item_id.nunique(), len(raw)) == (943, 1682, 100_000)
    d = load("ml-100k", cache=tmp_path)
    # every ML-100k user has >= 20 ratings: nothing is filtered; n - 10 training entries per user
    assert d.summary() == {"users": 943, "items": 1682, "history_size": 9, "train_entries": 90_570, "test": 943}
    np.testing.assert_array_equal(d.test_users, np.arange(943))
    # consecutive entries of a user share a sliding window: later history = earlier history[1:] + target
    same = d.train_users[1:] == d.train_users[:-1]
    later, earlier = np.flatnonzero(same), np.flatnonzero(same) + 1
    np.testing.assert_array_equal(d.train_history[later][:, :-1], d.train_history[earlier][:, 1:])
    np.testing.assert_array_equal(d.train_history[later][:, -1], d.train_items[earlier])
    # each user's latest training entry is followed by the test case
    first = np.flatnonzero(np.r_[True, ~same])
    np.testing.assert_array_equal(d.test_history[d.train_users[first]][:, :-1], d.train_history[first][:, 1:])
    np.testing.assert_array_equal(d.test_history[d.train_users[first]][:, -1], d.train_items[first])
    # test item is never a training target of its user; negatives are distinct and never rated
    assert not np.isin(d.test_users * d.nb_items + d.test_items, d.train_positive_keys()).any()
    assert not np.isin(d.test_users[:, None] * d.nb_items + d.test_negatives, d.rated).any()
    assert (np.sort(d.test_negatives, axis=1)[:, 1:] != np.sort(d.test_negatives, axis=1)[:, :-1]).all()


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()


# The authors' preprocessing cells (seed notebook 003, python cells 2-3: ``implicit_load`` and
# ``main``, run verbatim with only the paths changed and ``mlperf_compliance`` stubbed; pandas 3.1.1,
# numpy 2.4.6) on the mirror's ml-100k/u.data wrote train_ratings.csv / test_ratings.csv. Their rows
# come in the order of each user's first rating (a dict filled row by row); sorted stably by user
# (which keeps the authors' latest-target-first order within a user) they hash, as int64, to:
# test_items [943] and test_history [943, 9] in user order; train_rows [90570, 11]: user, item, 9 history.
AUTHORS_ML100K = {
    "test_items": "d77b0e64ecfc7538a120b36559daf66ae6b2e3e8f656d6ec1b55ed6a6c802f83",
    "test_history": "6d2abafafe78b133427775b1179c6752a15df83335ba1a2cea380d37f52ec769",
    "train_rows": "3d2c65dc5de0f09744e4f9873fe60e4a59df0e6bfc8c7cd281f31a1d8d78981b",
}


def test_ml100k_default_split_is_the_authors_split_and_stable_ties_change_it(tmp_path):
    need_file("ml-100k", "u.data")
    a = load("ml-100k", cache=tmp_path)  # tie_order="authors", the default
    assert len(a.train_users) == 90_570 and int(a.test_items.sum()) == 457_007
    assert sha256(a.test_items) == AUTHORS_ML100K["test_items"]
    assert sha256(a.test_history) == AUTHORS_ML100K["test_history"]
    assert sha256(np.c_[a.train_users, a.train_items, a.train_history]) == AUTHORS_ML100K["train_rows"]
    # the stable order (ties in file order) moves 262 of 943 test items (27.8%), 845 test histories
    # (89.6%) and 85,925 of 90,570 training rows (94.9%); ratings, counts and test negatives are the same
    s = load("ml-100k", cache=tmp_path, tie_order="stable")
    assert len(list(tmp_path.glob("ml-100k-*.npz"))) == 2  # the tie order is part of the cache key
    assert int((a.test_items != s.test_items).sum()) == 262
    assert int((a.test_history != s.test_history).any(1).sum()) == 845
    changed = (np.c_[a.train_items, a.train_history] != np.c_[s.train_items, s.train_history]).any(1)
    assert int(changed.sum()) == 85_925
    np.testing.assert_array_equal(a.test_negatives, s.test_negatives)
    np.testing.assert_array_equal(a.rated, s.rated)
    with pytest.raises(ValueError, match="tie order"):
        build(read_ratings(need_file("ml-100k", "u.data"), "tab"), tie_order="quick")


def test_ml1m_counts_match_official_summary_on_the_real_rating_set():
    """The counts do not depend on time order, so the mirror's timestamp-less ML-1m folds check them."""
    official = load_official_test()
    folds = [need_file("ml-1m", f"ratings_5fold_no_timestamp/test_1m{i}.dat") for i in range(1, 6)]
    df = pd.concat([pd.read_csv(f, header=None, names=["user_id", "item_id", "rating"]) for f in folds])
    df["timestamp"] = 0
    d = build(df, negatives=0)
    assert d.summary() == official.summary == {
        "users": 6040, "items": 3706, "history_size": 9, "train_entries": 939_809, "test": 6040}


def test_ml1m_raw_pipeline_matches_official_split(tmp_path):
    """Runs where raw ML-1m ratings.dat can be had (not on the offline machines)."""
    path = need_file("ml-1m", "ratings.dat")
    d = load("ml-1m", path=path, fmt="::", cache=tmp_path)
    official = load_official_test()
    assert d.summary() == official.summary
    np.testing.assert_array_equal(d.test_users, official.users)
    # the default tie order is the notebook's sort call, but the official files were written with the
    # 2021 pandas/numpy, which may order same-second ratings differently: allow a small share
    assert (d.test_items == official.items).mean() > 0.9


def test_official_split_files_load_and_agree_with_summary():
    for f in ("data_summary.csv", "test_ratings.csv", "test_negative.csv"):
        need_file("mpm-ml-1m", f)
    o = load_official_test()
    assert o.summary == {"users": 6040, "items": 3706, "history_size": 9, "train_entries": 939_809, "test": 6040}
    np.testing.assert_array_equal(o.users, np.arange(6040))
    assert o.history.shape == (6040, 9) and o.negatives.shape == (6040, 99)
    assert o.items.max() < 3706 and o.negatives.max() < 3706 and o.history.max() < 3706
    # negatives: distinct, never the test item, never a history item (items the user never rated)
    s = np.sort(o.negatives, axis=1)
    assert (s[:, 1:] != s[:, :-1]).all()
    assert not (o.negatives == o.items[:, None]).any()
    assert not (o.negatives[:, :, None] == o.history[:, None, :]).any()


def test_official_split_replaces_test_cases_and_reads_train_file(tmp_path):
    o = load_official_test()
    n = 5
    rows = np.c_[np.arange(n), np.arange(n) + 10, np.tile(np.arange(9), (n, 1)), np.r_[1, 1, 0, 1, 1]]
    f = tmp_path / "train_ratings.csv"
    pd.DataFrame(rows).to_csv(f, sep="\t", header=False, index=False)
    users, items, hist = load_official_train(f)
    np.testing.assert_array_equal(users, [0, 1, 3, 4])
    assert hist.shape == (4, 9)
    z = lambda *s: np.zeros(s, np.int64)  # noqa: E731
    d = MPMData(6040, 3706, 9, z(1), z(1), z(1, 9), z(1), z(1), z(1, 9), z(1, 99), z(0), z(0), z(0, 9), z(0, 99), z(1))
    d2 = with_official_split(d, o, (users, items, hist))
    assert len(d2.test_users) == 6040 and len(d2.train_users) == 4
    with pytest.raises(ValueError, match="not the same dataset"):
        with_official_split(MPMData(943, 1682, *list(vars(d).values())[2:]), o)
