"""The session baselines on hand-made sessions with answers worked by hand; tuning never reads test."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from common.cli import run_cli
from common.metrics import full_ranks
from gcsan import baselines as B
from gcsan.data import SeqData, Split, leave_one_out_examples


def sessions(*seqs):
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    return items, B._ptr(np.array([len(s) for s in seqs]))


def examples(*pairs):
    """Examples as (history, next item), one per row."""
    length = np.array([len(h) for h, _ in pairs])
    items = np.array([i for h, _ in pairs for i in h], dtype=np.int64)
    return Split(items, B._ptr(length)[:-1], length, np.array([t for _, t in pairs], dtype=np.int64))


def srgnn_augment(*seqs):
    """SR-GNN's prefix order: (s[:-1], s[-1]), (s[:-2], s[-2]), ..., (s[:1], s[1])."""
    return examples(*[(s[:-i], s[-i]) for s in seqs for i in range(1, len(s))])


def dense(m):
    return m if isinstance(m, np.ndarray) else m.toarray()


def test_full_sessions_come_back_from_srgnn_prefixes():
    seqs = ([1, 2, 3], [4, 5], [2, 2, 6, 1])
    items, ptr = B.sessions_from_prefixes(srgnn_augment(*seqs))
    assert items.tolist() == [1, 2, 3, 4, 5, 2, 2, 6, 1] and ptr.tolist() == [0, 3, 5, 9]


def test_recbole_training_sequences_stop_before_valid_and_test():
    user = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    item = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    train, valid, test = leave_one_out_examples(user, item, max_len=2)
    items, ptr, begin = B.sequences_from_stream(train)
    assert items.tolist() == [1, 2, 3, 6, 7] and ptr.tolist() == [0, 3, 5] and begin.tolist() == [0, 5]
    proto = B.Protocol("recbole", train, valid, 10, 0.1)
    assert proto.own(test).tolist() == [0, 1] and proto.own(valid).tolist() == [0, 1]


def test_validation_is_the_last_sessions_under_the_test_rules():
    items, ptr = sessions([1, 2], [2, 3], [3, 1], [1, 2, 9], [9, 4], [2, 3, 1])
    (fit_items, fit_ptr), valid = B.carve_validation(items, ptr, share=0.5)
    assert fit_items.tolist() == [1, 2, 2, 3, 3, 1] and fit_ptr.tolist() == [0, 2, 4, 6]
    # 9 and 4 are unseen in the fit sessions: [1, 2, 9] -> [1, 2]; [9, 4] -> dropped
    hist = [valid.items[a:a + n].tolist() for a, n in zip(valid.start, valid.length)]
    assert hist == [[1], [2], [2, 3]] and valid.target.tolist() == [2, 3, 1]


def test_spop_counts_the_history_then_popularity():
    m = B.SPop()
    m.fit(*sessions([1, 2, 2], [2, 3]), n_cols=5, grid=[{}])
    s = m.score(B.Query(examples(([3, 3, 1], 4)), np.array([0]), 5), {})[0]
    assert s.tolist() == pytest.approx([0, 1 + 1 / 2, 3 / 4, 2 + 1 / 2, 0])


def test_ar_counts_pairs_of_distinct_positions():
    m = B.AR()
    m.fit(*sessions([1, 2, 1], [2, 3]), n_cols=4, grid=[{}])
    assert dense(m.rules).tolist() == [[0, 0, 0, 0], [0, 2, 2, 0], [0, 2, 0, 1], [0, 0, 1, 0]]
    q = B.Query(examples(([3, 2], 1), ([1], 2)), np.array([0, 1]), 4)
    assert dense(m.score(q, {})).tolist() == [[0, 2, 0, 1], [0, 2, 2, 0]]


def test_sr_weights_following_items_by_one_over_distance():
    m = B.SR()
    m.fit(*sessions([1, 2, 3], [3, 1]), n_cols=4, grid=[{"steps": 1}, {"steps": 2}])
    assert dense(m.rules[1]).tolist() == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]]
    assert dense(m.rules[2]).tolist() == [[0, 0, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1], [0, 1, 0, 0]]


KNN_SESSIONS = ([1, 2], [2, 3], [4, 5])  # oldest first; the history is [1, 2]


def knn_scores(model, k, sample, own=None):
    model.fit(*sessions(*KNN_SESSIONS), n_cols=6, grid=[{"k": k, "sample": sample}])
    q = B.Query(examples(([1, 2], 3)), np.array([0]), 6, None if own is None else np.array([own]))
    return dense(model.score(q, {"k": k, "sample": sample}))[0]


def test_sknn_neighbours_by_cosine_on_item_sets():
    # cosine: s0 2 / sqrt(2 * 2) = 1, s1 1 / sqrt(2 * 2) = 0.5, s2 shares nothing (no candidate)
    assert knn_scores(B.SKNN(), k=1, sample=0).tolist() == pytest.approx([0, 1, 1, 0, 0, 0])
    assert knn_scores(B.SKNN(), k=2, sample=0).tolist() == pytest.approx([0, 1, 1.5, 0.5, 0, 0])
    assert knn_scores(B.SKNN(), k=2, sample=1).tolist() == pytest.approx([0, 0, 0.5, 0.5, 0, 0])
    # s0 is the history's own sequence (recbole): only s1 votes
    assert knn_scores(B.SKNN(), k=2, sample=0, own=0).tolist() == pytest.approx([0, 0, 0.5, 0.5, 0, 0])


def test_vsknn_weighs_recent_items_linearly():
    # history [1, 2]: item 1 weighs 1/2, item 2 weighs 2/2; dot products s0 1.5, s1 1.0
    assert knn_scores(B.VSKNN(), k=2, sample=0).tolist() == pytest.approx([0, 1.5, 2.5, 1.0, 0, 0])
    q = B.Query(examples(([2, 1, 2], 3)), np.array([0]), 6)
    assert dense(q.recency)[0].tolist() == pytest.approx([0, 2 / 3, 1, 0, 0, 0])


def test_sparse_ranks_equal_common_metrics_full_ranks():
    rng = np.random.default_rng(0)
    scores = np.where(rng.random((200, 30)) < 0.3, rng.integers(1, 4, (200, 30)) / 2, 0.0)
    targets = rng.integers(1, 30, 200)
    masked = scores.copy()
    masked[:, 0] = -np.inf  # gcsan.main.evaluate masks the padding column
    got = B.sparse_full_ranks(sp.csr_matrix(scores[:, 1:]), targets - 1)
    assert got.tolist() == full_ranks(masked, targets).tolist()
    assert (got == 28).any() and (got < 28).any()


# ----------------------------------------------------------------------------- whole runs
def ring_sessions(rng, n, n_items=40):
    """Sessions walking mostly to the next item of a ring (so SR and kNN have something to find)."""
    seqs = []
    for _ in range(n):
        s = [int(rng.integers(1, n_items + 1))]
        for _ in range(int(rng.integers(1, 6))):
            s.append(s[-1] % n_items + 1 if rng.random() < 0.7 else int(rng.integers(1, n_items + 1)))
        seqs.append(s)
    return seqs


def run_on(monkeypatch, tmp_path, name, data, *flags):
    monkeypatch.setattr(B, "load", lambda *a, **k: data)
    out = tmp_path / name
    assert run_cli(B.main, ["--no-progress", "--out", str(out), "--batch-size", "64", "--knn-k", "2,20",
                            "--knn-sample", "5,0", "--sr-steps", "1,3", *flags]) == 0
    return json.loads((out / "summary.json").read_text())


def poison(split, seed=1):
    return Split(split.items, split.start, split.length, np.random.default_rng(seed).integers(1, 41, len(split)))


def test_tuning_never_reads_test_srgnn(monkeypatch, tmp_path):
    seqs = ring_sessions(np.random.default_rng(0), 400)
    data = SeqData(41, srgnn_augment(*seqs[:300]), None, srgnn_augment(*seqs[300:]))
    clean = run_on(monkeypatch, tmp_path, "clean", data, "--dataset", "diginetica", "--protocol", "srgnn")
    data.test = poison(data.test)
    poisoned = run_on(monkeypatch, tmp_path, "poisoned", data, "--dataset", "diginetica", "--protocol", "srgnn")
    assert clean["chosen"] == poisoned["chosen"] and clean["validation"] == poisoned["validation"]
    assert clean["headline"] != poisoned["headline"]
    assert set(clean["chosen"]) == set(B.BASELINES) and clean["tune_metric"] == "mrr@20"
    assert clean["headline"]["sr/recall@20"] > 0.7  # the ring is easy for sequential rules
    for name, table in clean["validation"].items():  # the chosen point is the validation argmax
        if table:
            best = max(table, key=lambda row: row["mrr@20"])
            assert {k: best[k] for k in clean["chosen"][name]} == clean["chosen"][name]


def test_tuning_never_reads_test_recbole(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    seqs = ring_sessions(rng, 60)
    seqs = [s + ring_sessions(rng, 1)[0] for s in seqs]  # users with 4 to 12 interactions
    user = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    train, valid, test = leave_one_out_examples(user, np.concatenate(seqs), max_len=50)
    clean = run_on(monkeypatch, tmp_path, "clean", SeqData(41, train, valid, test), "--dataset", "ml-100k")
    poisoned = run_on(monkeypatch, tmp_path, "poisoned", SeqData(41, train, valid, poison(test)),
                      "--dataset", "ml-100k")
    assert clean["chosen"] == poisoned["chosen"] and clean["validation"] == poisoned["validation"]
    assert clean["headline"] != poisoned["headline"] and clean["tune_metric"] == "ndcg@10"
    assert set(clean["headline"]) == {f"{n}/{m}" for n in B.BASELINES for m in ("recall@10", "mrr@10", "ndcg@10")}


def test_resume_skips_finished_baselines(monkeypatch, tmp_path):
    seqs = ring_sessions(np.random.default_rng(0), 200)
    data = SeqData(41, srgnn_augment(*seqs[:150]), None, srgnn_augment(*seqs[150:]))
    flags = ("--dataset", "diginetica", "--protocol", "srgnn")
    run_on(monkeypatch, tmp_path, "run", data, *flags, "--baselines", "spop,ar")
    summary = run_on(monkeypatch, tmp_path, "run", data, *flags, "--resume")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["baseline"] for x in lines] == list(B.BASELINES)
    assert len(summary["headline"]) == 2 * len(B.BASELINES)


@pytest.mark.parametrize("flag", [["--knn-k", "0"], ["--knn-k", "a,b"], ["--baselines", "gru4rec"],
                                  ["--valid-share", "1.5"], ["--dataset", "yoochoose1_64"]])
def test_bad_flags_exit_2(flag, tmp_path):
    with pytest.raises(SystemExit) as e:
        B.parse_args([*flag, "--out", str(tmp_path / "x")])
    assert e.value.code == 2
