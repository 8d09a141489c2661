"""Preprocessing: k-core, leave-one-out prefixes, padding-free batches, real ML-100k statistics."""

import numpy as np
import pandas as pd

from common.testing import need_file
from gcsan.data import Split, k_core, leave_one_out_examples, load, recbole_protocol, srgnn_split, truncate


def test_k_core_repeats_until_stable_and_bans_users_and_items_at_once():
    # round 1 bans item 9 (1 interaction); user c then has 1 left and goes in round 2; stable after
    df = pd.DataFrame({"user": list("aaabbbcc"), "item": [1, 2, 3, 1, 2, 3, 3, 9],
                       "timestamp": range(8)})
    out = k_core(df, user_k=2, item_k=2)
    assert sorted(set(out["user"])) == ["a", "b"] and sorted(set(out["item"])) == [1, 2, 3]
    assert len(out) == 6
    # a chain where each round exposes new violators until nothing is left
    df2 = pd.DataFrame({"user": list("aabbc"), "item": [1, 2, 1, 3, 3], "timestamp": range(5)})
    out2 = k_core(df2, user_k=2, item_k=2)
    # round 1 bans user c and item 2; round 2 user a (1 left) and item 3 (1 left); round 3 the rest
    assert len(out2) == 0


def test_k_core_keeps_everything_when_already_a_core():
    df = pd.DataFrame({"user": [1, 1, 2, 2], "item": [5, 6, 5, 6], "timestamp": [0, 1, 2, 3]})
    assert len(k_core(df, 2, 2)) == 4


def test_leave_one_out_prefixes_truncation_and_split():
    # user 0: 6 interactions -> 5 examples (3 train, valid, test); user 1: 2 interactions -> 1
    # example -> train (RecBole keeps min(2, n - 1) out); user 2: 3 interactions -> train + test
    user = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2])
    item = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    train, valid, test = leave_one_out_examples(user, item, max_len=3)
    seqs = lambda s: [s.items[a:a + n].tolist() for a, n in zip(s.start, s.length)]  # noqa: E731
    assert seqs(train) == [[1], [1, 2], [1, 2, 3], [7], [9]] and train.target.tolist() == [2, 3, 4, 8, 10]
    assert seqs(valid) == [[2, 3, 4]] and valid.target.tolist() == [5]
    assert seqs(test) == [[3, 4, 5], [9, 10]] and test.target.tolist() == [6, 11]


def test_recbole_protocol_time_order_and_rating_filter():
    df = pd.DataFrame({"user": [1] * 5 + [2] * 5, "item": [10, 11, 12, 13, 14, 14, 13, 12, 11, 10],
                       "rating": [5, 5, 1, 5, 5, 5, 5, 5, 5, 5],
                       "timestamp": [5, 1, 2, 3, 4, 1, 2, 3, 4, 5]})
    d = recbole_protocol(df, min_rating=3, user_k=1, item_k=1, max_len=50)
    assert d.stats["interactions"] == 9 and d.stats["items"] == 5 and d.n_items == 6
    # user 1 sorted by time: 11, 13, 14, 10 (12 dropped by rating) -> test target is item 10's id
    ids = {raw: i + 1 for i, raw in enumerate([10, 11, 13, 14, 12])}  # first appearance after filter
    assert d.test.target.tolist()[0] == ids[10]
    assert d.test.items[d.test.start[0]:d.test.start[0] + d.test.length[0]].tolist() == [ids[11], ids[13], ids[14]]


def test_split_batch_right_pads_to_longest_in_batch():
    s = srgnn_split([[1, 2, 3], [4], [5, 6]], [7, 8, 9])
    seq, length, target = s.batch(np.array([1, 2]))
    assert seq.tolist() == [[4, 0], [5, 6]] and length.tolist() == [1, 2] and target.tolist() == [8, 9]
    t = truncate(s, 2)
    assert t.batch(np.array([0]))[0].tolist() == [[2, 3]]


def test_ml100k_statistics_match_recbole():
    need_file("ml-100k", "u.data")
    d = load("ml-100k", verbose=False)
    # RecBole 1.2.1 on the same file printed 940 users / 1017 items (its counts include padding)
    assert (d.stats["users"], d.stats["items"], d.stats["interactions"]) == (939, 1016, 80393)
    assert len(d.valid) == len(d.test) == 939
    assert len(d.train) == 80393 - 939 - 2 * 939
    assert d.train.length.max() == 50 and d.n_items == 1017


def test_srgnn_diginetica_split_sizes():
    need_file("diginetica-srgnn", "train.txt")
    need_file("diginetica-srgnn", "test.txt")
    d = load("diginetica-srgnn", valid_portion=0.0, verbose=False)
    assert len(d.train) == 719470 and len(d.test) == 60858 and d.n_items == 43098
    assert d.valid is None or len(d.valid) == 0


def test_diginetica_raw_pipeline_on_srgnn_sample_is_a_5_core():
    need_file("srgnn-sample", "sample_train-item-views.csv")
    from gcsan.data import DATASETS, read_diginetica
    from common.datasets import fetch_file

    df = read_diginetica(fetch_file(*DATASETS["diginetica-sample"]["source"]))
    core = k_core(df, 5, 5)
    assert core["user"].value_counts().min() >= 5 and core["item"].value_counts().min() >= 5
    d = load("diginetica-sample", use_cache=False, verbose=False)
    assert d.stats["interactions"] == len(core) and d.stats["users"] == core["user"].nunique()
    assert len(d.test) == d.stats["users"] and d.train.length.max() <= 20


def test_read_movielens_ml1m_format(tmp_path):
    from gcsan.data import read_movielens

    p = tmp_path / "ratings.dat"
    p.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    df = read_movielens(p)
    assert df.columns.tolist() == ["user", "item", "rating", "timestamp"]
    assert df["item"].tolist() == [1193, 661, 1193] and df["timestamp"].iloc[1] == 978302109


def test_ml1m_statistics_match_published_table():
    need_file("ml-1m", "ratings.dat")  # not in the offline mirror: skips there
    d = load("ml-1m", verbose=False)
    assert (d.stats["users"], d.stats["items"], d.stats["interactions"]) == (6040, 3124, 834449)


def test_diginetica_statistics_match_published_table():
    need_file("diginetica", "train-item-views.csv")  # not in the offline mirror: skips there
    d = load("diginetica", verbose=False)
    assert (d.stats["users"], d.stats["items"], d.stats["interactions"]) == (72014, 29454, 580490)
