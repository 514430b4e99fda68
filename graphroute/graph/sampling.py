"""Neighbour sampling for mini-batch training on graphs too large for full-graph steps.

PyG's ``NeighborLoader`` needs the pyg-lib or torch-sparse wheels, which the stack leaves out (pure-Python PyG
only), so this is the same idea in plain torch: per layer, each frontier node keeps at most ``fanout`` of its
incoming edges of each relation, drawn at random from a CSR view built once per graph. The encoder aggregates
by mean, so a sampled mean estimates the full-graph one that inference computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EdgeType = tuple[str, str, str]


@dataclass
class Hops:
    """Hop bookkeeping of a sampled subgraph: nodes are numbered in hop order, ``within[t][h]`` of them lie within
    h hops of the seeds (h = 0 … number of layers), and ``edge_hop[et]`` is the hop of each edge's destination
    (0: an edge into a seed). ``RouterGNN.encode`` uses both to skip what the seeds' states cannot depend on."""

    within: dict[str, list[int]]
    edge_hop: dict[EdgeType, Tensor]


@dataclass
class Subgraph:
    """Sampled nodes (global ids per type, the seeds first, in hop order) and edges (local endpoints, global
    edge ids), with their ``hops``.

    ``local[t]`` maps a global node id of type t to its local id (-1 where not sampled).
    """

    nodes: dict[str, Tensor]
    edge_index: dict[EdgeType, Tensor]
    edge_id: dict[EdgeType, Tensor]
    local: dict[str, Tensor]
    hops: Hops


class NeighborSampler:
    """Draws fixed-fanout subgraphs around seed nodes from one heterogeneous edge set.

    Args:
        edge_index: per relation, (2, E) global edge endpoints (source row 0, destination row 1).
        num_nodes: node count per type.
        fanouts: incoming edges kept per node and relation, one entry per layer (the first is the seeds' hop).
    """

    def __init__(self, edge_index: dict[EdgeType, Tensor], num_nodes: dict[str, int], fanouts: list[int]) -> None:
        self.edges, self.num_nodes, self.fanouts = edge_index, num_nodes, fanouts
        self.csr: dict[EdgeType, tuple[Tensor, Tensor, Tensor]] = {}
        for et, ei in edge_index.items():
            order = torch.argsort(ei[1], stable=True)  # edge ids grouped by destination
            counts = torch.bincount(ei[1], minlength=num_nodes[et[2]])
            rowptr = torch.zeros(num_nodes[et[2]] + 1, dtype=torch.long)
            rowptr[1:] = torch.cumsum(counts, 0)
            self.csr[et] = (rowptr, order, ei[0][order])

    def sample(self, seeds: dict[str, Tensor], generator: torch.Generator | None = None) -> Subgraph:
        """The union over layers of the sampled incoming edges of each frontier; seeds are unique ids."""
        local = {t: torch.full((n,), -1, dtype=torch.long) for t, n in self.num_nodes.items()}
        nodes: dict[str, list[Tensor]] = {t: [] for t in self.num_nodes}
        frontier: dict[str, Tensor] = {}
        for t, ids in seeds.items():
            frontier[t] = self._add(ids, t, local, nodes)
        picked: dict[EdgeType, list[Tensor]] = {et: [] for et in self.csr}
        picked_hop: dict[EdgeType, list[Tensor]] = {et: [] for et in self.csr}
        within = {t: [sum(len(p) for p in nodes[t])] for t in self.num_nodes}
        for hop, fanout in enumerate(self.fanouts):
            grown: dict[str, list[Tensor]] = {t: [] for t in self.num_nodes}
            for et, (rowptr, order, src_sorted) in self.csr.items():
                dst = frontier.get(et[2])
                if dst is None or dst.numel() == 0:
                    continue
                positions = _draw(rowptr, dst, fanout, generator)
                picked[et].append(order[positions])
                picked_hop[et].append(torch.full((len(positions),), hop, dtype=torch.long))
                grown[et[0]].append(self._add(src_sorted[positions], et[0], local, nodes))
            frontier = {t: torch.cat(parts) for t, parts in grown.items() if parts}
            for t in self.num_nodes:
                within[t].append(sum(len(p) for p in nodes[t]))
        node_ids = {t: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long) for t, parts in nodes.items()}
        edge_id, edge_index, edge_hop = {}, {}, {}
        for et, parts in picked.items():
            if parts:
                ids, inverse = torch.unique(torch.cat(parts), return_inverse=True)
                # an edge is drawn only while its destination is in the frontier: duplicates share their hop
                edge_hop[et] = torch.empty(len(ids), dtype=torch.long).scatter_(0, inverse, torch.cat(picked_hop[et]))
            else:
                ids = edge_hop[et] = torch.zeros(0, dtype=torch.long)
            edge_id[et] = ids
            ends = self.edges[et][:, ids]
            edge_index[et] = torch.stack([local[et[0]][ends[0]], local[et[2]][ends[1]]])
        return Subgraph(node_ids, edge_index, edge_id, local, Hops(within, edge_hop))

    @staticmethod
    def _add(ids: Tensor, node_type: str, local: dict[str, Tensor], nodes: dict[str, list[Tensor]]) -> Tensor:
        """Give unseen ids local numbers in order; returns the newly added ids (the next frontier)."""
        ids = torch.unique(ids)
        new = ids[local[node_type][ids] < 0]
        start = sum(len(p) for p in nodes[node_type])
        local[node_type][new] = torch.arange(start, start + len(new))
        nodes[node_type].append(new)
        return new


def _draw(rowptr: Tensor, dst: Tensor, fanout: int, generator: torch.Generator | None) -> Tensor:
    """CSR positions of up to ``fanout`` incoming edges per destination: all of them where the degree is at most
    the fanout, else ``fanout`` draws with replacement (duplicates merge, as PyG's sampler does without)."""
    start, degree = rowptr[dst], rowptr[dst + 1] - rowptr[dst]
    small = degree <= fanout
    every = incoming(rowptr, dst[small])
    big_start, big_degree = start[~small], degree[~small]
    draws = torch.rand(len(big_start), fanout, generator=generator)
    sampled = big_start.unsqueeze(1) + (draws * big_degree.unsqueeze(1)).long().clamp(max=big_degree.unsqueeze(1) - 1)
    return torch.cat([every, sampled.reshape(-1)])


def incoming(rowptr: Tensor, nodes: Tensor) -> Tensor:
    """CSR positions of every incoming edge of ``nodes``, node by node. Shapes: (N,) → (sum of degrees,)."""
    start, degree = rowptr[nodes], rowptr[nodes + 1] - rowptr[nodes]
    offsets = torch.arange(int(degree.sum()), device=rowptr.device)
    offsets -= torch.repeat_interleave(torch.cumsum(degree, 0) - degree, degree)
    return torch.repeat_interleave(start, degree) + offsets
