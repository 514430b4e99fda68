from __future__ import annotations

import torch

from graphroute.graph.sampling import NeighborSampler

QQ = ("query", "similar_to", "query")
LQ = ("llm", "rev_answered_by", "query")


def star() -> tuple[dict, dict[str, int]]:
    """Query 0 hears from queries 1..8 and from LLMs 0..2; query 1 hears from queries 2 and 3."""
    qq = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 2, 3], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]])
    lq = torch.tensor([[0, 1, 2, 0], [0, 0, 0, 5]])
    return {QQ: qq, LQ: lq}, {"query": 9, "llm": 3}


def global_edges(sub, et):  # noqa: ANN001, ANN202
    ei = sub.edge_index[et]
    return {(int(sub.nodes[et[0]][a]), int(sub.nodes[et[2]][b])) for a, b in ei.t().tolist()}


def test_large_fanout_keeps_every_incoming_edge_of_every_hop() -> None:
    edges, n = star()
    sub = NeighborSampler(edges, n, [20, 20]).sample({"query": torch.tensor([0])})
    assert global_edges(sub, QQ) == {(i, 0) for i in range(1, 9)} | {(2, 1), (3, 1)}
    assert global_edges(sub, LQ) == {(0, 0), (1, 0), (2, 0), (0, 5)}  # query 5 is a hop-1 node
    assert int(sub.nodes["query"][0]) == 0  # seeds first
    for et, ids in sub.edge_id.items():  # edge ids point at the same edges in the full graph
        assert {tuple(e) for e in edges[et][:, ids].t().tolist()} == global_edges(sub, et)
    assert (sub.local["query"][sub.nodes["query"]] == torch.arange(len(sub.nodes["query"]))).all()


def test_fanout_caps_incoming_edges_per_node_and_relation() -> None:
    edges, n = star()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        sub = NeighborSampler(edges, n, [2]).sample({"query": torch.tensor([0])}, generator=gen)
        into_seed = global_edges(sub, QQ)
        assert 1 <= len(into_seed) <= 2 and all(dst == 0 for _, dst in into_seed)
        assert 1 <= len(global_edges(sub, LQ)) <= 2
