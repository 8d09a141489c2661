"""Golden tests: the project's models and session graphs against what the FGNN notebook's own code computes.

``fixtures/notebook_golden.npz`` (646 kB) was written by running the notebook's code itself
(``../shared/seeds/001_cb90c10cafa78b50.txt``), not the project's, by a generator kept outside the
repository (``/work/scratch/fgnn/gen_model_golden.py`` with ``notebook_cells.py``):

* cells executed verbatim from the notebook: ``ITI1SE8ye9Wh`` (imports), ``hlX_QPG9fSRa``
  (``MultiSessionsGraph``), ``cFwq1_GdfcIk`` (``GRUSet2Set``), ``6AhbGQJJfKz5``
  (``WeightedGATConv``), ``xTHP0D0dfsWe`` (``Embedding2Score``, ``GNNModel``); the loss as in cell
  ``AkknSFG8fhf8``: ``nn.CrossEntropyLoss()(scores, batch.y - 1)``, then ``loss.backward()``;
* patches, only those today's libraries (torch 2.13, PyG 2.8.1) need: ``from torch_scatter import
  scatter_add`` -> a ``torch_geometric.utils.scatter(..., reduce="sum")`` wrapper;
  ``torch.load(..., weights_only=False)`` in ``MultiSessionsGraph``; ``WeightedGATConv`` calls
  ``MessagePassing.__init__('add', node_dim=0)`` (written for PyG 1.x, which gathered along dim 0;
  PyG 2.8's default ``node_dim=-2`` gathers along the heads axis of ``x [nodes, heads, out]`` and
  raises an IndexError). Nothing else is changed (``torch_geometric.data.DataLoader`` still exists;
  the positional ``num_nodes`` of the layer's ``softmax`` call lands in PyG 2.8's ``ptr``, which a
  0-dim tensor leaves unused: the fixture is bit-identical with a keyword patch);
* data: the notebook's first test batch, ``DataLoader(MultiSessionsGraph(test), batch_size=100,
  shuffle=False)``, i.e. all 99 test graphs (164 nodes, 154 edges) of SR-GNN's ``sample``,
  preprocessed by SR-GNN's ``datasets/preprocess.py`` (CRIPAC-DIG/SR-GNN a58c6c6, run verbatim, what
  the notebook's preprocessing gist runs) on ``srgnn-sample/sample_train-item-views.csv``;
* models: ``gated`` = the notebook's ``GNNModel(hidden_size=32, n_node=309)``; ``fgnn`` = the
  notebook's blocks assembled as the project's ``FGNN`` reads the authors' tag (the notebook has no
  assembled FGNN): ``Embedding`` -> ``WeightedGATConv(32, 32, heads=8)`` -> ReLU ->
  ``WeightedGATConv(256, 32, heads=1)`` -> ``GRUSet2Set(32, 3)`` -> ``Linear(64, 32)`` -> ``mm``
  with the embedding table. Hidden size 32 instead of 100 keeps the fixture under 1 MB;
* weights: ``torch.manual_seed(0)`` then the models' own init (``GNNModel.reset_parameters``,
  U(+-1/sqrt(32)), for both), **stored in the fixture** under the project's parameter names, so the
  test needs no seed. Parameters the notebook builds but never uses (``GRUSet2Set.linear``;
  ``GNNModel``'s ``gat1``, ``gat2``, ``sage1``, ``sage2``) got no gradient and are not stored;
* stored results: scores [99, 309], the loss, and every used parameter's gradient, float32.

The graph hashes below were computed the same way: the notebook's ``MultiSessionsGraph.process``
(cell ``hlX_QPG9fSRa``, patch above) on SR-GNN's ``preprocess.py`` output for ``sample`` (run with
TZ=Etc/UTC, so its ``time.mktime`` dates equal the project's UTC dates) and on the mirror's prepared
Diginetica and Yoochoose 1/64 test splits (``/work/scratch/fgnn/gen_graph_golden.py``); sha256 of
each collated attribute's bytes (int64 / float32, C order) and of the per-graph offsets (slices).
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from common.testing import need_file
from fgnn.data import SessionBatches, build_graphs, load_prepared, preprocess_clicks, read_click_log
from fgnn.model import build_model

FIXTURE = Path(__file__).parent / "fixtures" / "notebook_golden.npz"
TOL = 1e-5


def _golden():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


def _batch(g) -> Batch:
    b = Batch(x=torch.from_numpy(g["x"]).view(-1, 1), edge_index=torch.from_numpy(g["edge_index"]),
              edge_attr=torch.from_numpy(g["edge_attr"]), batch=torch.from_numpy(g["batch"]),
              ptr=torch.from_numpy(g["ptr"]), y=torch.from_numpy(g["y"]))
    b._num_graphs = len(g["y"])
    return b


@pytest.mark.parametrize("name", ["fgnn", "gated"])
def test_model_equals_notebook_code_on_a_real_batch(name):
    g = _golden()
    torch.manual_seed(123)  # the weights come from the fixture; the seed only fills what they replace
    model = build_model(name, int(g["n_items"]), int(g["hidden_size"]))
    stored = {k.split("/", 2)[2]: torch.from_numpy(v) for k, v in g.items() if k.startswith(f"{name}/param/")}
    assert set(stored) == {n for n, _ in model.named_parameters()}  # every weight, nothing more
    model.load_state_dict(stored, strict=True)
    batch = _batch(g)
    scores = model.full_sort(batch)
    loss = model.loss(batch)
    loss.backward()
    assert (scores - torch.from_numpy(g[f"{name}/scores"])).abs().max() <= TOL
    assert abs(loss.item() - float(g[f"{name}/loss"])) <= TOL
    for n, p in model.named_parameters():
        diff = (p.grad - torch.from_numpy(g[f"{name}/grad/{n}"])).abs().max()
        assert diff <= TOL, (n, float(diff))


@pytest.mark.real_data
def test_golden_batch_is_what_the_project_builds_from_the_sample():
    g = _golden()
    path = need_file("srgnn-sample", "sample_train-item-views.csv")
    _, test, _ = preprocess_clicks(read_click_log(path, "diginetica"), test_days=7)
    ours = SessionBatches(build_graphs(test), 100).batch(torch.arange(len(test)))
    ref = _batch(g)
    for key in ("x", "edge_index", "edge_attr", "batch", "ptr", "y"):
        assert torch.equal(ours[key], ref[key]), key


# What the authors' code produces (see the module docstring): split statistics and sha256.
GOLDEN = {
    "sample/train/split": {
        "examples": 1205,
        "clicks": 3381,
        "max_id": 309,
        "sha256_items": "d69a23c6762c47e0813679062e9d396e8669b4ce8ad8456d6f9ddc58447a6634",
        "sha256_lengths": "fb8097c27cb5265a64ea128fbc55aded4c31674e08b15906b38bf4cd04b8ea08",
        "sha256_labels": "a138b59f9ea67ca648964fd2fed29014713acb5d02d4547d91256c996b37b42e",
    },
    "sample/train/graphs": {
        "graphs": 1205,
        "nodes": 2113,
        "edges": 2150,
        "edge_attr_sum": 2645.0,
        "self_loops": 932,
        "sha256_x": "3b956cdf25822c8369aca602f1c62ef86d8169323bee01681dfb321ca07cf716",
        "sha256_edge_index": "915e231e93c5fce49b22e2878c8d9d991297f484c2a7772e0e6c1146366a30df",
        "sha256_edge_attr": "9a88ddace6c86bb30497f28eea2f6167e13e80c60831f6e2b087e7277fcb93e0",
        "sha256_y": "a138b59f9ea67ca648964fd2fed29014713acb5d02d4547d91256c996b37b42e",
        "sha256_sequence": "d69a23c6762c47e0813679062e9d396e8669b4ce8ad8456d6f9ddc58447a6634",
        "sha256_sequence_len": "fb8097c27cb5265a64ea128fbc55aded4c31674e08b15906b38bf4cd04b8ea08",
        "sha256_out_degree_inv": "9f14ec718896a599d8d9d9336e7a876fb4a50652255a1d8bdfe2b7c604ea2b2c",
        "sha256_in_degree_inv": "7661c21db78008252d27b4ad4d30b3780e2e594170a6fbffdbb9a0f1c6af1754",
        "sha256_node_slices": "556f3293fc29529ec3393f375ab091f4d304262f757af088ffc56866a49e3e6c",
        "sha256_edge_slices": "b8508a3d321b74dc352b5c8aa5a029427306ad1ce363e8fed574ece04e74c19b",
        "sha256_sequence_slices": "2c90031cab569c66f907f566e654a7768ed297ac9aafb2a060c454887f2b7816",
    },
    "sample/test/split": {
        "examples": 99,
        "clicks": 236,
        "max_id": 308,
        "sha256_items": "ee0c86ec9b4e433d5b4a4b30951612ac7712bffdf6e80cc519b483944fdd7b53",
        "sha256_lengths": "e302f6d6a69eebbd5fb747bdf511b48b25870f0557f61b43d53b338ea10172eb",
        "sha256_labels": "b25267b31eb29ac9772dc5bebb4604c4c269219dcd09ebd82a97fa1ca86a6ee8",
    },
    "sample/test/graphs": {
        "graphs": 99,
        "nodes": 164,
        "edges": 154,
        "edge_attr_sum": 176.0,
        "self_loops": 80,
        "sha256_x": "99761e3c6580e1d2428fd96e7d80fe89cb1f01798e623745bc0cd78cd7ab0b97",
        "sha256_edge_index": "c33947ae2bccf572a8066a368ae4606d91fe8808853f8443c14b2c94e316d0bc",
        "sha256_edge_attr": "11a3d4b0a4082812896dc3d0c1b7eee055b5d87d6ab7ca11460726ad0189aae1",
        "sha256_y": "b25267b31eb29ac9772dc5bebb4604c4c269219dcd09ebd82a97fa1ca86a6ee8",
        "sha256_sequence": "ee0c86ec9b4e433d5b4a4b30951612ac7712bffdf6e80cc519b483944fdd7b53",
        "sha256_sequence_len": "e302f6d6a69eebbd5fb747bdf511b48b25870f0557f61b43d53b338ea10172eb",
        "sha256_out_degree_inv": "387e03d1b3f27d12714f99be9fa8d408bb99206ea3c53618613cf2164dc4fe81",
        "sha256_in_degree_inv": "b92065cbc28c01a8733bdb7cdf27649338d0d70ce52319e5644adc28b2f32d87",
        "sha256_node_slices": "c4c2e5c645787bbf20864a311c9b60ed7ec478232c18d14a3c3920379df2c2f4",
        "sha256_edge_slices": "1b29fa181e83c89f9260e123c9a90919eb6a3cfc96a0f4bbebc5b890b280d6a6",
        "sha256_sequence_slices": "5321c793ff3b80ac57c342bb8cca3285a6f03dc4425b2201bdea8a939c96a879",
    },
    "diginetica-srgnn/test/graphs": {
        "graphs": 60858,
        "nodes": 211296,
        "edges": 195457,
        "edge_attr_sum": 200651.0,
        "self_loops": 26112,
        "sha256_x": "1a05b423b2cb46764f13f7ee45396996d6d6e350c218401db5eda4d4025cedfd",
        "sha256_edge_index": "95b0622a54a21368ea4368c551a3e4744f67cc33bd23df43b2e4cdbbb6c820dd",
        "sha256_edge_attr": "1264d8d6679d1938b4f2499da8d8fc6f67f1a71127198df4ffbec2dc695d4a94",
        "sha256_y": "d52ec75c2cc7f039af4e64a29bba84685f7037406fdab4c0234e7b24850d3950",
        "sha256_sequence": "691d477a9ef80d1c2371911db49092478f07f1f5fc2c50f18676ef3e8a4a8cf3",
        "sha256_sequence_len": "0e01597749f174a18907caa848f1ccf9d740f05b15e9d5852c662ece140a2b02",
        "sha256_out_degree_inv": "b975f45c9b3c3724731290ae2d946e9372462786d42cd448a80f9b3983f7675d",
        "sha256_in_degree_inv": "a39181e1f5ab29011064f8854269b8ad7ecf01dc3984981799d2fa6c70553047",
        "sha256_node_slices": "585a632e674d2d652ca105658770fcc3a04aebee447506c47cee5e1bc7e22070",
        "sha256_edge_slices": "084e5e1e42a94bc0895d77dc2cb116f93f94f3499614cd421711383aeee29ff6",
        "sha256_sequence_slices": "c9e4b1232051ac04aab80b444eb5d311ff2055bfb476c15d3891fe611aa0b509",
    },
    "yoochoose1_64-srgnn/test/graphs": {
        "graphs": 55898,
        "nodes": 244806,
        "edges": 251835,
        "edge_attr_sum": 263780.0,
        "self_loops": 36898,
        "sha256_x": "345e0bb6ac530933202dace7c0026a6c7d85ab0eb96d0fddb42444f906539e87",
        "sha256_edge_index": "880cc78a987bc80d0d9c386fbebb75106df4d8903eac4b526864466ec9e82629",
        "sha256_edge_attr": "06678e6f3fa13c9299cd5d0e4af28543b87c883f328902afe9aec6d1d89461b3",
        "sha256_y": "c85c91ac03d198f27fd836933247bd5cef2ec80bed7d26c9d79460b076701d67",
        "sha256_sequence": "a91f9d449e6c0a66ab5878913f828c8b77220260397037c1b424293eafd8bd01",
        "sha256_sequence_len": "4bdae9fb554c82c0185b0585b319cb10a88375343c460975976be1cc05d18c96",
        "sha256_out_degree_inv": "f9a31cce1e1593e45beb94e00901c208d58c6af6379b00bf8e563e0d0e0a94b8",
        "sha256_in_degree_inv": "9b206fb436ec76452937dd5aece8f87391bd7f6032ef5017b9e7c415b7b766a0",
        "sha256_node_slices": "0e702f3985c12375da9f54866a84c90b71c855127b5e2e96899893d4f537c2da",
        "sha256_edge_slices": "fe1693a8e0be8e8ff586f239019772552bb57cd41d03df4bc085a6e547ff66d7",
        "sha256_sequence_slices": "65f76f5e91d85f76a46efe0cd746aa44d5ada24a76e9aecb69991a55ce5664a3",
    },
}

_GRAPH_KEYS = {"x": np.int64, "edge_index": np.int64, "edge_attr": np.float32, "y": np.int64,
               "sequence": np.int64, "sequence_len": np.int64, "out_degree_inv": np.float32,
               "in_degree_inv": np.float32}


def _sha(a, dtype) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a).astype(dtype)).tobytes()).hexdigest()


def _split_stats(split) -> dict:
    return {"examples": len(split), "clicks": len(split.items),
            "max_id": int(max(split.items.max(), split.labels.max())),
            "sha256_items": _sha(split.items, np.int64),
            "sha256_lengths": _sha(np.diff(split.ptr), np.int64),
            "sha256_labels": _sha(split.labels, np.int64)}


def _graph_stats(split) -> dict:
    d, slices = build_graphs(split)
    out = {"graphs": len(split), "nodes": int(d.x.shape[0]), "edges": int(d.edge_index.shape[1]),
           "edge_attr_sum": float(d.edge_attr.sum()),
           "self_loops": int((d.edge_index[0] == d.edge_index[1]).sum())}
    out.update({f"sha256_{k}": _sha(d[k], dt) for k, dt in _GRAPH_KEYS.items()})
    out.update(sha256_node_slices=_sha(slices["x"], np.int64),
               sha256_edge_slices=_sha(slices["edge_index"], np.int64),
               sha256_sequence_slices=_sha(slices["sequence"], np.int64))
    return out


@pytest.mark.real_data
def test_sample_preprocessing_and_graphs_equal_srgnn_and_notebook():
    path = need_file("srgnn-sample", "sample_train-item-views.csv")
    train, test, n_items = preprocess_clicks(read_click_log(path, "diginetica"), test_days=7)
    assert n_items == 309
    for name, split in (("train", train), ("test", test)):
        assert _split_stats(split) == GOLDEN[f"sample/{name}/split"], name
        assert _graph_stats(split) == GOLDEN[f"sample/{name}/graphs"], name


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", ["diginetica-srgnn", "yoochoose1_64-srgnn"])
def test_prepared_test_split_graphs_equal_notebook(dataset):
    test = load_prepared(need_file(dataset, "test.txt"))
    assert _graph_stats(test) == GOLDEN[f"{dataset}/test/graphs"]
