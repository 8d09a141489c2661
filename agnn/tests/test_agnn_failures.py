"""No silent failure: bad flags, missing or malformed data, a reused or impossible --out, divergence.

Each case runs ``python -m agnn.main`` as a subprocess and checks its exit code (common/cli.py:
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
# UCS on the authors' graph, 2 training batches, 512 validation rows: a run of a few seconds.
TINY = ["--mode", "ucs", "--graph", "authors", "--epochs", "1", "--max-train-rows", "256", "--max-eval-rows", "512",
        "--no-progress", "--threads", "1"]
UCS_FILES = ("uiinfo.pkl", "ucs_train.dat", "ucs_val.dat", "neighbor_aspect_extension_2_zscore_ucs_uuii.pkl")


def agnn(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agnn.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def need_ucs():
    for f in UCS_FILES:
        need_file("agnn-ml100k", f)


@pytest.mark.parametrize("args, says", [
    (["--batch-size", "0"], "--batch-size: '0' is not a positive integer"),
    (["--epochs=-1"], "--epochs: '-1' is not a positive integer"),
    (["--epochs", "0"], "--epochs: '0' is not a positive integer"),
    (["--lr", "nan"], "--lr: 'nan' is not a positive number"),
    (["--lr", "0"], "--lr: '0' is not a positive number"),
    (["--weight-decay=-1e-3"], "--weight-decay: '-1e-3' is not a number >= 0"),
    (["--dropout", "1.5"], "--dropout: '1.5' is not a probability"),
    (["--embed-size", "0"], "--embed-size: '0' is not a positive integer"),
    (["--user-neighbours", "0"], "--user-neighbours: '0' is not a positive integer"),
    (["--vae-lambda", "inf"], "--vae-lambda: 'inf' is not a number >= 0"),
    (["--graph-share", "1.5"], "--graph-share: '1.5' is not a share in (0, 1]"),
    (["--graph-share", "0"], "--graph-share: '0' is not a positive number"),
    (["--max-train-rows=-5"], "--max-train-rows: '-5' is not an integer >= 0"),
    (["--threads", "two"], "--threads: 'two' is not an integer >= 0"),
    (["--seed=-1"], "--seed: '-1' is not an integer >= 0"),
    (["--mode", "cold"], "--mode: invalid choice"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
])
def test_bad_flag_exits_2_and_writes_nothing(tmp_path, args, says):
    out = tmp_path / "run"
    r = agnn(*args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("usage:") and lines[-1].startswith("main.py: error:")  # usage, then one line
    assert sum("error" in line for line in lines) == 1
    assert not out.exists()


def test_out_inside_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    r = agnn("--out", str(tmp_path / "file" / "run"))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


def test_missing_dataset_exits_3_naming_the_file(tmp_path):
    """An empty mirror and cache: one paragraph naming the file, exit 3, no run folder."""
    empty = tmp_path / "mirror"
    empty.mkdir()
    out = tmp_path / "run"
    r = agnn(*TINY, "--out", str(out), env={"REPRO_DATA_MIRROR": str(empty), "REPRO_DATA_DIR": str(tmp_path / "c")})
    assert r.returncode == 3, r.stderr
    assert "uiinfo.pkl" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_malformed_ratings_file_exits_3(tmp_path):
    """A damaged ucs_train.dat in the mirror (the real uiinfo.pkl beside it) is a data error, not a crash."""
    info = need_file("agnn-ml100k", "uiinfo.pkl")
    mirror = tmp_path / "mirror" / "agnn-ml100k"
    mirror.mkdir(parents=True)
    (mirror / "uiinfo.pkl").write_bytes(Path(info).read_bytes())
    (mirror / "ucs_train.dat").write_text("this\tis not\na ratings file\n")
    out = tmp_path / "run"
    r = agnn(*TINY, "--out", str(out),
             env={"REPRO_DATA_MIRROR": str(tmp_path / "mirror"), "REPRO_DATA_DIR": str(tmp_path / "c")})
    assert r.returncode == 3, r.stderr
    assert "ucs_train.dat" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_read_ratings_rejects_a_malformed_file(tmp_path):
    from agnn.data import read_ratings
    from common.cli import DataError

    bad = tmp_path / "x.dat"
    bad.write_text("1\t2\n3\t4\n")
    with pytest.raises(DataError, match="x.dat"):
        read_ratings(bad)
    bad.write_text("1\tabc\t3\n")
    with pytest.raises(DataError, match="x.dat"):
        read_ratings(bad)


def test_ics_on_authors_graph_exits_3_naming_the_fix(tmp_path):
    from agnn.data import GraphUnavailableError, load_neighbour_pickle

    try:
        load_neighbour_pickle("ics")
        pytest.skip("the authors' ICS file is available here")
    except GraphUnavailableError:
        pass
    out = tmp_path / "run"
    r = agnn("--mode", "ics", "--out", str(out), "--epochs", "1")
    assert r.returncode == 3, r.stderr
    assert "--graph built" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_divergence_exits_4_with_status_and_hint(tmp_path):
    need_ucs()
    out = tmp_path / "run"
    r = agnn(*TINY, "--lr", "1e6", "--max-train-rows", "1280", "--out", str(out))
    assert r.returncode == 4, r.stderr
    assert "Traceback" not in r.stderr
    assert "epoch 1, step" in r.stderr and "lower --lr (now 1000000.0)" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"]["epoch"] == 1
    assert summary["last_finite_epoch"] is None
    assert not (out / "checkpoint.pt").exists()  # a diverged epoch is never checkpointed


def test_out_reuse_needs_resume_or_overwrite(tmp_path):
    need_ucs()
    out = tmp_path / "run"
    first = agnn(*TINY, "--out", str(out))
    assert first.returncode == 0, first.stderr
    old_events = sorted((out / "tb").iterdir())
    assert old_events and json.loads((out / "summary.json").read_text())["status"] == "finished"

    again = agnn(*TINY, "--out", str(out))
    assert again.returncode == 5, again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr and "Traceback" not in again.stderr

    fresh = agnn(*TINY, "--out", str(out), "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    assert not set(old_events) & set((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["selection"] == "best test epoch by RMSE (authors' rule)"
    assert summary["setting"] == "ucs-authors" and set(summary["headline"]) == {"rmse", "mae"}
    assert summary["headline"]["rmse"] == summary["metrics"]["rmse_best"]


def test_main_names_match_the_data_module():
    """main.py keeps MODES and DATASET as literals (no torch import before the flags are checked)."""
    import agnn.data
    import agnn.main

    assert agnn.main.MODES == agnn.data.MODES and agnn.main.DATASET == agnn.data.DATASET


def test_jobs_match_headline_and_reference():
    """make reproduce's jobs: one mode/graph each, the headline main.py writes, a reference entry each."""
    from agnn import JOBS
    from agnn.main import SELECTION
    from common.jobs import paper_jobs, reference_for

    jobs = paper_jobs("agnn")
    assert len(jobs) == len(JOBS) == 5
    assert {j.setting for j in jobs} == {"ics-built", "ucs-authors", "ucs-built", "warm-authors", "warm-built"}
    for j in jobs:
        mode, graph = j.setting.split("-")
        assert j.args[:4] == ("--mode", mode, "--graph", graph) and j.name == j.setting
        assert j.metrics == ("rmse", "mae") and j.lower_is_better == ("rmse", "mae") and j.selection == SELECTION
        assert j.epochs == 20 and j.seeds == (0, 1, 2)
        ref = reference_for("agnn", j.dataset, j.setting, "reference")
        assert set(j.metrics) <= set(ref["values"]) and ref["source"]
    warm = reference_for("agnn", "agnn-ml100k", "warm-authors", "reference")["values"]
    assert (warm["rmse"], warm["mae"], warm["rmse_last"], warm["mae_last"]) == (0.9149, 0.7158, 0.9288, 0.7330)
