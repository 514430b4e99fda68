"""Why a router ranked the LLMs as it did, in terms that add up to what it predicted.

A ranking's utility is alpha·effect − (1−alpha)·ĉ + the user's affinity; the GNN's effect is the sigmoid of a logit
that is a sum of named evidence (this LLM on similar past queries, on same-task neighbours, on the task, for this
user, overall) plus a residual; after it, an onboarded LLM's probe map and, on a thin log, the fallback towards
the LLMs' overall (or per-task) means add a shift. An ``Explanation`` gives each of these numbers as the model computed
them, so the parts sum to the whole (a test checks it), and the past queries the model read as neighbours, with
their logged outcomes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

# the logit terms of the GNN's effect, in the order they are shown
EFFECT_TERMS = ("neighbours", "same_task_neighbours", "task", "user", "overall", "residual")
NEIGHBOURS_SHOWN = 5


@dataclass
class LLMExplanation:
    """One ranked LLM: utility = quality + cost + affinity; effect = sigmoid(sum of effect_terms) + probe_shift."""

    llm: str
    rank: int
    utility: float
    quality: float  # alpha · effect
    cost: float  # −(1 − alpha) · normalised cost, with the hair of cost that breaks ties
    affinity: float  # the user's learned leaning towards this LLM
    effect: float
    cost_usd: float
    normalized_cost: float
    effect_logit: float | None = None  # None: the router does not split its effect
    effect_terms: dict[str, float] | None = None  # contributions on the logit scale, in EFFECT_TERMS order
    probe_shift: float = 0.0  # added after the sigmoid: an onboarded LLM's probe map, the thin-evidence fallback


@dataclass
class Neighbour:
    """A past query the model read as a neighbour, with the logged mean effect of each ranked LLM on it."""

    query: str
    task: str
    similarity: float
    effects: dict[str, float]


@dataclass
class Explanation:
    """A request's ranking with its parts; ``task`` is the task the query was matched to and ``task_trust`` how far
    its evidence was used (1 for a known task; below 1 for a task name the router never saw)."""

    query: str
    user_id: str
    alpha: float
    task: str | None
    task_given: str | None
    task_inferred: bool
    task_trust: float
    ranking: list[LLMExplanation]
    neighbours: list[Neighbour]
    explains_effect: bool
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def frame(self) -> pd.DataFrame:
        """The ranking as a table, one row per LLM (rank order): utility and its terms, effect, cost and, where the
        router splits it, the effect logit's terms (for notebooks and plots)."""
        rows = []
        for r in self.ranking:
            row: dict[str, object] = {
                "llm": r.llm,
                "utility": r.utility,
                "quality": r.quality,
                "cost": r.cost,
                "affinity": r.affinity,
                "effect": r.effect,
                "cost_usd": r.cost_usd,
            }
            if r.effect_terms is not None:
                row.update(effect_logit=r.effect_logit, **r.effect_terms, probe_shift=r.probe_shift)
            rows.append(row)
        return pd.DataFrame(rows).set_index("llm")

    def table(self) -> str:
        """A plain-text report: the ranking with its utility and effect terms, then the neighbours."""
        task = f"{self.task} (inferred)" if self.task_inferred else str(self.task)
        trust = f", trusted {self.task_trust:.2f}" if self.task_trust < 1.0 else ""
        lines = [f"query: {self.query}", f"user: {self.user_id}   alpha: {self.alpha:.2f}   task: {task}{trust}", ""]
        head = ["rank", "llm", "utility", "=quality", "+cost", "+affinity", "effect", "$/query"]
        if self.explains_effect:
            head += ["logit", *EFFECT_TERMS, "probe"]
        rows = [head]
        for r in self.ranking:
            row = [str(r.rank), r.llm, *(f"{v:+.3f}" for v in (r.utility, r.quality, r.cost, r.affinity))]
            row += [f"{r.effect:.3f}", f"{r.cost_usd:.2e}"]
            if r.effect_terms is not None and r.effect_logit is not None:
                row += [f"{r.effect_logit:+.2f}", *(f"{r.effect_terms[t]:+.2f}" for t in EFFECT_TERMS)]
                row += [f"{r.probe_shift:+.3f}"]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(head))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) for row in rows]
        if self.note:
            lines += ["", self.note]
        if self.neighbours:
            lines += ["", "most similar past queries (logged effect per LLM):"]
            for n in self.neighbours:
                effects = ", ".join(f"{k} {v:.2f}" for k, v in n.effects.items())
                lines.append(f"  {n.similarity:.3f}  [{n.task}] {_short(n.query)}  ({effects or 'no logged outcome'})")
        return "\n".join(lines)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
