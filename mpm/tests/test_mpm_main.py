"""mpm.main: sampler, evaluation of a hand-built scorer, the official best-epoch rule, and short
real runs on ML-100k (one full epoch beats popularity; resume)."""

import json
import math

import numpy as np
import pytest
import torch

from common.cli import DataError
from common.testing import need_file
from mpm.main import evaluate, main, official_best, parse_args, sample_epoch


def test_sampler_never_yields_a_training_positive_and_keeps_the_layout():
    rng = np.random.default_rng(0)
    nb_items = 30
    users = np.repeat(np.arange(5), 20)
    items = np.concatenate([rng.choice(nb_items, 20, replace=False) for _ in range(5)])  # 2/3 of items taken
    exclude = np.unique(users * nb_items + items)
    entry, item, label = sample_epoch(users, items, exclude, nb_items, 4, np.random.default_rng(1))
    assert len(entry) == len(item) == len(label) == 500
    pos, neg = label == 1, label == 0
    assert pos.sum() == 100 and neg.sum() == 400
    np.testing.assert_array_equal(np.sort(entry[pos]), np.arange(100))
    np.testing.assert_array_equal(item[pos], items[entry[pos]])
    assert not np.isin(users[entry[neg]] * nb_items + item[neg], exclude).any()
    assert np.bincount(entry, minlength=100).tolist() == [5] * 100
    # seeded: the same generator state gives the same epoch
    again = sample_epoch(users, items, exclude, nb_items, 4, np.random.default_rng(1))
    np.testing.assert_array_equal(again[1], item)


class TableScorer(torch.nn.Module):
    """score(user, history, items) = table[items]."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def score(self, user, history, items):
        return self.table[items]


def test_evaluation_of_a_hand_built_scorer():
    table = np.zeros(300)
    table[100:199] = -np.arange(99)                  # negatives 100..198 score 0, -1, ..., -98
    table[[0, 1, 2, 3]] = [1.0, -4.5, -9.5, -4.0]    # ranks 0, 5, 10, and 5 (ties with item 104: counted against)
    negs = np.tile(np.arange(100, 199), (4, 1))
    m = evaluate(TableScorer(table), np.arange(4), np.arange(4), np.zeros((4, 9), np.int64), negs, k=10,
                 batch_users=3)
    assert m["hr@10"] == pytest.approx(0.75)
    assert m["ndcg@10"] == pytest.approx((1 + 2 / math.log2(7)) / 4)


def test_tie_order_defaults_to_the_authors_sort():
    assert parse_args([]).tie_order == "authors"
    assert parse_args(["--tie-order", "stable"]).tie_order == "stable"
    with pytest.raises(SystemExit):
        parse_args(["--tie-order", "quicksort"])


def test_official_best_epoch_rule():
    h = [{"epoch": 0, "hr@10": 0.9, "ndcg@10": 0.9},
         {"epoch": 1, "hr@10": 0.5, "ndcg@10": 0.3},
         {"epoch": 2, "hr@10": 0.6, "ndcg@10": 0.2},   # HR improves: becomes best although NDCG fell
         {"epoch": 3, "hr@10": 0.55, "ndcg@10": 0.25},  # NDCG >= 0.2: best again
         {"epoch": 4, "hr@10": 0.5, "ndcg@10": 0.1}]
    assert official_best(h)["epoch"] == 3


def test_one_epoch_on_ml100k_beats_popularity(tmp_path):
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    assert main(["--dataset", "ml-100k", "--epochs", "1", "--out", str(out), "--no-progress", "--threads", "1",
                 "--eval-batch-users", "256"]) == 0
    s = json.loads((out / "summary.json").read_text())
    m = s["metrics"]
    assert 0.05 < m["untrained"]["hr@10"] < 0.15, m
    assert m["last"]["hr@10"] > m["popularity"]["hr@10"], m
    assert s["data"]["train_entries"] == 90_570
    for f in ("config.json", "metrics.jsonl", "comparison.md", "checkpoint.pt", "curves.png"):
        assert (out / f).is_file()
    assert "epoch_1/hr@10" in (out / "comparison.md").read_text()
    assert list((out / "tb").iterdir())


def test_resume_continues_after_last_epoch(tmp_path):
    need_file("ml-100k", "u.data")
    args = ["--dataset", "ml-100k", "--out", str(tmp_path), "--no-progress", "--max-train-steps", "2",
            "--threads", "1", "--valid"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert "valid_hr@10" in rows[2]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["metrics"]["best_valid_epoch"]["epoch"] in (1, 2)


def test_official_split_without_training_data_names_both_files(tmp_path):
    need_file("mpm-ml-1m", "test_ratings.csv")
    with pytest.raises(DataError, match="train_ratings.csv.*ratings.dat"):
        main(["--split", "official", "--out", str(tmp_path), "--no-progress"])


def test_ml1m_path_end_to_end_on_a_hand_made_ratings_file(tmp_path):
    from mpm.tests.test_mpm_data import HAND_MADE

    f = tmp_path / "ratings.dat"
    f.write_text(HAND_MADE)
    out = tmp_path / "run"
    assert main(["--dataset", "ml-1m", "--ratings-file", str(f), "--min-ratings", "4", "--history-size", "2",
                 "--test-negatives", "2", "--epochs", "2", "--batch-size", "4", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(out), "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["data"] == {"users": 2, "items": 7, "history_size": 2, "train_entries": 3, "test": 2}
    assert s["metrics"]["last"]["epoch"] == 2 and s["metrics"]["last"]["hr@10"] == 1.0  # 3 candidates, K = 10
