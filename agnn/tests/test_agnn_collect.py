"""agnn.collect: the README table (mean ± std over seeds) and the learning-curve plot from run folders."""

import json

import numpy as np

from agnn.collect import collect, curves, plot


def _fake_run(root, mode, graph, seed, rmses):
    d = root / f"{mode}_{graph}_s{seed}"
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "rmse": r}) + "\n" for i, r in enumerate(rmses)))
    best = int(np.argmin(rmses))
    (d / "summary.json").write_text(json.dumps({
        "mode": mode, "graph": graph, "seed": seed, "epochs": len(rmses), "wall_seconds": 10.0,
        "mean_train_seconds_per_epoch": 1.0, "hardware": "test",
        "metrics": {"rmse_best": min(rmses), "mae_best": 0.8, "best_epoch": best + 1,
                    "rmse_last": rmses[-1], "mae_last": 0.81, "global_mean_rmse": 1.1},
    }))


def test_table_and_curves_from_run_folders(tmp_path):
    _fake_run(tmp_path, "ucs", "authors", 0, [1.05, 1.02, 1.03])
    _fake_run(tmp_path, "ucs", "authors", 1, [1.07, 1.04, 1.03])
    _fake_run(tmp_path, "warm", "built", 0, [0.95, 0.93, 0.92])
    table = collect(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| ucs | authors"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # best RMSE 1.02 and 1.03: mean 1.025, sample std 0.00707
    assert cells[2] == "0,1" and cells[4] == "1.0250 ± 0.0071" and cells[6] == "2,3"
    assert "| warm | built | 0 | 3 | 0.9200 |" in table
    c = curves(tmp_path)
    assert c[("ucs", "authors")].shape == (2, 3) and np.allclose(c[("ucs", "authors")].mean(0), [1.06, 1.03, 1.03])
    plot(tmp_path, tmp_path / "out" / "curves.png")
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
