"""Build the routing graph from log tables, and grow or mask it without breaking train-as-you-infer.

Queries that are being predicted (new queries at inference, target queries in training) only *receive*
messages: their outgoing edges are absent and their outcome edges hidden, so the states of the other nodes do
not depend on which queries are in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphroute import schema as s
from graphroute.graph.knn import nearest_neighbors

OUTCOME_DIM = len(s.OUTCOME_ATTRS)  # effect, has_effect, chosen (0 / 0.5 unknown / 1), standardised log cost


def _t(array: np.ndarray | Sequence[float], dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(np.asarray(array), dtype=dtype)


def outcome_attr(effect: np.ndarray, chosen: np.ndarray, cost_z: np.ndarray) -> np.ndarray:
    """Edge attributes of observed outcomes. Shapes: (E,) each → (E, OUTCOME_DIM)."""
    has = ~np.isnan(effect)
    chosen_v = np.where(np.isnan(chosen), 0.5, chosen)
    return np.stack([np.nan_to_num(effect), has.astype(float), chosen_v, cost_z], axis=1).astype(np.float32)


def build_graph(
    query_x: np.ndarray,
    query_task: np.ndarray,
    llm_x: np.ndarray,
    task_x: np.ndarray,
    user_x: np.ndarray,
    outcomes: dict[str, np.ndarray],
    query_emb: np.ndarray,
    k_neighbors: int,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> HeteroData:
    """The reference graph of training queries.

    Args:
        query_x: (Q, Fq) query features; query_emb (Q, D) their unit embeddings for the similarity edges.
        query_task: (Q,) task index of each query.
        outcomes: arrays q, l, u, effect, chosen, cost_z of equal length E (one per observed outcome).
        neighbors: precomputed (Q, k) neighbour indices and similarities, to skip the kNN search.
    """
    data = HeteroData()
    data[s.QUERY_NODE].x = _t(query_x)
    data[s.TASK_NODE].x = _t(task_x)
    data[s.LLM_NODE].x = _t(llm_x)
    data[s.USER_NODE].x = _t(user_x)
    q, l_, u = (torch.tensor(np.asarray(outcomes[c], dtype=np.int64)) for c in ("q", "l", "u"))
    attr = _t(outcome_attr(outcomes["effect"], outcomes["chosen"], outcomes["cost_z"]))
    data[s.QUERY_NODE].task = torch.as_tensor(np.asarray(query_task, dtype=np.int64))
    data[s.ANSWERED_BY].edge_index = torch.stack([q, l_])
    data[s.ANSWERED_BY].edge_attr = attr
    data[s.ANSWERED_BY].user = u
    data[s.REV_ANSWERED_BY].edge_index = torch.stack([l_, q])
    data[s.REV_ANSWERED_BY].edge_attr = attr
    qt = torch.stack([torch.arange(len(query_task)), torch.as_tensor(query_task, dtype=torch.long)])
    data[s.BELONGS_TO].edge_index = qt
    data[s.REV_BELONGS_TO].edge_index = qt.flip(0)
    uq = torch.unique(torch.stack([u, q]), dim=1)
    data[s.ASKS].edge_index = uq
    data[s.REV_ASKS].edge_index = uq.flip(0)
    idx, sim = neighbors or nearest_neighbors(query_emb, query_emb, k_neighbors, exclude_self=True)
    _set_similarity(data, idx, sim, np.arange(len(query_emb)))
    data.validate(raise_on_error=True)
    return data


def _set_similarity(data: HeteroData, idx: np.ndarray, sim: np.ndarray, dst: np.ndarray, append: bool = False) -> None:
    src = torch.as_tensor(idx.reshape(-1), dtype=torch.long)
    dst_t = torch.as_tensor(np.repeat(dst, idx.shape[1]), dtype=torch.long)
    edge_index, attr = torch.stack([src, dst_t]), _t(sim.reshape(-1, 1))
    if append:
        edge_index = torch.cat([data[s.SIMILAR_TO].edge_index, edge_index], dim=1)
        attr = torch.cat([data[s.SIMILAR_TO].edge_attr, attr])
    data[s.SIMILAR_TO].edge_index, data[s.SIMILAR_TO].edge_attr = edge_index, attr


def similarity_lists(data: HeteroData) -> tuple[np.ndarray, np.ndarray] | None:
    """The (Q, k) neighbour indices and similarities behind a graph's similarity edges (as ``build_graph`` laid
    them out: k edges per query, in query order), or None when the graph does not have that layout."""
    edge_index, attr = data[s.SIMILAR_TO].edge_index, data[s.SIMILAR_TO].edge_attr
    n = data[s.QUERY_NODE].num_nodes
    if n == 0 or edge_index.size(1) % n:
        return None
    k = edge_index.size(1) // n
    if not torch.equal(edge_index[1], torch.arange(n).repeat_interleave(k)):
        return None
    return edge_index[0].view(n, k).numpy().copy(), attr[:, s.SIMILARITY].view(n, k).numpy().copy()


def attach_queries(
    data: HeteroData,
    query_x: np.ndarray,
    query_task: np.ndarray,
    query_user: np.ndarray,
    query_emb: np.ndarray,
    ref_emb: np.ndarray,
    k_neighbors: int,
) -> tuple[HeteroData, Tensor]:
    """A copy of ``data`` with new query nodes that only receive (task→, user→, neighbour→ query).

    Returns the graph and the node indices of the new queries. Shapes: query_x (N, Fq) → index (N,).
    """
    out = _shallow_copy(data)
    start = out[s.QUERY_NODE].num_nodes
    new = np.arange(start, start + len(query_x))
    out[s.QUERY_NODE].x = torch.cat([out[s.QUERY_NODE].x, _t(query_x)])
    new_t = torch.as_tensor(new, dtype=torch.long)
    out[s.QUERY_NODE].task = torch.cat([out[s.QUERY_NODE].task, torch.as_tensor(query_task, dtype=torch.long)])
    task_edges = torch.stack([torch.as_tensor(query_task, dtype=torch.long), new_t])
    out[s.REV_BELONGS_TO].edge_index = torch.cat([out[s.REV_BELONGS_TO].edge_index, task_edges], dim=1)
    user_edges = torch.stack([torch.as_tensor(query_user, dtype=torch.long), new_t])
    out[s.ASKS].edge_index = torch.cat([out[s.ASKS].edge_index, user_edges], dim=1)
    idx, sim = nearest_neighbors(query_emb, ref_emb, k_neighbors)
    _set_similarity(out, idx, sim, new, append=True)
    return out, new_t


def _shallow_copy(data: HeteroData) -> HeteroData:
    """A graph with its own stores but the same tensors: attaching replaces the tensors it grows (torch.cat makes
    new ones), so the reference graph stays untouched without copying its features (gigabytes at scale)."""
    out = HeteroData()
    for store in data.node_stores + data.edge_stores:
        for key, value in store.items():
            out[store._key][key] = value
    return out


def hide_queries(
    edge_index_dict: dict[tuple[str, str, str], Tensor],
    edge_value_dicts: Sequence[dict[tuple[str, str, str], Tensor]],
    targets: Tensor,
    num_queries: int,
) -> tuple[dict[tuple[str, str, str], Tensor], list[dict[tuple[str, str, str], Tensor]]]:
    """Remove every edge that leaves a target query and every outcome edge of it (train as you infer).

    ``edge_value_dicts`` hold per-edge values (attributes, outcome users) filtered alongside the edges.
    """
    is_target = torch.zeros(num_queries, dtype=torch.bool, device=targets.device)
    is_target[targets] = True
    keep: dict[tuple[str, str, str], Tensor] = {}
    for edge_type, ei in edge_index_dict.items():
        drop = torch.zeros(ei.size(1), dtype=torch.bool, device=ei.device)
        if edge_type[0] == s.QUERY_NODE:
            drop |= is_target[ei[0]]
        if edge_type == s.REV_ANSWERED_BY:
            drop |= is_target[ei[1]]
        keep[edge_type] = ~drop
    edges = {et: ei[:, keep[et]] for et, ei in edge_index_dict.items()}
    return edges, [{et: v[keep[et]] for et, v in values.items()} for values in edge_value_dicts]
