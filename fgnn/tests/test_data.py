"""Preprocessing and session graphs: hand-made logs and sessions, then the real files' counts."""

from pathlib import Path

import numpy as np
import pytest
import torch

from common.testing import need_file
from fgnn.data import (SessionBatches, SessionGraphs, Split, augment, build_graphs, load_prepared,
                       preprocess_clicks, read_click_log, tail_fraction)


def _split(seqs, labels=None):
    lengths = np.array([len(s) for s in seqs])
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    labels = np.zeros(len(seqs), dtype=np.int64) if labels is None else np.asarray(labels)
    return Split(np.concatenate([np.asarray(s) for s in seqs]).astype(np.int64), ptr.astype(np.int64), labels)


def _graph(data, slices, k):
    n = slice(int(slices["x"][k]), int(slices["x"][k + 1]))
    e = slice(int(slices["edge_index"][k]), int(slices["edge_index"][k + 1]))
    return (data.x[n].view(-1).tolist(), data.edge_index[:, e].tolist(), data.edge_attr[e].tolist(),
            data.out_degree_inv[e].tolist(), data.in_degree_inv[e].tolist(), int(data.last_node_index[k]))


def test_session_graphs_of_hand_made_sessions():
    seqs = [[1, 3, 2, 2, 1, 3, 4],  # the notebook's example: repeats, a self transition, a repeated edge
            [5],                    # one click: the notebook keeps a self loop 0 -> 0
            [7, 7, 7],              # only self transitions, merged into one edge of weight 2
            [2, 9, 2]]              # last click (node 0) is not the last new node (node 1)
    data, slices = build_graphs(_split(seqs, [9, 9, 9, 9]))
    assert _graph(data, slices, 0) == ([1, 3, 2, 4], [[0, 1, 2, 2, 1], [1, 2, 2, 0, 3]], [2, 1, 1, 1, 1],
                                       [1, .5, .5, .5, .5], [1, .5, .5, 1, 1], 3)
    assert _graph(data, slices, 1) == ([5], [[0], [0]], [1], [1], [1], 0)
    assert _graph(data, slices, 2) == ([7], [[0], [0]], [2], [1], [1], 0)
    assert _graph(data, slices, 3) == ([2, 9], [[0, 1], [1, 0]], [1, 1], [1, 1], [1, 1], 0)
    assert data.sequence.tolist() == sum(seqs, [])
    assert data.sequence_len.tolist() == [7, 1, 3, 3] and data.y.tolist() == [9, 9, 9, 9]


def test_fast_batches_equal_pyg_dataloader(tmp_path: Path):
    from torch_geometric.loader import DataLoader

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 10, (37,), generator=g)
    items = torch.randint(1, 15, (int(lengths.sum()),), generator=g).numpy()
    ptr = np.concatenate([[0], lengths.cumsum(0).numpy()])
    split = Split(items, ptr, torch.randint(1, 15, (37,), generator=g).numpy())
    ds = SessionGraphs(tmp_path, "train", lambda: (split, split))
    again = SessionGraphs(tmp_path, "test", None)  # the cache is read, nothing rebuilt
    assert len(ds) == len(again) == 37
    keys = ["x", "edge_index", "edge_attr", "y", "sequence", "sequence_len", "out_degree_inv",
            "in_degree_inv", "last_node_index", "batch", "ptr"]
    for a, b in zip(DataLoader(ds, batch_size=8), SessionBatches(ds, 8)):
        assert a.num_graphs == b.num_graphs
        for key in keys:
            assert torch.equal(a[key], b[key]), key
    order = torch.randperm(37, generator=g)[:8]
    a = next(iter(DataLoader(ds[order], batch_size=8)))
    b = SessionBatches(ds, 8).batch(order)
    for key in keys:
        assert torch.equal(a[key], b[key]), key


def test_augment_emits_prefixes_in_srgnn_order():
    out = augment(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 4, 6]))
    assert out.sequences() == [[1, 2, 3], [1, 2], [1], [5]]
    assert out.labels.tolist() == [4, 3, 2, 6]


def test_tail_fraction_keeps_the_most_recent_examples_with_srgnn_quirk():
    s = _split([[i] for i in range(1, 131)], list(range(1, 131)))
    assert tail_fraction(s, 64).labels.tolist() == [129, 130]  # int(130 / 64) = 2
    small = _split([[1], [2]], [1, 2])
    assert tail_fraction(small, 64).labels.tolist() == [1, 2]  # int(2 / 64) = 0 and seqs[-0:] is all


# A hand-made Diginetica-format log: A, B, C frequent; R rare; E frequent but test-only; dates
# 2016-01-02 .. 2016-01-20, so the split date is 2016-01-13 (the last 7 days are test).
DIGINETICA_LOG = """session_id;user_id;item_id;timeframe;eventdate
1;NA;B;20;2016-01-05
1;NA;A;10;2016-01-05
1;NA;C;30;2016-01-05
2;NA;A;1;2016-01-02
2;NA;B;2;2016-01-02
3;NA;D;1;2016-01-03
4;NA;R;1;2016-01-04
4;NA;A;2;2016-01-04
5;NA;A;1;2016-01-13
5;NA;B;2;2016-01-13
5;NA;C;3;2016-01-13
6;NA;C;1;2016-01-20
6;NA;A;2;2016-01-20
6;NA;B;3;2016-01-20
7;NA;E;1;2016-01-15
7;NA;E;2;2016-01-15
7;NA;E;3;2016-01-15
7;NA;E;4;2016-01-15
7;NA;E;5;2016-01-15
7;NA;A;6;2016-01-15
8;NA;B;1;2016-01-16
8;NA;E;2;2016-01-16
8;NA;C;3;2016-01-16
9;NA;B;1;2016-01-06
9;NA;C;2;2016-01-06
9;NA;B;3;2016-01-06
9;NA;C;4;2016-01-06
"""


def test_srgnn_preprocessing_of_a_hand_made_log(tmp_path: Path):
    path = tmp_path / "log.csv"
    path.write_text(DIGINETICA_LOG)
    train, test, n_items = preprocess_clicks(read_click_log(path, "diginetica"), test_days=7)
    # Session 1 is ordered by timeframe (A, B, C); session 3 (one click) and session 4 (R is rare,
    # leaving one click) are removed; session 5 lies exactly on the split date: in neither split.
    # Train sessions by date: 2 [A,B], 1 [A,B,C], 9 [B,C,B,C] -> A=1, B=2, C=3.
    assert n_items == 3
    assert train.sequences() == [[1], [1, 2], [1], [2, 3, 2], [2, 3], [2]]
    assert train.labels.tolist() == [2, 3, 2, 3, 2, 3]
    # Test by date: 7 loses E (unseen in training) and is left with one click; 8 -> [B, C]; 6 -> [C, A, B].
    assert test.sequences() == [[2], [3, 1], [3]]
    assert test.labels.tolist() == [3, 2, 1]


def test_yoochoose_log_without_header_and_one_test_day(tmp_path: Path):
    # Clicks stay in file order (no sort for Yoochoose); a session's date is its last row's time.
    rows = ["1,2014-04-01T10:00:00.100Z,214536502,0", "1,2014-04-01T10:00:01.100Z,214536500,0", "1,2014-04-01T10:00:02.100Z,214536502,0",
            "2,2014-04-02T10:00:02.100Z,214536500,0", "2,2014-04-02T10:00:01.100Z,214536502,0", "2,2014-04-02T10:00:00.100Z,214536500,0",
            "3,2014-04-03T10:00:00.100Z,214536502,0", "3,2014-04-03T10:00:01.100Z,214536500,0",
            "4,2014-04-04T10:00:00.100Z,214536502,0", "4,2014-04-04T10:00:01.100Z,214536500,0",
            "5,2014-04-04T11:00:00.100Z,214577561,0"]  # one click: removed
    path = tmp_path / "clicks.dat"
    path.write_text("\n".join(rows) + "\n")
    train, test, n_items = preprocess_clicks(read_click_log(path, "yoochoose"), test_days=1)
    # Split date = 2014-04-04T10:00:01 - 1 day = session 3's date exactly: in neither split.
    assert n_items == 2
    assert train.sequences() == [[1, 2], [1], [2, 1], [2]] and train.labels.tolist() == [1, 2, 2, 1]
    assert test.sequences() == [[1]] and test.labels.tolist() == [2]
    with_header = tmp_path / "with_header.dat"
    with_header.write_text("session_id,timestamp,item_id,category\n" + path.read_text())
    assert read_click_log(with_header, "yoochoose").equals(read_click_log(path, "yoochoose"))


def _random_log(path: Path, log_format: str, seed: int) -> None:
    """A random click log: 600 sessions over 12 days, skewed items, shuffled timeframes,
    some sessions split into two blocks of rows (as happens in the raw files)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(600):
        day = int(rng.integers(0, 12))
        n = int(rng.integers(1, 8))
        items = np.minimum(rng.zipf(1.6, n), 60)
        for k, item in enumerate(items):
            if log_format == "yoochoose":
                rows.append((s, f"{s},2014-04-{1 + day:02d}T{int(rng.integers(0, 24)):02d}:00:{k:02d}.000Z,{1000 + item},0"))
            else:
                rows.append((s, f"{s};NA;{item};{int(rng.integers(0, 5))};2016-01-{1 + day:02d}"))
    order = np.arange(len(rows))
    moved = rng.choice(len(rows), 40, replace=False)  # a few rows moved to the end of the file
    order = np.concatenate([np.setdiff1d(order, moved), moved])
    header = "" if log_format == "yoochoose" else "session_id;user_id;item_id;timeframe;eventdate\n"
    path.write_text(header + "\n".join(rows[i][1] for i in order) + "\n")


@pytest.mark.parametrize("log_format, test_days, fraction", [("diginetica", 7, 1), ("yoochoose", 1, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_preprocessing_equals_srgnn_row_by_row(tmp_path: Path, log_format, test_days, fraction, seed):
    from fgnn.notebook_reference import srgnn_preprocess

    path = tmp_path / "log.txt"
    _random_log(path, log_format, seed)
    train, test, n_items = preprocess_clicks(read_click_log(path, log_format), test_days, fraction)
    (tx, ty), (sx, sy), n_ref = srgnn_preprocess(path, log_format, test_days, fraction)
    assert n_items == n_ref and len(train) == len(tx) > 20 and len(test) == len(sx) > 5
    assert train.sequences() == tx and train.labels.tolist() == ty
    assert test.sequences() == sx and test.labels.tolist() == sy


@pytest.mark.real_data
def test_sample_gives_the_notebooks_id_range():
    path = need_file("srgnn-sample", "sample_train-item-views.csv")
    train, test, n_items = preprocess_clicks(read_click_log(path, "diginetica"), test_days=7)
    from fgnn.notebook_reference import srgnn_preprocess

    (tx, ty), (sx, sy), _ = srgnn_preprocess(path, "diginetica", 7)
    assert train.sequences() == tx and train.labels.tolist() == ty and test.sequences() == sx
    assert (len(train), len(test), n_items) == (1205, 99, 309)  # the notebook hard-codes n_node = 309
    assert max(train.items.max(), train.labels.max()) == 309 and test.labels.max() <= 309


@pytest.mark.real_data
@pytest.mark.parametrize("dataset, n_train, n_test, max_id", [
    ("diginetica-srgnn", 719_470, 60_858, 43_097),
    ("yoochoose1_64-srgnn", 369_859, 55_898, 37_483),
])
def test_prepared_splits_counts(dataset, n_train, n_test, max_id):
    train = load_prepared(need_file(dataset, "train.txt"))
    test = load_prepared(need_file(dataset, "test.txt"))
    assert (len(train), len(test)) == (n_train, n_test)
    assert max(train.items.max(), train.labels.max(), test.items.max(), test.labels.max()) == max_id
    if dataset == "diginetica-srgnn":
        assert len(np.unique(np.concatenate([train.items, train.labels]))) == 43_097


@pytest.mark.real_data
def test_graphs_of_real_test_sessions_match_notebook_loop():
    """The array-built graphs equal the notebook's dictionary loop on Diginetica test sessions."""
    import collections

    test = load_prepared(need_file("diginetica-srgnn", "test.txt"))
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(test), 400, replace=False))
    seqs = [test.items[test.ptr[i]:test.ptr[i + 1]].tolist() for i in idx]
    data, slices = build_graphs(_split(seqs))
    for k, seq in enumerate(seqs):
        nodes, senders = {}, []
        for item in seq:
            nodes.setdefault(item, len(nodes))
            senders.append(nodes[item])
        receivers = senders[:]
        if len(senders) != 1:
            del senders[-1], receivers[0]
        pairs = collections.Counter(zip(senders, receivers))
        edges = list(dict.fromkeys(zip(senders, receivers)))
        out_count = collections.Counter(s for s, _ in edges)
        in_count = collections.Counter(r for _, r in edges)
        x, ei, attr, out_inv, in_inv, _ = _graph(data, slices, k)
        assert x == list(nodes)
        assert ei == [[s for s, _ in edges], [r for _, r in edges]]
        assert attr == [pairs[e] for e in edges]
        assert out_inv == pytest.approx([1 / out_count[s] for s, _ in edges])
        assert in_inv == pytest.approx([1 / in_count[r] for _, r in edges])
