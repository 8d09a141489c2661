"""mpm.main --eval full|both: full ranking of the test item against every item the user has not
rated (hand-checked), and the default (sampled) numbers and random streams left unchanged."""

import json
import math

import numpy as np
import pytest
import torch

from mpm.main import evaluate_full, main, parse_args


class TableScorer(torch.nn.Module):
    """score(user, history, items) = table[user, items]."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def score(self, user, history, items):
        return self.table[user[:, None], items]


def test_full_ranking_masks_the_other_rated_items_by_hand():
    nb_items = 6
    table = np.array([[9.0, 1.0, 2.0, 3.0, 4.0, 3.0],    # user 0: rated 0 and 5 (test 5)
                      [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],    # user 1: rated 5 and 2 (test 2)
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])   # user 2: rates nothing scored (not a test user)
    rated = np.sort(np.array([0 * 6 + 0, 0 * 6 + 5, 1 * 6 + 5, 1 * 6 + 2, 2 * 6 + 1]))
    # user 0, item 0 masked: 4 (4.0) and 3 (3.0, a tie) above -> rank 2; user 1, item 5 masked: 4, 3 above -> rank 2
    # users given out of order: rows follow the users argument
    m = evaluate_full(TableScorer(table), np.array([1, 0]), np.array([2, 5]), np.zeros((2, 3), np.int64), rated,
                      nb_items, k=3, batch_users=1)
    assert m["full_hr@3"] == 1.0 and m["full_ndcg@3"] == pytest.approx(1 / math.log2(4))
    m = evaluate_full(TableScorer(table), np.array([0, 1]), np.array([5, 2]), np.zeros((2, 3), np.int64), rated,
                      nb_items, k=2)
    assert m["full_hr@2"] == 0.0


def test_eval_defaults_to_sampled():
    assert parse_args([]).eval == "sampled"
    with pytest.raises(SystemExit):
        parse_args(["--eval", "all"])


def test_eval_both_adds_full_numbers_and_changes_nothing_else(tmp_path):
    from mpm.tests.test_mpm_data import HAND_MADE

    f = tmp_path / "ratings.dat"
    f.write_text(HAND_MADE)
    rows, summaries, states = {}, {}, {}
    for mode in ("sampled", "both", "full"):
        out = tmp_path / mode
        assert main(["--dataset", "ml-1m", "--ratings-file", str(f), "--min-ratings", "4", "--history-size", "2",
                     "--test-negatives", "2", "--epochs", "2", "--batch-size", "4", "--topk", "3",
                     "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--no-progress", "--eval", mode]) == 0
        rows[mode] = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        summaries[mode] = json.loads((out / "summary.json").read_text())
        states[mode] = torch.load(out / "checkpoint.pt", weights_only=False)
    for mode in ("both", "full"):
        for a, b in zip(rows["sampled"], rows[mode]):
            assert "full_hr@3" not in a and 0 <= b["full_hr@3"] <= 1 and "full_ndcg@3" in b
            for key in ("hr@3", "ndcg@3", "loss"):
                assert a.get(key) == b.get(key)
        assert states[mode]["numpy_rng"] == states["sampled"]["numpy_rng"]
        assert torch.equal(states[mode]["torch_rng"], states["sampled"]["torch_rng"])
        for name, w in states["sampled"]["model"].items():
            assert torch.equal(w, states[mode]["model"][name])
    assert set(summaries["sampled"]["headline"]) == {"hr@3", "ndcg@3", "last_hr@3", "last_ndcg@3"}
    assert set(summaries["full"]["headline"]) == {"full_hr@3", "full_ndcg@3", "last_full_hr@3", "last_full_ndcg@3"}
    heads = {mode: set(s["headline"]) for mode, s in summaries.items()}
    assert heads["both"] == heads["sampled"] | heads["full"]
    assert summaries["both"]["metrics"]["last"]["full_hr@3"] == rows["both"][-1]["full_hr@3"]
