from __future__ import annotations

import numpy as np
import torch

from graphroute import schema as s
from graphroute.graph import attach_queries, hide_queries, nearest_neighbors, to_networkx
from tests.conftest import small_graph


def test_node_and_edge_types_and_attributes() -> None:
    data, _ = small_graph()
    assert set(data.node_types) == {s.TASK_NODE, s.QUERY_NODE, s.LLM_NODE, s.USER_NODE}
    for et in (s.BELONGS_TO, s.REV_BELONGS_TO, s.ASKS, s.REV_ASKS, s.ANSWERED_BY, s.REV_ANSWERED_BY, s.SIMILAR_TO):
        assert et in data.edge_types
    attr = data[s.ANSWERED_BY].edge_attr
    assert attr.shape == (7, 4)
    assert attr[3, 1] == 0 and attr[3, 0] == 0  # rating missing: has_effect 0
    assert attr[2, 2] == 0.5  # unknown preference
    sim_src, sim_dst = data[s.SIMILAR_TO].edge_index
    assert not bool((sim_src == sim_dst).any())  # no self loops
    assert data[s.ASKS].edge_index.size(1) == 6  # one edge per (user, query)


def test_nearest_neighbours_exact() -> None:
    ref = np.eye(4, dtype=np.float32)
    idx, sim = nearest_neighbors(np.array([[0.9, 0.1, 0, 0]], dtype=np.float32), ref, 2)
    assert idx.tolist() == [[0, 1]] and sim[0, 0] > sim[0, 1]


def test_attached_queries_only_receive() -> None:
    data, emb = small_graph()
    out, new = attach_queries(data, emb[:2], np.array([1, 0]), np.array([2, 2]), emb[:2], emb, 3)
    assert new.tolist() == [6, 7] and out[s.QUERY_NODE].num_nodes == 8
    for et in out.edge_types:
        ei = out[et].edge_index
        if et[0] == s.QUERY_NODE:
            assert not bool((ei[0] >= 6).any()), et  # nothing leaves a new query
    assert int((out[s.SIMILAR_TO].edge_index[1] >= 6).sum()) == 6  # k=3 neighbours each
    assert data[s.QUERY_NODE].num_nodes == 6  # the reference graph is untouched


def test_hide_queries_removes_outgoing_and_outcome_edges() -> None:
    data, _ = small_graph()
    targets = torch.tensor([0, 3])
    edges, (attrs,) = hide_queries(data.edge_index_dict, [data.collect("edge_attr")], targets, 6)
    for et, ei in edges.items():
        if et[0] == s.QUERY_NODE:
            assert not bool(torch.isin(ei[0], targets).any()), et
    assert not bool(torch.isin(edges[s.REV_ANSWERED_BY][1], targets).any())
    assert attrs[s.ANSWERED_BY].size(0) == edges[s.ANSWERED_BY].size(1) == 4
    assert bool(torch.isin(edges[s.REV_BELONGS_TO][1], targets).any())  # targets still hear their task


def test_networkx_export() -> None:
    data, _ = small_graph()
    g = to_networkx(data, {s.LLM_NODE: ["a", "b"]})
    assert g.number_of_nodes() == 6 + 2 + 2 + 3
    assert g.nodes[(s.LLM_NODE, 1)]["name"] == "b"
    kinds = {d["relation"] for _, _, d in g.edges(data=True)}
    assert kinds == {"belongs_to", "asks", "answered_by", "similar_to"}
