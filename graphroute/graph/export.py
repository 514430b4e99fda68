"""Views of the graph for people: networkx, for notebooks and plots (never on the training or serving path)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch_geometric.data import HeteroData

from graphroute import schema as s


def to_networkx(
    data: HeteroData,
    names: Mapping[str, Sequence[str]] | None = None,
    log_cost_stats: tuple[float, float] | None = None,
) -> Any:
    """A networkx MultiDiGraph with nodes ``(type, index)``; attributes ``node_type`` and, when given, ``name``
    (a query's name is its text).

    Only forward relations are exported (reverse edges would double every link); outcome edges carry ``effect``,
    ``chosen`` (1, 0, or 0.5 when unknown) and ``cost_usd`` (from the standardised log cost the model reads, with
    the router's ``log_cost_stats``: mean and spread of log USD), similarity edges ``similarity``.
    """
    import networkx as nx

    graph = nx.MultiDiGraph()
    names = names or {}
    for node_type in data.node_types:
        labels = names.get(node_type)
        for i in range(data[node_type].num_nodes):
            attrs: dict[str, Any] = {"node_type": node_type}
            if labels is not None and i < len(labels):
                attrs["name"] = labels[i]
            graph.add_node((node_type, i), **attrs)
    for edge_type in (s.BELONGS_TO, s.ASKS, s.ANSWERED_BY, s.SIMILAR_TO):
        if edge_type not in data.edge_types:
            continue
        src_t, rel, dst_t = edge_type
        store = data[edge_type]
        attr = getattr(store, "edge_attr", None)
        for e, (a, b) in enumerate(store.edge_index.t().tolist()):
            extra: dict[str, Any] = {"relation": rel}
            if attr is not None and edge_type == s.ANSWERED_BY:
                extra.update(effect=float(attr[e, s.OUTCOME_EFFECT]), chosen=float(attr[e, s.OUTCOME_CHOSEN]))
                z = float(attr[e, s.OUTCOME_COST])
                if log_cost_stats is None:
                    extra["cost_z"] = z
                else:
                    extra["cost_usd"] = math.exp(z * log_cost_stats[1] + log_cost_stats[0])
            elif attr is not None:
                extra["similarity"] = float(attr[e, s.SIMILARITY])
            graph.add_edge((src_t, a), (dst_t, b), **extra)
    return graph
