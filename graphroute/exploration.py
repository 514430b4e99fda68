"""Exploration while serving: sometimes send a request to an LLM other than the predicted best, so the router
keeps learning about the LLMs it would otherwise stop choosing (a newly onboarded one above all), at a bounded
price.

A router only learns the outcome of the LLM it chose. A greedy router therefore never corrects an LLM it
underrates. Each method here draws the choice from a distribution over the allowed LLMs and reports the
probability of the drawn one (its *propensity*), which off-policy evaluation (``graphroute.ope``) needs:

- ``epsilon``: the predicted best with probability 1 − ε, otherwise a uniform pick among the others;
- ``thompson``: the best of one draw of each LLM's utility from its predicted mean and evidence spread, so LLMs
  the router knows little about (a large spread) are tried more;
- ``ucb``: deterministically the LLM with the highest utility + ``ucb_beta`` × spread (propensity 1; its logs
  support off-policy estimates only of policies that agree with it).

The budget: no method gives up, on average over the requests an ``Explorer`` has served, more than ``budget`` of
predicted utility per request (an account of what was given up so far; an LLM whose predicted loss exceeds what is
left is never explored), and epsilon and Thompson also keep each request's expected loss within ``budget`` and its
chance of exploring within ``max_share``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from graphroute.config import ExplorationConfig

THOMPSON_DRAWS = 256  # draws that estimate a Thompson choice's probabilities (its propensities)


@dataclass(frozen=True)
class Pick:
    """One exploring choice: the chosen LLM's index, its probability, and whether it differs from the greedy one."""

    index: int
    propensity: float
    exploratory: bool
    greedy: int
    probabilities: np.ndarray  # (L,)


class Explorer:
    """Draws exploring choices under one budget account (shared by every request it serves; thread-safe)."""

    def __init__(self, config: ExplorationConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.given_up = 0.0  # predicted utility given up so far

    @property
    def active(self) -> bool:
        return self.config.method != "none"

    def pick(self, utility: np.ndarray, spread: np.ndarray, allowed: np.ndarray) -> Pick:
        """Choose among the ``allowed`` LLMs. Shapes: utility, spread (utility units), allowed bool (L,)."""
        masked = np.where(allowed, utility, -np.inf)
        greedy = int(np.argmax(masked))
        with self._lock:
            allowance = max(self.config.budget * (self.requests + 1) - self.given_up, 0.0)
            gap = masked[greedy] - masked  # ≥ 0 where allowed, inf elsewhere
            candidates = allowed & (gap <= allowance)
            probs = self._probabilities(masked, spread, candidates, gap, greedy)
            index = int(self._rng.choice(len(probs), p=probs))
            self.requests += 1
            self.given_up += float(gap[index])
        return Pick(index, float(probs[index]), index != greedy, greedy, probs)

    def _probabilities(
        self, utility: np.ndarray, spread: np.ndarray, candidates: np.ndarray, gap: np.ndarray, greedy: int
    ) -> np.ndarray:
        cfg = self.config
        n = len(utility)
        onehot = np.zeros(n)
        onehot[greedy] = 1.0
        others = candidates.copy()
        others[greedy] = False
        if cfg.method == "none" or not others.any():
            return onehot
        if cfg.method == "ucb":
            score = np.where(candidates, utility + cfg.ucb_beta * spread, -np.inf)
            out = np.zeros(n)
            out[int(np.argmax(score))] = 1.0
            return out
        if cfg.method == "epsilon":
            explore = others / others.sum()
        else:  # thompson
            z = self._rng.standard_normal((THOMPSON_DRAWS, n))
            draws = np.where(candidates, utility + spread * z, -np.inf)
            explore = np.bincount(np.argmax(draws, axis=1), minlength=n) / THOMPSON_DRAWS
        share = 1.0 - explore[greedy]
        loss = float(np.sum(explore * np.where(candidates, gap, 0.0)))
        weight = min(1.0, cfg.max_share / share if share > 0 else 1.0, cfg.budget / loss if loss > 0 else 1.0)
        probs = weight * explore + (1.0 - weight) * onehot
        return probs / probs.sum()
