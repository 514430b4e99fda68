"""The only training loop: train as you infer, select and stop early on validation, record the history."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from graphroute import schema as s
from graphroute.config import TrainConfig
from graphroute.distributed import Team, all_mean, average_gradients, broadcast_parameters, join
from graphroute.graph.builder import hide_queries
from graphroute.graph.sampling import EdgeType, Hops, NeighborSampler, incoming
from graphroute.nn.model import RouterGNN
from graphroute.nn.pairs import finish_tables, outcome_sums, tables_without

logger = logging.getLogger(__name__)


@dataclass
class Labels:
    """Observed outcomes to predict. Shapes: every field (P,); query indexes the graph's query nodes."""

    query: Tensor
    llm: Tensor
    user: Tensor
    effect: Tensor  # NaN where the row only has a preference
    cost_z: Tensor
    base_cost_z: Tensor

    def select(self, mask: Tensor) -> Labels:
        return Labels(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


@dataclass
class TrainResult:
    """What training did: per-epoch losses, the best epoch and its validation loss, and whether its steps ran on
    sampled subgraphs."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    sampled: bool = False


def resolve_device(name: str) -> torch.device:
    """'auto' means the GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


SAMPLING_THRESHOLD = 200_000  # outcome edges past which 'auto' trains on sampled subgraphs


def loss_terms(model: RouterGNN, graph: GraphTensors, labels: Labels, cost_weight: float) -> tuple[Tensor, Tensor]:
    """Effect BCE on logits (soft targets) and cost MSE for one set of labels on one graph."""
    logit, cost = model(
        graph.x,
        graph.edges,
        graph.attrs,
        graph.users[s.ANSWERED_BY],
        graph.query_task,
        labels.query,
        labels.llm,
        labels.user,
        labels.base_cost_z,
    )
    return _losses(logit, cost, labels, cost_weight)


def _losses(logit: Tensor, cost: Tensor, labels: Labels, cost_weight: float) -> tuple[Tensor, Tensor]:
    has = ~torch.isnan(labels.effect)
    effect_loss = F.binary_cross_entropy_with_logits(logit[has], labels.effect[has]) if has.any() else logit.sum() * 0
    return effect_loss, cost_weight * F.mse_loss(cost, labels.cost_z)


@dataclass(frozen=True)
class GraphTensors:
    """What the model reads from a graph, on one device: node features, edges and their attributes, the user of
    each outcome edge, and each query's task."""

    x: dict[str, Tensor]
    edges: dict[EdgeType, Tensor]
    attrs: dict[EdgeType, Tensor]
    users: dict[EdgeType, Tensor]
    query_task: Tensor


def as_tensors(data: HeteroData, device: torch.device) -> GraphTensors:
    data = data.to(device)
    return GraphTensors(
        x=data.x_dict,
        edges=data.edge_index_dict,
        attrs=data.collect("edge_attr"),
        users={s.ANSWERED_BY: data[s.ANSWERED_BY].user},
        query_task=data[s.QUERY_NODE].task,
    )


def uses_sampling(cfg: TrainConfig, num_outcomes: int) -> bool:
    """Whether training steps run on sampled subgraphs (see ``TrainConfig.sampling``)."""
    return cfg.sampling == "neighbor" or (cfg.sampling == "auto" and num_outcomes > SAMPLING_THRESHOLD)


def fit_model(
    model: RouterGNN,
    graph: HeteroData,
    labels: Labels,
    val_graph: HeteroData,
    val_labels: Labels,
    cfg: TrainConfig,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on masked target batches of ``graph``; keep the weights of the best validation epoch.

    Each step hides every outgoing and outcome edge of a batch of labelled queries and predicts their outcomes,
    exactly as a new query is predicted at inference. Steps encode the whole graph, or (large logs) a subgraph
    sampled around the batch; under ``torchrun`` each process takes its share of every batch.

    Runs with torch's deterministic kernels unless ``cfg.deterministic`` is off: the parallel scatter-adds
    otherwise sum in varying order, and on llmrouter-9llm those 1e-5 differences in validation loss flipped the
    selected epoch between identical runs (test quality 0.583 or 0.593 from one seed).
    """
    import torch_geometric

    from graphroute import progress

    with _deterministic(cfg.deterministic):
        torch_geometric.seed_everything(cfg.seed)
        device = resolve_device(cfg.device)
        team = join(device)
        model.to(device)
        broadcast_parameters(model, team)
        full, val = as_tensors(graph, device), as_tensors(val_graph, device)
        labels, val_labels = _to(labels, device), _to(val_labels, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sampler = None
        if uses_sampling(cfg, graph[s.ANSWERED_BY].num_edges):
            num_nodes = {t: graph[t].num_nodes for t in graph.node_types}
            fanouts = [cfg.fanouts[min(i, len(cfg.fanouts) - 1)] for i in range(len(model.convs))]
            sampler = NeighborSampler(full.edges, num_nodes, fanouts)
        step = _Step(model, full, labels, sampler, optimizer, team, cfg, graph[s.QUERY_NODE].num_nodes)
        result, best_state, stale = TrainResult(sampled=sampler is not None), copy.deepcopy(model.state_dict()), 0
        bar = progress.bar(range(cfg.epochs), desc="train", show=team.is_main)
        for epoch in bar:
            train_loss = all_mean(step.epoch(), team, device)
            val_effect, val_cost = _evaluate(model, val, val_labels, cfg.cost_weight)
            row = {"epoch": epoch, "train_loss": train_loss, "val_effect_loss": val_effect, "val_cost_loss": val_cost}
            result.history.append(row)
            if callback is not None:
                callback(epoch, row)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_effect + val_cost:.4f}")
            if val_effect + val_cost < result.best_val_loss - 1e-5:
                result.best_val_loss, result.best_epoch, stale = val_effect + val_cost, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        model.load_state_dict(best_state)
        model.to("cpu").eval()
        logger.info("best epoch %d, validation loss %.4f", result.best_epoch, result.best_val_loss)
        return result


@contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    before, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(enabled, warn_only=True)  # warn, not fail, where a GPU kernel has none
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _to(labels: Labels, device: torch.device) -> Labels:
    return Labels(*(getattr(labels, f).to(device) for f in labels.__dataclass_fields__))


class _Step:
    """One epoch of masked target batches, full-graph or sampled, this rank's share of each."""

    def __init__(
        self,
        model: RouterGNN,
        full: GraphTensors,
        labels: Labels,
        sampler: NeighborSampler | None,
        optimizer: torch.optim.Optimizer,
        team: Team,
        cfg: TrainConfig,
        num_queries: int,
    ) -> None:
        self.model, self.full, self.labels, self.sampler = model, full, labels, sampler
        self.optimizer, self.team, self.cfg, self.num_queries = optimizer, team, cfg, num_queries
        self.labelled = torch.unique(labels.query)
        if sampler is not None:
            self.evidence = _BatchEvidence(full, sampler, {t: x.size(0) for t, x in full.x.items()})
        # batches come from their own generator so every rank draws the same ones whatever else uses randomness
        self.order = torch.Generator().manual_seed(cfg.seed)
        self.draws = torch.Generator().manual_seed(cfg.seed + 1 + team.rank)

    def epoch(self) -> float:
        self.model.train()
        perm = self.labelled[torch.randperm(len(self.labelled), generator=self.order).to(self.labelled.device)]
        if self.sampler is None:
            batches = perm.chunk(self.cfg.steps_per_epoch)
        else:
            batches = perm.split(self.cfg.batch_size)
        total = 0.0
        for batch in batches:
            targets = self.team.share(batch)
            self.optimizer.zero_grad()
            if len(targets):
                is_target = torch.zeros(self.num_queries, dtype=torch.bool, device=targets.device)
                is_target[targets] = True
                labels = self.labels.select(is_target[self.labels.query])
                run = self._full if self.sampler is None else self._sampled
                effect_loss, cost_loss = run(targets, labels)
                (effect_loss + cost_loss).backward()
                total += float((effect_loss + cost_loss).detach()) / len(batches)
            average_gradients(self.model, self.team)
            self.optimizer.step()
        return total

    def _full(self, targets: Tensor, labels: Labels) -> tuple[Tensor, Tensor]:
        full = self.full
        edges, (attrs, users) = hide_queries(full.edges, [full.attrs, full.users], targets, self.num_queries)
        hidden = GraphTensors(full.x, edges, attrs, users, full.query_task)
        return loss_terms(self.model, hidden, labels, self.cfg.cost_weight)

    def _sampled(self, targets: Tensor, labels: Labels) -> tuple[Tensor, Tensor]:
        """Encoder on a subgraph sampled around the batch; pair evidence (global statistics, cheap scatters) on
        the whole graph; the batch's outgoing and outcome edges hidden from both."""
        assert self.sampler is not None
        full, model = self.full, self.model
        seeds = {s.QUERY_NODE: targets, s.LLM_NODE: torch.unique(labels.llm), s.USER_NODE: torch.unique(labels.user)}
        sub = self.sampler.sample({t: v.cpu() for t, v in seeds.items()}, generator=self.draws)
        dev = targets.device
        sub_attrs = {et: full.attrs[et][ids.to(dev)] for et, ids in sub.edge_id.items() if et in full.attrs}
        sub_edges = {et: ei.to(dev) for et, ei in sub.edge_index.items()}
        local_targets = torch.arange(len(targets), device=dev)  # seeds come first, in order after unique
        n_local = len(sub.nodes[s.QUERY_NODE])
        hops = {et: h.to(dev) for et, h in sub.hops.edge_hop.items()}
        sub_edges, (sub_attrs, hops) = hide_queries(sub_edges, [sub_attrs, hops], local_targets, n_local)
        x = {t: full.x[t][ids.to(dev)] for t, ids in sub.nodes.items()}
        z = model.encode(x, sub_edges, sub_attrs, Hops(sub.hops.within, hops))
        local = {t: v.to(dev) for t, v in sub.local.items()}
        pair = self.evidence(model, targets, local[s.QUERY_NODE], labels)
        logit, cost = model.decode(
            z,
            pair,
            local[s.QUERY_NODE][labels.query],
            local[s.LLM_NODE][labels.llm],
            local[s.USER_NODE][labels.user],
            labels.base_cost_z,
        )
        return _losses(logit, cost, labels, self.cfg.cost_weight)


class _BatchEvidence:
    """Pair evidence for a batch without touching every edge of the graph at each step.

    The whole graph's outcome sums are computed once; a step takes its targets' own outcomes out (found through
    a by-query index) and reads only the similarity edges into its targets, minus those leaving a target: the
    same evidence as hiding the targets from the whole graph (a test checks it), in time proportional to the batch.
    """

    def __init__(self, full: GraphTensors, sampler: NeighborSampler, num_nodes: dict[str, int]) -> None:
        answered, attr = full.edges[s.ANSWERED_BY], full.attrs[s.ANSWERED_BY]
        self.full, self.sampler, self.num_nodes = full, sampler, num_nodes
        with torch.no_grad():
            self.sums = outcome_sums(
                answered,
                attr[:, s.OUTCOME_EFFECT],
                attr[:, s.OUTCOME_HAS_EFFECT],
                attr[:, s.OUTCOME_CHOSEN],
                full.users[s.ANSWERED_BY],
                num_nodes,
                full.query_task,
            )
            self.per_query = finish_tables(self.sums)
        counts = torch.bincount(answered[0], minlength=num_nodes[s.QUERY_NODE])
        self.by_query = (
            torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]),
            torch.argsort(answered[0], stable=True),
        )

    def __call__(self, model: RouterGNN, targets: Tensor, target_row: Tensor, labels: Labels) -> Tensor:
        """Shapes: targets (B,) query ids; target_row (Q,) maps a target to its row in [0, B) → (P, PAIR_DIM)."""
        full = self.full
        rowptr, order = self.by_query
        own = order[incoming(rowptr, targets)]  # the targets' outcome edges
        answered, attr = full.edges[s.ANSWERED_BY][:, own], full.attrs[s.ANSWERED_BY][own]
        users = full.users[s.ANSWERED_BY][own]
        removed = outcome_sums(
            answered,
            attr[:, s.OUTCOME_EFFECT],
            attr[:, s.OUTCOME_HAS_EFFECT],
            attr[:, s.OUTCOME_CHOSEN],
            users,
            self.num_nodes,
            full.query_task,
            per_query=False,
        )
        tables = tables_without(self.sums, self.per_query, removed)
        sim_ptr, sim_order, sim_src = self.sampler.csr[s.SIMILAR_TO]
        positions = incoming(sim_ptr, targets)
        src = sim_src[positions]
        dst = torch.repeat_interleave(targets, sim_ptr[targets + 1] - sim_ptr[targets])
        is_target = torch.zeros(self.num_nodes[s.QUERY_NODE], dtype=torch.bool, device=targets.device)
        is_target[targets] = True
        keep = ~is_target[src]  # nothing leaves a target
        sim = full.attrs[s.SIMILAR_TO][sim_order[positions][keep], s.SIMILARITY]
        task = full.query_task
        return model.pairs.gather(
            tables,
            src[keep],
            target_row[dst[keep]],
            sim,
            task,
            len(targets),
            target_row[labels.query],
            task[labels.query],
            labels.llm,
            labels.user,
        )


@torch.no_grad()
def _evaluate(model: RouterGNN, graph: GraphTensors, labels: Labels, cost_weight: float) -> tuple[float, float]:
    model.eval()
    effect_loss, cost_loss = loss_terms(model, graph, labels, cost_weight)
    return float(effect_loss), float(cost_loss)
