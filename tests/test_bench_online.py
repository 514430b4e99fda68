"""The online protocol on small generated logs: every policy runs the same stream and schedule, regret only
grows, exploring policies explore and the greedy one does not, an LLM joins halfway, and the summary and plot come
out."""

from __future__ import annotations

from pathlib import Path

from graphroute import RouterConfig
from graphroute.bench.online import POLICIES, OnlineSetup, Stream, demo_benchmark, format_online, run_online


def test_online_protocol_on_demo_logs(fast_config: RouterConfig, tmp_path: Path) -> None:
    bench = demo_benchmark(n_train=300, n_test=40)
    setup = OnlineSetup(retrain_every=60, max_stream=120, budget=0.05, onboard="auto")
    quick = fast_config.model_copy(
        update={"train": fast_config.train.model_copy(update={"epochs": 2, "steps_per_epoch": 4})}
    )
    results = run_online({"demo": bench}, quick, setup, seeds=(0,), out_dir=tmp_path)
    runs = results["sets"]["demo"]["runs"]
    assert [r["policy"] for r in runs] == list(POLICIES)
    for run in runs:
        points = run["checkpoints"]
        assert [p["queries_seen"] for p in points] == [0, 60, 120]
        regrets = [p["regret"] for p in points]
        assert regrets == sorted(regrets) and regrets[0] == 0.0
        assert all(0.0 <= p["explored_share"] <= 1.0 for p in points)
        assert points[0]["onboarded_share"] == 0.0  # the mid-stream LLM is not routable before it joins
        assert run["onboard"] in [m.name for m in bench.llms]
    starts = {r["checkpoints"][0]["test_reward"] for r in runs if r["policy"] != "linucb"}
    assert len(starts) == 1  # every GNN policy starts from the same seed router
    by = {r["policy"]: r["checkpoints"][-1] for r in runs}
    assert by["greedy"]["explored_share"] == 0.0 and by["uniform"]["explored_share"] == 1.0
    assert by["thompson"]["explored_share"] > 0 and by["epsilon"]["explored_share"] > 0
    assert by["ucb"]["explored_share"] > 0
    assert by["uniform"]["regret"] > by["greedy"]["regret"]
    summary = results["sets"]["demo"]["summary"]
    assert [row["policy"] for row in summary] == list(POLICIES)
    assert "% of full-info" in format_online(results) and "new LLM's share" in summary[0]
    assert (tmp_path / "online_demo.png").stat().st_size > 10_000


def test_stream_split_is_seeded_and_disjoint() -> None:
    train = demo_benchmark(n_train=300, n_test=10).train
    a, b = Stream.split(train, OnlineSetup(), 0), Stream.split(train, OnlineSetup(), 1)
    assert a.order != b.order and a.order == Stream.split(train, OnlineSetup(), 0).order
    assert not set(a.seed_log["query_id"]) & set(a.order)
    assert all(len(a.rows[q]) == 6 for q in a.order)  # every LLM's outcome is there to be revealed
