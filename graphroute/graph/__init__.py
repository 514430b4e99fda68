"""Heterogeneous task–query–LLM–user graphs (PyG ``HeteroData``)."""

from graphroute.graph.builder import attach_queries, build_graph, hide_queries, nearest_neighbors
from graphroute.graph.export import to_networkx

__all__ = ["attach_queries", "build_graph", "hide_queries", "nearest_neighbors", "to_networkx"]
