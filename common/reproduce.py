"""``make reproduce``: print the plan, run every job (shortest first, resumable), write the report.

    make reproduce                      # every paper's main jobs; runs/<paper>/<job>/s<seed>
    make reproduce QUICK=1              # every job, first seed, shortened schedule (<= 15 min on 2 cores); runs/quick/
    make reproduce PAPER=mpm SEEDS=0,1,2
    make reproduce FORCE=1              # rerun finished jobs from scratch
    make report                         # only the report (no training)

The same as ``python -m common.reproduce [PAPER] [--quick N] [--seeds 0,1,2] [--force] [--report-only]``.
A job whose run folder has ``summary.json`` with ``"status": "finished"`` is skipped; any other job
runs with ``--resume``, so running ``make reproduce`` again after Ctrl-C, a kill or a reboot
continues the unfinished job. The plan gives each job's estimated wall time from the per-epoch
costs each paper stores in its ``JOBS`` (measured on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from common.cli import EXIT_INTERRUPTED, EXIT_USAGE, run_cli
from common.jobs import PAPERS, ROOT, Job, all_jobs

DEFAULT_RUNS = ROOT / "runs"


def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def seeds_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip() != "")
    except ValueError:
        seeds = ()
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"SEEDS={text!r} is not a comma-separated list of integers >= 0, "
                                         f"e.g. SEEDS=0,1,2")
    return seeds


def quick_value(text: str) -> int:
    if text.strip() == "":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"QUICK={text!r} is not a number: use QUICK=1 (shortened schedule) "
                                         f"or QUICK=0 (full runs)") from None


def paper_value(text: str) -> str:
    if text not in PAPERS + ("all",):
        raise argparse.ArgumentTypeError(f"PAPER={text!r} is not a paper; valid: all, {', '.join(PAPERS)}")
    return text


class _OneLineParser(argparse.ArgumentParser):
    """A bad value prints one line (which lists the valid values) and exits 2: no usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = _OneLineParser(prog="make reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paper", nargs="?", type=paper_value, default="all", help=f"all or one of {', '.join(PAPERS)}")
    p.add_argument("--quick", type=quick_value, default=0, help="1: shortened schedule, runs under runs/quick/")
    p.add_argument("--seeds", type=seeds_list, default=None, help="comma-separated seeds (default: each job's)")
    p.add_argument("--force", type=quick_value, default=0, help="1: rerun finished jobs from scratch")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="folder of the run folders and the report")
    p.add_argument("--report-only", action="store_true", help="write the report from existing runs; train nothing")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--debug", action="store_true", help="tracebacks for user errors")
    return p.parse_args(argv)


def status_of(run_dir: Path) -> str:
    """finished, diverged, partial (some epochs logged) or new."""
    s = run_dir / "summary.json"
    if s.is_file():
        try:
            return json.loads(s.read_text()).get("status", "finished")
        except (OSError, ValueError):
            return "partial"
    return "partial" if (run_dir / "metrics.jsonl").is_file() else "new"


def plan(jobs: list[Job], seeds: Optional[tuple[int, ...]], quick: bool, runs: Path, force: bool) -> list[dict]:
    """One entry per (job, seed), shortest first; finished ones are marked skip unless ``force``."""
    todo = []
    for job in jobs:
        for seed in seeds or (job.seeds[:1] if quick else job.seeds):  # QUICK: one seed unless SEEDS given
            run_dir = job.run_dir(runs, seed, quick)
            st = status_of(run_dir)
            todo.append({"job": job, "seed": seed, "dir": run_dir, "status": st,
                         "skip": st == "finished" and not force, "estimate": job.estimate(quick)})
    todo.sort(key=lambda t: (t["estimate"], t["job"].paper, t["job"].name, t["seed"]))
    return todo


def print_plan(todo: list[dict], quick: bool, runs: Path) -> None:
    rows = [("#", "paper", "dataset", "setting", "seed", "epochs", "estimate", "state")]
    for i, t in enumerate(todo, 1):
        j = t["job"]
        epochs = "quick" if quick else str(j.epochs)
        state = "done, skip" if t["skip"] else {"partial": "resume", "finished": "rerun (FORCE)",
                                                "diverged": "resume", "new": "run"}.get(t["status"], t["status"])
        rows.append((str(i), j.paper, j.dataset, j.setting or "-", str(t["seed"]), epochs,
                     "-" if t["skip"] else hms(t["estimate"]), state))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    kind = "QUICK smoke run (shortened schedule, not compared with published numbers)" if quick else "full runs"
    print(f"make reproduce: {kind}")
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
    total = sum(t["estimate"] for t in todo if not t["skip"])
    print(f"output folder: {(runs / 'quick') if quick else runs}")
    print(f"estimated total: {hms(total)} on 2 CPU cores ({sum(not t['skip'] for t in todo)} of {len(todo)} "
          f"jobs to run); report: {runs / 'REPORT.md'}", flush=True)


def run_plan(todo: list[dict], quick: bool, force: bool, python: str = sys.executable) -> int:
    """Run the jobs in order; returns 0, or the first failing job's exit code (after trying the rest)."""
    active = [t for t in todo if not t["skip"]]
    remaining = sum(t["estimate"] for t in active)
    start, status = time.time(), 0
    for k, t in enumerate(active, 1):
        job, elapsed = t["job"], time.time() - start
        overwrite = force and t["status"] in ("finished", "diverged")
        cmd = t["job"].command(python, t["dir"], t["seed"], quick, overwrite)
        print(f"\n[job {k}/{len(active)}] {job.label()} seed {t['seed']} | elapsed {hms(elapsed)} | "
              f"ETA {hms(remaining)} | {t['dir']}", flush=True)
        print("  $ " + " ".join(cmd[1:]), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        remaining -= t["estimate"]
        if rc == EXIT_INTERRUPTED or rc < 0:
            print("make reproduce: interrupted; run it again to continue this job where it stopped "
                  "(finished jobs are skipped).", file=sys.stderr)
            return EXIT_INTERRUPTED
        if rc != 0:
            print(f"make reproduce: {job.label()} seed {t['seed']} failed with exit code {rc} "
                  f"(see above; its run folder is {t['dir']}). Continuing with the next job.", file=sys.stderr)
            status = status or rc
    print(f"\nmake reproduce: {len(active)} jobs in {hms(time.time() - start)}", flush=True)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from common import report

    papers = PAPERS if args.paper == "all" else (args.paper,)
    quick = bool(args.quick)
    if args.report_only:
        out = report.write_report(args.runs, quick=quick, papers=papers)
        print(f"report: {out}")
        return 0
    jobs = all_jobs(papers)
    todo = plan(jobs, args.seeds, quick, args.runs, bool(args.force))
    print_plan(todo, quick, args.runs)
    if args.dry_run:
        return 0
    try:
        status = run_plan(todo, quick, bool(args.force))
    except KeyboardInterrupt:
        print("\nmake reproduce: interrupted; run it again to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = report.write_report(args.runs, quick=quick, papers=papers)
    print(f"report: {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog="make reproduce"))
