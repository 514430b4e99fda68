"""Continuous learning: retrain from the base log and the event store once enough new outcomes have arrived, check
the candidate against the served router on the newest outcomes, and swap it in only when it is not worse.

A deployment folder holds the routers (``router-1``, ``router-2``, …) and ``current``, a symbolic link to the one
to serve (`graphroute serve ROOT/current`); a swap replaces the link in one step and a reload of the server picks
it up. The check is off-policy (``graphroute.ope``): the newest outcomes that carry a propensity, which neither
router was trained on, are held out of the candidate's training, and the candidate is kept when its doubly robust
estimate of reward is not below the served router's beyond the noise (the paired 95 % interval of the
difference reaches 0 or above): it has seen more, so a tie goes to it. Held-out outcomes are folded into a
kept candidate afterwards, so nothing acknowledged is left out. Every decision, kept or not, is a JSON line in
``learn.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.config import RouterConfig
from graphroute.data.store import EventStore
from graphroute.events import FeedbackEvent
from graphroute.ope import Estimate, evaluate_off_policy
from graphroute.replay import fit_with_store_log, store_log
from graphroute.router import Router
from graphroute.schema import LLMProfile

logger = logging.getLogger(__name__)
CURRENT = "current"
DECISIONS = "learn.jsonl"


@dataclass(frozen=True)
class LearnDecision:
    """One retraining round: what was new, what the check found, and whether the candidate is now served."""

    at: str
    new_rows: int
    held_out: int
    swapped: bool
    reason: str
    router: str  # the folder ``current`` points to after this round
    store_event: int  # the last store event this round read
    candidate_dr: tuple[float, float, float] | None = None  # estimate, 95 % interval
    current_dr: tuple[float, float, float] | None = None
    difference_dr: tuple[float, float, float] | None = None  # candidate − served, paired over the same queries


def new_feedback_rows(store: EventStore, after: int) -> int:
    """Feedback rows stored after event ``after`` (what a retrain would add)."""
    count, cursor = 0, after
    while events := store.events_after(cursor):
        for event in events:
            count += len(event.rows) if isinstance(event, FeedbackEvent) else 0
            cursor = event[0] if isinstance(event, tuple) else event.id
    return count


def served_cursor(root: Path, store: EventStore) -> int:
    """The last store event the served router includes (0 when none is served or it never read this store)."""
    if not (root / CURRENT).exists():
        return 0
    from graphroute._serialization import read_events_cursor

    cursor = read_events_cursor(root / CURRENT)
    return 0 if cursor is None else cursor.after(store.store_id)


def learn_once(
    root: Path,
    logs: pd.DataFrame,
    llms: Sequence[LLMProfile],
    store: EventStore,
    config: RouterConfig,
    holdout: float = 0.2,
    min_held_out: int = 30,
) -> LearnDecision:
    """One round: train a candidate on the base log and the store (less the newest outcomes with propensities),
    compare it with the served router on those, and swap it in when it is not worse. With no router served yet,
    the first is trained on everything and served."""
    root.mkdir(parents=True, exist_ok=True)
    extra = store_log(store, llms)
    alpha, last = config.policy.alpha, extra.cursor.last_event
    if not (root / CURRENT).exists():
        router = Router(config)
        fit_with_store_log(router, logs, extra)
        folder = _install(root, router)
        first = LearnDecision(_now(), len(extra.rows), 0, True, "no router was served", folder.name, last)
        return _logged(root, first)
    current = Router.load(root / CURRENT)
    served = os.readlink(root / CURRENT)
    after = current.state.events_cursor.after(store.store_id) if current.state.events_cursor else 0
    new = [int(i) for i in np.flatnonzero(np.array(extra.row_events, dtype=int) > after)]
    rows = extra.rows
    usable = _present(rows, s.PROPENSITY) & _present(rows, s.EFFECT)
    rated = [i for i in new if usable[i]]
    held = rated[len(rated) - int(round(holdout * len(rated))) :] if rated else []
    if len(held) < min_held_out:
        reason = (
            f"kept {served}: {len(held)} new outcomes with a propensity to check a candidate on "
            f"(at least {min_held_out} needed; route with exploration so that outcomes carry one)"
        )
        return _logged(root, LearnDecision(_now(), len(new), len(held), False, reason, served, last))
    kept = np.setdiff1d(np.arange(len(rows)), held)
    train_part = replace(
        extra, rows=rows.iloc[kept].reset_index(drop=True), row_events=[extra.row_events[i] for i in kept]
    )
    candidate = Router(config)
    fit_with_store_log(candidate, logs, train_part)
    checked = rows.iloc[held].reset_index(drop=True)
    gain: dict[str, Estimate] = {}
    found = evaluate_off_policy({"candidate": candidate, "current": current}, checked, alpha, differences=gain)
    mine, theirs, diff = found["candidate"]["dr"], found["current"]["dr"], gain["current"]
    estimates = {
        "candidate_dr": (mine.value, mine.low, mine.high),
        "current_dr": (theirs.value, theirs.low, theirs.high),
        "difference_dr": (diff.value, diff.low, diff.high),
    }
    if diff.high < 0:  # worse beyond the noise of the held-out outcomes
        reason = (
            f"kept {served}: the candidate is worse by {-diff.value:.4f} reward per query "
            f"(paired 95 % interval [{diff.low:.4f}, {diff.high:.4f}])"
        )
        return _logged(root, LearnDecision(_now(), len(new), len(held), False, reason, served, last, **estimates))
    candidate.add_feedback(checked)  # the held-out outcomes, which the check needed unseen, join it now
    candidate.fold()
    folder = _install(root, candidate)
    reason = (
        f"swapped to {folder.name}: reward per query {diff.value:+.4f} against {served} "
        f"(paired 95 % interval [{diff.low:.4f}, {diff.high:.4f}]: not worse)"
    )
    return _logged(root, LearnDecision(_now(), len(new), len(held), True, reason, folder.name, last, **estimates))


def _present(rows: pd.DataFrame, column: str) -> np.ndarray:
    """Which rows hold a value in ``column`` (none when the column is absent). Shapes: → (len(rows),)."""
    return rows[column].notna().to_numpy() if column in rows.columns else np.zeros(len(rows), dtype=bool)


def _install(root: Path, router: Router) -> Path:
    """Save a router as the next ``router-N`` and point ``current`` at it in one step."""
    numbers = [int(p.name.split("-")[1]) for p in root.glob("router-*") if p.name.split("-")[1].isdigit()]
    folder = root / f"router-{max(numbers, default=0) + 1}"
    router.save(folder)
    link = root / f".{CURRENT}.new"
    link.unlink(missing_ok=True)
    link.symlink_to(folder.name)
    os.replace(link, root / CURRENT)
    return folder


def _logged(root: Path, decision: LearnDecision) -> LearnDecision:
    with (root / DECISIONS).open("a") as handle:
        handle.write(json.dumps(asdict(decision)) + "\n")
    logger.info("%s", decision.reason)
    return decision


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
