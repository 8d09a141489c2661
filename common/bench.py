"""Shared pieces of the papers' `bench.py`: the machine's matmul rate, a phase timer, FLOP counting
and the before/after comparison of two commits.

Every paper's bench prints, with one thread count throughout:

- the time of a training step split into phases (data, forward, backward, optimizer) -- `Phases`;
- the FLOPs of a step (`torch_flops`, or arithmetic for TensorFlow) and the achieved GFLOP/s;
- the machine's own sgemm rate timed in the same process (`sgemm_rate`) and the share of it the step
  reaches (`share_line`);
- the evaluation time.

These are benchmarks, printed for a person to read; no test times anything.

    python -m common.bench --threads 1             # the sgemm rate alone
    python -m common.bench compare HEAD~1 -- python -m gcsan.bench --json ...
                                                   # old (a git worktree of HEAD~1) against new, alternating

`compare` runs the same bench command in a temporary `git worktree` of the old commit and in this
tree, alternating old/new `--rounds` times, reads the JSON line each prints last (keys ending in
`_s` are seconds), and prints the median of each key for both and the ratio old / new (> 1: the new
code is faster). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from typing import Callable, Iterator, Optional

REPO = Path(__file__).resolve().parents[1]


def sgemm_rate(n: int = 2048, seconds: float = 1.0, backend: str = "torch") -> float:
    """GFLOP/s of a float32 n x n x n matrix product on the current thread setting (best of several
    repeats filling about `seconds`). backend: "torch" or "numpy"."""
    if backend == "torch":
        import torch

        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)

        def mm():
            torch.mm(a, b, out=out)
    elif backend == "numpy":
        import numpy as np

        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), np.float32)

        def mm():
            np.matmul(a, b, out=out)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    mm()  # warm-up
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        t0 = time.perf_counter()
        mm()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2.0 * n ** 3 / best / 1e9


class Phases:
    """Accumulates wall time per named phase: `with phases("forward"): ...`; `phases.total()`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
            self.counts[name] += 1

    def total(self) -> float:
        return sum(self.seconds.values())

    def table(self, per: int = 1, unit: str = "step") -> str:
        """One line per phase: ms per `unit` (the totals divided by `per`) and its share."""
        tot = self.total() or 1.0
        rows = [f"  {name:<12} {1000 * s / per:10.2f} ms/{unit}  {100 * s / tot:5.1f}%"
                for name, s in self.seconds.items()]
        rows.append(f"  {'total':<12} {1000 * self.total() / per:10.2f} ms/{unit}")
        return "\n".join(rows)


def torch_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch counts for one call of fn (forward and, if fn calls backward, backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def share_line(flops: float, seconds: float, sgemm_gflops: float, what: str = "training step") -> str:
    rate = flops / seconds / 1e9 if seconds > 0 else float("nan")
    return (f"{what}: {flops / 1e9:.2f} GFLOP in {1000 * seconds:.1f} ms = {rate:.1f} GFLOP/s, "
            f"{100 * rate / sgemm_gflops:.1f}% of the measured sgemm rate ({sgemm_gflops:.1f} GFLOP/s)")


def emit_json(record: dict) -> None:
    """The machine-readable last line `compare` reads."""
    print("BENCH_JSON " + json.dumps(record, sort_keys=True), flush=True)


def _read_json(out: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError("the bench printed no BENCH_JSON line:\n" + out[-2000:])


def compare(old_rev: str, cmd: list[str], rounds: int = 3) -> dict:
    """Median of each numeric key over `rounds` alternating runs of cmd in a worktree of old_rev and
    in this tree; prints and returns {key: (old, new, old / new)}."""
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(wt), old_rev], check=True)
        shared = REPO.parent / "shared"
        if shared.exists() and not (wt.parent / "shared").exists():
            os.symlink(shared, wt.parent / "shared")
        try:
            res: dict[str, dict[str, list[float]]] = {"old": defaultdict(list), "new": defaultdict(list)}
            for r in range(rounds):
                for side, cwd in (("old", wt), ("new", REPO)):
                    env = dict(os.environ, PYTHONPATH=str(cwd))
                    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
                    if p.returncode != 0:
                        raise RuntimeError(f"{side} run failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
                    for k, v in _read_json(p.stdout).items():
                        if isinstance(v, (int, float)):
                            res[side][k].append(float(v))
                    print(f"round {r + 1}/{rounds} {side} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(wt)], check=False)
    out = {}
    print(f"{'key':<28} {'old ' + old_rev:>16} {'new (this tree)':>16} {'old/new':>8}")
    for k in sorted(res["new"]):
        if k not in res["old"]:
            continue
        o, n = statistics.median(res["old"][k]), statistics.median(res["new"][k])
        ratio = o / n if n else float("nan")
        out[k] = (o, n, ratio)
        print(f"{k:<28} {o:16.4f} {n:16.4f} {ratio:8.2f}")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        p = argparse.ArgumentParser(prog="python -m common.bench compare",
                                    description="old commit against this tree, alternating runs of one bench command")
        p.add_argument("old_rev", help="git revision to compare against (checked out in a temporary worktree)")
        p.add_argument("--rounds", type=int, default=3, help="alternating old/new runs")
        p.epilog = "then -- and the bench command (it must print a BENCH_JSON line)"
        rest = argv[1:]
        if "--" not in rest:
            p.error("give the bench command after --")
        cut = rest.index("--")
        a, cmd = p.parse_args(rest[:cut]), rest[cut + 1:]
        if not cmd:
            p.error("give the bench command after --")
        if cmd[0] == "python":
            cmd[0] = sys.executable
        compare(a.old_rev, cmd, a.rounds)
        return 0
    p = argparse.ArgumentParser(description="the machine's sgemm rate (float32 matrix product)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--n", type=int, default=2048, help="matrix size")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    print(f"sgemm {a.n}^3, {a.threads} thread(s): torch {sgemm_rate(a.n):.1f} GFLOP/s, "
          f"numpy {sgemm_rate(a.n, backend='numpy'):.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
