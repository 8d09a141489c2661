"""Per-row and per-graph forms of SR-GNN's preprocessing and the notebook's cells.

Kept only as references for the tests and ``bench.py``; the package itself uses the array and
segment versions. Each function follows its source step by step, under today's libraries
(``torch_scatter`` replaced by ``torch_geometric.utils.scatter``, dates read as UTC).
"""

from __future__ import annotations

import calendar
import collections
import csv
import operator
import time

import torch
import torch.nn.functional as F
from torch_geometric.utils import add_self_loops, scatter, softmax


def notebook_graph(sequence: list[int]) -> tuple:
    """The notebook's MultiSessionsGraph.process for one session (dictionaries and string keys)."""
    i, nodes, senders, x = 0, {}, [], []
    for node in sequence:
        if node not in nodes:
            nodes[node] = i
            x.append([node])
            i += 1
        senders.append(nodes[node])
    receivers = senders[:]
    if len(senders) != 1:
        del senders[-1]
        del receivers[0]
    pair, sur_s, sur_r, i = {}, senders[:], receivers[:], 0
    for s, r in zip(sur_s, sur_r):
        if f"{s}-{r}" in pair:
            pair[f"{s}-{r}"] += 1
            del senders[i]
            del receivers[i]
        else:
            pair[f"{s}-{r}"] = 1
            i += 1
    count = collections.Counter(senders)
    out_inv = torch.tensor([1 / count[i] for i in senders], dtype=torch.float)
    count = collections.Counter(receivers)
    in_inv = torch.tensor([1 / count[i] for i in receivers], dtype=torch.float)
    attr = torch.tensor([pair[f"{senders[i]}-{receivers[i]}"] for i in range(len(senders))], dtype=torch.float)
    return torch.tensor(x), torch.tensor([senders, receivers]), attr, out_inv, in_inv


def notebook_wgat(layer, x, edge_index, edge_attr):
    """The notebook's WeightedGATConv.forward/message, run under today's PyG conventions:
    x_i = x[edge_index[1]], x_j = x[edge_index[0]], messages summed at edge_index[1]."""
    edge_index, edge_attr = add_self_loops(edge_index, edge_attr, fill_value=1.0, num_nodes=x.size(0))
    h = torch.mm(x, layer.weight).view(-1, layer.heads, layer.out_channels)
    x_i, x_j = h[edge_index[1]], h[edge_index[0]]
    w = edge_attr.view(-1, 1).repeat(1, x_i.shape[1]).view(-1, x_i.shape[1], 1)
    alpha = (torch.cat([x_i, x_j, w], dim=-1) * layer.att).sum(dim=-1)
    alpha = F.leaky_relu(alpha, layer.negative_slope)
    alpha = softmax(alpha, edge_index[0], num_nodes=int(edge_index.max()) + 1)
    out = scatter(x_j * alpha.view(-1, layer.heads, 1), edge_index[1], dim=0, dim_size=x.size(0), reduce="sum")
    out = out.view(-1, layer.heads * layer.out_channels) if layer.concat else out.mean(dim=1)
    return out + layer.bias, alpha


def gru_set2set_loop(module, x, batch):
    """Per-graph loop: each graph's nodes split out with torch.split, as the notebook does."""
    sizes = torch.bincount(batch).tolist()
    outs = []
    for k, nodes in enumerate(torch.split(x, sizes)):
        q_star, state = x.new_zeros(1, 2 * module.dim), None
        for _ in range(module.steps):
            q, state = module.rnn(q_star.unsqueeze(0), state)
            q = q.view(1, -1)
            a = torch.softmax((nodes * q).sum(-1), dim=0)
            r = (a.unsqueeze(-1) * nodes).sum(0, keepdim=True)
            q_star = torch.cat([q, r], dim=-1)
        outs.append(q_star)
    return torch.cat(outs)


def embedding2score_loop(m, x, batch):
    """The notebook's Embedding2Score up to s_h, with its torch.split and tuple comprehensions."""
    sections = torch.bincount(batch)
    v_i = torch.split(x, tuple(sections.numpy()))
    v_n_repeat = tuple(nodes[-1].view(1, -1).repeat(nodes.shape[0], 1) for nodes in v_i)
    alpha = m.q(torch.sigmoid(m.W_1(torch.cat(v_n_repeat, dim=0)) + m.W_2(x)))
    s_g_split = torch.split(alpha * x, tuple(sections.numpy()))
    s_g = tuple(torch.sum(e, dim=0).view(1, -1) for e in s_g_split)
    v_n = tuple(nodes[-1].view(1, -1) for nodes in v_i)
    return m.W_3(torch.cat((torch.cat(v_n, dim=0), torch.cat(s_g, dim=0)), dim=1))


def srgnn_preprocess(path, log_format: str, test_days: int, keep_fraction: int = 1):
    """SR-GNN's ``datasets/preprocess.py``, row by row: returns ((seqs, labels), (seqs, labels), n_items)."""
    def seconds(stamp):
        if log_format == "yoochoose":
            return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%d"))

    with open(path) as f:
        if log_format == "yoochoose":
            reader = csv.DictReader(f, delimiter=",", fieldnames=["session_id", "timestamp", "item_id", "category"])
        else:
            reader = csv.DictReader(f, delimiter=";")
        sess_clicks, sess_date, curid, curdate = {}, {}, -1, None
        for row in reader:
            sessid = row["session_id"]
            if curdate and not curid == sessid:
                sess_date[curid] = seconds(curdate)
            curid = sessid
            if log_format == "yoochoose":
                item, curdate = row["item_id"], row["timestamp"]
            else:
                item, curdate = (row["item_id"], int(row["timeframe"])), row["eventdate"]
            sess_clicks.setdefault(sessid, []).append(item)
        if log_format != "yoochoose":
            for i in list(sess_clicks):
                sess_clicks[i] = [c[0] for c in sorted(sess_clicks[i], key=operator.itemgetter(1))]
        sess_date[curid] = seconds(curdate)
    for s in list(sess_clicks):
        if len(sess_clicks[s]) == 1:
            del sess_clicks[s], sess_date[s]
    counts = collections.Counter(i for seq in sess_clicks.values() for i in seq)
    for s in list(sess_clicks):
        kept = [i for i in sess_clicks[s] if counts[i] >= 5]
        if len(kept) < 2:
            del sess_clicks[s], sess_date[s]
        else:
            sess_clicks[s] = kept
    dates = list(sess_date.items())
    split = max(d for _, d in dates) - 86400 * test_days
    train_sess = sorted([x for x in dates if x[1] < split], key=operator.itemgetter(1))
    test_sess = sorted([x for x in dates if x[1] > split], key=operator.itemgetter(1))
    item_dict, train_seqs, test_seqs = {}, [], []
    for s, _ in train_sess:
        train_seqs.append([item_dict.setdefault(i, len(item_dict) + 1) for i in sess_clicks[s]])
    for s, _ in test_sess:
        out = [item_dict[i] for i in sess_clicks[s] if i in item_dict]
        if len(out) >= 2:
            test_seqs.append(out)

    def prefixes(seqs):
        xs, ys = [], []
        for seq in seqs:
            for i in range(1, len(seq)):
                xs.append(seq[:-i])
                ys.append(seq[-i])
        return xs, ys

    train, test = prefixes(train_seqs), prefixes(test_seqs)
    if keep_fraction > 1:
        n = int(len(train[0]) / keep_fraction)
        train = (train[0][-n:], train[1][-n:])
    return train, test, len(item_dict)
