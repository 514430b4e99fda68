"""A mean-aggregating message-passing layer that reads edge attributes (outcome effect and cost)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

NO_GRAD_CHUNK = 1 << 18  # edges per slice of a gradient-free pass


class EdgeAttrConv(MessagePassing):
    """out_i = W_root·x_i + mean_j ReLU(W_src·x_j + W_edge·e_ji).

    SAGEConv ignores edge attributes, and the outcome on a (query, LLM) edge is the signal a router needs, so
    each message mixes the source state with the edge attribute. The source projection is applied per node,
    before the gather, so the per-edge work is one addition and a ReLU.

    Shapes:
        x: (N_src, C_src) and (N_dst, C_dst); edge_index (2, E); edge_attr (E, edge_dim) or None → (N_dst, out)
    """

    def __init__(self, in_channels: tuple[int, int], out_channels: int, edge_dim: int = 0) -> None:
        super().__init__(aggr="mean")
        self.edge_dim = edge_dim
        self.lin_src = nn.Linear(in_channels[0], out_channels)
        self.lin_edge = nn.Linear(edge_dim, out_channels, bias=False) if edge_dim else None
        self.lin_root = nn.Linear(in_channels[1], out_channels)

    def forward(self, x: Tensor | tuple[Tensor, Tensor], edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if isinstance(x, Tensor):  # HeteroConv passes one tensor for same-type relations
            x = (x, x)
        src = self.lin_src(x[0])
        edge = self.lin_edge(edge_attr) if self.lin_edge is not None and edge_attr is not None else None
        if edge_index.size(1) > NO_GRAD_CHUNK and not torch.is_grad_enabled():
            out = self._chunked_mean(src, edge_index, edge, x[1].size(0))
        else:
            out = self.propagate(edge_index, x=(src, x[1]), edge=edge, size=(x[0].size(0), x[1].size(0)))
        return out + self.lin_root(x[1])

    def _chunked_mean(self, src: Tensor, edge_index: Tensor, edge: Tensor | None, n_dst: int) -> Tensor:
        """The same mean of messages, built a slice of edges at a time: a full-graph pass at inference over
        millions of edges then needs one slice of messages in memory, not all of them."""
        total = src.new_zeros(n_dst, src.size(1))
        for start in range(0, edge_index.size(1), NO_GRAD_CHUNK):
            j, i = edge_index[:, start : start + NO_GRAD_CHUNK]
            part = None if edge is None else edge[start : start + NO_GRAD_CHUNK]
            total.index_add_(0, i, self.message(src[j], part))
        count = torch.bincount(edge_index[1], minlength=n_dst).clamp(min=1).unsqueeze(1)
        return total / count

    def message(self, x_j: Tensor, edge: Tensor | None) -> Tensor:
        return torch.relu(x_j if edge is None else x_j + edge)
