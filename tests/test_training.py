from __future__ import annotations

import pytest
import torch

from graphroute import schema as s
from graphroute.graph import hide_queries
from graphroute.graph.sampling import NeighborSampler
from graphroute.nn import RouterGNN
from graphroute.schema import EDGE_ATTR_DIMS as EDGE_DIMS
from graphroute.training import Labels, _BatchEvidence, as_tensors
from tests.conftest import small_graph


def test_batch_evidence_equals_hiding_the_batch_from_the_whole_graph() -> None:
    """Sampled steps take a batch's outcomes out of precomputed sums instead of filtering every edge; the pair
    evidence must be exactly what hiding the batch from the whole graph gives."""
    data, _ = small_graph()
    full = as_tensors(data, torch.device("cpu"))
    num_nodes = {t: data[t].num_nodes for t in data.node_types}
    model = RouterGNN({t: data[t].x.size(1) for t in data.node_types}, EDGE_DIMS, hidden_channels=8).eval()
    evidence = _BatchEvidence(full, NeighborSampler(full.edges, num_nodes, [2]), num_nodes)
    for targets in (torch.tensor([0, 3]), torch.tensor([1]), torch.tensor([2, 4, 5])):
        query = targets.repeat_interleave(2)
        llm, user = torch.tensor([0, 1]).repeat(len(targets)), torch.tensor([0, 1, 2, 0, 1, 2])[: len(query)]
        labels = Labels(query, llm, user, *(torch.zeros(len(query)) for _ in range(3)))
        edges, (attrs, users) = hide_queries(full.edges, [full.attrs, full.users], targets, 6)
        want = model.evidence(full.x, edges, attrs, users[s.ANSWERED_BY], full.query_task, query, llm, user)
        row = torch.full((6,), -1, dtype=torch.long)
        row[targets] = torch.arange(len(targets))
        got = evidence(model, targets, row, labels)
        assert torch.allclose(got, want, atol=1e-6), targets


@pytest.mark.slow
@pytest.mark.data
def test_one_seed_gives_identical_weights_on_a_real_log() -> None:
    """Parallel scatter-adds sum in varying order; on llmrouter-9llm that changed the weights (and the selected
    epoch) between identical runs until training used torch's deterministic kernels."""
    from graphroute import Router, RouterConfig
    from graphroute.data.adapters import load_llmrouter
    from tests.conftest import shared_set

    bench = load_llmrouter(shared_set("llmrouter-9llm"))
    config = RouterConfig(encoder={"kind": "hashing"}, train={"epochs": 2, "seed": 3})
    first, second = (Router(config).fit(bench.train, bench.llms).state.model.state_dict() for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.are_deterministic_algorithms_enabled()  # the process-wide switch is restored after training
