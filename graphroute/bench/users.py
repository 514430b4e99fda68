"""P3 users: simulated users on llmrouter-9llm, personalised vs user-agnostic routing, and new users from k
interactions."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from graphroute import schema as s
from graphroute.config import RouterConfig
from graphroute.costs import fill_costs
from graphroute.data.adapters import load_llmrouter
from graphroute.data.io import validate_interactions
from graphroute.data.simulate import SimulatedUsers, dense_matrices, make_users, simulate_logs
from graphroute.encoders import make_encoder
from graphroute.router import Router

logger = logging.getLogger(__name__)
KS = (0, 1, 3, 5, 10)


class UserCountsRouter:
    """Per-user best LLM by counts: always the LLM the user chose most often (global favourite if unknown)."""

    def __init__(self, log: pd.DataFrame, llms: list[str]) -> None:
        chosen = log[log[s.CHOSEN].astype(bool)]
        self.favourite = chosen.groupby(s.USER_ID)[s.LLM].agg(lambda c: c.value_counts().index[0]).to_dict()
        self.default = chosen[s.LLM].value_counts().index[0]
        self.llms = llms

    def choose(self, queries: list[str], user_ids: list[str]) -> np.ndarray:
        return np.array([self.llms.index(self.favourite.get(u, self.default)) for u in user_ids])


class OneHotUserRouter:
    """PersonalizedRouter's formulation: [query embedding ‖ one-hot user] → which LLM the user picks.
    A user never seen in training has an all-zero one-hot, so it falls back to the population."""

    def __init__(self, log: pd.DataFrame, llms: list[str], encoder: object, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.users = sorted(log[s.USER_ID].unique())
        self.llms, self.encoder = llms, encoder
        groups = [g for _, g in log.groupby(s.QUERY, sort=True) if g[s.CHOSEN].astype(bool).sum() == 1]
        x = self._features([g[s.QUERY].iloc[0] for g in groups], [g[s.USER_ID].iloc[0] for g in groups])
        shown = torch.zeros(len(groups), len(llms), dtype=torch.bool)
        target = torch.zeros(len(groups), dtype=torch.long)
        for i, g in enumerate(groups):
            shown[i, [llms.index(m) for m in g[s.LLM]]] = True
            target[i] = llms.index(g[g[s.CHOSEN].astype(bool)][s.LLM].iloc[0])
        self.net = nn.Sequential(nn.Linear(x.size(1), 128), nn.ReLU(), nn.Linear(128, len(llms)))
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(60):
            for idx in torch.randperm(len(groups)).split(256):
                logits = self.net(x[idx]).masked_fill(~shown[idx], -1e9)
                loss = nn.functional.cross_entropy(logits, target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def _features(self, queries: list[str], user_ids: list[str]) -> torch.Tensor:
        emb = torch.as_tensor(self.encoder.encode(queries))  # type: ignore[attr-defined]
        onehot = torch.zeros(len(queries), len(self.users))
        index = {u: i for i, u in enumerate(self.users)}
        for row, u in enumerate(user_ids):
            if u in index:
                onehot[row, index[u]] = 1.0
        return torch.cat([emb, onehot], dim=1)

    @torch.no_grad()
    def choose(self, queries: list[str], user_ids: list[str]) -> np.ndarray:
        return self.net(self._features(queries, user_ids)).argmax(1).numpy()


def _utility_scores(
    users: SimulatedUsers, owner: np.ndarray, effect: np.ndarray, norm: np.ndarray, choice: np.ndarray
) -> dict[str, float]:
    truth = users.utility(owner, effect, norm)
    rows = np.arange(len(choice))
    got, best = truth[rows, choice], truth.max(axis=1)
    return {
        "utility": round(float(got.mean()), 4),
        "oracle_utility": round(float(best.mean()), 4),
        "pct_of_oracle": round(float(got.mean() / best.mean() * 100), 1),
        "choice_accuracy": round(float((choice == truth.argmax(axis=1)).mean()), 4),
    }


def run_users(
    data_root: Path, config: RouterConfig, n_users: int = 200, new_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Fit on the simulated logs of the known users; score top-1 user utility on test queries for known users,
    and for new users adapted from k of their interactions."""
    bench = load_llmrouter(data_root / "llmrouter-9llm")
    encoder = make_encoder(config.encoder)
    names = [m.name for m in bench.llms]
    train = fill_costs(validate_interactions(bench.train, bench.llms), bench.llms, encoder)
    test = fill_costs(validate_interactions(bench.tests["test"], bench.llms), bench.llms, encoder)
    users = make_users(names, n_users, seed)
    log, _ = simulate_logs(train, users, seed=seed)
    rng = np.random.default_rng(seed)
    new_ids = set(rng.choice(users.ids, size=int(n_users * new_fraction), replace=False).tolist())
    known_rows = np.array([u not in new_ids for u in users.ids])
    known_log = log[~log[s.USER_ID].isin(new_ids)]
    router = Router(config).fit(known_log, bench.llms)
    queries, effect, norm = dense_matrices(test, names)
    known = np.flatnonzero(known_rows)
    owner = known[rng.integers(len(known), size=len(queries))]
    owner_ids = [users.ids[u] for u in owner]
    alpha0 = config.policy.alpha
    choices = {
        "graphroute (personalised)": np.argmax(router.predict_utility(queries, user_ids=owner_ids), axis=1),
        "graphroute (user-agnostic)": np.argmax(router.predict_utility(queries, alpha=alpha0), axis=1),
        "user-best-llm (counts)": UserCountsRouter(known_log, names).choose(queries, owner_ids),
        "personalizedrouter (one-hot users)": OneHotUserRouter(known_log, names, encoder, seed).choose(
            queries, owner_ids
        ),
        "random": rng.integers(len(names), size=len(queries)),
    }
    known_scores = {name: _utility_scores(users, owner, effect, norm, c) for name, c in choices.items()}
    curve = _new_user_curve(router, users, log, new_ids, queries, effect, norm, rng)
    alpha_err = [
        abs(router.state.user_prefs[u].alpha - users.alpha[users.ids.index(u)]) for u in router.state.user_prefs
    ]
    return {
        "n_users": n_users,
        "n_new_users": len(new_ids),
        "n_test_queries": len(queries),
        "known_users": known_scores,
        "new_users": curve,
        "mean_abs_alpha_error_known_users": round(float(np.mean(alpha_err)), 3),
    }


def _new_user_curve(
    router: Router,
    users: SimulatedUsers,
    log: pd.DataFrame,
    new_ids: set[str],
    queries: list[str],
    effect: np.ndarray,
    norm: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, Any]:
    new = np.array(sorted(users.ids.index(u) for u in new_ids))
    owner = new[rng.integers(len(new), size=len(queries))]
    owner_ids = [users.ids[u] for u in owner]
    history = {u: g for u, g in log[log[s.USER_ID].isin(new_ids)].groupby(s.USER_ID)}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        router.save(Path(tmp) / "base")
        for k in (*KS, "all"):
            adapted = Router.load(Path(tmp) / "base")
            for user, rows in history.items():
                asked = sorted(rows[s.QUERY].unique())
                keep = asked if k == "all" else asked[: int(k)]
                if keep:
                    adapted.update_user(str(user), rows[rows[s.QUERY].isin(keep)])
            choice = np.argmax(adapted.predict_utility(queries, user_ids=owner_ids), axis=1)
            results[str(k)] = _utility_scores(users, owner, effect, norm, choice)
            logger.info("new users, k=%s: %s", k, results[str(k)])
    full = results["all"]["utility"]
    return {
        "per_k": results,
        "pct_of_fully_trained": {k: round(v["utility"] / full * 100, 1) for k, v in results.items()},
        "interactions_per_new_user": round(float(np.mean([r[s.QUERY].nunique() for r in history.values()])), 1),
    }


def format_users(results: dict[str, Any]) -> str:
    """Tables of the P3 results."""
    from graphroute.bench.report import format_table

    known = [{"router": name, **scores} for name, scores in results["known_users"].items()]
    curve = results["new_users"]
    new = [{"k": k, **v, "pct_of_fully_trained": curve["pct_of_fully_trained"][k]} for k, v in curve["per_k"].items()]
    return (
        f"## known users ({results['n_users']} simulated users, {results['n_test_queries']} test queries)\n"
        f"{format_table(known)}\n\n## new users adapted from k interactions\n{format_table(new)}"
    )


def plot_users(results: dict[str, Any], path: Path) -> None:
    """User utility of new users versus k, against the fully trained user and the oracle."""
    from graphroute.bench.report import saved_figure

    per_k = results["new_users"]["per_k"]
    ks = [k for k in per_k if k != "all"]
    agnostic = results["known_users"]["graphroute (user-agnostic)"]["utility"]
    with saved_figure(path) as ax:
        ax.plot([int(k) for k in ks], [per_k[k]["utility"] for k in ks], marker="o", label="new user after k")
        ax.axhline(per_k["all"]["utility"], ls="--", color="g", label="fully trained user")
        ax.axhline(per_k["all"]["oracle_utility"], ls=":", color="k", label="oracle")
        ax.axhline(agnostic, ls="-.", color="r", label="user-agnostic (known users)")
        ax.set_xlabel("k interactions of the new user")
        ax.set_ylabel("mean true user utility of the top-1 LLM")
