"""The P4 load generator speaks enough HTTP/1.1 to be trusted: every request answered, failures counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from graphroute.bench.http import post_all
from graphroute.bench.service import _single
from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving.conftest import ThreadServer


def test_load_client_gets_every_answer_and_counts_failures(run_dir: Path, tmp_path: Path) -> None:
    app = create_app(ServeSettings(router_dir=run_dir, store_url=str(tmp_path / "s.sqlite")))
    bodies: list[dict[str, object]] = [{"query": f"Solve {i} + {i}", "user_id": "user001"} for i in range(9)]
    bodies.append({"query": ""})  # empty query: a 422, which must be counted, not hang the connection
    with ThreadServer(app) as url:
        port = int(url.rsplit(":", 1)[1])
        seconds, failures = asyncio.run(post_all(port, bodies, clients=3))
    assert len(seconds) == len(bodies) and all(s > 0 for s in seconds)
    assert failures == 1


class _CountingEncoder:
    """Stands in for the bench's encoder: records what it was asked to embed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> None:
        self.seen.extend(texts)


def test_single_client_timings_pair_each_query_in_blocks_and_one_by_one(run_dir: Path, tmp_path: Path) -> None:
    """The single-request figures pair an embedding and a route of the same query, for every query, whatever the
    block size; a route that fails stops the bench instead of being timed."""
    app = create_app(ServeSettings(router_dir=run_dir, store_url=str(tmp_path / "s.sqlite")))
    queries = [f"Solve {i} + {i}" for i in range(7)]
    with ThreadServer(app) as url:
        port = int(url.rsplit(":", 1)[1])
        for block in (3, 1):
            encoder = _CountingEncoder()
            embed, route = _single(encoder, port, queries, block)
            assert encoder.seen == queries
            assert len(embed) == len(route) == len(queries) and all(t > 0 for t in embed + route)
        with pytest.raises(RuntimeError, match="422"):
            _single(_CountingEncoder(), port, ["fine", " "], 2)


def test_feedback_phases_measure_what_they_say(run_dir: Path, tmp_path: Path) -> None:
    """The feedback phase's three measurements on a small server: every route and feedback answered, the rows
    counted are the rows stored, the batch really in flight beside the single routes."""
    from graphroute.bench import feedback as fb
    from graphroute.data.store import open_store
    from tests.serving.conftest import KEY

    store = tmp_path / "s.sqlite"
    app = create_app(ServeSettings(router_dir=run_dir, store_url=str(store), api_key=KEY))
    headers = {"X-API-Key": KEY}
    with ThreadServer(app) as url:
        port = int(url.rsplit(":", 1)[1])
        queries = [f"Solve {i} + {i} (case {i})" for i in range(48)]
        deployment = fb.deployment_rounds(port, queries, headers, clients=4, rounds=2)
        assert deployment["failures"] == 0 and deployment["routes_per_phase"] == 12
        assert len(open_store(store).read()) == 2 * 12  # one feedback row per route of the feedback phases
        burst = fb.feedback_burst(port, headers, clients=2, seconds=0.5)
        assert burst["failures"] == 0 and burst["rows_acked"] > 0
        assert len(open_store(store).read()) == 24 + burst["rows_acked"]
        singles = [f"What is {i} times {i}?" for i in range(200)]
        batch = fb.batch_interference(port, singles, fb.long_texts(64, 2_000), n_alone=5)
        assert batch["batch_status"] == 200 and batch["singles_beside_batch"] > 0
        assert len(fb.long_texts(3, 100)[0]) == 100
