"""A short real run on ML-100k (RecBole ML-1m protocol) beats a popularity ranking on Recall@10."""

from common.testing import need_file
from gcsan.main import build_parser, resolve_config
from gcsan.main import run_from_args as main  # the metrics; gcsan.main.main returns the exit code


def test_presets_resolve_and_flags_override():
    cfg = resolve_config(build_parser().parse_args(["--dataset", "diginetica", "--protocol", "srgnn"]))
    assert cfg["data"] == "diginetica-srgnn" and cfg["n_layers"] == 1 and cfg["hidden_dropout"] == 0.2
    assert cfg["valid_metric"] == "mrr@20" and cfg["valid_portion"] == 0.0
    cfg = resolve_config(build_parser().parse_args(["--dataset", "ml-100k", "--lr", "0.01"]))
    assert cfg["n_layers"] == 2 and cfg["hidden_dropout"] == 0.5 and cfg["lr"] == 0.01
    assert cfg["batch_size"] == 4096 and cfg["valid_metric"] == "ndcg@10"


def test_short_ml100k_run_beats_popularity(tmp_path):
    need_file("ml-100k", "u.data")
    # small and fast: 1 block, histories cut to 10, 80 batches of 512 (about half an epoch)
    out = main(["--dataset", "ml-100k", "--max-len", "10", "--n-layers", "1", "--n-heads", "1",
                "--hidden-dropout", "0.2", "--attn-dropout", "0.2", "--batch-size", "512",
                "--lr", "5e-3", "--max-epochs", "1", "--max-train-batches", "80", "--seed", "1",
                "--out", str(tmp_path / "run")])
    assert out["test"]["recall@10"] > out["popularity_test"]["recall@10"] + 0.01, out
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "run" / "best.ckpt").is_file()
    assert (tmp_path / "run" / "learning_curve.png").is_file()
    # --resume after the last epoch only re-evaluates the best checkpoint
    again = main(["--dataset", "ml-100k", "--max-len", "10", "--n-layers", "1", "--n-heads", "1",
                  "--max-epochs", "1", "--seed", "1", "--out", str(tmp_path / "run"), "--resume"])
    assert abs(again["test"]["recall@10"] - out["test"]["recall@10"]) < 1e-9


def test_resume_mid_run_continues_exactly(tmp_path, monkeypatch):
    """Two epochs in one go equal one epoch, then a second one after --resume (model, optimizer,
    numpy and torch random states restored from last.ckpt; only the missing epoch is trained)."""
    import gcsan.main as gm

    need_file("ml-100k", "u.data")
    small = ["--dataset", "ml-100k", "--max-len", "10", "--n-layers", "1", "--n-heads", "1",
             "--batch-size", "512", "--max-train-batches", "4", "--seed", "3"]
    whole = main([*small, "--max-epochs", "2", "--out", str(tmp_path / "whole")])
    main([*small, "--max-epochs", "1", "--out", str(tmp_path / "split")])
    calls = []
    real_train_epoch = gm.train_epoch
    monkeypatch.setattr(gm, "train_epoch", lambda *a, **k: calls.append(1) or real_train_epoch(*a, **k))
    resumed = main([*small, "--max-epochs", "2", "--out", str(tmp_path / "split"), "--resume"])
    assert len(calls) == 1
    for k in ("recall@10", "mrr@10", "ndcg@20"):
        assert abs(whole["test"][k] - resumed["test"][k]) < 1e-9, (k, whole["test"], resumed["test"])


def test_train_epoch_sees_every_example_once_with_and_without_buckets():
    import numpy as np
    import torch

    from gcsan.data import SeqData, srgnn_split
    from gcsan.main import MODEL_DEFAULTS, TRAIN_DEFAULTS, train_epoch
    from gcsan.model import GCSAN

    rng = np.random.default_rng(0)
    sessions = [list(rng.integers(1, 30, rng.integers(1, 8))) for _ in range(300)]
    split = srgnn_split(sessions, list(rng.integers(1, 30, 300)))
    data = SeqData(30, split, None, split)
    for bucket in (False, True):
        cfg = {**MODEL_DEFAULTS, **TRAIN_DEFAULTS, "batch_size": 32, "device": "cpu", "bucket_batches": bucket}
        model = GCSAN(30, hidden_size=16, inner_size=32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        out = train_epoch(model, opt, data, cfg, np.random.default_rng(0), desc="t")
        assert out["examples"] == 300 and np.isfinite(out["loss"])
