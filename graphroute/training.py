"""The only training loop: train as you infer, select and stop early on validation, record the history."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from graphroute import schema as s
from graphroute.config import TrainConfig
from graphroute.graph.builder import hide_queries
from graphroute.nn.model import RouterGNN

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
    """What training did: per-epoch losses, the best epoch and its validation loss."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")


def resolve_device(name: str) -> torch.device:
    """'auto' means the GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loss_terms(model: RouterGNN, graph: dict[str, dict], labels: Labels, cost_weight: float) -> tuple[Tensor, Tensor]:
    """Effect BCE on logits (soft targets) and cost MSE for one set of labels on one graph."""
    logit, cost = model(
        graph["x"],
        graph["edges"],
        graph["attrs"],
        graph["users"][s.ANSWERED_BY],
        graph["query_task"],
        labels.query,
        labels.llm,
        labels.user,
        labels.base_cost_z,
    )
    has = ~torch.isnan(labels.effect)
    effect_loss = F.binary_cross_entropy_with_logits(logit[has], labels.effect[has]) if has.any() else logit.sum() * 0
    return effect_loss, cost_weight * F.mse_loss(cost, labels.cost_z)


def as_tensors(data: HeteroData, device: torch.device) -> dict[str, dict]:
    """The dicts the model consumes, on one device."""
    data = data.to(device)
    return {
        "x": data.x_dict,
        "edges": data.edge_index_dict,
        "attrs": data.collect("edge_attr"),
        "users": {s.ANSWERED_BY: data[s.ANSWERED_BY].user},
        "query_task": data[s.QUERY_NODE].task,
    }


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

    Each step hides every outgoing and outcome edge of a random batch of labelled queries and predicts their
    outcomes, exactly as a new query is predicted at inference.
    """
    import torch_geometric
    from tqdm.auto import tqdm

    torch_geometric.seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    full, val = as_tensors(graph, device), as_tensors(val_graph, device)
    labels, val_labels = _to(labels, device), _to(val_labels, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    labelled = torch.unique(labels.query)
    num_queries = graph[s.QUERY_NODE].num_nodes
    result, best_state, stale = TrainResult(), copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(cfg.epochs), desc="train", leave=False, disable=not logger.isEnabledFor(logging.INFO))
    for epoch in bar:
        train_loss = _epoch(model, full, labels, labelled, num_queries, optimizer, cfg)
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


def _to(labels: Labels, device: torch.device) -> Labels:
    return Labels(*(getattr(labels, f).to(device) for f in labels.__dataclass_fields__))


def _epoch(
    model: RouterGNN,
    full: dict[str, dict],
    labels: Labels,
    labelled: Tensor,
    num_queries: int,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
) -> float:
    model.train()
    total = 0.0
    chunks = labelled[torch.randperm(len(labelled), device=labelled.device)].chunk(cfg.steps_per_epoch)
    for targets in chunks:
        edges, (attrs, users) = hide_queries(full["edges"], [full["attrs"], full["users"]], targets, num_queries)
        is_target = torch.zeros(num_queries, dtype=torch.bool, device=targets.device)
        is_target[targets] = True
        graph = {**full, "edges": edges, "attrs": attrs, "users": users}
        effect_loss, cost_loss = loss_terms(model, graph, labels.select(is_target[labels.query]), cfg.cost_weight)
        optimizer.zero_grad()
        (effect_loss + cost_loss).backward()
        optimizer.step()
        total += float((effect_loss + cost_loss).detach()) / len(chunks)
    return total


@torch.no_grad()
def _evaluate(model: RouterGNN, graph: dict[str, dict], labels: Labels, cost_weight: float) -> tuple[float, float]:
    model.eval()
    effect_loss, cost_loss = loss_terms(model, graph, labels, cost_weight)
    return float(effect_loss), float(cost_loss)
