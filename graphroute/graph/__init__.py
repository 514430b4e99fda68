"""Heterogeneous task–query–LLM–user graphs (PyG ``HeteroData``)."""

from graphroute.graph.builder import attach_queries, build_graph, hide_queries
from graphroute.graph.export import to_networkx
from graphroute.graph.knn import nearest_neighbors

__all__ = ["attach_queries", "build_graph", "hide_queries", "nearest_neighbors", "to_networkx"]
