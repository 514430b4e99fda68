from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphroute.data.io import (
    iter_interactions,
    read_catalog,
    read_interactions,
    validate_interactions,
    write_catalog,
    write_interactions,
)
from graphroute.errors import DataValidationError
from graphroute.schema import LLMProfile

LLMS = [
    LLMProfile(name="a", description="cheap", input_price=0.1, output_price=0.1),
    LLMProfile(name="b", description="strong", input_price=1, output_price=2),
]


def frame(**overrides: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {"query": ["q1", "q2"], "llm": ["a", "b"], "effect": [0.5, 1.0]}
    base.update(overrides)
    return pd.DataFrame(base)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"logs{suffix}"
    write_interactions(frame(), path)
    out = read_interactions(path, LLMS)
    assert out["query"].tolist() == ["q1", "q2"]
    assert set(out["user_id"]) == {"anonymous"} and set(out["task"]) == {"general"}
    assert out["query_id"].nunique() == 2


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    frame().drop(columns=["llm"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"logs\.csv: missing column\(s\) llm"):
        read_interactions(path)


def test_effect_outside_unit_interval_names_row_column_value() -> None:
    with pytest.raises(DataValidationError, match=r"row 2, column 'effect'.*\[0, 1\].*1\.5"):
        validate_interactions(frame(effect=[0.2, 1.5]), source="x.csv")


def test_unknown_llm_names_the_llm() -> None:
    with pytest.raises(DataValidationError, match=r"row 2, column 'llm'.*not in the catalog.*'zzz'"):
        validate_interactions(frame(llm=["a", "zzz"]), LLMS)


@pytest.mark.parametrize("bad", ["", "   ", None, np.nan])
def test_empty_or_nan_query(bad: object) -> None:
    with pytest.raises(DataValidationError, match=r"row 1, column 'query'"):
        validate_interactions(frame(query=[bad, "q2"]))


def test_non_numeric_effect() -> None:
    with pytest.raises(DataValidationError, match=r"row 1, column 'effect': not a number"):
        validate_interactions(frame(effect=["good", 0.1]))


def test_nan_effect_needs_a_preference() -> None:
    with pytest.raises(DataValidationError, match="missing"):
        validate_interactions(frame(effect=[np.nan, 0.1]))
    ok = validate_interactions(frame(effect=[np.nan, 0.1], chosen=[True, False]))
    assert ok["chosen"].tolist() == [True, False]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text("")
    with pytest.raises(DataValidationError, match="logs.csv: file is empty"):
        read_interactions(path)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text("query,llm,effect\n")
    with pytest.raises(DataValidationError, match="no rows"):
        read_interactions(path)


def test_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "logs.xlsx"
    path.write_text("x")
    with pytest.raises(DataValidationError, match=r"unknown file type '\.xlsx'"):
        read_interactions(path)


def test_negative_cost() -> None:
    with pytest.raises(DataValidationError, match=r"column 'cost': must not be negative"):
        validate_interactions(frame(cost=[0.1, -1.0]))


def test_catalog_round_trip_and_errors(tmp_path: Path) -> None:
    for suffix in (".yaml", ".json"):
        write_catalog(LLMS, tmp_path / f"llms{suffix}")
        assert [m.name for m in read_catalog(tmp_path / f"llms{suffix}")] == ["a", "b"]
    (tmp_path / "dup.yaml").write_text("- {name: a, description: x, input_price: 1, output_price: 1}\n" * 2)
    with pytest.raises(DataValidationError, match=r"duplicate LLM name\(s\) \['a'\]"):
        read_catalog(tmp_path / "dup.yaml")
    (tmp_path / "blank.yaml").write_text("- {name: a, description: ' ', input_price: 1, output_price: 1}\n")
    with pytest.raises(DataValidationError, match="LLM entry 1: field description"):
        read_catalog(tmp_path / "blank.yaml")


def test_parquet_is_read_in_chunks_and_errors_name_the_row_in_the_file(tmp_path: Path) -> None:
    n = 1000
    big = pd.DataFrame({"query": [f"q{i}" for i in range(n)], "llm": ["a", "b"] * (n // 2), "effect": 0.5})
    path = tmp_path / "big.parquet"
    write_interactions(big, path)
    chunks = list(iter_interactions(path, LLMS, chunk_rows=300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    whole = read_interactions(path, LLMS)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    assert whole["query"].tolist() == big["query"].tolist()
    big.loc[777, "effect"] = 3.0  # in the third chunk
    write_interactions(big, path)
    with pytest.raises(DataValidationError, match=r"big\.parquet: row 778, column 'effect'.*3\.0"):
        list(iter_interactions(path, LLMS, chunk_rows=300))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, "often"])
def test_propensity_must_be_a_probability(bad: object) -> None:
    with pytest.raises(DataValidationError, match=r"row 2, column 'propensity'"):
        validate_interactions(frame(propensity=[0.5, bad]), LLMS)
    ok = validate_interactions(frame(propensity=[0.5, None]), LLMS)
    assert ok["propensity"].iloc[0] == 0.5 and np.isnan(ok["propensity"].iloc[1])
