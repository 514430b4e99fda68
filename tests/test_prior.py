"""The description prior: it learns from the known LLMs whether descriptions tell their task means apart, and a new
LLM described like a known family starts from that family's task means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphroute import LLMProfile, Router, RouterConfig
from graphroute.prior import FADE_PROBES, TaskPrior, fit_task_prior


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def families(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two families of four LLMs: alike descriptions within a family, and task means that differ by family."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(2, 16)))
    family = np.repeat([0, 1], 4)
    desc = unit(centres[family] + 0.1 * rng.normal(size=(8, 16)))
    profile = np.array([[0.8, 0.2, 0.7], [0.2, 0.8, 0.3]])
    means = profile[family] + 0.02 * rng.normal(size=(8, 3))
    return desc, means, centres


def test_a_newcomer_of_a_known_family_starts_from_its_task_means() -> None:
    desc, means, centres = families(0)
    new = unit(centres[1] + 0.1 * np.random.default_rng(1).normal(size=16))
    plain = means.mean(axis=0)  # about what the GNN gives an LLM it knows nothing about
    prior = fit_task_prior(desc, means, new, np.zeros(3))
    assert np.isfinite(prior.temperature) and prior.spread < 0.1
    np.testing.assert_allclose(plain + prior.shift, [0.2, 0.8, 0.3], atol=0.05)


def test_descriptions_that_say_nothing_give_the_plain_mean() -> None:
    desc, means, _ = families(0)
    rng = np.random.default_rng(2)
    shuffled = means[rng.permutation(8)]  # task means no longer follow the descriptions
    prior = fit_task_prior(desc, shuffled, desc[0], np.zeros(3))
    assert not np.isfinite(prior.temperature)
    np.testing.assert_allclose(prior.shift, 0.0, atol=1e-12)


def test_the_shift_fades_with_probes_on_a_task() -> None:
    prior = TaskPrior(np.array([0.2, -0.2]), np.array([0.0, FADE_PROBES]), 0.1, 0.05)
    effect = np.full((2, 3), 0.5)
    prior.apply(effect, np.array([0, 1]), 2)
    np.testing.assert_allclose(effect[:, 2], [0.7, 0.4])
    again = TaskPrior.from_dict(prior.to_dict())
    np.testing.assert_allclose(again.shift, prior.shift)
    assert again.temperature == 0.1


def test_router_onboards_with_the_description_prior_and_saves_it(
    demo: tuple[pd.DataFrame, list[LLMProfile]], fast_config: RouterConfig, tmp_path: Path
) -> None:
    logs, llms = demo
    config = RouterConfig.model_validate({**fast_config.model_dump(), "onboarding": {"prior": "description"}})
    router = Router(config).fit(logs, llms)
    twin = next(m for m in llms if m.name == "coder-7b").model_copy(update={"name": "coder-7b-v2"})
    router.add_llm(twin)
    prior = router.state.task_priors["coder-7b-v2"]
    assert prior.shift.shape == (len(router.state.task_names),)
    router.save(tmp_path / "r")
    loaded = Router.load(tmp_path / "r")
    queries = router.state.tables.queries.texts[:50]
    np.testing.assert_allclose(loaded.predict_outcomes(queries)[0], router.predict_outcomes(queries)[0])
    router.remove_llm("coder-7b-v2")
    assert "coder-7b-v2" not in router.state.task_priors
