"""No silent failure: bad flags, bad data, divergence and a reused run folder, run as `python -m fgnn.main`.

Exit codes as in common/cli.py: 2 a bad flag, 3 data, 4 diverged, 5 the output folder. Each case
prints one paragraph (no traceback) and leaves no run folder behind, except a diverged run, whose
folder says ``"status": "diverged"``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.jobs import ROOT
from common.testing import need_file

SAMPLE = ("--dataset", "sample", "--threads", "1", "--no-progress")


def _main(*argv, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fgnn.main", *argv], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def _a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    return f


BAD_FLAGS = [
    (["--batch-size", "0"], "argument --batch-size: '0' is not a positive integer"),
    (["--epochs", "-1"], "argument --epochs: '-1' is not a positive integer"),
    (["--lr", "nan"], "argument --lr: 'nan' is not a positive number"),
    (["--l2", "-0.5"], "argument --l2: '-0.5' is not a number >= 0"),
    (["--max-eval-examples", "0"], "argument --max-eval-examples: '0' is not a positive integer"),
    (["--out", "{file}/run"], "argument --out: "),
]


@pytest.mark.parametrize("flags,needle", BAD_FLAGS, ids=[f[0][0] for f in BAD_FLAGS])
def test_bad_flag_exits_2_with_one_line(tmp_path, flags, needle):
    flags = [f.replace("{file}", str(_a_file(tmp_path))) for f in flags]
    out_flags = [] if "--out" in flags else ["--out", str(tmp_path / "run")]
    res = _main(*SAMPLE, *flags, *out_flags)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"python -m fgnn.main: error: {needle}"), res.stderr
    assert not (tmp_path / "run").exists()


def _corrupt_cache(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    (root / "processed").mkdir(parents=True)
    for name in ("train.pt", "test.pt"):
        (root / "processed" / name).write_bytes(b"this is not a torch file")
    return ["--data-root", str(root)]


@pytest.mark.real_data
@pytest.mark.parametrize("case,needle", [
    ("raw log missing", "diginetica/train-item-views.csv is not available"),
    ("no prepared splits", "--dataset sample has no prepared splits"),
    ("corrupt cache", "cached session graphs"),
    ("no such device", "--device cuda:99: no such CUDA device"),
])
def test_data_and_value_errors_exit_3_without_traceback(tmp_path, case, needle):
    need_file("srgnn-sample", "sample_train-item-views.csv")
    flags = {"raw log missing": ["--dataset", "diginetica", "--source", "raw"],
             "no prepared splits": ["--source", "prepared"],
             "corrupt cache": _corrupt_cache(tmp_path),
             "no such device": ["--device", "cuda:99"]}[case]
    res = _main(*SAMPLE, *flags, "--out", str(tmp_path / "run"))
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr and needle in res.stderr, res.stderr
    assert res.stderr.count("python -m fgnn.main: error:") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.real_data
def test_divergence_exits_4_and_says_so(tmp_path):
    need_file("srgnn-sample", "sample_train-item-views.csv")
    run = tmp_path / "run"
    res = _main(*SAMPLE, "--epochs", "2", "--lr", "1e6", "--out", str(run))
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr
    err = " ".join(res.stderr.split())
    assert "diverged" in err and "epoch 1, step" in err and "lower --lr (now 1000000.0)" in err, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"]["epoch"] == 1
    assert summary["last_finite_epoch"] is None
    # nothing from the diverged epoch is kept as a result or a checkpoint
    assert not (run / "checkpoint.pt").exists() and not (run / "metrics.jsonl").exists()


@pytest.mark.real_data
def test_reused_out_needs_resume_or_overwrite(tmp_path):
    need_file("srgnn-sample", "sample_train-item-views.csv")
    run = tmp_path / "run"
    short = (*SAMPLE, "--epochs", "1", "--max-train-batches", "2", "--out", str(run))
    assert _main(*short).returncode == 0
    old_events = sorted(p.name for p in (run / "tb").iterdir())
    assert old_events
    again = _main(*short)
    assert again.returncode == 5, again.stderr
    err = " ".join(again.stderr.split())
    assert "Traceback" not in err and "--resume" in err and "--overwrite" in err and str(run) in err, err
    over = _main(*short, "--overwrite")
    assert over.returncode == 0, over.stderr
    new_events = sorted(p.name for p in (run / "tb").iterdir())
    assert new_events and not set(old_events) & set(new_events)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
