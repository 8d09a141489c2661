"""``make reproduce [PAPER=...]``: run each implemented paper's main job, name the ones that are not.

Each paper package declares in its ``__init__.py``:

* ``IMPLEMENTED``: bool, whether ``<paper>/main.py`` runs the full reproduction;
* ``REPRODUCE_ARGS``: the arguments of its main job (``python -m <paper>.main <args>``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys

PAPERS = ("mbgmn_tf", "fgnn", "agnn", "mpm", "gcsan")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    which = argv.pop(0) if argv else "all"
    if which not in PAPERS + ("all",):
        print(f"unknown paper {which!r}; valid: all, {', '.join(PAPERS)}", file=sys.stderr)
        return 2
    papers = PAPERS if which == "all" else (which,)
    todo = [p for p in papers if getattr(importlib.import_module(p), "IMPLEMENTED", False)]
    missing = [p for p in papers if p not in todo]
    if missing:
        print(f"not implemented yet (nothing to run): {', '.join(missing)}", file=sys.stderr)
    status = 0 if which == "all" or not missing else 1
    for paper in todo:
        args = list(getattr(importlib.import_module(paper), "REPRODUCE_ARGS", [])) + argv
        cmd = [sys.executable, "-m", f"{paper}.main", *args]
        print(f"==> {paper}: {' '.join(cmd[1:])}", flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"{paper} failed with exit code {rc}", file=sys.stderr)
            status = status or rc
    if not todo:
        print("no paper is implemented yet: see each folder's README.md", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
