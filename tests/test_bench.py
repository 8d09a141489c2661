"""common.bench: the sgemm rate, the phase timer, the share line and the old/new comparison.

No test here times anything against a threshold; they check the arithmetic and the plumbing."""

import json
import sys

import pytest

from common import bench


def test_sgemm_rate_is_positive_for_both_backends():
    assert bench.sgemm_rate(n=64, seconds=0.01) > 0
    assert bench.sgemm_rate(n=64, seconds=0.01, backend="numpy") > 0
    with pytest.raises(ValueError):
        bench.sgemm_rate(n=8, backend="nope")


def test_phases_accumulate_and_table_shares():
    ph = bench.Phases()
    for _ in range(3):
        with ph("forward"):
            pass
    with ph("backward"):
        pass
    assert ph.counts == {"forward": 3, "backward": 1}
    ph.seconds.update(forward=3.0, backward=1.0)
    table = ph.table(per=2)
    assert "1500.00 ms/step   75.0%" in table and "500.00 ms/step   25.0%" in table
    assert "2000.00 ms/step" in table.splitlines()[-1]


def test_share_line_arithmetic():
    line = bench.share_line(flops=10e9, seconds=0.5, sgemm_gflops=40.0)
    assert "10.00 GFLOP in 500.0 ms = 20.0 GFLOP/s, 50.0% of the measured sgemm rate (40.0 GFLOP/s)" in line


def test_torch_flops_counts_a_matmul():
    import torch

    a, b = torch.ones(4, 5), torch.ones(5, 6)
    assert bench.torch_flops(lambda: a @ b) == 2 * 4 * 5 * 6


def test_read_json_takes_the_last_bench_line_and_refuses_none():
    out = "noise\nBENCH_JSON {\"step_s\": 1}\nBENCH_JSON {\"step_s\": 2}\ntrailing"
    assert bench._read_json(out) == {"step_s": 2}
    with pytest.raises(RuntimeError, match="no BENCH_JSON"):
        bench._read_json("nothing here")


def test_compare_runs_both_trees_and_reports_ratios(capsys):
    code = "import json; print('BENCH_JSON ' + json.dumps({'step_s': 2.0, 'name': 'x'}))"
    res = bench.compare("HEAD", [sys.executable, "-c", code], rounds=1)
    assert res == {"step_s": (2.0, 2.0, 1.0)}
    assert "old/new" in capsys.readouterr().out


def test_compare_flags_before_or_after_the_revision(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "compare", lambda rev, cmd, rounds: seen.append((rev, cmd, rounds)))
    bench.main(["compare", "HEAD", "--rounds", "2", "--", "echo", "--rounds", "9"])
    bench.main(["compare", "--rounds", "4", "HEAD", "--", "echo"])
    assert seen == [("HEAD", ["echo", "--rounds", "9"], 2), ("HEAD", ["echo"], 4)]
    with pytest.raises(SystemExit):
        bench.main(["compare", "HEAD"])
