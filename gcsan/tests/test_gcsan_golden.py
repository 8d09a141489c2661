"""Golden test: the repo's GCSAN against the authors' notebook code on one real ML-100k batch.

How ``fixtures/golden_model_ml100k.npz`` was made (the generator script is not in the repository):

* Notebook ``shared/seeds/004_caf41af5ffabc652.txt`` (RecBole's GCSAN), all nine python cells
  (ids pyLgtYzWgk0H, uYZROGBRg3o2, 6dksftU-h_Wc, 4N4FVR-hh4zh, -RQP1Pp6hxCS, iTQZ2HkShrZw,
  86jlA1NliKMP, Z7_uHNd7iQGd, BHDoJAl7iVZc), executed unchanged in one namespace. Patches, all of
  them names the cells use but never define: ``AbstractRecommender = torch.nn.Module``,
  ``import copy``, ``fn = torch.nn.functional`` (``FeedForward.get_hidden_act`` builds a dict
  holding ``fn.relu``, so without it the cells raise NameError for every ``hidden_act``; RecBole's
  ``layers.py`` imports ``torch.nn.functional as fn``), a config dict and a dataset stub whose
  ``num()`` returns 1017; device "cpu". torch 2.13.0 CPU, float32, one thread.
* Config: hidden_size 32, inner_size 64, n_layers 2, n_heads 2, step 2, hidden_act gelu,
  layer_norm_eps 1e-12, weight 0.6, reg_weight 5e-5, initializer_range 0.1 (the other values are
  RecBole's defaults; smaller sizes keep the fixture under 1 MB).
* Weights: ``torch.manual_seed(2020)`` then the notebook's own initialization; then every bias and
  LayerNorm parameter += 0.1·N(0, 1) (``torch.Generator().manual_seed(2021)``) and the query / key
  weights ×5, so that no parameter sits at its 0 / 1 init and attention is not uniform. The weights
  themselves are stored (``weight/<notebook name>``); the test does not depend on any seed.
* Batch: ML-100k (mirror ``ml-100k/u.data``) through ``gcsan.data.load("ml-100k")`` (RecBole
  protocol); 16 training examples (12 drawn with ``numpy.random.default_rng(17)``, plus one each of
  history length 1, 2, 3, 7), right-padded to MAX_ITEM_LIST_LENGTH 50 as RecBole does; one negative
  per example drawn uniformly from 1..1016, never the target (for BPR).
* Dropout is off: both models run in ``eval()`` mode (no masks to fix).
* Stored from the notebook: ``forward`` (seq_output), ``full_sort_predict`` (scores), ``predict``
  (target scores); for CE and for BPR: ``calculate_loss`` (total), the main loss term
  (``loss_fct`` on the same logits / pos / neg scores), the EmbLoss term, and the gradient of the
  total loss for every parameter.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gcsan.model import GCSAN

FIXTURE = Path(__file__).parent / "fixtures" / "golden_model_ml100k.npz"
ATOL = 1e-5


@pytest.fixture(scope="module")
def golden():
    z = np.load(FIXTURE)
    return {k: z[k] for k in z.files}


def repo_name(notebook_name: str) -> str:
    # the notebook's TransformerEncoder keeps its blocks in ``.layer``; ours is the ModuleList itself
    return notebook_name.replace("self_attention.layer.", "self_attention.")


def build(g: dict, loss_type: str, last_query_only: bool = True) -> GCSAN:
    cfg = json.loads(g["config"].tobytes().decode())
    model = GCSAN(int(g["weight/item_embedding.weight"].shape[0]), hidden_size=cfg["hidden_size"],
                  n_layers=cfg["n_layers"], n_heads=cfg["n_heads"], inner_size=cfg["inner_size"],
                  hidden_dropout=cfg["hidden_dropout_prob"], attn_dropout=cfg["attn_dropout_prob"],
                  hidden_act=cfg["hidden_act"], layer_norm_eps=cfg["layer_norm_eps"], step=cfg["step"],
                  weight=cfg["weight"], reg_weight=cfg["reg_weight"], loss_type=loss_type,
                  last_query_only=last_query_only)
    state = {repo_name(k[len("weight/"):]): torch.from_numpy(v) for k, v in g.items() if k.startswith("weight/")}
    assert set(state) == set(model.state_dict()), set(state) ^ set(model.state_dict())
    model.load_state_dict(state)
    return model.eval()  # dropout off, as in the fixture


def batch(g: dict):
    return tuple(torch.from_numpy(g[k]) for k in ("seq", "length", "target", "negative"))


def close(name: str, ours: torch.Tensor, ref: np.ndarray) -> None:
    diff = float(np.abs(ours.detach().numpy() - ref).max())
    scale = float(np.abs(ref).max())
    # absolute 1e-5, and relative to the tensor's own scale for the tiny ones (layer-0 query/key grads)
    assert diff <= ATOL and diff <= 1e-7 + 1e-4 * scale, f"{name}: max |diff| {diff:.3e} (max |ref| {scale:.3e})"


@pytest.mark.parametrize("last_query_only", [True, False])
def test_outputs_match_notebook(golden, last_query_only):
    model = build(golden, "CE", last_query_only)
    seq, length, target, _ = batch(golden)
    with torch.no_grad():
        close("seq_output", model(seq, length), golden["seq_output"])
        scores = model.full_sort(seq, length)
    close("scores", scores, golden["scores"])
    close("predict", scores.gather(1, target[:, None]).squeeze(1), golden["predict_target"])


@pytest.mark.parametrize("loss_type", ["CE", "BPR"])
def test_loss_terms_and_gradients_match_notebook(golden, loss_type):
    tag = loss_type.lower()
    model = build(golden, loss_type)
    seq, length, target, negative = batch(golden)
    loss = model.loss(seq, length, target, negative)
    loss.backward()
    close(f"{tag} total loss", loss, golden[f"{tag}_loss"].reshape(()))
    with torch.no_grad():  # each term alone: the main term is the loss with reg_weight 0
        model.reg_weight = 0.0
        close(f"{tag} main term", model.loss(seq, length, target, negative), golden[f"{tag}_main"].reshape(()))
        close(f"{tag} EmbLoss term", model.emb_loss(), golden[f"{tag}_reg"].reshape(()))
    grads = {repo_name(k[len(f"grad_{tag}/"):]): v for k, v in golden.items() if k.startswith(f"grad_{tag}/")}
    assert set(grads) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        close(f"{tag} grad {name}", p.grad, grads[name])
