"""Preprocessing golden test: SR-GNN splits and session graphs against numbers from the authors' side.

The numbers below were computed outside the repository (scratch script, not committed):

* Splits: SR-GNN's ``train.txt`` / ``test.txt`` from the mirror (``diginetica-srgnn``,
  ``yoochoose1_64-srgnn``) read with plain ``pickle.load`` (the format SR-GNN's preprocessing
  writes; the GC-SAN notebook has no preprocessing cells): example and click counts, longest
  session, largest item id, and sha256 of the flat item / length / target arrays (int64,
  little-endian, file order). Here: what ``gcsan.data.load(..., valid_portion=0.0)`` produces
  (the srgnn presets' default; no truncation).
* Session graphs: the notebook's ``GCSAN._get_slice`` (``shared/seeds/004_caf41af5ffabc652.txt``,
  cell BHDoJAl7iVZc, executed unchanged with ``self.device = "cpu"``; the other cells' patches as in
  ``test_gcsan_golden.py``; torch 2.13.0, numpy 2.4.6) on the first 1,000 sessions of a split,
  right-padded to the slice's longest session: sha256 of ``alias_inputs`` (int64), ``A`` (float32,
  [B, L, 2L]: in-edges / in-degree, out-edges / out-degree) and ``items`` (int64), and counts of
  nodes, edges and sessions with a repeated item. Here: ``Split.batch`` + ``gcsan.model.session_graph``
  on the same rows. No random numbers are involved.
"""

import hashlib

import numpy as np
import pytest
import torch

from common.testing import need_file
from gcsan.data import load
from gcsan.model import session_graph

AUTHORS = {
    'diginetica-srgnn/train': dict(
        examples=719470,
        clicks=2973403,
        longest=69,
        max_item=43097,
        items_sha256='7fdccbaba92c383d3aff125eaccafb6f422601e2a34a4b5589de8340c0663acc',
        length_sha256='49ff55756ab1e30ff549d767e290464fa551e46e62aa63a46644de86950e3926',
        target_sha256='498204a324d0509273eac90c0da8b714f209cd10121d52265e956c31ac001687',
    ),
    'diginetica-srgnn/test': dict(
        examples=60858,
        clicks=245546,
        longest=40,
        max_item=43097,
        items_sha256='691d477a9ef80d1c2371911db49092478f07f1f5fc2c50f18676ef3e8a4a8cf3',
        length_sha256='0e01597749f174a18907caa848f1ccf9d740f05b15e9d5852c662ece140a2b02',
        target_sha256='d52ec75c2cc7f039af4e64a29bba84685f7037406fdab4c0234e7b24850d3950',
    ),
    'diginetica-srgnn/train[0:1000]': dict(
        sessions=1000,
        width=20,
        with_repeated_item=258,
        nodes=3016,
        edges=2491,
        seq_sha256='df676a4ec9eac77cf98727edbf43c4f884681174f647965fa8219c33026de443',
        alias_sha256='44d93f8b1c695634eacb20e0e8b45d909c9e3cb04dc170220857d0b83c4a73fb',
        A_sha256='af0e9c659142617892f21db90c41ca43d1fe77f560279051b5ce83f9e2c6ff82',
        items_sha256='889e60be6f28ea6f9448092d9febedf461cd105e67c1747b439738394d650740',
    ),
    'diginetica-srgnn/test[0:1000]': dict(
        sessions=1000,
        width=33,
        with_repeated_item=340,
        nodes=3840,
        edges=3544,
        seq_sha256='88a2d4e061202bf9afde07b36e99151adecade62f75f098b3dc8c5a061bcb591',
        alias_sha256='4bba09969cbd65fc142a899035415ba175b56cf9ed25acb27ccd99f1bc06df41',
        A_sha256='aa172dbd33025360a0c5daaa2eb4b9782d4b51c41e6b81c464491e7c94d9370f',
        items_sha256='98856d5875f7e887e1c5f436b3a80657e55f916f66462fced5a071ea34380209',
    ),
    'yoochoose1_64-srgnn/train': dict(
        examples=369859,
        clicks=1891711,
        longest=145,
        max_item=37483,
        items_sha256='ccfb1f1c19b5ea1d6798a6e0b1fed453c90cb3b964138887e4f5454898f8fbae',
        length_sha256='7128fb1258ad97a834ea6fdc1eb18c9a4457a7438093061304752c85d32297fc',
        target_sha256='014b16593a8e84062d5b9e9911510f218851b3091ca3e6fafdb1e4fe0c507d73',
    ),
    'yoochoose1_64-srgnn/test': dict(
        examples=55898,
        clicks=304354,
        longest=73,
        max_item=37483,
        items_sha256='a91f9d449e6c0a66ab5878913f828c8b77220260397037c1b424293eafd8bd01',
        length_sha256='4bdae9fb554c82c0185b0585b319cb10a88375343c460975976be1cc05d18c96',
        target_sha256='c85c91ac03d198f27fd836933247bd5cef2ec80bed7d26c9d79460b076701d67',
    ),
    'yoochoose1_64-srgnn/train[0:1000]': dict(
        sessions=1000,
        width=23,
        with_repeated_item=273,
        nodes=3743,
        edges=3200,
        seq_sha256='890e1dbeda49ca3f6d8fd2384a480e8ff1f2c71594bf98a150fa5c5c27b8301e',
        alias_sha256='9e2e74e3dcfb1d023e803e4d6f7ed67b8effa11e5e1584d218089fdccf34d808',
        A_sha256='45343a283b21e56d82476dbdc5d9edbb820e3d727587e013f77d220d095533e9',
        items_sha256='44b0d931f137021f6c6f1729e8bd4d947acfb3f03a46baee70d18524fbf9f31a',
    ),
}


def sha(a: np.ndarray, dtype: str) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, dtype=dtype)).tobytes()).hexdigest()


@pytest.fixture(scope="module", params=["diginetica-srgnn", "yoochoose1_64-srgnn"])
def srgnn(request):
    need_file(request.param, "train.txt")
    need_file(request.param, "test.txt")
    return request.param, load(request.param, valid_portion=0.0, verbose=False)


def test_srgnn_splits_match_the_pickles(srgnn):
    name, data = srgnn
    for part in ("train", "test"):
        s, want = getattr(data, part), AUTHORS[f"{name}/{part}"]
        # stored flat and unpadded: the examples lie back to back in file order
        assert np.array_equal(s.start, np.r_[0, np.cumsum(s.length)[:-1]])
        got = dict(examples=len(s), clicks=int(s.length.sum()), longest=int(s.length.max()),
                   max_item=int(max(s.items.max(), s.target.max())),
                   items_sha256=sha(s.items[:int(s.length.sum())], "<i8"),
                   length_sha256=sha(s.length, "<i8"), target_sha256=sha(s.target, "<i8"))
        assert got == want, part
    assert data.n_items == AUTHORS[f"{name}/train"]["max_item"] + 1


def test_session_graphs_match_notebook_get_slice(srgnn):
    name, data = srgnn
    slices = [k for k in AUTHORS if k.startswith(name + "/") and "[" in k]
    assert slices
    for key in slices:
        part, rows = key[len(name) + 1:].split("[")
        a, b = map(int, rows.rstrip("]").split(":"))
        seq, length, _ = getattr(data, part).batch(np.arange(a, b))
        alias, A, items = session_graph(torch.from_numpy(seq))
        A = A.numpy()
        L = seq.shape[1]
        got = dict(sessions=len(seq), width=L,
                   with_repeated_item=int(sum(len(set(r[:n])) < n for r, n in zip(seq.tolist(), length))),
                   nodes=int(sum(len(set(r[:n])) for r, n in zip(seq.tolist(), length))),
                   edges=int((A[:, :, :L] > 0).sum()),
                   seq_sha256=sha(seq, "<i8"), alias_sha256=sha(alias.numpy(), "<i8"),
                   A_sha256=sha(A, "<f4"), items_sha256=sha(items.numpy(), "<i8"))
        assert got == AUTHORS[key], key
