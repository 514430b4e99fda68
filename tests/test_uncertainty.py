"""The GNN's uncertainty: outcome intervals hold their coverage on held-out data, and the evidence spread is
largest where the router has seen nothing (a new LLM) and shrinks where probes were given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphroute import Router, evaluation
from graphroute.schema import LLMProfile
from graphroute.uncertainty import IntervalCalibration, evidence_spread


def test_outcome_interval_covers_held_out_outcomes(fitted_router: Router, dense_test: pd.DataFrame) -> None:
    tables = evaluation.test_tables(fitted_router, dense_test)
    truth = evaluation.truth_of(fitted_router, tables)
    for level in (0.8, 0.9):
        low, high = fitted_router.predict_interval(tables.queries, level)
        inside = (truth.effect >= low - 1e-9) & (truth.effect <= high + 1e-9)
        coverage = inside[truth.observed].mean()
        assert abs(coverage - level) <= 0.10, (level, coverage)
    low, high = fitted_router.predict_interval(tables.queries, 0.5)
    wide_low, wide_high = fitted_router.predict_interval(tables.queries, 0.9)
    assert (wide_high - wide_low >= high - low - 1e-12).all()


def test_spread_is_largest_for_a_new_llm_and_shrinks_near_its_probes(
    fitted_router: Router, dense_test: pd.DataFrame, tmp_path: Path
) -> None:
    fitted_router.save(tmp_path / "copy")
    router = Router.load(tmp_path / "copy")
    queries = dense_test.drop_duplicates("query")
    texts, tasks = queries["query"].tolist(), queries["task"].to_numpy()
    profile = LLMProfile(name="newcomer", description="A new general model.", input_price=0.5, output_price=0.5)
    router.add_llm(profile)
    effect, _, spread = router.predict_spread(texts)
    new = router.state.llm_names.index("newcomer")
    known = np.delete(spread, new, axis=1)
    assert spread[:, new].mean() > 1.5 * known.mean(), (spread[:, new].mean(), known.mean())
    st = router.state
    maths = [q for q, t in zip(st.tables.queries.texts, st.tables.queries.tasks, strict=True) if t == "math"][:15]
    probed = Router.load(tmp_path / "copy").add_llm(profile, probes=[{"query": q, "effect": 0.8} for q in maths])
    _, _, after = probed.predict_spread(texts)
    on_maths = tasks == "math"
    assert after[on_maths, new].mean() < 0.8 * spread[on_maths, new].mean()
    assert after[on_maths, new].mean() < after[~on_maths, new].mean()


def test_evidence_spread_falls_with_evidence() -> None:
    p = np.full((1, 4), 0.5)
    spread = evidence_spread(p, np.array([[0.0, 1.0, 10.0, 10.0]]), np.array([[0.0, 0.0, 0.0, 1000.0]]))
    assert (np.diff(spread[0]) < 0).all()
    assert spread[0, 0] == pytest.approx(0.5)


def test_conformal_scores_cover_their_calibration_set() -> None:
    rng = np.random.default_rng(0)
    effect = rng.uniform(0.1, 0.9, size=(400, 3))
    observed = (rng.random((400, 3)) < effect).astype(float)
    spread = np.full_like(effect, 0.05)
    calibration = IntervalCalibration.fit(effect[:200], spread[:200], observed[:200])
    low, high = calibration.interval(effect[200:], spread[200:], 0.8)
    coverage = ((observed[200:] >= low) & (observed[200:] <= high)).mean()
    assert 0.7 <= coverage <= 0.9, coverage
    with pytest.raises(ValueError, match="level"):
        calibration.interval(effect, spread, 1.0)
