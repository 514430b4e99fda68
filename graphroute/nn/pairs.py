"""Pair-level (query, LLM) evidence gathered along graph paths, for link prediction on outcome edges.

A node state mixes all LLMs into one vector; what a router most needs is LLM-specific: how did *this* LLM do
on the query's neighbours (query ← similar query → LLM), on its task (query ← task ← query → LLM), for this
user (user → query → LLM), and overall. These are the paths of a conditional (NBFNet-style) message passing,
aggregated here with scatter operations over the visible outcome edges, so hidden targets never leak.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PAIR_DIM = 14
# the columns that are means in [0, 1]; the others are supports or, 11-13, already logits
MEAN_FEATURES = (0, 1, 3, 5, 7, 8, 9)
TASK_MEAN = 3
LLM_MEAN = 8  # the LLM's overall (shrunk) mean
PRIOR_COUNT = 5.0  # pseudo-observations of the shrinkage prior
# the evidence features by what they speak of (the names an explanation gives their contributions)
EVIDENCE_GROUPS: dict[str, tuple[int, ...]] = {
    "neighbours": (0, 1, 2, 11, 12),
    "same_task_neighbours": (9, 10, 13),
    "task": (3, 4),
    "user": (5, 6, 7),
    "overall": (8,),
}


def logits(means: Tensor) -> Tensor:
    """Means in [0, 1] as logits, clamped to [0.02, 0.98] first."""
    means = means.clamp(0.02, 0.98)
    return torch.log(means) - torch.log1p(-means)


def evidence_logits(pair: Tensor) -> Tensor:
    """Means mapped to logits, supports unchanged: the inputs of the evidence GLM. Shapes: (P, F)."""
    out = pair.clone()
    out[:, MEAN_FEATURES] = logits(pair[:, MEAN_FEATURES])
    return out


def _mean_table(rows: Tensor, cols: Tensor, values: Tensor, n_rows: int, n_cols: int) -> tuple[Tensor, Tensor]:
    """Sum and count of values per (row, col). Shapes: (E,) each → (n_rows, n_cols) twice."""
    flat = rows * n_cols + cols
    total = torch.zeros(n_rows * n_cols, device=values.device).index_add_(0, flat, values)
    count = torch.zeros(n_rows * n_cols, device=values.device).index_add_(0, flat, torch.ones_like(values))
    return total.view(n_rows, n_cols), count.view(n_rows, n_cols)


def outcome_sums(
    outcome_index: Tensor,
    effect: Tensor,
    has_effect: Tensor,
    chosen: Tensor,
    outcome_user: Tensor,
    num_nodes: dict[str, int],
    query_task: Tensor,
    per_query: bool = True,
) -> dict[str, Tensor]:
    """Additive sums and counts of outcomes per (query | task | user, LLM) and per LLM: additive so that a batch's
    own outcomes can be taken out of the whole graph's sums in time proportional to the batch.
    ``per_query`` False leaves out the (Q, L) tables. Shapes: → q_* (Q, L), t_* (T, L), u_*/c_* (U, L), l_* (L,)."""
    n_q, n_l, n_t, n_u = (num_nodes[k] for k in ("query", "llm", "task", "user"))
    rated = has_effect > 0
    q_e, l_e = outcome_index[0][rated], outcome_index[1][rated]
    eff = effect[rated]
    out: dict[str, Tensor] = {}
    if per_query:
        out["q_sum"], out["q_cnt"] = _mean_table(q_e, l_e, eff, n_q, n_l)
    zero = torch.zeros(1, dtype=torch.long, device=eff.device).expand(len(eff))
    l_sum, l_cnt = _mean_table(zero, l_e, eff, 1, n_l)
    out["l_sum"], out["l_cnt"] = l_sum[0], l_cnt[0]
    out["t_sum"], out["t_cnt"] = _mean_table(query_task[q_e], l_e, eff, n_t, n_l)
    out["u_sum"], out["u_cnt"] = _mean_table(outcome_user[rated], l_e, eff, n_u, n_l)
    has_choice = chosen != 0.5
    pick_user, pick_llm = outcome_user[has_choice], outcome_index[1][has_choice]
    out["c_sum"], out["c_cnt"] = _mean_table(pick_user, pick_llm, chosen[has_choice], n_u, n_l)
    return out


def finish_tables(sums: dict[str, Tensor]) -> dict[str, Tensor]:
    """The evidence tables from outcome sums: per-query means, shrunk LLM means, the additive task/user tables."""
    # empirical-Bayes means: an LLM (or task, or user) seen a few times is pulled towards the level above, so
    # an LLM onboarded with ten probes is not judged on one lucky answer
    total, count = sums["l_sum"].sum(), sums["l_cnt"].sum()
    overall = total / count if count > 0 else torch.tensor(0.5, device=total.device)
    shrunk = (sums["l_sum"] + PRIOR_COUNT * overall) / (sums["l_cnt"] + PRIOR_COUNT)
    # an LLM's own mean speaks only for the tasks it was seen on: weighted by the share of the log's outcomes in
    # those tasks, the rest is the overall level. An LLM onboarded with probes from one task then keeps the
    # overall level elsewhere instead of carrying that task's score to every query; an LLM seen on every task
    # (every LLM of a dense log) keeps its mean as it is.
    task_size = sums["t_cnt"].sum(dim=1)  # (T,)
    coverage = (task_size @ (sums["t_cnt"] > 0).float()) / task_size.sum().clamp(min=1.0)  # (L,)
    out = {
        "llm_mean": coverage * shrunk + (1.0 - coverage) * overall,
        **{k: sums[k] for k in ("t_sum", "t_cnt", "u_sum", "u_cnt", "c_sum", "c_cnt")},
    }
    if "q_sum" in sums:
        out["q_mean"], out["q_seen"] = sums["q_sum"] / sums["q_cnt"].clamp(min=1), (sums["q_cnt"] > 0).float()
    return out


def tables_without(
    sums: dict[str, Tensor], per_query: dict[str, Tensor], removed: dict[str, Tensor]
) -> dict[str, Tensor]:
    """The tables with some outcomes taken out, from the whole graph's ``sums`` and the ``removed`` outcomes'
    sums (``outcome_sums(..., per_query=False)``). ``per_query`` holds q_mean and q_seen, kept as they are: the
    rows of queries whose outcomes are removed must then not be read (no similarity edge may leave them)."""
    kept = {k: sums[k] - removed[k] for k in removed}
    return {**finish_tables(kept), "q_mean": per_query["q_mean"], "q_seen": per_query["q_seen"]}


class PairEvidence(nn.Module):
    """Evidence for (query, LLM, user) triples from the visible outcome edges.

    Features per pair: neighbour mean effect with a learned similarity temperature, plain neighbour mean,
    neighbour support, task mean, task support, user mean, user support, user choice rate, LLM mean,
    same-task neighbour mean and its support, and the neighbours' level over all LLMs (mean logit) for each of
    the three neighbour weightings.
    Neighbour means are shrunk towards the task mean, and task, user and LLM means towards the level above
    (PRIOR_COUNT pseudo-observations each); supports are log counts.

    Shapes:
        outcome_index (2, E) query→LLM; effect, has_effect, chosen (E,); outcome_user (E,);
        sim_index (2, S) neighbour→query; sim (S,); query_task (Q,); triples (P,) each → (P, PAIR_DIM)
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(-2.3))  # τ ≈ 0.1 on cosine similarities

    def forward(
        self,
        outcome_index: Tensor,
        effect: Tensor,
        has_effect: Tensor,
        chosen: Tensor,
        outcome_user: Tensor,
        num_nodes: dict[str, int],
        sim_index: Tensor,
        sim: Tensor,
        query_task: Tensor,
        query: Tensor,
        llm: Tensor,
        user: Tensor,
    ) -> Tensor:
        sums = outcome_sums(outcome_index, effect, has_effect, chosen, outcome_user, num_nodes, query_task)
        tables = finish_tables(sums)
        wanted = torch.zeros(num_nodes["query"], dtype=torch.bool, device=query.device)
        wanted[query] = True
        keep = wanted[sim_index[1]]  # only the similarity edges into the queries asked about
        src, dst = sim_index[0][keep], sim_index[1][keep]
        return self.gather(
            tables, src, dst, sim[keep], query_task, num_nodes["query"], query, query_task[query], llm, user
        )

    def gather(
        self,
        tab: dict[str, Tensor],
        src: Tensor,
        dst: Tensor,
        sim: Tensor,
        query_task: Tensor,
        n_rows: int,
        row: Tensor,
        task: Tensor,
        llm: Tensor,
        user: Tensor,
        overall_weight: Tensor | None = None,
    ) -> Tensor:
        """Evidence of the pairs (row, llm, user) from neighbour edges src (reference query) → dst (row).

        Shapes: src, dst, sim (S,); row, task, llm, user (P,) → (P, PAIR_DIM); dst and row index [0, n_rows).
        ``query_task`` gives the task of reference queries; ``task`` that of each pair's row. The neighbour
        sums of the three weightings are one stacked scatter: a served request pays for every operation here.
        ``overall_weight`` (n_rows,) in [0, 1] is the share of each LLM's overall mean in a row's task evidence,
        the rest being its task's table: above 0 only for rows whose task is a name the router never saw
        (``task`` then holds the nearest known task, which still sends its node's messages).
        """
        fallback = tab["llm_mean"][llm]
        weight = torch.exp((sim - 1.0) / self.log_temperature.exp())
        row_task = torch.full((n_rows,), -1, dtype=torch.long, device=task.device)
        row_task[row] = task
        same = (query_task[src] == row_task[dst]).float()
        weights = torch.stack([weight, torch.ones_like(weight), weight * same], dim=1)  # (S, 3)
        neighbour = torch.stack([tab["q_mean"][src], tab["q_seen"][src]], dim=1)  # (S, 2, L)
        spread = torch.zeros(n_rows, 2, 3, neighbour.size(2), device=weight.device).index_add_(
            0, dst, neighbour[:, :, None, :] * weights[:, None, :, None]
        )  # (n_rows, 2, 3, L): sums and supports of the weighted, plain and same-task neighbours, per LLM
        # neighbour means are shrunk towards the task mean: on tasks scored 0/1 (code, maths) a few neighbours'
        # plain mean swings to 0 or 1 and, as a logit, outweighs everything else
        known_task = row_task.clamp(min=0)  # rows outside ``row`` are never read
        task_means = self._shrunk(tab["t_sum"][known_task], tab["t_cnt"][known_task], tab["llm_mean"])  # (n_rows, L)
        if overall_weight is not None:
            # a task named but never seen leans on the table of the known task it was matched to only as far as
            # it resembles that task; the rest is each LLM's overall mean (``GraphConfig.unseen_task``)
            w = overall_weight[:, None]
            task_means = w * tab["llm_mean"][None, :] + (1.0 - w) * task_means
        means = self._shrunk(spread[:, 0], spread[:, 1], task_means[:, None, :])  # (n_rows, 3, L)
        # the neighbours' level over all LLMs (how hard queries like this are) lowers the loss but cannot rank
        # LLMs; given apart, it leaves the per-LLM means' weights to what tells the LLMs apart
        level = logits(means).mean(dim=-1)[row]  # (P, 3)
        knn, support = means[row, :, llm], spread[row, 1, :, llm]  # (P, 3) each
        task_mean, t_cnt = task_means[row, llm], tab["t_cnt"][task, llm]
        u_sum, u_cnt = tab["u_sum"][user, llm], tab["u_cnt"][user, llm]
        feats = [
            knn[:, 0],
            knn[:, 1],
            torch.log1p(support[:, 1]),
            task_mean,
            torch.log1p(t_cnt) / 5,
            self._shrunk(u_sum, u_cnt, fallback),
            torch.log1p(u_cnt) / 5,
            self._ratio(tab["c_sum"][user, llm], tab["c_cnt"][user, llm], torch.full_like(fallback, 0.5)),
            fallback,
            knn[:, 2],
            torch.log1p(support[:, 2]),
            *level.unbind(dim=1),
        ]
        return torch.stack(feats, dim=-1)

    @staticmethod
    def _shrunk(total: Tensor, count: Tensor, prior: Tensor) -> Tensor:
        return (total + PRIOR_COUNT * prior) / (count + PRIOR_COUNT)

    @staticmethod
    def _ratio(total: Tensor, count: Tensor, fallback: Tensor) -> Tensor:
        return torch.where(count > 1e-6, total / count.clamp(min=1e-6), fallback)
