"""Preprocessing golden test: what agnn/data.py produces from the real files vs the authors' code.

The reference numbers below were computed by running the authors' preprocessing cells of
``../shared/seeds/002_d543e419d361c9dc.txt`` (cell 2's argparse defaults, cell 4
``get_data_list``, cell 5 ``get_batch_instances``, and cell 9's pickle loading; patches: ``np.int``
-> ``np.int64``, paths -> the mirror) on the ``agnn-ml100k`` files of the mirror, in a scratch script
(not committed). Only the numbers are committed. Hashes are sha256 of the C-ordered bytes of the
array: ratings as float64 [rows, 3] (``np.array(train_list)``), attributes and ids as int64.

* ratings: every ``{ics,ucs,warm}_{train,val}.dat`` (``get_data_list``).
* attributes: ``user_feature_arr`` [944, 3] and ``item_feature_arr`` [1683, 23] as
  ``get_batch_instances`` builds them (UCS and warm pickles give the same arrays).
* graphs: neighbour ids of every node, list lengths, and the stored probabilities. The authors
  pass the stored probabilities to ``np.random.choice``; in the UCS file rows sum to 1 only within
  1.4e-9, and ``NeighbourTable`` divides each row by its sum, so here the probabilities are compared
  with a tolerance (measured: 3.4e-10 UCS, 6.1e-16 warm) and the raw file by hash.
* batches: the first 160 batches (20,480 rows) of ``get_batch_instances(..., shuffle=False)`` on
  the training file after ``np.random.seed(0)``. The deterministic parts (user, item, rating,
  the node's own attributes) are compared by hash. The neighbour draws cannot be equal (the
  authors draw row by row from numpy's global stream; ``sample_neighbours`` draws a whole batch
  with Gumbel-top-k from its own generator), so their distribution is compared: the mean stored
  probability and the mean list position of the 9 drawn neighbours, within 5 standard errors of
  the authors' value (measured with ``default_rng(0)``: |z| <= 1.5), plus the invariants the
  authors' code gives (node itself in the last slot, no repeated neighbour, neighbour attributes =
  attribute rows of the neighbour ids).
"""

import hashlib

import numpy as np
import pytest

from agnn.data import DATASET, NEIGHBOUR_FILES, BatchBuilder, load, load_neighbour_pickle, read_ratings
from common.testing import need_file

RATINGS = {  # file: (rows, batches of 128, users, items, rating sum, sha256)
    "ics_train": (81830, 640, 943, 1495, 288736.0, "9f32f53934e886fa35d7884e68ec9b292ee907ce57b1d426b3adf079d99f5764"),
    "ics_val": (18170, 142, 941, 187, 64250.0, "38860b69f2484ff3454b565282a5d0cb0cc1478cc67539514184eea915149f76"),
    "ucs_train": (79417, 621, 756, 1654, 278834.0, "c542c3a2de29f569662ddf7a18c1d146e05596b63c33e0c70cba287e8e81c443"),
    "ucs_val": (20583, 161, 187, 1413, 74152.0, "52b011b3e591aad9cbdb21a5bb6ca3ee1d0dfb9307f72ce5e51b600eada567f3"),
    "warm_train": (80000, 625, 943, 1651, 282455.0, "557a7127be174ec911572ec1c92157dff894324a58bf927c3227811704c7e790"),
    "warm_val": (20000, 157, 943, 1418, 70531.0, "2467f684d9a12ab64793b7d435ac4e9bf8fba32fd6c85969f78bed02d8dc1465"),
}
USER_ATTR = ((944, 3), 2151, "20779e2830c01bb52b755ae170726060f7594de8324ed7dfacdefecd40fa092c")  # shape, non-zero, sha256
ITEM_ATTR = ((1683, 23), 14278, "d8c0bb3eb97f1463a49e82c6be797c5ac83a78b947bd61ce314a9a5a1270d1b3")
GRAPHS = {  # (mode, side): (nodes, neighbours per node, ids sha256, raw probabilities sha256, max |ours - raw|)
    ("ucs", "user"): (944, 47, "da9ddf42549839c893866ad48ddbde81ce3987602344a3530013c5c93f7f6c9c",
                      "184d8d72dcb0fdd4af8f7f90ea93c38879d3fa59a9c3841154471918bd005cd4", 1e-9),
    ("ucs", "item"): (1683, 84, "e45e0141653dbb20cbf18044998870e5dd98f9ad5eaf85f18ff0fbb278053b14",
                      "282071f23d8bfc1beb594a853184bd0501ff5a9b550da9cd0b1a1dbe48e0efdf", 1e-9),
    ("warm", "user"): (944, 47, "9b00245e2db45bfafb2934a1617c0d2c5d3a171041925cf607f245f0444794b8",
                       "66f099d54f1d9749cc25bb40a1cbff80067c5ef546abccaa7422e1d2c19bf9a8", 1e-14),
    ("warm", "item"): (1683, 84, "5ad0e32170e93433940c6688f796d2be2795fa0832aca6065ea866e55ff86bb1",
                       "c339daf66a7c501311d5185497be3092268208fd8e3657247af2fb3cdbdbf174", 1e-14),
}
N_BATCHES = 160
BATCHES = {  # first 160 unshuffled training batches: sha256 of the deterministic fields
    "ucs": {"user": "d4fceee5cf3a7965994c987cf157810f0f9430bc621cf287d1f90c81a08e29a7",
            "item": "20ba041c5ffc16235ac3af64078b8b134f2f9ea995ce669fe1d8b9d866682256",
            "rating": "8bfc46d953024579dbd68991770bf53ad62acf1a4a46424ad724040fda3b07db",
            "user_attr": "7e82c05646e15f30c92a8d44b51a088a3dab61fc4e27eccc2e2b0ef8f99be7ca",
            "item_attr": "e891ccfb34e4157585429b6ebbf68af3daaa7e85ca71ca26b1894dc300d9b40d"},
    "warm": {"user": "ba26922935901502d327d582e7e0181406311d364dd53252be26a345b1f63442",
             "item": "a7a174b94f1f31571a22bf4fb5761179a5504074646412107c9014c1d3dfa358",
             "rating": "26fac90eeb8502c20f9f91df052b5c97b2bcccc67935b727a4dfb42634a42459",
             "user_attr": "dd2895d2499194b10dd939396bb8d5184119b882e252f2cbb5d0fd31c93bbbb5",
             "item_attr": "c03650179b3ccd490891d85a46d019f7429da364d002992d13e79cafd1fc4cde"},
}
SAMPLING = {  # (mode, side): (mean prob, its s.e., mean list position, its s.e.) of the drawn neighbours
    ("ucs", "user"): (0.02399153538911317, 2.1481993665930516e-05, 19.066324869791668, 0.028802789579530624),
    ("ucs", "item"): (0.06750297314620247, 0.00017457531713720512, 18.037662760416666, 0.06067888566911545),
    ("warm", "user"): (0.022165293150384083, 1.1343874767072113e-05, 20.811024305555556, 0.029150148986273057),
    ("warm", "item"): (0.01571804229899815, 4.3427361367922276e-05, 34.54070095486111, 0.05738314481564314),
}


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_ratings_files_as_the_authors_read_them():
    for name, (rows, batches, users, items, total, digest) in RATINGS.items():
        a = read_ratings(need_file(DATASET, f"{name}.dat"))
        assert a.dtype == np.float64 and a.shape == (rows, 3), name
        assert -(-rows // 128) == batches
        assert len(np.unique(a[:, 0])) == users and len(np.unique(a[:, 1])) == items, name
        assert a[:, 2].sum() == total and sha(a) == digest, name


@pytest.fixture(scope="module", params=["ucs", "warm"])
def data(request):
    mode = request.param
    need_file(DATASET, "uiinfo.pkl")
    need_file(DATASET, NEIGHBOUR_FILES[mode])
    return load(mode, "authors")


def test_attributes_and_graphs(data):
    for arr, (shape, nonzero, digest) in ((data.user_attr, USER_ATTR), (data.item_attr, ITEM_ATTR)):
        assert arr.shape == shape and arr.dtype == np.int64
        assert int((arr != 0).sum()) == nonzero and sha(arr) == digest
    raw = load_neighbour_pickle(data.mode)
    for side, table in (("user", data.user_graph), ("item", data.item_graph)):
        nodes, width, ids_digest, probs_digest, tol = GRAPHS[(data.mode, side)]
        assert table.ids.shape == (nodes, width) and (table.lengths == width).all()
        assert sha(table.ids) == ids_digest
        nei = raw[f"{side}_nei_dict"]
        raw_probs = np.stack([np.asarray(nei[v][1], dtype=np.float64) for v in range(nodes)])
        assert sha(raw_probs) == probs_digest
        assert np.abs(table.probs - raw_probs).max() <= tol
        np.testing.assert_allclose(table.probs.sum(1), 1.0, rtol=0, atol=1e-12)


def test_batches_against_the_authors_batch_construction(data):
    builder = BatchBuilder(data, 10, 10)
    rows = data.train[: N_BATCHES * 128]
    batches = list(builder.batches(rows, 128, np.random.default_rng(0), shuffle=False))
    assert len(batches) == N_BATCHES and all(len(b.user) == 128 for b in batches)
    cat = {k: np.concatenate([getattr(b, k).numpy() for b in batches])
           for k in ("user", "item", "rating", "user_attr", "item_attr", "user_nbr", "item_nbr", "user_nbr_attr", "item_nbr_attr")}
    for k, digest in BATCHES[data.mode].items():
        assert sha(cat[k].astype(np.float64 if k == "rating" else np.int64)) == digest, k
    for side, table, attr in (("user", data.user_graph, data.user_attr), ("item", data.item_graph, data.item_attr)):
        nodes, nbr = cat[side], cat[f"{side}_nbr"]
        assert (nbr[:, -1] == nodes).all()
        assert (cat[f"{side}_nbr_attr"] == attr[nbr]).all()
        assert all(len(set(r)) == len(r) for r in nbr[:, :-1].tolist())
        hit = table.ids[nodes][:, None, :] == nbr[:, :-1, None]  # [rows, 9, list length]
        assert (hit.sum(2) == 1).all()  # every drawn neighbour is listed for its node, once
        pos = hit.argmax(2)
        prob = np.take_along_axis(table.probs[nodes], pos, axis=1)
        mean_prob, se_prob, mean_pos, se_pos = SAMPLING[(data.mode, side)]
        assert abs(prob.mean() - mean_prob) <= 5 * se_prob, (side, prob.mean(), mean_prob)
        assert abs(pos.mean() - mean_pos) <= 5 * se_pos, (side, pos.mean(), mean_pos)
