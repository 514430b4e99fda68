"""Realistic demo logs: tasks with distinct query styles, LLMs with distinct strengths and prices, and users
with different trade-offs who see only a few LLMs per query.

The generator is the project's own demo data (nothing is copied from benchmark sets) and is deterministic for a
seed. ``per_query=None`` gives dense logs (every LLM on every query), which evaluation needs as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphroute import schema as s
from graphroute.schema import LLMProfile

_TASKS: dict[str, tuple[list[str], list[str], bool]] = {
    # name: (templates, fillers, graded continuously)
    "math": (
        [
            "Solve for x: {a}x + {b} = {c}.",
            "What is {a} times {b} minus {c}?",
            "Prove that the sum of the first {a} odd numbers is a perfect square.",
            "Compute the derivative of x^{a} + {b}x at x = {c}.",
            "A train travels {a} km in {b} hours; how far does it go in {c} hours?",
        ],
        [],
        False,
    ),
    "code": (
        [
            "Write a Python function that returns the {w} of a list of integers.",
            "Fix the bug in this loop: for i in range({a}): total += items[i+1]",
            "Implement a {w} class in Java with unit tests.",
            "Write a SQL query that selects the {w} rows from table t{a}.",
            "Refactor this recursive {w} function to be iterative.",
        ],
        ["maximum", "median", "sorted", "unique", "stack", "queue", "cache", "parser"],
        False,
    ),
    "trivia": (
        [
            "Who wrote the novel about the {w}?",
            "In which year did the {w} expedition begin?",
            "What is the capital of the country known for its {w}?",
            "Name the scientist who discovered {w}.",
        ],
        ["whale", "glacier", "silk road", "penicillin", "radium", "volcano", "lighthouse", "comet"],
        False,
    ),
    "writing": (
        [
            "Write a short poem about the {w}.",
            "Draft a polite email declining a {w} invitation.",
            "Summarise the plot of a story about a {w} in three sentences.",
            "Write a product description for a {w}.",
        ],
        ["autumn rain", "city at night", "wedding", "conference", "lost dog", "coffee grinder"],
        True,
    ),
    "translation": (
        [
            "Translate into French: 'The {w} is on the table.'",
            "Translate into German: 'We will visit the {w} tomorrow.'",
            "Translate into Spanish: 'My {w} arrived late.'",
        ],
        ["book", "museum", "train", "letter", "doctor", "package"],
        True,
    ),
    "reasoning": (
        [
            "If all {w}s are blue and some blue things are round, must some {w}s be round?",
            "There are {a} houses in a row; the red one is left of the green one. Who owns the fish?",
            "A is taller than B, B is taller than C. Is C taller than A? Explain with {a} steps.",
        ],
        ["bird", "stone", "cube", "flower", "robot"],
        False,
    ),
}

_STYLES = [
    "",
    " Answer briefly.",
    " Explain your reasoning.",
    " Please be precise.",
    " Keep it short.",
    " This is for a beginner.",
    " Give one example.",
    " Double-check the answer.",
    " Use simple words.",
    " I need this for work today.",
    " Format the answer as a list.",
    " Thanks!",
]

# name, description, input $/1M, output $/1M, size (B), verbosity (output tokens), base skill, task skills
_LLMS: list[tuple[str, str, float, float, float, int, float, dict[str, float]]] = [
    (
        "tiny-fast",
        "A tiny, very cheap and fast model for simple questions and short trivia.",
        0.05,
        0.1,
        1,
        120,
        -1.0,
        {"trivia": 0.6},
    ),
    (
        "coder-7b",
        "A 7B model specialised in programming: writes, fixes and refactors code in many languages.",
        0.2,
        0.2,
        7,
        300,
        -0.6,
        {"code": 2.2, "math": 0.3},
    ),
    (
        "math-13b",
        "A 13B model tuned for mathematics and step-by-step arithmetic and proofs.",
        0.3,
        0.3,
        13,
        260,
        -0.5,
        {"math": 2.2, "reasoning": 0.8},
    ),
    (
        "writer-8b",
        "An 8B model for fluent writing, summaries, emails and translation between European languages.",
        0.2,
        0.3,
        8,
        220,
        -0.4,
        {"writing": 1.8, "translation": 1.8},
    ),
    (
        "generalist-70b",
        "A strong 70B general assistant, good at most tasks, moderately priced.",
        0.9,
        0.9,
        70,
        250,
        0.6,
        {"reasoning": 0.4, "trivia": 0.6},
    ),
    (
        "reasoner-405b",
        "A very large 405B model with the best reasoning and knowledge, expensive.",
        3.0,
        6.0,
        405,
        400,
        1.1,
        {"reasoning": 1.2, "math": 0.6},
    ),
]


@dataclass(frozen=True)
class _User:
    user_id: str
    alpha: float
    favourite_llm: int
    tasks: np.ndarray  # task preference weights


def demo_llms() -> list[LLMProfile]:
    """The demo catalog."""
    return [
        LLMProfile(name=n, description=d, input_price=pi, output_price=po, size=sz, family=n.split("-")[0])
        for n, d, pi, po, sz, *_ in _LLMS
    ]


def _query(rng: np.random.Generator, task: str) -> tuple[str, float]:
    templates, fillers, _ = _TASKS[task]
    t = int(rng.integers(len(templates)))
    a, b, c = (int(x) for x in rng.integers(2, 99, size=3))
    word = fillers[int(rng.integers(len(fillers)))] if fillers else ""
    text = templates[t].format(a=a, b=b, c=c, w=word) + _STYLES[int(rng.integers(len(_STYLES)))]
    difficulty = (t / max(len(templates) - 1, 1)) * 1.5 + (a > 60) * 0.5 + rng.normal(0, 0.3)
    return text, float(difficulty)


def _users(rng: np.random.Generator, n_users: int) -> list[_User]:
    alphas = np.array([0.95, 0.7, 0.5, 0.3])
    return [
        _User(
            f"user{i:03d}",
            float(alphas[i % len(alphas)]),
            int(rng.integers(len(_LLMS))),
            rng.dirichlet(np.full(len(_TASKS), 0.7)),
        )
        for i in range(n_users)
    ]


def make_demo_logs(
    n_queries: int = 800, n_users: int = 24, per_query: int | None = 2, seed: int = 0
) -> tuple[pd.DataFrame, list[LLMProfile]]:
    """Generate an interaction log and its catalog.

    Args:
        n_queries: distinct prompts (duplicates are removed, so a few less may come out).
        n_users: users, cycling through four trade-offs (alpha 0.95, 0.7, 0.5, 0.3).
        per_query: LLMs each user was shown per query (sparse, the production case); None = all (dense).
        seed: everything is drawn from this seed.
    """
    rng = np.random.default_rng(seed)
    tasks, llms, users = list(_TASKS), demo_llms(), _users(rng, n_users)
    skill = np.array([[base + ts.get(t, 0.0) for t in tasks] for *_, base, ts in _LLMS])
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    for _ in range(n_queries):
        user = users[int(rng.integers(n_users))]
        ti = int(rng.choice(len(tasks), p=user.tasks))
        text, difficulty = _query(rng, tasks[ti])
        if text in seen:
            continue
        seen.add(text)
        rows.extend(_answers(rng, user, tasks[ti], skill[:, ti] - difficulty, text, llms, per_query))
    frame = pd.DataFrame(rows)
    frame[s.TIMESTAMP] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="min")
    return frame, llms


def _answers(
    rng: np.random.Generator,
    user: _User,
    task: str,
    logits: np.ndarray,
    text: str,
    llms: list[LLMProfile],
    per_query: int | None,
) -> list[dict[str, object]]:
    n = len(llms)
    p = 1 / (1 + np.exp(-logits))
    graded = _TASKS[task][2]
    effect = np.clip(p + rng.normal(0, 0.08, n), 0, 1).round(3) if graded else (rng.random(n) < p).astype(float)
    tokens_in = max(4, len(text.split()) * 4 // 3)
    tokens_out = np.array([max(16, int(rng.normal(m[5], m[5] * 0.2))) for m in _LLMS])
    cost = np.array(
        [(tokens_in * m.input_price + t * m.output_price) / 1e6 for m, t in zip(llms, tokens_out, strict=True)]
    )
    shown = np.arange(n) if per_query is None else _shown(rng, user, n, per_query)
    norm = (np.log(cost) - np.log(cost).min()) / max(np.ptp(np.log(cost)), 1e-9)
    utility = user.alpha * effect - (1 - user.alpha) * norm + 0.15 * (np.arange(n) == user.favourite_llm)
    best = shown[int(np.argmax(utility[shown] + rng.gumbel(0, 0.05, len(shown))))]
    return [
        {
            s.QUERY: text,
            s.LLM: llms[j].name,
            s.EFFECT: float(effect[j]),
            s.COST: float(cost[j]),
            s.TOKENS_IN: tokens_in,
            s.TOKENS_OUT: int(tokens_out[j]),
            s.USER_ID: user.user_id,
            s.TASK: task,
            s.CHOSEN: bool(j == best),
        }
        for j in shown
    ]


def _shown(rng: np.random.Generator, user: _User, n: int, k: int) -> np.ndarray:
    weights = np.ones(n)
    weights[user.favourite_llm] = 3.0
    return np.sort(rng.choice(n, size=min(k, n), replace=False, p=weights / weights.sum()))


def make_scale_logs(
    n_interactions: int, n_users: int = 1_000, per_query: int = 2, seed: int = 0
) -> tuple[pd.DataFrame, list[LLMProfile]]:
    """A large log for scale benchmarks, drawn like ``make_demo_logs`` but vectorised (1M rows in seconds).

    Every query is distinct (a ticket number keeps template collisions apart), so the graph grows with the log
    as a production log's does. ``per_query`` LLMs answer each query; one of them is marked chosen.
    """
    rng = np.random.default_rng(seed)
    tasks, llms, users = list(_TASKS), demo_llms(), _users(rng, n_users)
    n_llms = len(llms)
    per_query = min(per_query, n_llms)
    n_queries = -(-n_interactions // per_query)
    user = rng.integers(n_users, size=n_queries)
    prefs = np.stack([u.tasks for u in users])
    task = (rng.random((n_queries, 1)) > np.cumsum(prefs[user], axis=1)).sum(axis=1).clip(max=len(tasks) - 1)
    texts, difficulty = [], np.empty(n_queries)
    for i, t in enumerate(task):
        text, difficulty[i] = _query(rng, tasks[t])
        texts.append(f"{text} (ticket {i})")
    skill = np.array([[base + ts.get(t, 0.0) for t in tasks] for *_, base, ts in _LLMS])
    shown = np.argsort(rng.random((n_queries, n_llms)), axis=1)[:, :per_query]  # (Q, k) distinct LLMs
    p = 1 / (1 + np.exp(-(skill[shown, task[:, None]] - difficulty[:, None])))
    graded = np.array([_TASKS[t][2] for t in tasks])[task][:, None]
    effect = np.where(graded, np.clip(p + rng.normal(0, 0.08, p.shape), 0, 1).round(3), rng.random(p.shape) < p)
    tokens_in = np.array([max(4, len(t.split()) * 4 // 3) for t in texts])[:, None]
    verbosity = np.array([m[5] for m in _LLMS], dtype=float)[shown]
    tokens_out = np.maximum(16, rng.normal(verbosity, verbosity * 0.2)).astype(int)
    price_in = np.array([m.input_price for m in llms])[shown]
    price_out = np.array([m.output_price for m in llms])[shown]
    cost = (tokens_in * price_in + tokens_out * price_out) / 1e6
    alpha = np.array([u.alpha for u in users])[user][:, None]
    utility = alpha * effect - (1 - alpha) * np.log(cost) / 10 + rng.gumbel(0, 0.05, p.shape)
    chosen = utility == utility.max(axis=1, keepdims=True)
    names = np.array([m.name for m in llms])
    frame = pd.DataFrame(
        {
            s.QUERY: np.repeat(np.array(texts, dtype=object), per_query),
            s.LLM: names[shown].ravel(),
            s.EFFECT: effect.astype(float).ravel(),
            s.COST: cost.ravel(),
            s.TOKENS_IN: np.repeat(tokens_in[:, 0], per_query),
            s.TOKENS_OUT: tokens_out.ravel(),
            s.USER_ID: np.repeat(np.array([u.user_id for u in users])[user], per_query),
            s.TASK: np.repeat(np.array(tasks)[task], per_query),
            s.CHOSEN: chosen.ravel(),
        }
    ).head(n_interactions)
    frame[s.TIMESTAMP] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="s")
    return frame, llms
