from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from graphroute.data.io import write_catalog, write_interactions
from graphroute.data.synthetic import make_demo_logs

FAST = ["--encoder", "hashing", "--epochs", "2"]


def cli(
    *args: str | Path,
    cwd: Path | None = None,
    launcher: Sequence[str] = (sys.executable,),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`graphroute ARGS` in a fresh process (``launcher`` runs ``-m graphroute.cli``: python, or torchrun)."""
    command = [*launcher, "-m", "graphroute.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    logs, llms = make_demo_logs(n_queries=250, n_users=4, seed=2)
    write_interactions(logs, root / "logs.csv")
    write_catalog(llms, root / "llms.yaml")
    write_interactions(make_demo_logs(n_queries=40, per_query=None, seed=3)[0], root / "test.jsonl")
    return root


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    "case",
    [
        "missing-column",
        "effect-range",
        "unknown-llm",
        "empty-query",
        "nan-query",
        "infinite-cost",
        "huge-cost",
        "empty-file",
        "unknown-type",
    ],
)
def test_bad_input_exits_2_with_one_line(files: Path, tmp_path: Path, case: str) -> None:
    frame = pd.read_csv(files / "logs.csv")
    path, needles = tmp_path / "bad.csv", ["bad.csv"]
    if case == "missing-column":
        frame = frame.drop(columns=["llm"])
        needles.append("missing column(s) llm")
    elif case == "effect-range":
        frame.loc[4, "effect"] = 1.7
        needles += ["row 5", "'effect'", "1.7"]
    elif case == "unknown-llm":
        frame.loc[2, "llm"] = "gpt-nope"
        needles += ["row 3", "gpt-nope"]
    elif case == "empty-query":
        frame.loc[0, "query"] = " "
        needles += ["row 1", "'query'"]
    elif case == "nan-query":
        frame.loc[1, "query"] = None
        needles += ["row 2", "NaN"]
    elif case == "infinite-cost":
        frame["cost"] = 0.001
        frame["cost"] = frame["cost"].astype(object)
        frame.loc[6, "cost"] = "inf"
        needles += ["row 7", "'cost'", "not a finite number"]
    elif case == "huge-cost":
        frame["cost"] = 0.001
        frame.loc[3, "cost"] = 1e300
        needles += ["row 4", "'cost'", "must not exceed"]
    if case == "empty-file":
        path.write_text("")
        needles.append("empty")
    elif case == "unknown-type":
        path = tmp_path / "bad.xlsx"
        path.write_text("x")
        needles = ["bad.xlsx", "unknown file type"]
    else:
        frame.to_csv(path, index=False)
    assert_clean_error(cli("train", path, "--llms", files / "llms.yaml", "--out", tmp_path / "run", *FAST), *needles)


@pytest.mark.parametrize(
    ("old", "new"),
    [("size: 1.0", "size: .inf"), ("size: 1.0", "size: 1.0e+309"), ("input_price: 0.05", "input_price: .nan")],
)
def test_non_finite_catalog_exits_2(files: Path, tmp_path: Path, old: str, new: str) -> None:
    catalog = tmp_path / "llms.yaml"
    text = (files / "llms.yaml").read_text()
    assert old in text
    catalog.write_text(text.replace(old, new, 1))
    result = cli("train", files / "logs.csv", "--llms", catalog, "--out", tmp_path / "run", *FAST)
    assert_clean_error(result, "llms.yaml", "LLM entry 1", new.split(":")[0], "finite")


def test_train_eval_export_and_corrupt_router(files: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli("train", files / "logs.csv", "--llms", files / "llms.yaml", "--out", run, *FAST)
    assert result.returncode == 0, result.stderr
    assert (run / "model.safetensors").is_file()
    result = cli(
        "eval",
        run,
        "--logs",
        files / "test.jsonl",
        "--baselines",
        "best-single",
        "knn",
        "--train-logs",
        files / "logs.csv",
        "--json",
        tmp_path / "eval.json",
    )
    assert result.returncode == 0, result.stderr
    assert "oracle" in result.stdout and (run / "frontier.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "eval.json").read_text())
    assert {r["router"] for r in rows} == {"graphroute", "best-single", "knn", "oracle"}
    result = cli("export-graph", run, "--out", tmp_path / "graph.json")
    assert result.returncode == 0 and json.loads((tmp_path / "graph.json").read_text())["nodes"]
    (run / "model.safetensors").write_bytes(b"broken")
    assert_clean_error(cli("eval", run, "--logs", files / "test.jsonl"), str(run), "cannot load")


@pytest.mark.parametrize("command", ["train", "eval", "bench", "export-graph", "demo", "serve", "tune"])
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0 and "usage: graphroute" in result.stdout and len(result.stdout) > 200
