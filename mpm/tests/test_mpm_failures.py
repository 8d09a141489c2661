"""No silent failure: bad flags, missing or malformed data, a reused --out, divergence.

The command-line cases run ``python -m mpm.main`` as a subprocess and check its exit code
(common/cli.py: 2 flag, 3 data, 4 diverged, 5 output folder), that no traceback is printed and that
no run folder is left behind where the run must not start. Real runs are ML-100k with 1-2 training
steps (``--max-train-steps``).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mpm.main
from common.cli import Diverged
from common.testing import need_file
from mpm.main import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "ml-100k", "--epochs", "1", "--max-train-steps", "1", "--threads", "1", "--no-progress",
        "--eval-batch-users", "256"]


def mpm_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m mpm.main ARGS``; ``.err`` is stderr with its line wrapping (common.cli) undone."""
    r = subprocess.run([sys.executable, "-m", "mpm.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    r.err = " ".join(re.sub(r"-\n\s+", "-", r.stderr).split())  # textwrap also breaks after "--min-"
    return r


@pytest.mark.parametrize("args, says", [
    (["--batch-size", "0"], "--batch-size: '0' is not a positive integer"),
    (["--epochs", "-1"], "--epochs: '-1' is not a positive integer"),
    (["--lr", "nan"], "--lr: 'nan' is not a positive number"),
    (["--beta1", "1.5"], "--beta1: '1.5' is not a probability in [0, 1)"),
    (["--seed", "-3"], "--seed: '-3' is not an integer >= 0"),
    (["--max-train-steps", "0"], "--max-train-steps: '0' is not a positive integer"),
    (["--ratings-file", "/nonexistent/u.data"], "--ratings-file: '/nonexistent/u.data' is not an existing file"),
    (["--device", "gpu7"], "--device: 'gpu7' is not a torch device"),
    (["--split", "official", "--dataset", "ml-100k"], "--split official is the authors' ML-1m test split"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
])
def test_bad_flag_exits_2_and_writes_nothing(tmp_path, args, says):
    out = tmp_path / "run"
    r = mpm_main(*args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert says in r.err and "Traceback" not in r.stderr
    assert not out.exists()


def test_out_inside_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    r = mpm_main("--dataset", "ml-100k", "--out", str(tmp_path / "file" / "run"))
    assert r.returncode == 2 and "is a file" in r.err and "Traceback" not in r.stderr


def test_missing_dataset_exits_3_naming_the_file(tmp_path):
    """ml-1m/ratings.dat is not in this mirror: one paragraph, exit 3, no run folder."""
    empty = tmp_path / "mirror"
    empty.mkdir()
    out = tmp_path / "run"
    r = mpm_main("--dataset", "ml-1m", "--out", str(out),
                 env={"REPRO_DATA_MIRROR": str(empty), "REPRO_DATA_DIR": str(tmp_path / "cache")})
    assert r.returncode == 3, r.stderr
    assert "ratings.dat" in r.err and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("content, extra, says", [
    ("this\tis not\na ratings file\n", [], "is not a ratings file in format 'tab'"),
    ("", [], "is not a ratings file in format 'tab'"),
    ("1\t2\t5\t881250949\n1\t3\t4\t881250950\n", [], "no user has at least 20 ratings (--min-ratings 20)"),
    ("".join(f"1\t{i}\t5\t{881250949 + i}\n" for i in range(1, 21)), ["--history-size", "20"],
     "raise --min-ratings to at least 21 or lower --history-size"),
    ("".join(f"1\t{i}\t5\t{881250949 + i}\n" for i in range(1, 31)), [],
     "cannot draw 99 negatives (--test-negatives 99)"),
])
def test_bad_ratings_file_exits_3_naming_the_fix(tmp_path, content, extra, says):
    f = tmp_path / "u.data"
    f.write_text(content)
    out = tmp_path / "run"
    r = mpm_main("--dataset", "ml-100k", "--ratings-file", str(f), "--cache-dir", str(tmp_path / "c"),
                 *extra, "--out", str(out))
    assert r.returncode == 3, r.stderr
    assert says in r.err and "Traceback" not in r.stderr
    assert not out.exists()


def test_divergence_exits_4_with_a_diverged_summary(tmp_path):
    """--lr 1e6 gives a NaN loss at step 2 of epoch 1 (seed 3)."""
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    r = mpm_main(*TINY, "--max-train-steps", "20", "--lr", "1e6", "--out", str(out))
    assert r.returncode == 4, r.stderr
    assert "Traceback" not in r.stderr
    assert "epoch 1, step" in r.err and "lower --lr (now 1000000.0)" in r.err
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged"]["epoch"] == 1 and s["last_finite_epoch"] is None
    assert s["metrics"] == {} and "headline" not in s
    assert not (out / "checkpoint.pt").exists()  # no finished epoch: nothing to keep


def test_divergence_keeps_the_last_good_checkpoint_and_resume_continues(tmp_path, monkeypatch):
    """A NaN loss in epoch 2: epoch 1's checkpoint and records stay, nothing of epoch 2 is written,
    no best epoch is picked; --resume then continues from epoch 1."""
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--out", str(out)]
    real = mpm.main.train_epoch

    def nan_in_epoch_2(model, optimizer, data, exclude, args, epoch, rng, guard=None):
        if epoch == 2:
            guard.loss(float("nan"), epoch, 1)
        return real(model, optimizer, data, exclude, args, epoch, rng, guard)

    monkeypatch.setattr(mpm.main, "train_epoch", nan_in_epoch_2)
    with pytest.raises(Diverged, match="epoch 2, step 1.*--lr"):
        main(args)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["last_finite_epoch"] == 1 and s["metrics"] == {}
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]

    monkeypatch.setattr(mpm.main, "train_epoch", real)
    assert main(args + ["--resume"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and s["metrics"]["last"]["epoch"] == 2
    assert set(s["headline"]) == {"hr@10", "ndcg@10", "last_hr@10", "last_ndcg@10"}
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_reused_out_exits_5_unless_overwrite(tmp_path):
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    assert mpm_main(*TINY, "--out", str(out)).returncode == 0
    old_events = {p.name for p in (out / "tb").iterdir()}
    assert old_events

    again = mpm_main(*TINY, "--out", str(out))
    assert again.returncode == 5, again.stderr
    assert "--resume" in again.err and "--overwrite" in again.err and "Traceback" not in again.stderr
    assert {p.name for p in (out / "tb").iterdir()} == old_events  # untouched

    fresh = mpm_main(*TINY, "--out", str(out), "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    new_events = {p.name for p in (out / "tb").iterdir()}
    assert new_events and not new_events & old_events
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
