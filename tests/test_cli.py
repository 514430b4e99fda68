from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphroute import Router
from graphroute.data.io import validate_interactions, write_catalog, write_interactions
from graphroute.data.split import sparsify
from graphroute.data.store import open_store
from graphroute.data.synthetic import make_demo_logs
from tests.conftest import cli

FAST = ["--encoder", "hashing", "--epochs", "2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    logs, llms = make_demo_logs(n_queries=250, n_users=4, seed=2)
    write_interactions(logs, root / "logs.csv")
    write_catalog(llms, root / "llms.yaml")
    write_interactions(make_demo_logs(n_queries=40, per_query=None, seed=3)[0], root / "test.jsonl")
    return root


def in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`graphroute ARGS` in this process (no start-up cost), with its exit code and stderr."""
    from graphroute.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help, usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(map(str, args)), code, out.out, out.err)


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
def test_bad_input_exits_2_with_one_line(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
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
    result = in_process(capsys, "train", path, "--llms", files / "llms.yaml", "--out", tmp_path / "run", *FAST)
    assert_clean_error(result, *needles)


@pytest.mark.parametrize(
    ("old", "new"),
    [("size: 1.0", "size: .inf"), ("size: 1.0", "size: 1.0e+309"), ("input_price: 0.05", "input_price: .nan")],
)
def test_non_finite_catalog_exits_2(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str
) -> None:
    catalog = tmp_path / "llms.yaml"
    text = (files / "llms.yaml").read_text()
    assert old in text
    catalog.write_text(text.replace(old, new, 1))
    result = in_process(capsys, "train", files / "logs.csv", "--llms", catalog, "--out", tmp_path / "run", *FAST)
    assert_clean_error(result, "llms.yaml", "LLM entry 1", new.split(":")[0], "finite")


@pytest.mark.slow
def test_train_eval_export_and_corrupt_router(files: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli("train", files / "logs.csv", "--llms", files / "llms.yaml", "--out", run, *FAST)
    assert result.returncode == 0, result.stderr
    assert (run / "model.safetensors").is_file()
    result = cli(
        "eval",
        run,
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
    result = cli("export-graph", run, "--output", tmp_path / "graph.json")
    exported = json.loads((tmp_path / "graph.json").read_text())
    assert result.returncode == 0 and exported["nodes"]
    texts = {n["name"] for n in exported["nodes"] if n["node_type"] == "query"}
    assert set(pd.read_csv(files / "logs.csv")["query"]) <= texts  # query nodes carry their text
    outcomes = [e for e in exported["edges"] if e["relation"] == "answered_by"]
    logged = pd.read_csv(files / "logs.csv")["cost"]
    assert outcomes and all(logged.min() * 0.99 <= e["cost_usd"] <= logged.max() * 1.01 for e in outcomes)
    (run / "model.safetensors").write_bytes(b"broken")
    assert_clean_error(cli("eval", run, files / "test.jsonl"), str(run), "cannot load")


@pytest.mark.parametrize("command", ["train", "eval", "bench", "explain", "export-graph", "demo", "serve", "tune"])
def test_every_option_has_help(command: str) -> None:
    from graphroute.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    undocumented = [a.dest for a in sub._actions if not a.help]
    assert undocumented == [], f"{command}: options without help: {undocumented}"
    assert {"verbose", "quiet"} <= {a.dest for a in sub._actions}  # -v / -q after the subcommand too


@pytest.fixture(scope="module")
def trained(files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    result = cli("train", files / "logs.csv", "--llms", files / "llms.yaml", "--out", run, *FAST)
    assert result.returncode == 0, result.stderr
    return run


def _copy_run(run: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, to / "run"))


@pytest.mark.parametrize(
    "case",
    ["chosen-maybe", "catalog-folder", "epochs-negative", "epochs-zero", "out-is-file", "unknown-baseline"],
)
def test_command_line_mistakes_exit_2_with_one_line(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    logs, catalog, out = files / "logs.csv", files / "llms.yaml", tmp_path / "run"
    extra: list[str | Path] = []
    if case == "chosen-maybe":
        frame = pd.read_csv(logs)
        frame["chosen"] = frame["chosen"].astype(object)
        frame.loc[3, "chosen"] = "maybe"
        logs = tmp_path / "maybe.csv"
        frame.to_csv(logs, index=False)
        needles = ["maybe.csv", "row 4", "'chosen'", "'maybe'"]
    elif case == "catalog-folder":
        catalog = tmp_path
        needles = [str(tmp_path), "folder"]
    elif case in ("epochs-negative", "epochs-zero"):
        extra = ["--epochs", "-3" if case == "epochs-negative" else "0"]
        needles = ["--epochs", "at least 1"]
    elif case == "out-is-file":
        out = tmp_path / "taken.txt"
        out.write_text("x")
        needles = ["--out", "taken.txt", "is a file"]
    else:
        result = in_process(capsys, "eval", tmp_path, files / "test.jsonl", "--baselines", "foo")
        assert_clean_error(result, "--baselines", "'foo'", "knn")
        return
    args = ["train", logs, "--llms", catalog, "--out", out, "--encoder", "hashing", *extra]
    if not extra:
        args += ["--epochs", "2"]
    assert_clean_error(in_process(capsys, *args), *needles)


@pytest.mark.parametrize("case", ["corrupt-weights", "bad-config", "store-scheme", "body-bytes"])
def test_serve_refuses_with_one_line_before_starting(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    run = _copy_run(trained, tmp_path)
    if case == "corrupt-weights":
        (run / "model.safetensors").write_bytes(b"not weights")
        needles = [str(run), "cannot load"]
    elif case == "bad-config":
        (run / "config.json").write_text("{not json")
        needles = [str(run), "cannot load", "JSONDecodeError"]
    elif case == "store-scheme":
        monkeypatch.setenv("GRAPHROUTE_STORE_URL", "mysql://db/events")
        needles = ["store url", "'mysql'"]
    else:
        monkeypatch.setenv("GRAPHROUTE_MAX_BODY_BYTES", "lots")
        needles = ["GRAPHROUTE_MAX_BODY_BYTES", "'lots'"]
    assert_clean_error(in_process(capsys, "serve", run, "--port", "1"), *needles)


@pytest.mark.slow
def test_version_verbosity_anywhere_and_unknown_columns(files: Path, tmp_path: Path) -> None:
    from graphroute import __version__

    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith(f"graphroute {__version__}")
    frame = pd.read_csv(files / "logs.csv").rename(columns={"effect": "score"})
    frame.to_csv(tmp_path / "score.csv", index=False)
    for where in ("before", "after"):
        args: list[str | Path] = ["train", tmp_path / "score.csv", "--llms", files / "llms.yaml"]
        args += ["--out", tmp_path / where, *FAST]
        result = cli("-v", *args) if where == "before" else cli(*args, "-v")
        assert result.returncode == 0, result.stderr
        assert "column(s) score are not log columns" in result.stderr  # a misnamed effect column is said, not silent
        assert "INFO" in result.stderr and "best epoch" in result.stderr
    quiet = cli("train", tmp_path / "score.csv", "--llms", files / "llms.yaml", "--out", tmp_path / "q", *FAST, "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_bench_without_data_root_says_where_to_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import graphroute.cli

    monkeypatch.setattr(graphroute.cli, "DEFAULT_DATA", None)
    result = in_process(capsys, "bench", "routing", "--out", tmp_path)
    assert_clean_error(result, "--data-root", "GRAPHROUTE_DATA")
    result = in_process(capsys, "bench", "routing", "--data-root", tmp_path, "--out", tmp_path)
    assert_clean_error(result, "llmrouter-9llm", "not found", str(tmp_path))
    result = in_process(capsys, "bench", "small-logs", "--data-root", tmp_path, "--size", "0", "--out", tmp_path)
    assert result.returncode == 2 and "--size" in result.stderr
    result = in_process(capsys, "bench", "small-logs", "--data-root", tmp_path, "--out", tmp_path)
    assert_clean_error(result, "bench small-logs", "not found")


def test_explain_prints_a_table_or_json(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "Solve for x: 3x + 1 = 10."
    result = in_process(capsys, "explain", trained, query, "--user", "user001")
    assert result.returncode == 0, result.stderr
    assert f"query: {query}" in result.stdout and "user: user001" in result.stdout
    assert "neighbours" in result.stdout and "most similar past queries" in result.stdout
    result = in_process(capsys, "explain", trained, query, "--alpha", "0.2", "--k", "2", "--json")
    explanation = json.loads(result.stdout)
    assert explanation["alpha"] == 0.2 and len(explanation["ranking"]) == 2
    for r in explanation["ranking"]:
        assert r["quality"] + r["cost"] + r["affinity"] == pytest.approx(r["utility"], abs=1e-9)
        assert sum(r["effect_terms"].values()) == pytest.approx(r["effect_logit"], abs=1e-5)
    assert_clean_error(in_process(capsys, "explain", trained, query, "--alpha", "2"), "--alpha", "[0, 1]")
    assert_clean_error(in_process(capsys, "explain", trained, " "), "query", "empty")


def test_eval_on_a_log_with_propensities_gives_off_policy_estimates(
    fitted_router: Router, dense_test: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    fitted_router.save(run)
    logged = sparsify(validate_interactions(dense_test), 1, seed=0)
    logged.to_csv(tmp_path / "bandit.csv", index=False)
    result = in_process(capsys, "eval", run, tmp_path / "bandit.csv", "--alpha", "0.5", "--json", tmp_path / "o.json")
    assert result.returncode == 0, result.stderr
    assert "off-policy estimates" in result.stdout and "dr 95%" in result.stdout
    rows = json.loads((tmp_path / "o.json").read_text())
    assert rows[0]["router"] == "graphroute" and all(np.isfinite(rows[0][k]) for k in ("ips", "snips", "dr"))
    store = open_store(tmp_path / "served.sqlite")  # what a served router logged, read straight from its store
    records = logged.drop(columns="query_id").to_dict("records")
    store.append_feedback([{k: v for k, v in r.items() if pd.notna(v)} for r in records])
    result = in_process(capsys, "eval", run, f"sqlite:///{tmp_path / 'served.sqlite'}", "--alpha", "0.5")
    assert result.returncode == 0, result.stderr
    assert f"| graphroute | {rows[0]['ips']}" in result.stdout
