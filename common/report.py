"""The report: every paper x dataset x setting x metric beside its published and reference numbers.

    python -m common.report                 # runs/REPORT.md, runs/report.json, runs/curves/*.png
    python -m common.report --quick         # the same from runs/quick/ (a smoke run, not compared)
    python -m common.report --readmes       # rewrite the README tables between result markers
    python -m common.report --check         # exit 1 if a README table differs from its records
    python -m common.report --save RUN results/<paper>/<name>   # keep a run's records for a README

README tables are generated from committed run records, ``results/<paper>/<run>/`` (``config.json``,
``metrics.jsonl``, ``summary.json``), between markers::

    <!-- results: mpm/ml-100k-s* -->      (globs under results/, space-separated)
    ...generated...
    <!-- /results -->

and the top-level "Results at a glance" between ``<!-- glance: <globs> -->`` and ``<!-- /glance -->``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from common.cli import DataError, run_cli
from common.jobs import PAPERS, ROOT, Job, all_jobs, reference_for
from common.runs import atomic_path, delta, write_json

RESULTS = ROOT / "results"
RECORD_FILES = ("config.json", "metrics.jsonl", "summary.json")


# ----------------------------------------------------------------------------- reading runs
def read_run(run_dir: Path) -> Optional[dict[str, Any]]:
    """``summary.json`` of a run with its history, or None when the run has not finished writing one."""
    s = Path(run_dir) / "summary.json"
    if not s.is_file():
        return None
    summary = json.loads(s.read_text())
    m = Path(run_dir) / "metrics.jsonl"
    summary["_history"] = [json.loads(x) for x in m.read_text().splitlines() if x.strip()] if m.is_file() else []
    summary["_dir"] = str(run_dir)
    return summary


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, int)):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else "nan"
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"{fmt(v[0], digits)}-{fmt(v[1], digits)}"
    return str(v)


def mean_std(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def fmt_mean(mean: Optional[float], std: Optional[float], n: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {std:.4f} (n={n})" if std is not None else f"{mean:.4f}"


def hms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def short_commit(c: Optional[str]) -> str:
    if not c:
        return "-"
    return c[:10] + ("+dirty" if c.endswith("+dirty") else "")


def aggregate(runs: list[dict[str, Any]], metrics: Iterable[str]) -> dict[str, Any]:
    """Mean and std over the finished runs' headline metrics, with epochs, wall time, hardware, commits."""
    done = [r for r in runs if r.get("status", "finished") == "finished"]
    out: dict[str, Any] = {"n": len(done), "metrics": {}}
    for m in metrics:
        mean, std = mean_std([r.get("headline", {}).get(m) for r in done])
        out["metrics"][m] = {"mean": mean, "std": std, "values": [r.get("headline", {}).get(m) for r in done]}
    out["selection"] = sorted({r.get("selection", "") for r in done} - {""})
    out["epochs"] = sorted({r.get("epochs") for r in done if r.get("epochs") is not None})
    out["wall_seconds"] = [r.get("wall_seconds") for r in done]
    out["hardware"] = sorted({r.get("hardware", "") for r in done} - {""})
    out["commits"] = sorted({r.get("git_commit") or "-" for r in done})
    out["seeds"] = [r.get("seed") for r in done]
    out["commands"] = [r.get("command", "") for r in done]
    out["diverged"] = [r.get("_dir") for r in runs if r.get("status") == "diverged"]
    return out


# ----------------------------------------------------------------------------- the report
def job_runs(job: Job, runs: Path, quick: bool) -> tuple[list[dict], list[Path]]:
    folder = job.run_dir(runs, 0, quick).parent
    seeds_present = sorted(folder.glob("s*")) if folder.is_dir() else []
    found, missing = [], []
    for d in seeds_present:
        r = read_run(d)
        (found.append(r) if r else missing.append(d))
    for seed in job.seeds:
        d = job.run_dir(runs, seed, quick)
        if d not in seeds_present:
            missing.append(d)
    return found, missing


def plot_job(job: Job, runs: list[dict], path: Path) -> Optional[Path]:
    keys = [k for k in job.curve if any(k in h for r in runs for h in r["_history"])]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), dpi=110, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for r in runs:
            pts = [(h["epoch"], h[key]) for h in r["_history"] if isinstance(h.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=2.5, label=f"seed {r.get('seed')}")
        ax.set_xlabel("epoch")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(job.label(), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def build_report(runs: Path, quick: bool = False, papers: Sequence[str] = PAPERS,
                 jobs: Optional[list[Job]] = None) -> tuple[str, dict[str, Any]]:
    """The markdown report and its JSON form, from the run folders under ``runs`` (``runs/quick`` for quick)."""
    jobs = all_jobs(tuple(papers)) if jobs is None else jobs
    lines = ["# Reproduction report", ""]
    if quick:
        lines += ["**SMOKE RUN** (`make reproduce QUICK=1`): every job on a shortened schedule. These numbers only "
                  "show that each pipeline runs end to end on the real data; they are **not** compared with "
                  "published or reference numbers.", ""]
    else:
        lines += ["Published: the paper's number, with its source. Reference: the authors' code run on this kind "
                  "of machine (`../shared/docs/REFERENCE_RUNS.md`). **Delta** is this repository minus the "
                  "published number where there is one, otherwise minus the reference (each cell says which); a "
                  "reference range gives inside or outside.", ""]
    data: dict[str, Any] = {"quick": quick, "runs_folder": str(runs), "jobs": [], "missing": []}
    all_missing: list[str] = []
    sources: list[str] = []

    def source_id(text: str) -> str:
        if not text:
            return ""
        if text not in sources:
            sources.append(text)
        return f" [{sources.index(text) + 1}]"

    for paper in papers:
        pj = [j for j in jobs if j.paper == paper]
        if not pj:
            continue
        lines += [f"## {paper}", ""]
        if quick:
            header = ("dataset", "setting", "metric", "this repository", "selection", "epochs", "wall", "commit")
        else:
            header = ("dataset", "setting", "metric", "published", "reference", "this repository", "selection",
                      "delta", "epochs", "wall", "commit")
        rows = [header]
        details = []
        for job in pj:
            found, missing = job_runs(job, runs, quick)
            all_missing += [str(m) for m in missing]
            agg = aggregate(found, job.metrics)
            pub = reference_for(paper, job.dataset, job.setting, "published")
            ref = reference_for(paper, job.dataset, job.setting, "reference")
            entry = {"paper": paper, "job": job.name, "dataset": job.dataset, "setting": job.setting,
                     "aggregate": agg, "published": pub, "reference": ref,
                     "missing": [str(m) for m in missing]}
            data["jobs"].append(entry)
            wall = statistics.fmean(w for w in agg["wall_seconds"] if w) if any(agg["wall_seconds"]) else None
            for m in job.metrics:
                s = agg["metrics"][m]
                mean_txt = fmt_mean(s["mean"], s["std"], agg["n"]) if agg["n"] else "not yet run"
                common = (job.dataset, job.setting or "-", m)
                tail = (", ".join(agg["selection"]) or job.selection,)
                run_info = (", ".join(str(e) for e in agg["epochs"]) or "-", hms(wall),
                            ", ".join(short_commit(c) for c in agg["commits"]) or "-")
                if quick:
                    rows.append(common + (mean_txt,) + tail + run_info)
                else:
                    pv, rv = pub["values"].get(m), ref["values"].get(m)
                    d = delta(s["mean"], pv, rv) if s["mean"] is not None else "-"
                    if m in job.lower_is_better and d.startswith(("+", "-")) and d != "-":
                        d += ", lower is better"
                    rows.append(common + (fmt(pv) + source_id(pub["source"]) if pv is not None else "-",
                                          fmt(rv) + source_id(ref["source"]) if rv is not None else "-",
                                          mean_txt) + tail + (d,) + run_info)
            if found:
                png = plot_job(job, found, runs / ("quick" if quick else "") / "curves" / f"{paper}-{job.name}.png")
                if png:
                    entry["curve"] = str(png)
                    details.append(f"- {job.label()}: curve `{png.relative_to(runs)}`")
                for r in found:
                    details.append(f"  - seed {r.get('seed')}: `{r.get('command', '')}` ({r.get('status')}, "
                                   f"{hms(r.get('wall_seconds'))}, {r.get('hardware', '-')}, "
                                   f"commit {short_commit(r.get('git_commit'))})")
            for d in agg["diverged"]:
                details.append(f"  - diverged: {d} (not in the mean)")
        lines += _md_table(rows) + [""] + details + [""]
    if sources and not quick:
        lines += ["## Sources", ""] + [f"{i}. {s}" for i, s in enumerate(sources, 1)] + [""]
    if all_missing:
        lines += ["## Missing runs", "", "Not run yet (or not finished); the rows above say \"not yet run\":", ""]
        lines += [f"- `{m}`" for m in all_missing] + [""]
    data["missing"] = all_missing
    return "\n".join(lines), data


def write_report(runs: Path, quick: bool = False, papers: Sequence[str] = PAPERS,
                 jobs: Optional[list[Job]] = None) -> Path:
    runs = Path(runs)
    text, data = build_report(runs, quick, papers, jobs)
    runs.mkdir(parents=True, exist_ok=True)
    with atomic_path(runs / "REPORT.md") as tmp:
        tmp.write_text(text)
    write_json(runs / "report.json", data)
    return runs / "REPORT.md"


def _md_table(rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows[1:]]
    return out


# ----------------------------------------------------------------------------- README tables from results/
MARKER = re.compile(r"(<!-- (results|glance): ([^>]*?) -->\n)(.*?)(<!-- /\2 -->)", re.S)


def results_runs(patterns: Iterable[str], results: Path = RESULTS) -> list[dict[str, Any]]:
    found = []
    for pat in patterns:
        dirs = sorted(d for d in results.glob(pat) if d.is_dir())
        if not dirs:
            raise DataError(f"README marker names results/{pat}, which matches no run record folder. Run it and "
                            f"save it with `python -m common.report --save <run folder> results/<paper>/<name>`, "
                            f"or fix the marker.")
        for d in dirs:
            r = read_run(d)
            if r is None:
                raise DataError(f"{d} has no summary.json: save the run's records after it finishes.")
            r["_name"] = str(d.relative_to(results))
            found.append(r)
    return found


def _metric_names(runs: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in runs:
        for k in r.get("headline", {}):
            if k not in names:
                names.append(k)
    return names


def render_results(patterns: list[str], results: Path = RESULTS) -> str:
    """One row per run record, a mean ± std row over several, the reference/published rows, and each run's
    command, commit, hardware and wall time below the table."""
    runs = results_runs(patterns, results)
    metrics = _metric_names(runs)
    rows = [("run", "seed", "selection", *metrics, "epochs", "wall", "commit")]
    for r in runs:
        h = r.get("headline", {})
        status = "" if r.get("status", "finished") == "finished" else f" ({r.get('status')})"
        rows.append((f"`{r['_name']}`{status}", fmt(r.get("seed")), r.get("selection", "-") or "-",
                     *[fmt(h.get(m)) for m in metrics], fmt(r.get("epochs")), hms(r.get("wall_seconds")),
                     short_commit(r.get("git_commit"))))
    groups = {(r["paper"], r["dataset"], r.get("setting", "")) for r in runs}
    done = [r for r in runs if r.get("status", "finished") == "finished"]
    if len(done) > 1:
        agg = aggregate(done, metrics)
        rows.append((f"**mean ± std** (n={agg['n']})", "", "", *[fmt_mean(agg["metrics"][m]["mean"],
                     agg["metrics"][m]["std"], agg["n"]) for m in metrics], "", "", ""))
    notes = []
    if len(groups) == 1:
        paper, dataset, setting = next(iter(groups))
        agg = aggregate(done, metrics)
        for kind in ("published", "reference"):
            e = reference_for(paper, dataset, setting, kind)
            if any(m in e["values"] for m in metrics):
                rows.append((kind, "", e.get("selection", "-") or "-",
                             *[fmt(e["values"].get(m)) for m in metrics], "", "", ""))
                notes.append(f"{kind}: {e['source']}")
        pub = reference_for(paper, dataset, setting, "published")["values"]
        ref = reference_for(paper, dataset, setting, "reference")["values"]
        if any(m in pub or m in ref for m in metrics) and done:
            rows.append(("delta (mean)", "", "", *[delta(agg["metrics"][m]["mean"], pub.get(m), ref.get(m))
                                                   for m in metrics], "", "", ""))
    lines = _md_table(rows) + [""]
    lines += [f"- {n}" for n in notes]
    hw = sorted({r.get("hardware", "-") for r in runs})
    lines += [f"- hardware: {'; '.join(hw)}"]
    for r in runs:
        sessions = r.get("sessions") or [{"command": r.get("command", ""), "git_commit": r.get("git_commit")}]
        lines += [f"- `{r['_name']}`" + (f" (part {i} of {len(sessions)})" if len(sessions) > 1 else "") +
                  f": `{x.get('command', '')}` (commit {x.get('git_commit') or '-'})" for i, x in enumerate(sessions, 1)]
    return "\n".join(lines) + "\n"


LOWER_IS_BETTER = ("rmse", "mae")


def _same_protocol(baseline_setting: str, run_setting: str) -> bool:
    """A baselines record serves a run when the words of its setting, other than "baselines", are all
    words of the run's setting: "ucs-baselines" serves "ucs-authors", "srgnn" serves "srgnn", "baselines"
    and "" serve every setting of the dataset."""
    words = {w for w in baseline_setting.replace("_", "-").split("-") if w and w != "baselines"}
    return words <= set(run_setting.replace("_", "-").split("-"))


def best_baseline(paper: str, dataset: str, setting: str, metric: str, results: Path = RESULTS) -> Optional[str]:
    """The best baseline on ``metric`` among the records ``results/<paper>/baselines*`` of this dataset and
    setting (headline keys ``<baseline>/<metric>``; ``last_<metric>`` looks up ``<metric>``), as
    ``"<baseline> 0.1234"``; None without records."""
    best: Optional[tuple[float, str]] = None
    metric = metric[len("last_"):] if metric.startswith("last_") else metric
    lower = metric.split("/")[-1] in LOWER_IS_BETTER
    for d in sorted((results / paper).glob("baselines*")):
        r = read_run(d)
        if not r or r.get("dataset") != dataset or not _same_protocol(r.get("setting") or "", setting or ""):
            continue
        for key, v in r.get("headline", {}).items():
            name, _, m = key.partition("/")
            if m == metric and isinstance(v, (int, float)) and math.isfinite(v):
                if best is None or (v < best[0] if lower else v > best[0]):
                    best = (v, name)
    return f"{best[1]} {best[0]:.4f}" if best else None


def render_glance(patterns: list[str], results: Path = RESULTS) -> str:
    """Top-level "Results at a glance": one row per (paper, dataset, setting) group of run records, with the
    reference (authors' code) and the best tuned baseline under the same protocol where there are records."""
    runs = results_runs(patterns, results)
    groups: dict[tuple, list] = {}
    for r in runs:
        groups.setdefault((r["paper"], r["dataset"], r.get("setting", "")), []).append(r)
    rows = [("paper", "dataset", "setting", "this repository (mean ± std over seeds)", "selection", "reference",
             "delta", "best baseline", "epochs")]
    for (paper, dataset, setting), rs in groups.items():
        done = [r for r in rs if r.get("status", "finished") == "finished"]
        metrics = _metric_names(done)
        agg = aggregate(done, metrics)
        ref = reference_for(paper, dataset, setting, "reference")["values"]
        pub = reference_for(paper, dataset, setting, "published")["values"]
        ours = "; ".join(f"{m} {fmt_mean(agg['metrics'][m]['mean'], agg['metrics'][m]['std'], agg['n'])}"
                         for m in metrics)
        refs = "; ".join(f"{m} {fmt(ref[m])}" for m in metrics if m in ref) or "-"
        deltas = "; ".join(f"{m} {delta(agg['metrics'][m]['mean'], pub.get(m), ref.get(m))}" for m in metrics
                           if m in ref or isinstance(pub.get(m), (int, float))) or "-"
        base = "; ".join(f"{m} {b}" for m in metrics if (b := best_baseline(paper, dataset, setting, m, results)))
        rows.append((paper, dataset, setting or "-", ours, ", ".join(agg["selection"]) or "-", refs, deltas,
                     base or "-", ", ".join(str(e) for e in agg["epochs"])))
    return "\n".join(_md_table(rows)) + "\n"


def update_readme(text: str, results: Path = RESULTS) -> str:
    def repl(m: re.Match) -> str:
        kind, patterns = m.group(2), m.group(3).split()
        body = render_results(patterns, results) if kind == "results" else render_glance(patterns, results)
        return m.group(1) + body + m.group(5)

    return MARKER.sub(repl, text)


def readmes() -> list[Path]:
    return [ROOT / "README.md"] + [ROOT / p / "README.md" for p in PAPERS if (ROOT / p / "README.md").is_file()]


def save_run(run_dir: Path, dest: Path) -> Path:
    """Copy a finished run's small records (config.json, metrics.jsonl, summary.json) to ``dest``."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "summary.json").is_file():
        raise DataError(f"{run_dir} has no summary.json: only a finished (or diverged) run can be saved.")
    dest.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        if (run_dir / name).is_file():
            with atomic_path(dest / name) as tmp:
                shutil.copyfile(run_dir / name, tmp)
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder of the run folders")
    p.add_argument("--quick", action="store_true", help="report the QUICK smoke runs (runs/quick)")
    p.add_argument("--paper", choices=("all",) + PAPERS, default="all")
    p.add_argument("--readmes", action="store_true", help="rewrite the README tables from results/")
    p.add_argument("--check", action="store_true", help="exit 1 when a README table differs from results/")
    p.add_argument("--save", nargs=2, metavar=("RUN", "DEST"), type=Path,
                   help="copy a run's config.json, metrics.jsonl and summary.json to DEST (under results/)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    if args.save:
        print(f"saved {save_run(*args.save)}")
        return 0
    if args.readmes or args.check:
        stale = []
        for path in readmes():
            old = path.read_text()
            new = update_readme(old)
            if new != old:
                stale.append(path)
                if args.readmes:
                    with atomic_path(path) as tmp:
                        tmp.write_text(new)
        verb = "rewrote" if args.readmes else "differs from results/ (run `make report`)"
        for s in stale:
            print(f"{s.relative_to(ROOT)}: {verb}")
        if args.check:
            return 1 if stale else 0
        return 0
    papers = PAPERS if args.paper == "all" else (args.paper,)
    out = write_report(args.runs, quick=args.quick, papers=papers)
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog="python -m common.report"))
