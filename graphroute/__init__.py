"""GraphRoute: personalized LLM routing with an inductive heterogeneous GNN over interaction logs."""

from graphroute.config import RouterConfig
from graphroute.router import Router
from graphroute.schema import LLMProfile, Recommendation

__version__ = "0.1.0"
__all__ = ["LLMProfile", "Recommendation", "Router", "RouterConfig", "__version__"]
