"""The session baselines on hand-made sessions with answers worked by hand; tuning never reads test."""

import json

import numpy as np
import pytest

from common.cli import run_cli
from common.metrics import full_ranks
from fgnn import baselines as B
from fgnn.data import Split, _ptr, augment


def sessions(*seqs):
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    return items, _ptr(np.array([len(s) for s in seqs]))


def prefixes(*seqs):
    """Examples as (input clicks, next item), one per row."""
    return Split(np.array([i for s, _ in seqs for i in s], dtype=np.int64),
                 _ptr(np.array([len(s) for s, _ in seqs])), np.array([t for _, t in seqs], dtype=np.int64))


def dense(m):
    return m if isinstance(m, np.ndarray) else m.toarray()


def test_full_sessions_come_back_from_srgnn_prefixes():
    items, ptr = sessions([1, 2, 3], [4, 5], [2, 2, 6, 1])
    back_items, back_ptr = B.sessions_from_prefixes(augment(items, ptr))
    assert back_items.tolist() == items.tolist() and back_ptr.tolist() == ptr.tolist()


def test_validation_is_the_last_sessions_under_the_test_rules():
    items, ptr = sessions([1, 2], [2, 3], [3, 1], [1, 2, 9], [9, 4], [2, 3, 1])
    (fit_items, fit_ptr), valid = B.carve_validation(items, ptr, share=0.5)
    assert fit_items.tolist() == [1, 2, 2, 3, 3, 1] and fit_ptr.tolist() == [0, 2, 4, 6]
    # 9 and 4 are unseen in the fit sessions: [1, 2, 9] -> [1, 2]; [9, 4] -> dropped
    assert valid.sequences() == [[1], [2, 3], [2]] and valid.labels.tolist() == [2, 1, 3]


def test_spop_counts_the_prefix_then_popularity():
    m = B.SPop()
    m.fit(*sessions([1, 2, 2], [2, 3]), n_cols=5, grid=[{}])
    s = m.score(B.Query(prefixes(([3, 3, 1], 4)), np.array([0]), 5), {})[0]
    assert s.tolist() == pytest.approx([0, 1 + 1 / 2, 3 / 4, 2 + 1 / 2, 0])


def test_ar_counts_pairs_of_distinct_positions():
    m = B.AR()
    m.fit(*sessions([1, 2, 1], [2, 3]), n_cols=4, grid=[{}])
    # session [1, 2, 1]: 1-2 twice each way and 1-1 once each way (positions 0 and 2); [2, 3]: 2-3, 3-2
    assert dense(m.rules).tolist() == [[0, 0, 0, 0], [0, 2, 2, 0], [0, 2, 0, 1], [0, 0, 1, 0]]
    q = B.Query(prefixes(([3, 2], 1), ([1], 2)), np.array([0, 1]), 4)
    assert dense(m.score(q, {})).tolist() == [[0, 2, 0, 1], [0, 2, 2, 0]]  # the last item's row


def test_sr_weights_following_items_by_one_over_distance():
    m = B.SR()
    m.fit(*sessions([1, 2, 3], [3, 1]), n_cols=4, grid=[{"steps": 1}, {"steps": 2}])
    assert dense(m.rules[1]).tolist() == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]]
    assert dense(m.rules[2]).tolist() == [[0, 0, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1], [0, 1, 0, 0]]


# three training sessions, oldest first: s0 = {1, 2}, s1 = {2, 3}, s2 = {4, 5}; the prefix is [1, 2]
KNN_SESSIONS = ([1, 2], [2, 3], [4, 5])


def knn_scores(model, k, sample):
    model.fit(*sessions(*KNN_SESSIONS), n_cols=6, grid=[{"k": k, "sample": sample}])
    return dense(model.score(B.Query(prefixes(([1, 2], 3)), np.array([0]), 6), {"k": k, "sample": sample}))[0]


def test_sknn_neighbours_by_cosine_on_item_sets():
    # cosine: s0 2 / sqrt(2 * 2) = 1, s1 1 / sqrt(2 * 2) = 0.5, s2 shares nothing (no candidate)
    assert knn_scores(B.SKNN(), k=1, sample=0).tolist() == pytest.approx([0, 1, 1, 0, 0, 0])
    assert knn_scores(B.SKNN(), k=2, sample=0).tolist() == pytest.approx([0, 1, 1.5, 0.5, 0, 0])
    # sample 1: only the most recent candidate, s1
    assert knn_scores(B.SKNN(), k=2, sample=1).tolist() == pytest.approx([0, 0, 0.5, 0.5, 0, 0])


def test_vsknn_weighs_recent_items_linearly():
    # prefix [1, 2]: item 1 weighs 1/2, item 2 weighs 2/2; dot products s0 1.5, s1 1.0
    assert knn_scores(B.VSKNN(), k=2, sample=0).tolist() == pytest.approx([0, 1.5, 2.5, 1.0, 0, 0])
    assert knn_scores(B.VSKNN(), k=1, sample=0).tolist() == pytest.approx([0, 1.5, 1.5, 0, 0, 0])
    # a repeated item keeps its last position: [2, 1, 2] -> 1 weighs 2/3, 2 weighs 3/3
    q = B.Query(prefixes(([2, 1, 2], 3)), np.array([0]), 6)
    assert dense(q.recency)[0].tolist() == pytest.approx([0, 2 / 3, 1, 0, 0, 0])


def test_sparse_ranks_equal_common_metrics_full_ranks():
    rng = np.random.default_rng(0)
    scores = np.where(rng.random((200, 30)) < 0.3, rng.integers(1, 4, (200, 30)) / 2, 0.0)
    targets = rng.integers(0, 30, 200)
    import scipy.sparse as sp
    got = B.sparse_full_ranks(sp.csr_matrix(scores), targets)
    assert got.tolist() == full_ranks(scores, targets).tolist()
    assert (got == 29).any() and (got < 29).any()


# ----------------------------------------------------------------------------- whole runs
def synthetic(seed=0, n_sessions=400, n_items=40):
    """Sessions walking mostly to the next item of a ring (so SR and kNN have something to find)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_sessions):
        s = [int(rng.integers(1, n_items + 1))]
        for _ in range(int(rng.integers(1, 6))):
            s.append(s[-1] % n_items + 1 if rng.random() < 0.7 else int(rng.integers(1, n_items + 1)))
        seqs.append(s)
    train = augment(*sessions(*seqs[:300]))
    test = augment(*sessions(*seqs[300:]))
    return train, test


def run_on(monkeypatch, tmp_path, name, train, test, *flags):
    monkeypatch.setattr(B, "resolve_source", lambda dataset, source: "prepared")
    monkeypatch.setattr(B, "load_splits", lambda dataset, source: (train, test))
    out = tmp_path / name
    assert run_cli(B.main, ["--dataset", "sample", "--no-progress", "--out", str(out), "--batch-size", "64",
                            "--knn-k", "2,20", "--knn-sample", "5,0", "--sr-steps", "1,3", *flags]) == 0
    return json.loads((out / "summary.json").read_text())


def test_tuning_never_reads_test(monkeypatch, tmp_path):
    train, test = synthetic()
    clean = run_on(monkeypatch, tmp_path, "clean", train, test)
    poisoned_test = Split(test.items, test.ptr, np.random.default_rng(1).integers(1, 41, len(test)))
    poisoned = run_on(monkeypatch, tmp_path, "poisoned", train, poisoned_test)
    assert clean["chosen"] == poisoned["chosen"]
    assert clean["validation"] == poisoned["validation"]
    assert clean["headline"] != poisoned["headline"]
    assert set(clean["chosen"]) == set(B.BASELINES) and clean["selection"].startswith("tuned on validation")
    assert clean["headline"]["sr/recall@20"] > 70  # the ring is easy for sequential rules
    for name, table in clean["validation"].items():  # the chosen point is the validation argmax
        if table:
            best = max(table, key=lambda row: row["mrr@20"])
            assert {k: best[k] for k in clean["chosen"][name]} == clean["chosen"][name]


def test_resume_skips_finished_baselines(monkeypatch, tmp_path):
    train, test = synthetic()
    run_on(monkeypatch, tmp_path, "run", train, test, "--baselines", "spop,ar")
    summary = run_on(monkeypatch, tmp_path, "run", train, test, "--resume")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["baseline"] for x in lines] == list(B.BASELINES)
    assert len(summary["headline"]) == 2 * len(B.BASELINES)


@pytest.mark.parametrize("flag", [["--knn-k", "0"], ["--knn-k", "a,b"], ["--baselines", "gru4rec"],
                                  ["--valid-share", "1.5"]])
def test_bad_flags_exit_2(flag, tmp_path):
    with pytest.raises(SystemExit) as e:
        B.parse_args([*flag, "--out", str(tmp_path / "x")])
    assert e.value.code == 2


@pytest.mark.real_data
def test_recovered_sessions_are_srgnn_all_train_seq():
    """On Diginetica the recovered sessions are SR-GNN's own ``all_train_seq.txt``, in order."""
    import pickle

    from common.testing import need_file
    from fgnn.data import load_prepared

    train = load_prepared(need_file("diginetica-srgnn", "train.txt"))
    with open(need_file("diginetica-srgnn", "all_train_seq.txt"), "rb") as f:
        full = pickle.load(f)
    items, ptr = B.sessions_from_prefixes(train)
    assert len(ptr) - 1 == len(full) == 186_670
    assert items.tolist() == [i for s in full for i in s]
    assert np.diff(ptr).tolist() == [len(s) for s in full]
