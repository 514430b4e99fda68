"""Fast inference: reference-graph states computed once per graph version, then only local work per query.

New queries only receive messages (from their task, their user and their k nearest reference queries), so every
reference node's state is the same whatever is being routed. ``InferenceCache`` keeps those states per layer
and the pair-evidence tables, and runs for each request only the new query's own message passing and the heads:
the same numbers as running the model on the whole graph with the query attached (a test checks it), in a
fraction of the time.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphroute import schema as s
from graphroute.nn.model import RouterGNN
from graphroute.nn.pairs import finish_tables, outcome_sums

INTO_QUERY = (s.REV_BELONGS_TO, s.ASKS, s.REV_ANSWERED_BY, s.SIMILAR_TO)


class InferenceCache:
    """Per-layer states of the reference graph and its evidence tables, for one model and one graph."""

    @torch.no_grad()
    def __init__(self, model: RouterGNN, graph: HeteroData) -> None:
        self.model = model.eval()
        self.layers = model.encode_layers(graph.x_dict, graph.edge_index_dict, graph.collect("edge_attr"))
        answered = graph[s.ANSWERED_BY]
        self.query_task = graph[s.QUERY_NODE].task
        self.tables = finish_tables(
            outcome_sums(
                answered.edge_index,
                answered.edge_attr[:, 0],
                answered.edge_attr[:, 1],
                answered.edge_attr[:, 2],
                answered.user,
                {t: graph[t].num_nodes for t in graph.node_types},
                self.query_task,
            )
        )

    @torch.no_grad()
    def predict(
        self, query_x: Tensor, task: Tensor, user: Tensor, neighbors: Tensor, similarity: Tensor, base_cost_z: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Effect logits and standardised log cost of every LLM for new queries.

        Shapes: query_x (N, F); task, user (N,); neighbors, similarity (N, k); base_cost_z (N, L) → (N, L) twice.
        """
        model, n = self.model, query_x.size(0)
        h_new = torch.relu(model.inputs[s.QUERY_NODE](query_x))
        for layer, (conv, norms) in enumerate(zip(model.convs, model.norms, strict=True)):
            states = self.layers[layer]
            total = torch.zeros_like(h_new)
            for edge_type in INTO_QUERY:
                c = conv.convs[edge_type]
                total = total + c.lin_root(h_new)
                if edge_type == s.REV_BELONGS_TO:
                    total = total + torch.relu(c.lin_src(states[s.TASK_NODE][task]))
                elif edge_type == s.ASKS:
                    total = total + torch.relu(c.lin_src(states[s.USER_NODE][user]))
                elif edge_type == s.SIMILAR_TO and neighbors.size(1):
                    msg = c.lin_src(states[s.QUERY_NODE][neighbors]) + c.lin_edge(similarity.unsqueeze(-1))
                    total = total + torch.relu(msg).mean(dim=1)
            h_new = norms[s.QUERY_NODE](h_new + torch.relu(total))
        final = self.layers[-1]
        n_llms = final[s.LLM_NODE].size(0)
        row = torch.arange(n).repeat_interleave(n_llms)
        llm = torch.arange(n_llms).repeat(n)
        pair_user = user.repeat_interleave(n_llms)
        k = neighbors.size(1)
        pair = model.pairs.gather(
            self.tables,
            neighbors.reshape(-1),
            torch.arange(n).repeat_interleave(k),
            similarity.reshape(-1),
            self.query_task,
            n,
            row,
            task[row],
            llm,
            pair_user,
        )
        z = {s.QUERY_NODE: h_new, s.LLM_NODE: final[s.LLM_NODE], s.USER_NODE: final[s.USER_NODE]}
        logit, cost = model.decode(z, pair, row, llm, pair_user, base_cost_z.reshape(-1))
        return logit.view(n, n_llms), cost.view(n, n_llms)
