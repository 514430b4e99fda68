"""Baseline routers on the same interface as the GNN (fit on a log, predict effect and cost per LLM).

They see exactly the data preparation, validation split and policy the GNN sees, so differences in the
benchmark come from the models alone. ``ROUTERS`` is the one registry the CLI and benchmarks use.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from graphroute import policy
from graphroute import schema as s
from graphroute.base import BaseRouter
from graphroute.data.tables import LogTables, QueryBatch, column_means
from graphroute.graph.knn import nearest_neighbors
from graphroute.router import Router
from graphroute.state import FittedState


class _CatalogCost(BaseRouter[FittedState]):
    """Cost = catalog estimate × the per-LLM ratio observed on train."""

    def _fit(self, base: FittedState, train: LogTables, val: LogTables) -> FittedState:
        self._state = base  # the shared state is all a baseline keeps besides its own model
        self._learn(train, val)
        return base

    def _learn(self, train: LogTables, val: LogTables) -> None:
        raise NotImplementedError

    def _fit_cost(self, train: LogTables) -> None:
        self.cost_ratio_ = self.fitted_cost_ratio(train)

    def _cost(self, batch: QueryBatch) -> np.ndarray:
        return batch.base_cost * self.cost_ratio_[None, :]

    def fitted_cost_ratio(self, train: LogTables) -> np.ndarray:
        """Per-LLM median of observed cost / catalog estimate on train: a cost model for routers without one."""
        f = train.frame
        ratio = f[s.COST].to_numpy() / np.maximum(train.queries.base_cost[f["q"], f["l"]], 1e-12)
        out = np.ones(len(self.state.llms))
        for j, r in pd.Series(ratio).groupby(f["l"].to_numpy()).median().items():
            out[cast(int, j)] = float(r)
        return out


class RandomRouter(_CatalogCost):
    """Uniformly random effects: a floor every router must clear."""

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.config.train.seed, len(batch)])
        return rng.random((len(batch), len(self.state.llms))), self._cost(batch)


class CheapestRouter(_CatalogCost):
    """Always the cheapest LLM (equal effects; the policy's cost tie-break decides)."""

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(batch), len(self.state.llms))), self._cost(batch)


class BestSingleRouter(_CatalogCost):
    """Each LLM's mean effect on the fit log: at any alpha it picks the best single LLM (never chosen on test)."""

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)
        both = train.concat(val)
        self.mean_effect_ = both.llm_means(len(self.state.llms), float(np.nanmean(both.frame[s.EFFECT])))

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        return np.tile(self.mean_effect_, (len(batch), 1)), self._cost(batch)


class TaskBestRouter(_CatalogCost):
    """Each LLM's mean effect per task on train (the 'best LLM per task' rule)."""

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)
        both = train.concat(val)
        tasks = self.state.task_index(both.queries.tasks, both.queries.emb)
        self.table_ = both.task_means(len(self.state.llms), tasks, len(self.state.task_names), fill=0.0)

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        return self.table_[self.state.task_index(batch.tasks, batch.emb)], self._cost(batch)


class KNNRouter(_CatalogCost):
    """Mean effect of the k most similar training queries per LLM; k chosen on validation.

    Args (via ``same_task``): restrict neighbours to the query's task.
    """

    same_task = False
    candidate_k = (5, 10, 20, 40, 80)

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)
        self._index(train)
        truth = val.outcome_matrix(len(self.state.llms))
        losses = {k: np.nanmean((self._knn(val.queries, k) - truth) ** 2) for k in self.candidate_k}
        self.k_ = min(losses, key=lambda k: losses[k])
        self._index(train.concat(val))

    def _index(self, tables: LogTables) -> None:
        self.ref_emb_ = tables.queries.emb
        self.ref_effect_ = tables.outcome_matrix(len(self.state.llms))
        self.ref_task_ = self.state.task_index(tables.queries.tasks, tables.queries.emb)
        self.prior_ = column_means(self.ref_effect_, 0.0)

    def _knn(self, batch: QueryBatch, k: int) -> np.ndarray:
        if not self.same_task:
            idx, _ = nearest_neighbors(batch.emb, self.ref_emb_, k)
            return _nanmean0_rows(self.ref_effect_[idx], self.prior_)
        tasks = self.state.task_index(batch.tasks, batch.emb)
        out = np.tile(self.prior_, (len(batch), 1))
        for t in np.unique(tasks):
            rows, pool = np.flatnonzero(tasks == t), np.flatnonzero(self.ref_task_ == t)
            if len(pool):
                idx, _ = nearest_neighbors(batch.emb[rows], self.ref_emb_[pool], k)
                out[rows] = _nanmean0_rows(self.ref_effect_[pool][idx], self.prior_)
        return out

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        return self._knn(batch, self.k_), self._cost(batch)


class RidgeRouter(_CatalogCost):
    """A ridge regression per LLM from the query embedding to its effect (with an intercept), the strength chosen
    per LLM on validation: the per-LLM linear readout every richer router should contain."""

    candidate_l2 = (0.1, 1.0, 10.0, 100.0)

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)
        n_llms = len(self.state.llms)
        y_train, y_val = train.outcome_matrix(n_llms), val.outcome_matrix(n_llms)
        fill = column_means(y_train, float(np.nanmean(train.frame[s.EFFECT])))
        weights = []
        for j in range(n_llms):
            fits = {l2: _ridge(train.queries.emb, y_train[:, j], l2, fill[j]) for l2 in self.candidate_l2}
            seen = ~np.isnan(y_val[:, j])
            loss = {
                l2: float(np.mean((_affine(val.queries.emb[seen], w) - y_val[seen, j]) ** 2)) if seen.any() else 0.0
                for l2, w in fits.items()
            }
            best = min(loss, key=lambda l2: loss[l2])
            both = train.concat(val)  # the chosen strength refitted on train and validation
            weights.append(_ridge(both.queries.emb, both.outcome_matrix(n_llms)[:, j], best, fill[j]))
        self.weights_ = np.stack(weights, axis=1)  # (D + 1, L)

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        return np.clip(_affine(batch.emb, self.weights_), 0.0, 1.0), self._cost(batch)


class LinUCBRouter(_CatalogCost):
    """LinUCB's model (the standard contextual-bandit router): per LLM, a ridge regression (strength 1) from the
    query embedding and a constant to the effect, with the spread sqrt(x' A⁻¹ x) of its estimate, where A is the
    LLM's regularised design matrix. Routed with ``exploration.method: ucb`` it is LinUCB with a cost-aware
    reward (alpha × (effect + beta × spread) − (1 − alpha) × cost)."""

    l2 = 1.0

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)
        both = train.concat(val)
        x = _with_constant(both.queries.emb)
        y = both.outcome_matrix(len(self.state.llms))
        prior = float(np.nanmean(both.frame[s.EFFECT])) if both.frame[s.EFFECT].notna().any() else 0.5
        self.inverse_, weights = [], []
        for j in range(y.shape[1]):
            seen = ~np.isnan(y[:, j])
            inverse = np.linalg.inv(x[seen].T @ x[seen] + self.l2 * np.eye(x.shape[1]))
            # the constant starts at the log's mean effect, so an LLM with few outcomes is predicted near it
            weights.append(inverse @ (x[seen].T @ (y[seen, j] - prior)))
            self.inverse_.append(inverse)
        self.weights_, self.prior_ = np.stack(weights, axis=1), prior

    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        return np.clip(_with_constant(batch.emb) @ self.weights_ + self.prior_, 0.0, 1.0), self._cost(batch)

    def _predict_spread(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        effect, cost = self._predict(batch)
        x = _with_constant(batch.emb)
        spread = np.stack([np.sqrt(np.einsum("nd,de,ne->n", x, inv, x)) for inv in self.inverse_], axis=1)
        return effect, cost, spread


def _with_constant(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x.astype(float), np.ones((len(x), 1))], axis=1)


def _ridge(x: np.ndarray, y: np.ndarray, l2: float, fill: float) -> np.ndarray:
    """Weights (D + 1,) of a ridge fit on the rows where y is observed, the intercept unpenalised and centred;
    with no rows, the constant ``fill``."""
    seen = ~np.isnan(y)
    if not seen.any():
        return np.concatenate([np.zeros(x.shape[1]), [fill]])
    xs, ys = x[seen].astype(float), y[seen]
    mu_x, mu_y = xs.mean(axis=0), ys.mean()
    xc = xs - mu_x
    w = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (ys - mu_y))
    return np.concatenate([w, [mu_y - mu_x @ w]])


def _affine(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x @ w[:-1] + w[-1]


class TaskKNNRouter(KNNRouter):
    """kNN among training queries of the same task."""

    same_task = True


def _nanmean0_rows(stack: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Shapes: (N, k, L) → (N, L), NaN-aware, ``fill`` (L,) where nothing was observed."""
    counts = (~np.isnan(stack)).sum(axis=1)
    return np.where(counts > 0, np.nansum(stack, axis=1) / np.maximum(counts, 1), fill[None, :])


# ----- learned baselines: one small torch loop, early-stopped on validation -----


def _train(
    make_module: Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, slice | np.ndarray, bool], torch.Tensor],
    n_train: int,
    seed: int,
    epochs: int = 200,
    patience: int = 10,
    batch: int = 256,
) -> nn.Module:
    torch.manual_seed(seed)  # before the module is built: its initial weights are part of the seed
    module = make_module()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-5)
    best, best_state, stale = float("inf"), copy.deepcopy(module.state_dict()), 0
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        module.train()
        for idx in np.array_split(rng.permutation(n_train), max(1, n_train // batch)):
            opt.zero_grad()
            loss_fn(module, idx, True).backward()
            opt.step()
        module.eval()
        with torch.no_grad():
            val = float(loss_fn(module, slice(None), False))
        if val < best - 1e-5:
            best, best_state, stale = val, copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    module.load_state_dict(best_state)
    return module.eval()


class _Learned(_CatalogCost):
    """Baselines that map a query embedding to one score per LLM, trained with masked BCE."""

    def _module(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def _targets(self, tables: LogTables) -> np.ndarray:
        return tables.outcome_matrix(len(self.state.llms))

    def _learn(self, train: LogTables, val: LogTables) -> None:
        self._fit_cost(train)
        data = {True: self._tensors(train), False: self._tensors(val)}

        def loss_fn(module: nn.Module, idx: slice | np.ndarray, is_train: bool) -> torch.Tensor:
            x, y = data[is_train]
            x, y = x[idx], y[idx]
            mask = ~torch.isnan(y)
            return F.binary_cross_entropy_with_logits(module(x)[mask], y[mask])

        dim = train.queries.emb.shape[1]
        self.net_ = _train(lambda: self._module(dim), loss_fn, len(train.query_ids), self.config.train.seed)

    def _tensors(self, tables: LogTables) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(tables.queries.emb, dtype=torch.float32),
            torch.as_tensor(self._targets(tables), dtype=torch.float32),
        )

    @torch.no_grad()
    def _predict(self, batch: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(batch.emb, dtype=torch.float32)
        return torch.sigmoid(self.net_(x)).numpy().astype(float), self._cost(batch)


class MLPRouter(_Learned):
    """An MLP from the query embedding to one effect per LLM."""

    def _module(self, dim: int) -> nn.Module:
        return nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, len(self.state.llms)))


class LogRegRouter(_Learned):
    """A logistic regression per LLM from the query embedding (masked BCE on the effect, early-stopped on
    validation)."""

    def _module(self, dim: int) -> nn.Module:
        return nn.Linear(dim, len(self.state.llms))


class _MF(nn.Module):
    def __init__(self, dim: int, n_llms: int, rank: int = 32) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, rank)
        self.llm = nn.Embedding(n_llms, rank)
        self.bias = nn.Parameter(torch.zeros(n_llms))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) @ self.llm.weight.T + self.bias


class MFRouter(_Learned):
    """Matrix factorisation (RouteLLM style): projected query embedding · learned LLM vector + LLM bias."""

    def _module(self, dim: int) -> nn.Module:
        return _MF(dim, len(self.state.llms))


class OneHotRouter(_Learned):
    """GraphRouter's formulation: BCE on a one-hot 'best LLM' label computed at a trade-off fixed at training
    (``train_alpha``); its scores are then ranked by the same policy. Ties go to the cheaper LLM."""

    train_alpha = 1.0

    def _targets(self, tables: LogTables) -> np.ndarray:
        effect = tables.outcome_matrix(len(self.state.llms))
        cost = self.state.cost_scaler.transform(tables.queries.base_cost * self.cost_ratio_, tables.queries.tasks)
        utility = np.where(np.isnan(effect), -np.inf, policy.utilities(np.nan_to_num(effect), cost, self.train_alpha))
        best = np.argmax(utility, axis=1)
        onehot = np.where(np.isnan(effect), np.nan, 0.0)
        onehot[np.arange(len(best)), best] = 1.0
        return onehot

    def _module(self, dim: int) -> nn.Module:
        return nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, len(self.state.llms)))


ROUTERS: dict[str, type[BaseRouter[Any]]] = {
    "graphroute": Router,
    "random": RandomRouter,
    "cheapest": CheapestRouter,
    "best-single": BestSingleRouter,
    "task-best": TaskBestRouter,
    "knn": KNNRouter,
    "knn-task": TaskKNNRouter,
    "ridge": RidgeRouter,
    "linucb": LinUCBRouter,
    "logreg": LogRegRouter,
    "mlp": MLPRouter,
    "mf": MFRouter,
    "graphrouter-onehot": OneHotRouter,
}
