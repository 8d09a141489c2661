"""No silent failure: bad flags, missing or malformed data, a reused or impossible --out, divergence.

Each case runs ``python -m gcsan.main`` as a subprocess and checks its exit code (common/cli.py:
2 flag, 3 data, 4 diverged, 5 output folder), that no traceback is printed and that no run folder
is left behind where the run must not start.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.testing import need_file

ROOT = Path(__file__).resolve().parents[2]
# ML-100k, 1 block, histories of 10, a few batches of 256: a run of a few seconds
TINY = ["--dataset", "ml-100k", "--max-len", "10", "--n-layers", "1", "--n-heads", "1", "--batch-size", "256",
        "--max-train-batches", "2", "--epochs", "1", "--no-progress", "--threads", "1"]


def gcsan(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gcsan.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.mark.parametrize("args, code, says", [
    (["--batch-size", "0"], 2, "--batch-size: '0' is not a positive integer"),
    (["--epochs", "-1"], 2, "'-1' is not a positive integer"),
    (["--lr", "nan"], 2, "--lr: 'nan' is not a positive number"),
    (["--hidden-dropout", "1.5"], 2, "--hidden-dropout: '1.5' is not a probability"),
    (["--weight", "1.2"], 2, "--weight: '1.2' is not a number in [0, 1]"),
    (["--n-heads", "3"], 2, "--hidden-size 64 is not a multiple of --n-heads 3"),
    (["--protocol", "srgnn"], 2, "no preset for --dataset ml-100k --protocol srgnn"),
    (["--valid-portion", "0.1"], 2, "--valid-portion applies to --protocol srgnn only"),
    (["--valid-metric", "auc"], 2, "--valid-metric: invalid choice"),
    (["--resume", "--overwrite"], 2, "--resume and --overwrite exclude each other"),
])
def test_bad_flag_exits_2_and_writes_nothing(tmp_path, args, code, says):
    out = tmp_path / "run"
    r = gcsan(*args, "--out", str(out))
    assert r.returncode == code, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_out_inside_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    r = gcsan("--out", str(tmp_path / "file" / "run"))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


def test_missing_dataset_exits_3_naming_the_file(tmp_path):
    """ml-1m/ratings.dat is not in the offline mirror: one paragraph, exit 3, no run folder."""
    empty = tmp_path / "mirror"
    empty.mkdir()
    out = tmp_path / "run"
    r = gcsan("--dataset", "ml-1m", "--out", str(out),
              env={"REPRO_DATA_MIRROR": str(empty), "REPRO_DATA_DIR": str(tmp_path / "cache")})
    assert r.returncode == 3, r.stderr
    assert "ratings.dat" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_malformed_data_file_exits_3(tmp_path):
    """A damaged u.data (here: not the verified file) is a data error, not a crash."""
    mirror = tmp_path / "mirror"
    (mirror / "ml-100k").mkdir(parents=True)
    (mirror / "ml-100k" / "u.data").write_text("this\tis not\na ratings file\n")
    out = tmp_path / "run"
    r = gcsan(*TINY, "--out", str(out), env={"REPRO_DATA_MIRROR": str(mirror), "REPRO_DATA_DIR": str(tmp_path / "c")})
    assert r.returncode == 3, r.stderr
    assert "u.data" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_malformed_srgnn_pickle_is_a_data_error(tmp_path):
    from common.cli import DataError
    from gcsan.data import _read_or_data_error, read_srgnn

    bad = tmp_path / "train.txt"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="train.txt"):
        _read_or_data_error(read_srgnn, bad)


def test_divergence_exits_4_with_status_and_hint(tmp_path):
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    r = gcsan(*TINY, "--lr", "1e6", "--max-train-batches", "5", "--out", str(out))
    assert r.returncode == 4, r.stderr
    assert "Traceback" not in r.stderr
    assert "epoch 1, step" in r.stderr and "lower --lr (now 1000000.0)" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"]["epoch"] == 1
    assert summary["last_finite_epoch"] is None
    assert not (out / "best.ckpt").exists() and not (out / "last.ckpt").exists()


def test_out_reuse_needs_resume_or_overwrite(tmp_path):
    need_file("ml-100k", "u.data")
    out = tmp_path / "run"
    first = gcsan(*TINY, "--out", str(out))
    assert first.returncode == 0, first.stderr
    old_events = sorted((out / "tb").iterdir())
    assert old_events and json.loads((out / "summary.json").read_text())["status"] == "finished"

    again = gcsan(*TINY, "--out", str(out))
    assert again.returncode == 5, again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr and "Traceback" not in again.stderr

    fresh = gcsan(*TINY, "--out", str(out), "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    assert not set(old_events) & set((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["selection"] == "best validation epoch"
    assert set(summary["headline"]) == {"recall@10", "mrr@10", "ndcg@10"}
