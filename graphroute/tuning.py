"""Hyperparameter search with Optuna: one search space over the typed config, pruning on validation loss, and a
storage URL (SQLite by default, any RDB such as PostgreSQL) so several workers on several machines share a study.
Only the validation split carved from the training log is ever scored."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from graphroute.config import RouterConfig
from graphroute.router import Router
from graphroute.schema import LLMProfile

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)


def search_space(trial: optuna.trial.BaseTrial) -> dict[str, dict[str, Any]]:
    """The knobs worth searching, as sub-config updates."""
    return {
        "graph": {"k_neighbors": trial.suggest_int("k_neighbors", 5, 30)},
        "model": {
            "hidden_channels": trial.suggest_categorical("hidden_channels", [32, 64, 128]),
            "num_layers": trial.suggest_int("num_layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
        },
        "train": {
            "lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        },
    }


def apply(config: RouterConfig, updates: dict[str, dict[str, Any]]) -> RouterConfig:
    """The config with sub-config fields replaced (validated again)."""
    raw = config.model_dump()
    for section, values in updates.items():
        raw[section].update(values)
    return RouterConfig.model_validate(raw)


def tune(
    logs: pd.DataFrame,
    llms: list[LLMProfile],
    base: RouterConfig,
    n_trials: int,
    storage: str,
    study_name: str = "graphroute",
    seed: int | None = None,
) -> optuna.Study:
    """Run ``n_trials`` more trials of a shared study; returns the study (best trial = lowest validation loss)."""
    import optuna

    study = _open_study(storage, study_name, seed)

    def objective(trial: optuna.Trial) -> float:
        config = apply(base, search_space(trial))

        def report(epoch: int, losses: dict[str, float]) -> None:
            trial.report(losses["val_effect_loss"] + losses["val_cost_loss"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        router = Router(config, callback=report).fit(logs, llms)
        return float(router.history_.best_val_loss)

    study.optimize(objective, n_trials=n_trials)
    return study


def _open_study(storage: str, study_name: str, seed: int | None, attempts: int = 5) -> optuna.Study:
    """Create or join the study. Workers started together race to create the storage's tables; the loser sees an
    integrity error and simply joins on the next attempt."""
    import time

    import optuna

    for attempt in range(attempts):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                load_if_exists=True,
                direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=optuna.pruners.MedianPruner(n_warmup_steps=3),
            )
        except Exception:
            if attempt == attempts - 1:
                raise
            logger.info("study storage busy (another worker is creating it); retrying")
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def best_config(study: optuna.Study, base: RouterConfig) -> RouterConfig:
    """The base config with the best trial's parameters."""
    import optuna

    trial = study.best_trial
    fixed = optuna.trial.FixedTrial(trial.params)
    return apply(base, search_space(fixed))


def write_config(config: RouterConfig, path: str | Path) -> None:
    """YAML that `graphroute train --config` reads."""
    import yaml

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
