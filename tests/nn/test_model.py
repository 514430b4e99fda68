from __future__ import annotations

import numpy as np
import pytest
import torch

from graphroute import schema as s
from graphroute.graph.builder import build_graph
from graphroute.graph.sampling import NeighborSampler
from graphroute.nn import EdgeAttrConv, RouterGNN
from graphroute.nn.pairs import LLM_MEAN, PAIR_DIM, TASK_MEAN, PairEvidence
from graphroute.schema import EDGE_ATTR_DIMS as EDGE_DIMS
from tests.conftest import small_graph


def test_edge_attr_conv_uses_edge_attributes() -> None:
    torch.manual_seed(0)  # the draw must not depend on which tests ran before (a ReLU can zero both messages)
    conv = EdgeAttrConv((3, 3), 4, edge_dim=1)
    x = torch.randn(2, 3)
    ei = torch.tensor([[0], [1]])
    a = conv((x, x), ei, torch.tensor([[0.0]]))
    b = conv((x, x), ei, torch.tensor([[1.0]]))
    assert a.shape == (2, 4) and not torch.allclose(a[1], b[1]) and torch.allclose(a[0], b[0])


def test_gradient_free_pass_over_many_edges_is_sliced_and_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference over millions of edges aggregates in slices (bounded memory); the result must not change."""
    import graphroute.nn.conv as conv_module

    torch.manual_seed(0)
    conv = EdgeAttrConv((3, 5), 4, edge_dim=2)
    src, dst = torch.randn(30, 3), torch.randn(10, 5)
    ei = torch.stack([torch.randint(0, 30, (200,)), torch.randint(0, 9, (200,))])  # node 9 hears nothing
    attr = torch.randn(200, 2)
    whole = conv((src, dst), ei, attr)
    monkeypatch.setattr(conv_module, "NO_GRAD_CHUNK", 17)
    with torch.no_grad():
        sliced = conv((src, dst), ei, attr)
    assert torch.allclose(whole, sliced, atol=1e-6)


def test_pair_evidence_means() -> None:
    data, _ = small_graph()
    ev = PairEvidence()
    attr = data[s.ANSWERED_BY].edge_attr
    num = {t: data[t].num_nodes for t in data.node_types}
    # (query 0, LLM 1, user 0): task 0 holds queries 0, 1, 4, where LLM 1 scored 0 and 1 (query 4 used LLM 0)
    out = ev(
        data[s.ANSWERED_BY].edge_index,
        attr[:, 0],
        attr[:, 1],
        attr[:, 2],
        data[s.ANSWERED_BY].user,
        num,
        data[s.SIMILAR_TO].edge_index,
        data[s.SIMILAR_TO].edge_attr[:, 0],
        data[s.QUERY_NODE].task,
        torch.tensor([0]),
        torch.tensor([1]),
        torch.tensor([0]),
    )
    assert out.shape == (1, PAIR_DIM)
    overall = 3.5 / 6  # every rated outcome
    llm_mean = (1.5 + 5 * overall) / (4 + 5)  # LLM 1 scored 0, 1, 0, 0.5, shrunk with 5 pseudo-counts
    assert out[0, LLM_MEAN].item() == pytest.approx(llm_mean)
    task_mean = (1.0 + 5 * llm_mean) / (2 + 5)  # task mean of 0 and 1, shrunk
    assert out[0, TASK_MEAN].item() == pytest.approx(task_mean)
    # plain neighbour mean: LLM 1's scores on the neighbours that it answered, shrunk towards the task mean
    llm1_score = {0: 0.0, 1: 1.0, 3: 0.0, 5: 0.5}
    src, dst = data[s.SIMILAR_TO].edge_index
    scores = [llm1_score[q] for q in src[dst == 0].tolist() if q in llm1_score]
    assert out[0, 1].item() == pytest.approx((sum(scores) + 5 * task_mean) / (len(scores) + 5))
    assert out[0, 2].item() == pytest.approx(np.log1p(len(scores)))


def test_model_shapes_and_cost_head_starts_at_catalog_estimate() -> None:
    data, _ = small_graph()
    model = RouterGNN({t: data[t].x.size(1) for t in data.node_types}, EDGE_DIMS, hidden_channels=8).eval()
    q, l_, u = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2])
    base = torch.tensor([0.5, -1.0, 2.0])
    logit, cost = model(
        data.x_dict,
        data.edge_index_dict,
        data.collect("edge_attr"),
        data[s.ANSWERED_BY].user,
        data[s.QUERY_NODE].task,
        q,
        l_,
        u,
        base,
    )
    assert logit.shape == (3,) and torch.allclose(cost, base)


def random_graph(n_queries: int = 80, seed: int = 0) -> object:
    """A graph big enough for sampled subgraphs to have nodes two and three hops from their seeds."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_queries, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n_out = 2 * n_queries
    outcomes = {
        "q": rng.integers(0, n_queries, n_out),
        "l": rng.integers(0, 4, n_out),
        "u": rng.integers(0, 6, n_out),
        "effect": rng.random(n_out),
        "chosen": rng.integers(0, 2, n_out).astype(float),
        "cost_z": rng.normal(size=n_out),
    }
    tasks = rng.integers(0, 3, n_queries)
    return build_graph(emb, tasks, rng.random((4, 3)), rng.random((3, 5)), rng.random((6, 5)), outcomes, emb, 4)


@pytest.mark.parametrize(("layers", "fanouts"), [(2, [3, 2]), (3, [2, 2, 2])])
def test_trimmed_layers_give_the_seeds_the_states_of_the_whole_subgraph(layers: int, fanouts: list[int]) -> None:
    """Sampled steps skip, in layer i of L, every edge more than L-1-i hops from the seeds; the seeds' states
    (all that a step decodes) must be exactly those of the untrimmed pass over the same subgraph."""
    data = random_graph()
    torch.manual_seed(0)
    model = RouterGNN({t: data[t].x.size(1) for t in data.node_types}, EDGE_DIMS, 8, num_layers=layers).eval()
    num_nodes = {t: data[t].num_nodes for t in data.node_types}
    sampler = NeighborSampler(data.edge_index_dict, num_nodes, fanouts)
    gen = torch.Generator().manual_seed(1)
    for seeds in (torch.tensor([0, 5, 9]), torch.tensor([17])):
        sub = sampler.sample(
            {s.QUERY_NODE: seeds, s.LLM_NODE: torch.tensor([1, 2]), s.USER_NODE: torch.tensor([0])}, gen
        )
        x = {t: data[t].x[ids] for t, ids in sub.nodes.items()}
        attrs = {et: data[et].edge_attr[ids] for et, ids in sub.edge_id.items() if "edge_attr" in data[et]}
        whole = model.encode(x, sub.edge_index, attrs)
        trimmed = model.encode(x, sub.edge_index, attrs, sub.hops)
        assert sum(len(v) for v in trimmed.values()) < sum(len(v) for v in whole.values())  # work was skipped
        for t in whole:
            n_seeds = sub.hops.within[t][0]
            assert torch.allclose(trimmed[t][:n_seeds], whole[t][:n_seeds], atol=1e-6), t
