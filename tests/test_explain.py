"""Explanations are faithful by construction: their parts add up to the numbers the router ranked by, and the
neighbours they list are the ones the model read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphroute import LLMProfile, Router, RouterConfig
from graphroute.baselines import ROUTERS
from graphroute.explain import EFFECT_TERMS, Explanation
from graphroute.fallback import ThinEvidenceFallback
from graphroute.graph.knn import nearest_neighbors

QUERY = "Solve for x: 12x + 5 = 41."


def check_utility_parts(explanation: Explanation) -> None:
    for r in explanation.ranking:
        assert r.quality + r.cost + r.affinity == pytest.approx(r.utility, abs=1e-9)
        assert r.quality == pytest.approx(explanation.alpha * r.effect, abs=1e-12)


def test_gnn_parts_add_up_to_the_prediction(fitted_router: Router) -> None:
    explanation = fitted_router.explain(QUERY, user_id="user001")
    ranked = fitted_router.recommend(QUERY, user_id="user001", k=len(fitted_router.state.llms))
    assert [r.llm for r in explanation.ranking] == [r.llm for r in ranked]
    assert [r.utility for r in explanation.ranking] == [r.utility for r in ranked]
    check_utility_parts(explanation)
    assert explanation.explains_effect
    for r in explanation.ranking:
        assert r.effect_terms is not None and r.effect_logit is not None
        assert list(r.effect_terms) == list(EFFECT_TERMS)
        assert sum(r.effect_terms.values()) == pytest.approx(r.effect_logit, abs=1e-5)
        assert r.effect == pytest.approx(1.0 / (1.0 + np.exp(-r.effect_logit)) + r.probe_shift, abs=1e-6)
    affinity = np.array([r.affinity for r in explanation.ranking])
    assert np.abs(affinity).max() > 0  # user001's fitted affinities are part of the utility
    fitted = fitted_router.state.fallback
    fitted_router.state.fallback = ThinEvidenceFallback()
    try:  # no onboarded LLM and no fallback: the sigmoid of the logit is the effect
        assert all(abs(r.probe_shift) < 1e-6 for r in fitted_router.explain(QUERY, user_id="user001").ranking)
    finally:
        fitted_router.state.fallback = fitted


def test_probe_shift_of_an_onboarded_llm(fitted_router: Router, tmp_path: Path) -> None:
    fitted_router.save(tmp_path / "copy")
    router = Router.load(tmp_path / "copy")
    texts = router.state.tables.queries.texts[:20]
    profile = LLMProfile(name="newcomer", description="A general assistant.", input_price=0.2, output_price=0.2)
    router.add_llm(profile, probes=[{"query": q, "effect": float(i % 2)} for i, q in enumerate(texts)])
    explanation = router.explain(QUERY)
    check_utility_parts(explanation)
    new = next(r for r in explanation.ranking if r.llm == "newcomer")
    assert new.effect_logit is not None
    assert 1.0 / (1.0 + np.exp(-new.effect_logit)) + new.probe_shift == pytest.approx(new.effect, abs=1e-6)
    assert abs(new.probe_shift) > 1e-4  # the map moved it
    assert new.effect == pytest.approx(router.predict_outcomes([QUERY])[0][0, -1])


def test_neighbours_are_the_ones_the_model_read(fitted_router: Router) -> None:
    st = fitted_router.state
    explanation = fitted_router.explain(QUERY)
    emb = st.encoder.encode([QUERY])
    idx, sim = nearest_neighbors(emb, st.tables.queries.emb, fitted_router.config.graph.k_neighbors)
    used = dict(zip(idx[0].tolist(), sim[0].tolist(), strict=True))
    top = sorted(used.values(), reverse=True)[:5]
    listed = explanation.neighbours
    assert [n.similarity for n in listed] == pytest.approx(top)
    frame = st.tables.frame
    for n in listed:
        row = st.tables.queries.texts.index(n.query)
        assert row in used and used[row] == pytest.approx(n.similarity)
        logged = frame[(frame["q"] == row) & frame["effect"].notna()].groupby("llm")["effect"].mean()
        assert n.effects == {k: pytest.approx(v, abs=1e-4) for k, v in logged.items()}


def test_unseen_task_reports_its_match_and_trust(fitted_router: Router) -> None:
    known = fitted_router.explain(QUERY, task="math")
    assert (known.task, known.task_inferred, known.task_trust) == ("math", False, 1.0)
    unseen = fitted_router.explain("Translate into Spanish: 'hello'", task="legal-translation")
    assert (
        unseen.task_inferred
        and unseen.task_given == "legal-translation"
        and unseen.task in fitted_router.state.task_names
    )
    assert 0.0 <= unseen.task_trust < 1.0
    text = unseen.table()
    assert "legal" not in text.split("task:")[1].split()[0] and "trusted" in text


@pytest.mark.parametrize("name", sorted(set(ROUTERS) - {"graphroute"}))
def test_baselines_split_utility_and_say_they_cannot_split_effect(
    name: str, demo: tuple[pd.DataFrame, list[LLMProfile]], fast_config: RouterConfig
) -> None:
    logs, llms = demo
    router = ROUTERS[name](fast_config).fit(logs, llms)
    explanation = router.explain(QUERY, alpha=0.4, k=3)
    assert len(explanation.ranking) == 3 and explanation.alpha == 0.4
    assert [r.llm for r in explanation.ranking] == [r.llm for r in router.recommend(QUERY, alpha=0.4, k=3)]
    check_utility_parts(explanation)
    assert not explanation.explains_effect and "does not split" in explanation.note
    assert all(r.effect_terms is None for r in explanation.ranking)
