"""Reading, validating, splitting, adapting and generating interaction logs."""

from graphroute.data.io import read_catalog, read_interactions, validate_interactions, write_interactions
from graphroute.data.split import Splits, split_by_query
from graphroute.data.synthetic import demo_llms, make_demo_logs

__all__ = [
    "Splits",
    "demo_llms",
    "make_demo_logs",
    "read_catalog",
    "read_interactions",
    "split_by_query",
    "validate_interactions",
    "write_interactions",
]
