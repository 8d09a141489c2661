"""common.cli and the run-folder rules of common.runs: flag types, user errors, divergence, strict JSON."""

import argparse
import errno
import json
import math
import os
import stat

import pytest

from common import cli
from common.cli import (EXIT_DATA, EXIT_DIVERGED, EXIT_OUTPUT, DataError, Diverged, DivergenceGuard, OutputError,
                        run_cli)
from common.runs import RunRecord, atomic_path, delta, prepare_out, remove_stale_tmp, write_json


@pytest.mark.parametrize("kind,text", [
    (cli.positive_int, "0"), (cli.positive_int, "-1"), (cli.positive_int, "x"), (cli.positive_int, "1.5"),
    (cli.nonnegative_int, "-1"), (cli.positive_float, "0"), (cli.positive_float, "nan"),
    (cli.positive_float, "inf"), (cli.probability, "1"), (cli.probability, "-0.1"), (cli.probability, "x"),
    (cli.nonnegative_float, "-1e-9"),
])
def test_bad_numbers_are_refused(kind, text):
    with pytest.raises(argparse.ArgumentTypeError):
        kind(text)


def test_good_numbers_pass():
    assert cli.positive_int("3") == 3 and cli.nonnegative_int("0") == 0
    assert cli.probability("0") == 0.0 and cli.probability("0.25") == 0.25 and cli.positive_float("1e-3") == 1e-3


def test_paths(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert cli.existing_file(str(f)) == str(f)
    with pytest.raises(argparse.ArgumentTypeError, match="not an existing file"):
        cli.existing_file(str(tmp_path / "missing"))
    assert cli.writable_dir(str(tmp_path / "new" / "run")).endswith("run")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        cli.writable_dir(str(f / "run"))


def test_argparse_exit_code_2_and_one_line(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--epochs", type=cli.positive_int)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--epochs", "-1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "x: error: argument --epochs: '-1' is not a positive integer"


def test_run_cli_user_errors_one_paragraph(capsys):
    def data_main(argv):
        raise DataError("file /x/u.data is malformed: line 3 has 2 fields, expected 4. Fix: re-download it.")

    assert run_cli(data_main, [], prog="p") == EXIT_DATA
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("p: error: file /x/u.data is malformed")

    def full_main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/a/checkpoint.pt")

    assert run_cli(full_main, [], prog="p") == EXIT_OUTPUT
    err = capsys.readouterr().err
    assert "disk is full" in err and "/runs/a" in err and "Traceback" not in err

    with pytest.raises(DataError):  # --debug shows the traceback
        run_cli(data_main, ["--debug"], prog="p")

    def bug(argv):
        raise ZeroDivisionError("a programming error")

    with pytest.raises(ZeroDivisionError):  # programming errors keep their traceback
        run_cli(bug, [], prog="p")


def test_dataset_errors_are_user_errors(capsys):
    from common.datasets import main as datasets_main

    assert run_cli(datasets_main, ["no-such-dataset"], prog="python -m common.datasets") == EXIT_DATA
    err = capsys.readouterr().err
    assert "no-such-dataset" in err and "beibei" in err and "Traceback" not in err


def test_divergence_guard():
    g = DivergenceGuard(hint="lower --lr")
    g.loss(0.7, epoch=1, step=0)
    g.loss(3.0, epoch=1, step=1)
    with pytest.raises(Diverged, match="epoch 1, step 2.*lower --lr") as e:
        g.loss(float("nan"), epoch=1, step=2)
    assert e.value.code == EXIT_DIVERGED and e.value.epoch == 1 and e.value.step == 2
    with pytest.raises(Diverged, match="exploded"):
        g.loss(1.9e35, epoch=2, step=5)
    with pytest.raises(Diverged, match="hr@10"):
        g.metrics({"test": {"hr@10": float("nan")}}, epoch=3)
    g.metrics({"hr@10": 0.0, "note": "x"}, epoch=3)


def test_diverged_run_writes_status_and_keeps_best(tmp_path, capsys):
    def main(argv):
        guard = DivergenceGuard()
        with RunRecord(tmp_path / "run", paper="p", dataset="d", config={}) as rec:
            for epoch in (1, 2, 3):
                loss = 0.5 if epoch < 3 else float("inf")
                guard.loss(loss, epoch, step=7)
                rec.log_epoch(epoch, {"loss": loss, "hr@10": 0.1 * epoch})
        return 0

    assert run_cli(main, [], prog="p") == EXIT_DIVERGED
    assert "Traceback" not in capsys.readouterr().err
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["last_finite_epoch"] == 2 and s["diverged"]["epoch"] == 3
    hist = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]


def test_strict_json_and_modes(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1.0, float("inf")], "z": 2})
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": [1.0, None], "z": 2}
    mode = stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    rec = RunRecord(tmp_path / "run", paper="p", dataset="d", config={})
    rec.log_epoch(1, {"loss": float("nan")})
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["loss"] is None


def test_stale_tmp_removed_and_out_rules(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    assert [p.name for p in remove_stale_tmp(run)] == [".checkpoint.pt.abc123.tmp"]
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    prepare_out(run)  # only a stale temp file: removed, and the folder counts as empty
    assert list(run.iterdir()) == []
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match="--resume"):
        prepare_out(run)
    assert prepare_out(run, resume=True) == run
    prepare_out(run, overwrite=True)
    assert list(run.iterdir()) == []
    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="does not look like a run folder"):
        prepare_out(other, overwrite=True)  # --overwrite never empties a folder that is not a run's
    assert (other / "thesis.tex").exists()
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(OutputError, match="is a file"):
        prepare_out(f)


def test_full_disk_names_folder_and_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OutputError, match=f"{tmp_path}.*disk is full"):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_delta_published_else_reference():
    assert delta(0.75, 0.70, 0.8) == "+0.0500 (published)"
    assert delta(0.75, "not available offline", 0.7550) == "-0.0050 (reference)"
    assert delta(0.41, None, "0.400-0.421") == "inside reference range"
    assert delta(0.39, None, [0.400, 0.421]) == "outside reference range"
    assert delta(0.39, None, None) == "-" and delta(float("nan"), 0.1, None) == "-"
    assert math.isfinite(0.0)
