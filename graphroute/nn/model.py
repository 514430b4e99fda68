"""RouterGNN: heterogeneous encoder over task/query/LLM/user nodes, pair evidence along outcome paths, and
separate effect and cost heads."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch_geometric.nn import HeteroConv

from graphroute import schema as s
from graphroute.graph.sampling import Hops
from graphroute.nn.conv import EdgeAttrConv
from graphroute.nn.pairs import EVIDENCE_GROUPS, PAIR_DIM, TASK_MEAN, PairEvidence, evidence_logits

EdgeType = tuple[str, str, str]


class RouterGNN(nn.Module):
    """Predicts, for (query, LLM, user) triples, the effect logit and the standardised log cost.

    The effect head sees the query and LLM states, their product, the user–LLM product (a user's affinity
    can change the ranking) and the pair evidence of ``PairEvidence``. The cost head predicts a residual over
    the catalog-price estimate, so it is exact for priced logs from the first step.

    Args:
        in_channels: feature width per node type.
        edge_dims: attribute width per edge type (0 = none); its keys are the relations used.

    Shapes:
        x_dict[t] (N_t, F_t); edge_index_dict[et] (2, E_et); edge_attr_dict[et] (E_et, D_et);
        outcome_user (E_answered,); query_task (N_query,); query, llm, user, base_cost_z (P,) → (P,), (P,)
    """

    def __init__(
        self,
        in_channels: dict[str, int],
        edge_dims: dict[EdgeType, int],
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        h = hidden_channels
        self.edge_types = list(edge_dims)
        self.inputs = nn.ModuleDict({t: nn.Linear(c, h) for t, c in in_channels.items()})
        self.convs = nn.ModuleList(
            HeteroConv({et: EdgeAttrConv((h, h), h, d) for et, d in edge_dims.items()}, aggr="sum")
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.ModuleDict({t: nn.LayerNorm(h) for t in in_channels}) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.pairs = PairEvidence()
        # effect logit = GLM over pair evidence (starts as 'mean of this LLM on this task') + a residual MLP
        # over node states that starts at zero, so training refines a sound router instead of finding one
        self.evidence_glm = nn.Linear(PAIR_DIM, 1)
        nn.init.zeros_(self.evidence_glm.weight)
        nn.init.zeros_(self.evidence_glm.bias)
        with torch.no_grad():
            self.evidence_glm.weight[0, TASK_MEAN] = 1.0
        effect_out, cost_out = nn.Linear(h, 1), nn.Linear(h, 1)
        for layer in (effect_out, cost_out):  # the residual heads start at 0: the GLM and the catalog price lead
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.effect_head = nn.Sequential(
            nn.Linear(4 * h + PAIR_DIM, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, h), nn.ReLU(), effect_out
        )
        self.cost_head = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU(), cost_out)

    def layers(self) -> list[tuple[HeteroConv, nn.ModuleDict]]:
        """Each message-passing layer with its per-node-type norms."""
        return [(conv, cast(nn.ModuleDict, norms)) for conv, norms in zip(self.convs, self.norms, strict=True)]

    def encode(
        self,
        x_dict: dict[str, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_attr_dict: dict[EdgeType, Tensor],
        hops: Hops | None = None,
    ) -> dict[str, Tensor]:
        """Node states after message passing (see ``encode_layers``). Shapes: x_dict[t] (N_t, F_t) → (N_t, hidden)."""
        return self.encode_layers(x_dict, edge_index_dict, edge_attr_dict, hops)[-1]

    def encode_layers(
        self,
        x_dict: dict[str, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_attr_dict: dict[EdgeType, Tensor],
        hops: Hops | None = None,
    ) -> list[dict[str, Tensor]]:
        """Node states before the first layer and after each one (``InferenceCache`` keeps them all).

        With the ``hops`` of a sampled subgraph only the seeds' states are computed (rows
        ``[0, hops.within[t][0])`` of the result): layer i of L updates only the nodes within L-1-i hops of the
        seeds, from the edges into them, since nothing farther reaches a seed in the layers left. Most sampled
        nodes are outer-hop sources, so this skips most of the per-node work of a step.
        """
        h = {t: torch.relu(self.inputs[t](x)) for t, x in x_dict.items()}
        states = [h]
        edges = {et: ei for et, ei in edge_index_dict.items() if et in self.edge_types}
        attrs = {et: a for et, a in edge_attr_dict.items() if et in edges}
        for i, (conv, norms) in enumerate(self.layers()):
            keep = {t: len(v) for t, v in h.items()}
            layer_edges, layer_attrs = edges, attrs
            if hops is not None:
                depth = len(self.convs) - 1 - i  # hops left between this layer's outputs and the seeds
                keep = {t: hops.within[t][min(depth, len(hops.within[t]) - 1)] for t in h}
                near = {et: hops.edge_hop[et] <= depth for et in edges}
                layer_edges = {et: ei[:, near[et]] for et, ei in edges.items()}
                layer_attrs = {et: a[near[et]] for et, a in attrs.items()}
            out: dict[str, Tensor] = {}
            for et, ei in layer_edges.items():  # HeteroConv's sum over relations, with fewer outputs than inputs
                src, _, dst = et
                msg = conv.convs[et]((h[src], h[dst][: keep[dst]]), ei, layer_attrs.get(et))
                out[dst] = msg if dst not in out else out[dst] + msg
            h = {
                t: norms[t](v[: keep[t]] + self.dropout(torch.relu(out[t]))) if t in out else v[: keep[t]]
                for t, v in h.items()
            }
            states.append(h)
        return states

    def evidence(
        self,
        x_dict: dict[str, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_attr_dict: dict[EdgeType, Tensor],
        outcome_user: Tensor,
        query_task: Tensor,
        query: Tensor,
        llm: Tensor,
        user: Tensor,
    ) -> Tensor:
        """Pair evidence of the triples. Shapes: → (P, PAIR_DIM)."""
        attr = edge_attr_dict[s.ANSWERED_BY]
        return self.pairs(
            edge_index_dict[s.ANSWERED_BY],
            attr[:, s.OUTCOME_EFFECT],
            attr[:, s.OUTCOME_HAS_EFFECT],
            attr[:, s.OUTCOME_CHOSEN],
            outcome_user,
            {t: x.size(0) for t, x in x_dict.items()},
            edge_index_dict[s.SIMILAR_TO],
            edge_attr_dict[s.SIMILAR_TO][:, 0],
            query_task,
            query,
            llm,
            user,
        )

    def decode(
        self, z: dict[str, Tensor], pair: Tensor, query: Tensor, llm: Tensor, user: Tensor, base_cost_z: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Shapes: index tensors (P,), pair (P, PAIR_DIM), base_cost_z (P,) → effect logits (P,), cost (P,)."""
        zq, zl, zu = z[s.QUERY_NODE][query], z[s.LLM_NODE][llm], z[s.USER_NODE][user]
        residual = self.effect_head(torch.cat([zq, zl, zq * zl, zu * zl, pair], dim=-1))
        effect = (self.evidence_glm(evidence_logits(pair)) + residual).squeeze(-1)
        cost = base_cost_z + self.cost_head(torch.cat([zq, zl], dim=-1)).squeeze(-1)
        return effect, cost

    def effect_terms(
        self, z: dict[str, Tensor], pair: Tensor, query: Tensor, llm: Tensor, user: Tensor
    ) -> dict[str, Tensor]:
        """The effect logit of ``decode`` split into what each kind of evidence adds (``EVIDENCE_GROUPS``; the
        GLM's bias counts as ``overall``) and the residual over node states; the terms sum to the logit.
        Shapes: → (P,) each."""
        zq, zl, zu = z[s.QUERY_NODE][query], z[s.LLM_NODE][llm], z[s.USER_NODE][user]
        weighted = evidence_logits(pair) * self.evidence_glm.weight[0]  # (P, PAIR_DIM)
        terms = {name: weighted[:, list(cols)].sum(dim=-1) for name, cols in EVIDENCE_GROUPS.items()}
        terms["overall"] = terms["overall"] + self.evidence_glm.bias[0]
        terms["residual"] = self.effect_head(torch.cat([zq, zl, zq * zl, zu * zl, pair], dim=-1)).squeeze(-1)
        return terms

    def forward(
        self,
        x_dict: dict[str, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_attr_dict: dict[EdgeType, Tensor],
        outcome_user: Tensor,
        query_task: Tensor,
        query: Tensor,
        llm: Tensor,
        user: Tensor,
        base_cost_z: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Encode the graph, gather pair evidence, then decode the (query, LLM, user) triples given by index."""
        z = self.encode(x_dict, edge_index_dict, edge_attr_dict)
        pair = self.evidence(x_dict, edge_index_dict, edge_attr_dict, outcome_user, query_task, query, llm, user)
        return self.decode(z, pair, query, llm, user, base_cost_z)
