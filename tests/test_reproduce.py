"""make reproduce: bad values, the plan, resuming a killed run, skipping finished jobs; the report."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common import report
from common.jobs import ROOT, Job, all_jobs, reference_for
from common.reproduce import plan

FAKE = Job(paper="fake", name="tiny", dataset="d", args=(), epochs=6, epoch_seconds=0.4, metrics=("hr@10",),
           module="tests.fake_main", seeds=(0,), curve=("hr@10",))


@pytest.mark.parametrize("argv,needle", [
    (["unknown"], "valid: all, mbgmn_tf, fgnn, agnn, mpm, gcsan"),
    (["all", "--seeds", "x"], "SEEDS='x' is not a comma-separated list"),
    (["all", "--quick", "yes"], "QUICK='yes' is not a number"),
])
def test_bad_values_one_line_exit_2(argv, needle):
    out = subprocess.run([sys.executable, "-m", "common.reproduce", *argv], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_every_paper_declares_jobs_and_plan_prints_estimates(tmp_path):
    jobs = all_jobs()
    assert {j.paper for j in jobs} == {"mbgmn_tf", "fgnn", "agnn", "mpm", "gcsan"}
    for j in jobs:
        assert j.epoch_seconds > 0 and j.quick_seconds > 0 and j.metrics and j.selection
    out = subprocess.run([sys.executable, "-m", "common.reproduce", "--dry-run", "--runs", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "estimated total" in out.stdout and str(tmp_path) in out.stdout
    quick = subprocess.run([sys.executable, "-m", "common.reproduce", "--dry-run", "--quick", "1", "--runs",
                            str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    total = quick.stdout.split("estimated total: ")[1].split()[0]
    h, m, s = (int(x) for x in total.split(":"))
    assert h * 3600 + m * 60 + s <= 15 * 60, quick.stdout  # QUICK=1 fits 15 minutes on 2 cores


def test_plan_runs_shortest_first_and_skips_finished(tmp_path):
    long = Job(paper="fake", name="long", dataset="d", args=(), epochs=10, epoch_seconds=100, metrics=("hr@10",))
    todo = plan([long, FAKE], None, False, tmp_path, False)
    assert [t["job"].name for t in todo] == ["tiny", "long"]
    d = FAKE.run_dir(tmp_path, 0)
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert plan([FAKE], None, False, tmp_path, False)[0]["skip"]
    assert not plan([FAKE], None, False, tmp_path, True)[0]["skip"]  # FORCE=1


def _driver(tmp_path):
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from common.jobs import Job
        from common.reproduce import plan, run_plan
        job = Job(paper="fake", name="tiny", dataset="d", args=(), epochs=6, epoch_seconds=0.4,
                  metrics=("hr@10",), module="tests.fake_main", seeds=(0,))
        sys.exit(run_plan(plan([job], None, False, Path(sys.argv[1]), False), False, False))
    """))
    return [sys.executable, str(script), str(tmp_path / "runs")]


def test_killed_reproduce_continues_the_job(tmp_path):
    run = FAKE.run_dir(tmp_path / "runs", 0)
    proc = subprocess.Popen(_driver(tmp_path), cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.is_file() and len(m.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its job, as a reboot would
    proc.wait()
    assert not (run / "summary.json").exists()
    done = len((run / "metrics.jsonl").read_text().splitlines())
    assert subprocess.run(_driver(tmp_path), cwd=ROOT, capture_output=True).returncode == 0
    starts = [int(x) for x in (run.parent / "starts.txt").read_text().split()]
    assert starts == [1, done + 1]  # continued after the last finished epoch, not from scratch
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert subprocess.run(_driver(tmp_path), cwd=ROOT, capture_output=True).returncode == 0
    assert [int(x) for x in (run.parent / "starts.txt").read_text().split()] == starts  # finished: skipped


def test_report_lists_missing_runs_and_marks_smoke(tmp_path):
    runs = tmp_path / "runs"
    d = FAKE.run_dir(runs, 0)
    assert subprocess.run([sys.executable, "-m", "tests.fake_main", "--epochs", "2", "--sleep", "0", "--out", str(d)],
                          cwd=ROOT).returncode == 0
    two = Job(**{**FAKE.__dict__, "seeds": (0, 1)})
    text, data = report.build_report(runs, papers=["fake"], jobs=[two])
    assert "0.2000" in text and "Missing runs" in text and "s1" in text
    assert data["jobs"][0]["aggregate"]["n"] == 1
    quick_text, _ = report.build_report(runs, quick=True, papers=["fake"], jobs=[two])
    assert "SMOKE RUN" in quick_text and "published" not in quick_text.split("SMOKE RUN")[1].split("\n\n")[1]


def test_readme_tables_match_their_records():
    """`make report` on the committed results/ reproduces every results table in the READMEs."""
    for path in report.readmes():
        text = path.read_text()
        assert report.update_readme(text) == text, f"{path}: run `make report` (python -m common.report --readmes)"


def test_published_and_reference_are_data():
    for paper in ("mbgmn_tf", "fgnn", "agnn", "mpm", "gcsan"):
        assert (ROOT / paper / "reference.json").is_file(), paper
    assert reference_for("nope", "d")["values"] == {}


def _record(folder, paper, seed, headline, dataset="d", setting="", status="finished"):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "paper": paper, "dataset": dataset, "setting": setting, "status": status, "seed": seed, "epochs": 2,
        "headline": headline, "selection": "last epoch", "wall_seconds": 61, "hardware": "cpu",
        "command": f"python -m {paper}.main --seed {seed}", "git_commit": "abc123"}))
    (folder / "metrics.jsonl").write_text("")


def test_readme_markers_render_records(tmp_path):
    res = tmp_path / "results"
    _record(res / "mpm" / "x-s0", "mpm", 0, {"hr@10": 0.70})
    _record(res / "mpm" / "x-s1", "mpm", 1, {"hr@10": 0.72})
    _record(res / "mpm" / "baselines-d", "mpm", 0, {"ease/hr@10": 0.69, "pop/hr@10": 0.4})
    text = "a\n<!-- results: mpm/x-s* -->\nold\n<!-- /results -->\nb\n<!-- glance: mpm/x-s* -->\n<!-- /glance -->\n"
    new = report.update_readme(text, res)
    assert "old" not in new and new.startswith("a\n<!-- results: mpm/x-s* -->\n") and "\nb\n" in new
    assert "0.7100 ± 0.0141 (n=2)" in new  # mean and sample std of 0.70 and 0.72
    assert "python -m mpm.main --seed 1" in new and "abc123" in new
    assert "hr@10 ease 0.6900" in new  # best baseline in the glance table
    assert report.update_readme(new, res) == new  # idempotent
    with pytest.raises(Exception, match="matches no run record"):
        report.update_readme("<!-- results: mpm/nothing* -->\n<!-- /results -->", res)


def test_best_baseline_matches_protocol_words_and_last_metrics(tmp_path):
    res = tmp_path / "results"
    _record(res / "agnn" / "baselines-ucs", "agnn", 0, {"bias/rmse": 1.02, "knn/rmse": 1.03}, setting="ucs-baselines")
    _record(res / "agnn" / "baselines-ics", "agnn", 0, {"bias/rmse": 0.90}, setting="ics-baselines")
    assert report.best_baseline("agnn", "d", "ucs-authors", "rmse", res) == "bias 1.0200"  # lower is better
    assert report.best_baseline("agnn", "d", "ics", "rmse", res) == "bias 0.9000"
    assert report.best_baseline("agnn", "d", "warm", "rmse", res) is None
    assert report.best_baseline("agnn", "other", "ucs", "rmse", res) is None
    _record(res / "mpm" / "baselines-d", "mpm", 0, {"ease/hr@10": 0.65, "pop/hr@10": 0.4}, setting="baselines")
    assert report.best_baseline("mpm", "d", "", "last_hr@10", res) == "ease 0.6500"
    assert report.best_baseline("mpm", "d", "tie-order-stable", "hr@10", res) == "ease 0.6500"
