from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphroute import LLMProfile, Router
from graphroute.errors import DataValidationError, UnknownLLMError
from graphroute.probes import LevelComponents, ProbeMap, level_components

QUERY = "Who wrote the novel about the whale?"  # trivia: a cheap and a dear LLM both have a case


def weights(router: Router) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in router.state.model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def router(fitted_router: Router, tmp_path: Path) -> Router:
    fitted_router.save(tmp_path / "copy")
    return Router.load(tmp_path / "copy")  # a private copy each test may change


def choices_for(router: Router, cheap: bool) -> pd.DataFrame:
    """Eight queries where the user saw the cheapest and the dearest LLM and picked one of them."""
    queries = router.state.tables.queries.texts[:8]
    prices = {m.name: m.input_price for m in router.state.llms}
    low, high = min(prices, key=prices.get), max(prices, key=prices.get)
    rows = []
    for q in queries:
        rows.append({"query": q, "llm": low, "effect": 0.4, "chosen": cheap})
        rows.append({"query": q, "llm": high, "effect": 0.9, "chosen": not cheap})
    return pd.DataFrame(rows)


def test_opposite_users_get_different_top1_without_weight_changes(router: Router, tmp_path: Path) -> None:
    before = weights(router)
    router.update_user("saver", choices_for(router, cheap=True))
    router.update_user("spender", choices_for(router, cheap=False))
    assert same_weights(before, weights(router))
    assert router.user_profile("saver")["alpha"] < 0.5 < router.user_profile("spender")["alpha"]
    top = {u: router.recommend(QUERY, user_id=u, k=1)[0].llm for u in ("saver", "spender")}
    assert top["saver"] != top["spender"]
    assert router.recommend(QUERY, user_id="saver", k=1, alpha=1.0)[0].llm != top["saver"]  # request overrides
    router.save(tmp_path / "after")
    loaded = Router.load(tmp_path / "after")
    assert loaded.recommend(QUERY, user_id="saver", k=1)[0].llm == top["saver"]
    assert loaded.user_profile("spender")["interactions"] == 16


def test_unknown_user_is_cold_start_not_someone_else(router: Router) -> None:
    router.update_user("saver", choices_for(router, cheap=True))
    profile = router.user_profile("never-seen")
    assert not profile["known"] and profile["alpha"] == router.config.policy.alpha
    cold = router.recommend(QUERY, user_id="never-seen", k=6)
    default = router.recommend(QUERY, user_id="another-stranger", k=6)
    assert [r.llm for r in cold] == [r.llm for r in default]
    saver = router.recommend(QUERY, user_id="saver", k=6)  # ids are read: the adapted user ranks otherwise
    assert [(r.llm, round(r.utility, 6)) for r in saver] != [(r.llm, round(r.utility, 6)) for r in cold]


def test_add_llm_routable_at_once_and_saved(router: Router, tmp_path: Path) -> None:
    before = weights(router)
    new = LLMProfile(
        name="math-pro",
        description="Excellent at mathematics, algebra and proofs.",
        input_price=0.05,
        output_price=0.05,
    )
    probes = [{"query": q, "effect": 1.0} for q in router.state.tables.queries.texts[:10]]
    router.add_llm(new, probes=probes)
    assert same_weights(before, weights(router))
    assert "math-pro" in {r.llm for r in router.recommend(QUERY, k=7)}
    assert router.predict_outcomes([QUERY])[0].shape == (1, 7)
    router.save(tmp_path / "with-new")
    assert Router.load(tmp_path / "with-new").state.llm_names[-1] == "math-pro"
    with_probes = router.predict_outcomes([QUERY])[0][0, -1]
    bare = Router.load(tmp_path / "with-new")
    bare.remove_llm("math-pro")
    bare.add_llm(new)  # description only
    assert with_probes > bare.predict_outcomes([QUERY])[0][0, -1]


def test_disable_and_remove(router: Router) -> None:
    router.disable_llm("math-13b")
    assert "math-13b" not in {r.llm for r in router.recommend(QUERY, k=6)}
    router.disable_llm("math-13b", disabled=False)
    router.remove_llm("tiny-fast")
    assert "tiny-fast" not in router.state.llm_names and router.predict_outcomes([QUERY])[0].shape == (1, 5)
    with pytest.raises(UnknownLLMError, match="nope"):
        router.disable_llm("nope")


@pytest.mark.parametrize(
    ("profile", "probes", "match"),
    [
        (
            {"name": "x", "description": "ok", "input_price": 1, "output_price": 1},
            [{"query": "a prompt the router never saw", "effect": 1}],
            "field 'query'",
        ),
        ({"name": "x", "description": "ok", "input_price": 1, "output_price": 1}, "KNOWN:1.5", "column 'effect'"),
        ({"name": "coder-7b", "description": "dup", "input_price": 1, "output_price": 1}, None, "duplicate LLM"),
        ({"name": "x", "description": "  ", "input_price": 1, "output_price": 1}, None, "field description"),
    ],
)
def test_bad_onboarding_input(router: Router, profile: dict, probes: object, match: str) -> None:
    if probes == "KNOWN:1.5":
        probes = [{"query": router.state.tables.queries.texts[0], "effect": 1.5}]
    with pytest.raises(DataValidationError, match=match):
        router.add_llm(profile, probes=probes)  # type: ignore[arg-type]
    assert len(router.state.llms) == 6  # nothing half-added


def test_bad_user_input(router: Router) -> None:
    with pytest.raises(DataValidationError, match="user_id"):
        router.update_user("", [{"query": "q", "llm": "coder-7b", "effect": 1}])
    with pytest.raises(DataValidationError, match="column 'effect'"):
        router.update_user("u", [{"query": "q", "llm": "coder-7b", "effect": 3}])
    with pytest.raises(DataValidationError, match="alpha"):
        router.recommend(QUERY, alpha=1.5)


def test_probes_borrow_per_query_shape_from_the_llm_they_agree_with(router: Router, tmp_path: Path) -> None:
    """A new LLM probed on queries where it scored exactly like writer-8b should rank queries like writer-8b
    once there are enough probes to outweigh the prior (the others' average): the map leans on writer-8b most,
    and survives save/load and removal."""
    twin = LLMProfile(name="twin", description="A general assistant.", input_price=0.3, output_price=0.3)
    texts = router.state.tables.queries.texts
    column = router.state.llm_names.index("writer-8b")
    known = router.predict_outcomes(texts[:120])[0][:, column]
    fresh = texts[400:600]
    target = router.predict_outcomes(fresh)[0][:, column]
    router.add_llm(twin, probes=[{"query": texts[i], "effect": float(known[i])} for i in range(120)])
    assert set(router.state.probe_maps) == {"twin"}
    borrowed = router.state.probe_maps["twin"]
    assert borrowed.others[int(np.argmax(borrowed.weights))] == "writer-8b"
    with_map = np.corrcoef(router.predict_outcomes(fresh)[0][:, -1], target)[0, 1]
    router.save(tmp_path / "after")
    loaded = Router.load(tmp_path / "after")
    np.testing.assert_allclose(loaded.predict_outcomes(fresh)[0], router.predict_outcomes(fresh)[0])
    assert with_map > 0.9, with_map
    router.remove_llm("writer-8b")
    left = router.predict_outcomes(fresh)[0][:, -1]
    assert np.isfinite(left).all() and ((left >= 0) & (left <= 1)).all()


def test_description_only_llm_varies_as_the_others_do(router: Router) -> None:
    """Without probes the GNN gives a new LLM nearly one effect for every query; the average map makes its
    effect rise and fall with the other LLMs' (hard queries are hard for all), saved with the router."""
    newcomer = LLMProfile(name="newcomer", description="A general assistant.", input_price=0.3, output_price=0.3)
    fresh = router.state.tables.queries.texts[:300]
    router.add_llm(newcomer)
    effect = router.predict_outcomes(fresh)[0]
    average = effect[:, :-1].mean(axis=1)
    router.state.probe_maps = {}
    gnn_only = router.predict_outcomes(fresh)[0][:, -1]
    assert np.corrcoef(effect[:, -1], average)[0, 1] > max(0.9, np.corrcoef(gnn_only, average)[0, 1] + 0.05)


def test_probe_map_is_a_shrunk_regression_on_the_other_llms() -> None:
    """Few probes leave the weights near the prior (1/K each); many find the one LLM the new one follows."""
    rng = np.random.default_rng(0)
    predicted = rng.random((400, 3))
    effect = 0.5 + 0.8 * (predicted[:, 1] - predicted[:, 1].mean())
    centre = predicted.mean(axis=0)
    few = ProbeMap.fit(["a", "b", "c"], predicted[:10], effect[:10], centre)
    np.testing.assert_allclose(few.weights, 1 / 3, atol=0.05)
    borrowed = ProbeMap.fit(["a", "b", "c"], predicted, effect, centre)
    np.testing.assert_allclose(borrowed.mean, centre)  # the level is measured from the reference mean
    assert np.argmax(borrowed.weights) == 1 and 1 / 3 < borrowed.weights[1] < 0.8  # found, and shrunk
    assert np.all(borrowed.weights[[0, 2]] < 1 / 3)
    rows = np.column_stack([predicted[:, 2], predicted[:, 1], np.full(400, 0.5)])  # other order, new column
    borrowed.apply(rows, ["c", "b", "new"], 2)
    assert np.corrcoef(rows[:, 2], effect)[0, 1] > 0.9 and ((rows[:, 2] >= 0) & (rows[:, 2] <= 1)).all()
    again = ProbeMap.from_dict(borrowed.to_dict())
    np.testing.assert_allclose(again.weights, borrowed.weights)


def test_average_map_makes_the_new_llm_the_mean_of_the_others() -> None:
    """Without probes the new LLM's effect is the others' mean, level included (its own predicted level, from its
    description alone, is dropped); an LLM removed since drops out and the rest are re-weighted."""
    rng = np.random.default_rng(0)
    reference = rng.random((50, 3))
    average = ProbeMap.average(["a", "b", "c"], reference)
    rows = np.column_stack([rng.random((20, 3)), np.full(20, 0.9)])
    average.apply(rows, ["a", "b", "c", "new"], 3)
    np.testing.assert_allclose(rows[:, 3], rows[:, :3].mean(axis=1))
    fewer = rows[:, [0, 2, 3]].copy()
    average.apply(fewer, ["a", "c", "new"], 2)
    np.testing.assert_allclose(fewer[:, 2], fewer[:, :2].mean(axis=1))
    again = ProbeMap.from_dict(average.to_dict())
    assert again.replace and not ProbeMap.from_dict({**average.to_dict(), "replace": False}).replace


def test_level_components_measure_how_the_known_llms_differ() -> None:
    """Each known LLM against the average of the others: the spread of their global levels, of their parts per
    task, and of one outcome around both, recovered from outcomes drawn with known variances."""
    rng = np.random.default_rng(0)
    n, k, n_tasks = 4000, 12, 8
    task = rng.integers(0, n_tasks, n)
    level = rng.normal(0, 0.1, k)
    part = rng.normal(0, 0.05, (n_tasks, k))
    base = rng.uniform(0.3, 0.7, n)[:, None]
    predicted = base + level[None, :] + part[task]
    observed = predicted + rng.normal(0, 0.3, (n, k))
    observed[rng.random((n, k)) < 0.5] = np.nan  # a sparse log: half the outcomes missing
    c = level_components(predicted, observed, task)
    # against the others' average a level varies by a factor k / (k - 1) more than around the catalog mean
    assert 0.5 * 0.1**2 < c.level_var < 2 * 0.1**2, c
    assert 0.5 * 0.05**2 < c.task_var < 2 * 0.05**2, c
    assert abs(c.noise_var - 0.3**2) < 0.01, c
    assert level_components(predicted[:, :1], observed[:, :1], task) == LevelComponents(0.0, 0.0, 1.0)


def test_probe_levels_move_with_evidence_and_only_on_probed_tasks() -> None:
    """The level over the others' average is a posterior mean (with a threshold, moved back towards 0 by part of
    its spread): near 0 when the known LLMs barely differ or the probes are few and noisy, near the probes' mean
    residual when they are many; tasks without probes keep 0, and the map survives a round trip."""
    rng = np.random.default_rng(1)
    others = ["a", "b", "c"]
    predicted = rng.uniform(0.2, 0.8, (60, 3))
    task = np.repeat([0, 1], 30)
    effect = predicted.mean(axis=1) + np.where(task == 0, 0.3, 0.1)
    shape = ProbeMap.average(others, predicted)
    wide = ProbeMap.levels(shape, predicted, effect, task, 3, LevelComponents(0.05, 0.05, 0.01), 0.5)
    np.testing.assert_allclose(wide.offset[:2], [0.3, 0.1], atol=0.02)
    assert np.all(wide.offset[:2] < [0.3, 0.1])  # moved back towards the average by part of the posterior spread
    assert wide.offset[2] == 0.0  # no probes on task 2
    alike = ProbeMap.levels(shape, predicted, effect, task, 3, LevelComponents(1e-4, 1e-4, 0.25))
    assert np.all(np.abs(alike.offset) < 0.02), alike.offset
    few = ProbeMap.levels(shape, predicted[:3], effect[:3], task[:3], 3, LevelComponents(0.01, 0.01, 0.25), 0.5)
    assert np.all(few.offset == 0.0), few.offset  # three noisy probes: within the spread of chance, no move
    plain = ProbeMap.levels(shape, predicted[:3], effect[:3], task[:3], 3, LevelComponents(0.01, 0.01, 0.25))
    assert 0.0 < plain.offset[0] < 0.1, plain.offset  # the posterior mean itself: a small move
    some = ProbeMap.levels(shape, predicted[:20], effect[:20], task[:20], 3, LevelComponents(0.01, 0.01, 0.25), 0.5)
    assert 0.0 < some.offset[0] < 0.3 and some.offset[1] == 0.0, some.offset
    rows = np.column_stack([predicted, np.zeros(60)])
    wide.apply(rows, [*others, "new"], 3, task)
    np.testing.assert_allclose(rows[:, 3], np.clip(predicted.mean(axis=1) + wide.offset[task], 0, 1))
    np.testing.assert_allclose(rows[:, 3], np.clip(effect, 0, 1), atol=0.02)
    unseen = np.column_stack([predicted[:5], np.zeros(5)])
    wide.apply(unseen, [*others, "new"], 3, np.full(5, 7))  # a task added after onboarding: the average
    np.testing.assert_allclose(unseen[:, 3], predicted[:5].mean(axis=1))
    again = ProbeMap.from_dict(wide.to_dict())
    assert again.replace
    np.testing.assert_allclose(again.offset, wide.offset)


def test_probes_from_one_task_stay_local(router: Router, dense_test: pd.DataFrame, tmp_path: Path) -> None:
    """A new LLM probed on maths only (effect 1.0 on ten maths queries) wins maths queries, while its share of
    routes on every other task moves by at most 10 points from description-only onboarding: one task's probes
    say nothing about the others."""
    router.save(tmp_path / "copy")
    plain = Router.load(tmp_path / "copy")
    profile = LLMProfile(
        name="math-pro", description="Strong at mathematics; cheap.", input_price=0.1, output_price=0.1
    )
    st = router.state
    maths = [q for q, t in zip(st.tables.queries.texts, st.tables.queries.tasks, strict=True) if t == "math"][:10]
    router.add_llm(profile, probes=[{"query": q, "effect": 1.0} for q in maths])
    plain.add_llm(profile)
    test = dense_test.drop_duplicates("query")
    queries, tasks = test["query"].tolist(), test["task"].to_numpy()
    probed = np.array(router.route(queries, alpha=0.5)) == "math-pro"
    described = np.array(plain.route(queries, alpha=0.5)) == "math-pro"
    assert probed[tasks == "math"].mean() >= 0.8, probed[tasks == "math"].mean()
    for task in set(tasks) - {"math"}:
        rows = tasks == task
        assert abs(probed[rows].mean() - described[rows].mean()) <= 0.10, (task, probed[rows].mean())
