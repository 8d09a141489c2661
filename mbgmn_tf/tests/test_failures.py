"""No silent failure: bad flags, missing or malformed data, a reused --out, divergence.

Each case runs ``python -m mbgmn_tf.main`` as a subprocess and checks its exit code (common/cli.py:
2 flag, 3 data, 4 diverged, 5 output folder), that no traceback is printed and that no run folder
is left behind where the run must not start. Flags and data files are checked before TensorFlow
is imported, so the table below costs no TF start; three cases start TF (divergence on real
Beibei, and the two runs of the --out reuse test on the tiny synthetic dataset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.testing import need_file

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "1", "--trn-num", "60", "--batch", "30", "--samp-num", "5", "--no-progress", "--threads", "1"]


def mbgmn(*args: str) -> subprocess.CompletedProcess:
    """Run main.py; ``.stderr`` with the paragraph's line wrapping undone."""
    r = subprocess.run([sys.executable, "-m", "mbgmn_tf.main", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    r.stderr = " ".join(r.stderr.split())
    return r


@pytest.mark.parametrize("args, says", [
    (["--batch", "0"], "--batch: '0' is not a positive integer"),
    (["--epochs", "-1"], "--epochs: '-1' is not a positive integer"),
    (["--lr", "nan"], "--lr: 'nan' is not a positive number"),
    (["--lr", "0"], "--lr: '0' is not a positive number"),
    (["--reg", "-1"], "--reg: '-1' is not a number >= 0"),
    (["--test-users", "-5"], "--test-users: '-5' is not an integer >= 0"),
    (["--threads", "two"], "--threads: 'two' is not an integer >= 0"),
    (["--latdim", "30", "--att-head", "4"], "--latdim 30 must be even (base embeddings have d/2) and a multiple of --att-head 4"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["--dataset", "taobao"], "--dataset: invalid choice"),
    (["--data-dir", "/nonexistent/mbgmn"], "--data-dir: '/nonexistent/mbgmn' is not an existing folder"),
])
def test_bad_flag_exits_2_and_writes_nothing(tmp_path, args, says):
    out = tmp_path / "run"
    r = mbgmn(*args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_out_inside_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    r = mbgmn("--out", str(tmp_path / "file" / "run"))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("damage, says", [
    ("garbage", "trn_pv is not a pickled user x item matrix of behaviour 'pv'"),
    ("missing", "tst_int is missing: --data-dir needs"),
])
def test_malformed_or_missing_data_file_exits_3(tiny_folder, tmp_path, damage, says):
    if damage == "garbage":
        (tiny_folder / "trn_pv").write_bytes(b"not a pickle")
    else:
        (tiny_folder / "tst_int").unlink()
    out = tmp_path / "run"
    r = mbgmn("--data-dir", str(tiny_folder), *TINY, "--out", str(out))
    assert r.returncode == 3, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_divergence_exits_4_with_status_and_hint(tmp_path):
    """Real Beibei, Adam at lr 1e6: the loss is NaN at step 2 of epoch 1."""
    for f in ("trn_pv", "trn_cart", "trn_buy", "tst_int"):
        need_file("beibei", f)
    out = tmp_path / "run"
    r = mbgmn("--dataset", "beibei", "--lr", "1e6", "--epochs", "1", "--batch", "32", "--samp-num", "5",
              "--max-train-steps", "6", "--test-users", "500", "--threads", "1", "--no-progress", "--out", str(out))
    assert r.returncode == 4, r.stderr
    assert "Traceback" not in r.stderr
    assert "at epoch 1, step" in r.stderr and "lower --lr (now 1000000.0)" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"]["epoch"] == 1
    assert summary["last_finite_epoch"] is None
    assert not (out / "metrics.jsonl").exists()
    assert not list((out / "ckpt").glob("*"))  # no checkpoint of a diverged model


def test_out_reuse_needs_resume_or_overwrite(tiny_folder, tmp_path):
    out = tmp_path / "run"
    first = mbgmn("--data-dir", str(tiny_folder), *TINY, "--out", str(out))
    assert first.returncode == 0, first.stderr
    old_events = sorted((out / "tb").iterdir())
    assert old_events and json.loads((out / "summary.json").read_text())["status"] == "finished"

    again = mbgmn("--data-dir", str(tiny_folder), *TINY, "--out", str(out))
    assert again.returncode == 5, again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr and "Traceback" not in again.stderr

    fresh = mbgmn("--data-dir", str(tiny_folder), *TINY, "--out", str(out), "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    assert not set(old_events) & set((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["selection"] == "last epoch"
    assert set(summary["headline"]) == {"hr@10", "ndcg@10"}
