"""What ``make reproduce`` runs: each paper's jobs, and its published and reference numbers as data.

Each paper package declares in its ``__init__.py``

* ``IMPLEMENTED``: bool;
* ``JOBS``: a list of dicts, one per paper x dataset x setting, with the keys of :class:`Job`.

Each paper folder holds ``reference.json``: the published numbers and the reference numbers (the
authors' code run on this kind of machine), each with its source, keyed by ``"<dataset>"`` or
``"<dataset>/<setting>"``::

    {"published": {"ml-100k": {"source": "...", "values": {"hr@10": "not available offline"}}},
     "reference": {"ml-100k": {"source": "...", "selection": "last epoch",
                               "values": {"hr@10": 0.7550, "ndcg@10": [0.44, 0.47]}}}}

A value is a number, a ``[lo, hi]`` range, or a string saying why there is none. ``main.py`` and
the report both read it (:func:`reference_for`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, Optional

PAPERS = ("mbgmn_tf", "fgnn", "agnn", "mpm", "gcsan")
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Job:
    """One main job: ``python -m <module> <args> --epochs E --seed S --out <run folder> --resume``.

    ``epoch_seconds`` is the measured cost of one epoch (training + evaluation) on 2 CPU cores,
    ``setup_seconds`` the data preparation; both give the plan's estimate. ``quick_args`` replace
    ``--epochs`` in ``make reproduce QUICK=1`` (a shortened schedule), estimated at ``quick_seconds``.
    ``metrics`` are the headline metrics (``summary.json``'s ``headline``), ``lower_is_better`` those
    where smaller wins (RMSE), ``curve`` the ``metrics.jsonl`` keys plotted per epoch.
    """

    paper: str
    name: str
    dataset: str
    args: tuple[str, ...]
    epochs: int
    epoch_seconds: float
    metrics: tuple[str, ...]
    setting: str = ""
    seeds: tuple[int, ...] = (0,)
    setup_seconds: float = 10.0
    quick_args: tuple[str, ...] = ("--epochs", "1")
    quick_seconds: float = 60.0
    selection: str = "last epoch"
    curve: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    module: str = ""
    seed_flag: bool = True

    @property
    def main_module(self) -> str:
        return self.module or f"{self.paper}.main"

    def label(self) -> str:
        return f"{self.paper} {self.dataset}" + (f" {self.setting}" if self.setting else "")

    def estimate(self, quick: bool = False, epochs: Optional[int] = None) -> float:
        if quick:
            return self.quick_seconds
        return self.setup_seconds + (epochs or self.epochs) * self.epoch_seconds

    def run_dir(self, runs: Path, seed: int, quick: bool = False) -> Path:
        return Path(runs) / ("quick" if quick else "") / self.paper / self.name / f"s{seed}"

    def command(self, python: str, out: Path, seed: int, quick: bool = False, overwrite: bool = False) -> list[str]:
        args = list(self.args) + (list(self.quick_args) if quick else ["--epochs", str(self.epochs)])
        if self.seed_flag:
            args += ["--seed", str(seed)]
        args += ["--out", str(out), "--overwrite" if overwrite else "--resume"]
        return [python, "-m", self.main_module, *args]


def job_from_dict(paper: str, d: dict[str, Any]) -> Job:
    d = dict(d)
    for key in ("args", "seeds", "quick_args", "metrics", "curve", "lower_is_better"):
        if key in d:
            d[key] = tuple(d[key])
    return Job(paper=paper, **d)


def paper_jobs(paper: str) -> list[Job]:
    mod = importlib.import_module(paper)
    if not getattr(mod, "IMPLEMENTED", False):
        return []
    return [job_from_dict(paper, d) for d in getattr(mod, "JOBS", [])]


def all_jobs(papers: tuple[str, ...] = PAPERS) -> list[Job]:
    return [j for p in papers for j in paper_jobs(p)]


def load_reference(paper: str) -> dict[str, Any]:
    """``<paper>/reference.json`` (empty sections when the file is missing)."""
    path = ROOT / paper / "reference.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    return {"published": data.get("published", {}), "reference": data.get("reference", {})}


def reference_for(paper: str, dataset: str, setting: str = "", kind: str = "reference") -> dict[str, Any]:
    """The entry of ``kind`` ("published" or "reference") for ``dataset[/setting]``: ``{source, values, ...}``."""
    table = load_reference(paper)[kind]
    for key in ((f"{dataset}/{setting}",) if setting else ()) + (dataset,):
        if key in table:
            entry = dict(table[key])
            entry.setdefault("values", {})
            entry.setdefault("source", "")
            return entry
    return {"source": "", "values": {}}
