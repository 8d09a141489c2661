"""The sped-up graph (issue 15) computes what the code before it computed.

The fixture ``fixtures/speed_equality_beibei.npz`` was made with the code of commit e73d588 (before
any speed change), one TF thread, by

    .venv/bin/python -m mbgmn_tf.tests.test_speed_equality --make-fixture

It holds, on the real Beibei graph with the golden test's seed-free weights
(``test_golden.hashed_weights``) and one real batch (``default_rng(0)``: 24 users, the
``PairSampler`` draw with samp_num 6, plus 8 pairs per behaviour repeated so that the batch holds
duplicate (user, item) rows, which the fast path scores once):

* the scores of all 12 (source, target) pairs, the 12 hinge terms, pre_loss, reg_loss, loss;
* d loss / d variable (``model.grads_and_vars``, what Adam applies): in full for variables of at
  most 20,000 entries; for the larger ones (uEmbed0, iEmbed0, predMeta_FC3) the rows of the
  batch's users / items (FC3: 8 fixed rows), a fixed Gaussian projection R1 G [4, cols] of all
  rows and, for FC3, G R2 [96, 4], so that an error anywhere in the gradient shows;
* a short real run of ``main.py`` (3 steps of 64 users, samp_num 20, seed 0, one thread, 1,000
  test users with fixed negatives): the mean losses and HR@10 / NDCG@10 of the model and of
  popularity.

Tolerance: 1e-5 relative to max(1, |value|) (scores are x100 and reach ~10; gradients and
projections are sums whose float rounding grows with their size): |new - old| <= 1e-5 *
max(1, max |old|) per stored array; the short run's metrics must be equal within 1e-5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "speed_equality_beibei.npz"
TOL = 1e-5
FULL_MAX = 20_000
SHORT_RUN = ["--dataset", "beibei", "--epochs", "1", "--batch", "64", "--samp-num", "20",
             "--max-train-steps", "3", "--test-users", "1000", "--fixed-test-negatives", "--threads", "1",
             "--seed", "0", "--no-progress"]
SHORT_KEYS = ("loss", "pre_loss", "reg_loss", "hr@10", "ndcg@10", "pop_hr@10", "pop_ndcg@10")


def _batch(data) -> list[tuple[np.ndarray, np.ndarray]]:
    from mbgmn_tf.data import PairSampler

    rng = np.random.default_rng(0)
    users = rng.permutation(data.n_users)[:24]
    pairs = []
    for mat in data.trn_mats:
        u, i = PairSampler(mat).sample(users, 6, rng)
        half = len(u) // 2
        rep = rng.choice(half, 8, replace=False)  # duplicate whole (pos, neg) pairs
        pos = np.concatenate([np.arange(half), rep])
        pairs.append((np.concatenate([u[pos], u[half + pos]]), np.concatenate([i[pos], i[half + pos]])))
    return pairs


def _projections(name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([*name.encode(), *shape])  # fixed per variable
    return rng.standard_normal((4, shape[0])), rng.standard_normal((shape[1], 4))


def compute(data) -> dict[str, np.ndarray]:
    """Scores, loss terms and gradient summaries of the current code on the fixed batch."""
    from mbgmn_tf.model import HParams
    from mbgmn_tf.tests.test_golden import run_with_hashed_weights

    pairs = _batch(data)
    out, _ = run_with_hashed_weights(data, HParams(), pairs, intra_threads=1)
    res: dict[str, np.ndarray] = {}
    for (s, t), v in out["scores"].items():
        res[f"scores_{s}_{t}"] = v
    res["pair_losses"] = np.array([out["pairs"][k] for k in sorted(out["pairs"])])
    res["losses"] = np.array([out["pre"], out["reg"], out["loss"]])
    users = np.unique(np.concatenate([u for u, _ in pairs]))
    items = np.unique(np.concatenate([i for _, i in pairs]))
    for name, g in out["grads"].items():
        g = np.asarray(g)
        if g.size <= FULL_MAX:
            res[f"grad/{name}"] = g
            continue
        g2 = g.reshape(g.shape[0], -1).astype(np.float64)
        rows = {"uEmbed0": users, "iEmbed0": items}.get(name, np.arange(0, g.shape[0], 12))
        r1, r2 = _projections(name, g2.shape)
        res[f"rows/{name}"] = g[rows]
        res[f"proj_left/{name}"] = r1 @ g2
        if g2.shape[0] <= 1000:  # the embedding tables' [rows, 4] would not be small
            res[f"proj_right/{name}"] = g2 @ r2
    return res


def short_run(out: Path) -> dict[str, float]:
    from mbgmn_tf.main import run

    run([*SHORT_RUN, "--out", str(out)])
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {k: float(row[k]) for k in SHORT_KEYS}


@pytest.fixture(scope="module")
def beibei():
    from common.testing import need_file
    from mbgmn_tf.data import load_dataset

    for f in ("trn_pv", "trn_cart", "trn_buy", "tst_int"):
        need_file("beibei", f)
    return load_dataset("beibei")


def test_scores_losses_and_gradients_equal_the_code_before_the_speed_up(beibei):
    want = np.load(FIXTURE)
    got = compute(beibei)
    stored = {k for k in want.files if not k.startswith("short/")}
    assert set(got) == stored, set(got) ^ stored
    diffs = {k: float(np.abs(got[k] - want[k]).max() / max(1.0, float(np.abs(want[k]).max()))) for k in stored}
    worst = max(diffs, key=diffs.get)
    print(f"largest relative difference: {worst} {diffs[worst]:.2e}")
    bad = {k: f"{v:.2e}" for k, v in diffs.items() if v > TOL}
    assert not bad, bad


def test_short_real_run_gives_the_metrics_of_the_code_before_the_speed_up(beibei, tmp_path):
    want = np.load(FIXTURE)
    got = short_run(tmp_path / "run")
    for k in SHORT_KEYS:
        assert abs(got[k] - float(want[f"short/{k}"])) <= TOL * max(1.0, abs(float(want[f"short/{k}"]))), (k, got[k])


def make_fixture() -> None:
    import tempfile

    from mbgmn_tf.data import load_dataset

    res = compute(load_dataset("beibei"))
    with tempfile.TemporaryDirectory() as tmp:
        res.update({f"short/{k}": np.float64(v) for k, v in short_run(Path(tmp) / "run").items()})
    np.savez_compressed(FIXTURE, **res)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e6:.2f} MB)", {k: res[k] for k in res if k.startswith("short/")})


if __name__ == "__main__":
    if sys.argv[1:] == ["--make-fixture"]:
        make_fixture()
    else:
        raise SystemExit("usage: python -m mbgmn_tf.tests.test_speed_equality --make-fixture")
