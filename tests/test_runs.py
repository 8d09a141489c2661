"""Run records: atomic files, history, resume, summary and the comparison table."""

import json

import pytest

from common.cli import OutputError
from common.runs import RunRecord, atomic_path, comparison_table


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "ckpt.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_run_record_roundtrip_and_resume(tmp_path):
    rec = RunRecord(tmp_path, paper="mpm", dataset="ml-100k", config={"lr": 1e-3, "seed": 3})
    assert rec.next_epoch == 1
    rec.log_epoch(0, {"hr@10": 0.09})
    rec.log_epoch(1, {"hr@10": 0.40, "ndcg@10": 0.22})
    rec.log_epoch(2, {"hr@10": 0.38, "ndcg@10": 0.23})
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 1e-3
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]
    assert rec.best("hr@10")["epoch"] == 1 and rec.best("hr@10", "min")["epoch"] == 0
    _assert_tensorboard_reads(tmp_path / "tb", "hr@10", [0, 1, 2])

    again = RunRecord(tmp_path, paper="mpm", dataset="ml-100k", config={"lr": 1e-3}, resume=True)
    assert again.next_epoch == 3 and len(again.history) == 3
    again.log_epoch(2, {"hr@10": 0.5})  # a re-run epoch replaces the old entry
    assert [h["hr@10"] for h in again.history] == [0.09, 0.40, 0.5]
    table = again.finish(
        {"best": {"hr@10": 0.5}, "last": {"hr@10": 0.5}},
        published={"hr@10": 0.45},
        reference={"hr@10": "not available offline"},
        epochs=2, seed=3, published_source="paper Table 2",
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["sessions"]) == 2  # the first command and the resuming one
    for key in ("paper", "dataset", "metrics", "published", "reference", "epochs", "seed",
                "wall_seconds", "hardware"):
        assert key in summary
    assert "best/hr@10" in table and "+0.0500 (published)" in table and "not available offline" in table
    assert (tmp_path / "comparison.md").read_text().strip() == table

    with pytest.raises(OutputError, match="--resume.*--overwrite"):
        RunRecord(tmp_path, paper="mpm", dataset="ml-100k", config={})  # a used folder is never mixed into
    fresh = RunRecord(tmp_path, paper="mpm", dataset="ml-100k", config={}, overwrite=True)
    assert fresh.history == [] and not (tmp_path / "metrics.jsonl").exists()
    assert len(list((tmp_path / "tb").iterdir())) == 1  # the old run's TensorBoard events are gone


def test_comparison_table_columns():
    t = comparison_table({"rmse": 1.0}, {"rmse": 0.9}, {"rmse": 1.02})
    header, _, row = t.splitlines()[:3]
    assert [c.strip() for c in header.strip("|").split("|")] == ["metric", "published", "reference", "this run",
                                                                  "delta (vs published, else reference)"]
    assert [c.strip() for c in row.strip("|").split("|")] == ["rmse", "0.9000", "1.0200", "1.0000", "+0.1000 (published)"]


def test_finish_published_per_group_or_per_metric(tmp_path):
    """A full key ("test/recall@10") fills one row; a bare metric name fills every group."""
    rec = RunRecord(tmp_path, paper="gcsan", dataset="ml-1m", config={})
    table = rec.finish(
        {"valid": {"recall@10": 0.30, "ndcg@10": 0.16}, "test": {"recall@10": 0.27, "ndcg@10": 0.15}},
        published={"test/recall@10": 0.2674, "ndcg@10": 0.1500},
    )
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in table.splitlines()[2:] if r.startswith("|")}
    assert rows["valid/recall@10"][1] == "-" and rows["test/recall@10"][1] == "0.2674"
    assert rows["valid/ndcg@10"][1] == "0.1500" and rows["test/ndcg@10"][1] == "0.1500"
    assert rows["test/recall@10"][4] == "+0.0026 (published)"


def _assert_tensorboard_reads(logdir, tag, steps):
    """Parse the TFRecord framing by hand (uint64 length, crc, data, crc) into Event protos."""
    import struct

    from tensorboard.compat.proto import event_pb2

    (path,) = list(logdir.iterdir())
    data, pos, found = path.read_bytes(), 0, []
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        found += [event.step for v in event.summary.value if v.tag == tag]
    assert found == steps


def test_scalar_writer_does_not_import_tensorflow(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from common.runs import ScalarWriter; w = ScalarWriter(sys.argv[1]); "
        "w.add_scalars({'loss': 1.0}, 1); w.close(); print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
