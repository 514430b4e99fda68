"""Pure tensor modules: message passing, decoders, the routing GNN."""

from graphroute.nn.conv import EdgeAttrConv
from graphroute.nn.model import RouterGNN

__all__ = ["EdgeAttrConv", "RouterGNN"]
