"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, nccl on GPU).

Every process builds the same graph from the same log and seed; each takes its share of every step's target
queries, and gradients are averaged before the step, so all processes hold the same weights throughout and make
the same early-stopping decision. Averaging by hand (one flat all-reduce per step) instead of wrapping the model
in ``DistributedDataParallel`` lets a step call the encoder on a sampled subgraph and the evidence on the full
graph, and copes with relations absent from a sampled subgraph (parameters without gradient).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Team:
    """This process's rank among ``world`` processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, targets: Tensor) -> Tensor:
        """This rank's part of a batch: every world-th item, starting at its rank."""
        return targets[self.rank :: self.world]


def join(device: torch.device) -> Team:
    """Join the process group that ``torchrun`` describes in the environment; a single process needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Team()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Team(dist.get_rank(), dist.get_world_size())


def current() -> Team:
    """The team this process belongs to, from the process group when one is running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Team(dist.get_rank(), dist.get_world_size())
    return Team()


def leave() -> None:
    """Close the process group (end of a torchrun job), so every rank exits cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_parameters(model: nn.Module, team: Team) -> None:
    """Start every rank from rank 0's weights."""
    if team.world == 1:
        return
    import torch.distributed as dist

    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def average_gradients(model: nn.Module, team: Team) -> None:
    """Mean of every parameter's gradient over the ranks (a missing gradient counts as zero)."""
    if team.world == 1:
        return
    import torch.distributed as dist

    params = list(model.parameters())
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= team.world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_mean(value: float, team: Team, device: torch.device) -> float:
    """Mean of a float over the ranks (training losses for the history)."""
    if team.world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / team.world
