"""Print benchmark results as a table and JSON, and draw frontiers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graphroute.evaluation import Evaluation


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table (markdown pipes, so it pastes into the README)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([line, rule, *body])


@contextmanager
def saved_figure(path: str | Path, size: tuple[float, float] = (6, 4), legend_size: int = 8) -> Iterator[Any]:
    """An Agg figure's axes; on exit: legend, grid, tight layout, PNG at ``path``, closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        ax.legend(fontsize=legend_size)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def plot_frontiers(evaluation: Evaluation, path: str | Path, title: str) -> None:
    """One PNG: each router's (cost, quality) sweep and its frontier."""
    from matplotlib import colormaps

    from graphroute.metrics import frontier

    colors = colormaps["tab20"].colors  # type: ignore[attr-defined]
    with saved_figure(path, size=(8, 5.5), legend_size=7) as ax:
        for i, (name, sc) in enumerate(evaluation.scores.items()):
            hull, color = frontier(sc.points), colors[(2 * i) % 20 + (i >= 10)]
            ax.plot(
                [c for c, _ in hull],
                [q for _, q in hull],
                marker=".",
                color=color,
                lw=2.5 if name == "graphroute" else 1.2,
                label=f"{name} (AIQ {sc.aiq:.3f})",
            )
            ax.scatter([c for c, _ in sc.points], [q for _, q in sc.points], s=6, color=color, alpha=0.4)
        if all(c > 0 for sc in evaluation.scores.values() for c, _ in sc.points):
            ax.set_xscale("log")  # prices span orders of magnitude: a linear axis crams the cheap routers together
        ax.set_xlabel("mean cost per query (USD)")
        ax.set_ylabel("quality (mean effect)")
        ax.set_title(title)


def dump_json(payload: object, path: str | Path | None) -> str:
    text = json.dumps(payload, indent=2, default=float)
    if path is not None:
        Path(path).write_text(text)
    return text
