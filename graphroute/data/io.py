"""Read and validate interaction logs and LLM catalogs (the formats of docs/log-format.md).

Every problem is reported as a ``DataValidationError`` naming the file, row, column and value, because a user
with a million-row log cannot debug a pandas traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from pydantic import ValidationError

from graphroute import schema as s
from graphroute.errors import DataValidationError
from graphroute.schema import Interaction, LLMProfile

PARQUET_SUFFIXES = (".parquet", ".pq")
LOG_SUFFIXES = (".csv", *PARQUET_SUFFIXES, ".jsonl", ".ndjson", ".json")
CATALOG_SUFFIXES = (".yaml", ".yml", ".json")
logger = logging.getLogger(__name__)


def query_id_of(text: str) -> str:
    """A stable id for a query text, so identical prompts are one node whatever the row order."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def read_interactions(path: str | Path, llms: Sequence[LLMProfile] | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or JSONL log, or a feedback store (sqlite:///… or postgresql://…), and validate it
    (against the catalog when given)."""
    from graphroute.data.store import is_store_url, open_store

    if is_store_url(path):
        frame = open_store(path).read()
        return validate_interactions(frame, llms=llms, source=str(path).split("@")[-1])
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES and path.exists():
        return pd.concat(list(iter_interactions(path, llms)), ignore_index=True)
    frame = _read_table(path)
    return validate_interactions(frame, llms=llms, source=str(path))


def iter_interactions(
    path: str | Path, llms: Sequence[LLMProfile] | None = None, chunk_rows: int = 250_000
) -> Iterator[pd.DataFrame]:
    """Validated chunks of a Parquet log, read one row batch at a time: a log larger than memory can be
    checked or filtered without loading it whole, and errors still name the row in the whole file."""
    import pyarrow.parquet as pq

    path = Path(path)
    _check_file(path)
    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:
        raise DataValidationError(f"{path}: cannot be parsed as parquet: {exc}") from exc
    first = 0
    for batch in reader.iter_batches(batch_size=chunk_rows):
        chunk = batch.to_pandas()
        yield validate_interactions(chunk, llms=llms, source=str(path), first_row=first)
        first += len(chunk)
    if first == 0:
        raise DataValidationError(f"{path}: no rows")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataValidationError(f"{path}: file not found")
    if path.is_dir():
        raise DataValidationError(f"{path}: is a folder; give the log file")
    suffix = path.suffix.lower()
    if suffix not in LOG_SUFFIXES:
        raise DataValidationError(f"{path}: unknown file type {suffix!r}; expected one of {', '.join(LOG_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: file is empty")


def _read_table(path: Path) -> pd.DataFrame:
    _check_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_json(path, lines=suffix != ".json")
    except Exception as exc:  # parser errors carry no file name
        raise DataValidationError(f"{path}: cannot be parsed as {suffix[1:]}: {exc}") from exc


def validate_interactions(
    frame: pd.DataFrame, llms: Sequence[LLMProfile] | None = None, source: str = "<interactions>", first_row: int = 0
) -> pd.DataFrame:
    """Check a log and return a normalised copy: typed columns, filled defaults, a query_id per query.

    Rows are numbered from 1 in messages, in the order of the input table (from ``first_row + 1`` for a chunk).
    """
    if len(frame) == 0:
        raise DataValidationError(f"{source}: no rows")
    missing = [c for c in s.REQUIRED_COLUMNS if c not in frame.columns]
    if s.EFFECT not in frame.columns and s.CHOSEN not in frame.columns:
        missing.append(f"{s.EFFECT} (or {s.CHOSEN})")
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {', '.join(missing)}; found {list(frame.columns)}")
    out = frame.reset_index(drop=True).copy()
    out.index = pd.RangeIndex(first_row, first_row + len(out))  # messages name the row in the whole file
    out[s.QUERY] = _text_column(out, s.QUERY, source)
    out[s.LLM] = _text_column(out, s.LLM, source)
    _check_effect(out, source)
    _check_bounded(out, LIMITS, source)
    _check_propensity(out, source)
    if llms is not None:
        _check_llms(out, [m.name for m in llms], source)
    out[s.USER_ID] = _filled(out, s.USER_ID, s.ANONYMOUS_USER)
    out[s.TASK] = _filled(out, s.TASK, s.DEFAULT_TASK)
    if s.QUERY_ID not in out.columns:
        out[s.QUERY_ID] = [query_id_of(q) for q in out[s.QUERY]]
    else:
        out[s.QUERY_ID] = out[s.QUERY_ID].astype(str)
    if s.CHOSEN in out.columns:
        out[s.CHOSEN] = _chosen_column(out, source)
    unknown = [c for c in frame.columns if c not in s.REQUIRED_COLUMNS + s.OPTIONAL_COLUMNS]
    if unknown and first_row == 0:
        logger.warning(
            "%s: column(s) %s are not log columns and are ignored (log columns: %s)",
            source,
            ", ".join(map(str, unknown)),
            ", ".join(s.REQUIRED_COLUMNS + s.OPTIONAL_COLUMNS),
        )
    return out.reset_index(drop=True)


_TRUE, _FALSE = {"true", "1", "yes", "1.0"}, {"false", "0", "no", "0.0"}


def _chosen_column(frame: pd.DataFrame, source: str) -> pd.Series:
    """``chosen`` as a nullable boolean; True/False, 1/0, yes/no in any case, or empty. Anything else is an error
    naming the row: a typo must not silently become "not chosen"."""
    column = frame[s.CHOSEN]
    if pd.api.types.is_bool_dtype(column):
        return column.astype("boolean")
    values: list[object] = []
    for i, value in column.items():
        if _missing(value):
            values.append(pd.NA)
        elif isinstance(value, bool | np.bool_):
            values.append(bool(value))
        elif str(value).strip().lower() in _TRUE:
            values.append(True)
        elif str(value).strip().lower() in _FALSE:
            values.append(False)
        else:
            raise _bad_row(source, cast(int, i), s.CHOSEN, value, "must be true or false (or 1/0, yes/no, empty)")
    return pd.Series(values, index=frame.index, dtype="boolean")


def interaction_rows(
    interactions: pd.DataFrame | Sequence[Mapping[str, object]] | Sequence[Interaction],
    llm_names: Sequence[str],
    source: str = "interactions",
    first_row: int = 0,
) -> list[dict[str, Any]]:
    """Feedback rows checked one by one (``schema.Interaction``: finite, bounded numbers; an LLM of the catalog),
    as plain dicts without the fields left empty. Log columns that feedback does not use (query_id, timestamp,
    latency_ms) are dropped; any other column is an error naming it."""
    records = _records(interactions)
    known, fields = set(llm_names), set(Interaction.model_fields)
    out = []
    for i, record in enumerate(records, start=first_row):
        raw = {k: v for k, v in record.items() if k not in _IGNORED_FEEDBACK_COLUMNS and not _missing(v)}
        try:
            row = Interaction.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            column = ".".join(str(p) for p in error["loc"]) or s.EFFECT  # the model-level rule: effect or chosen
            why = str(error["msg"])
            if error["type"] == "extra_forbidden":
                why = f"unknown column; feedback rows have {', '.join(sorted(fields))}"
            raise _bad_row(source, i, column, raw.get(column), why) from exc
        if row.llm not in known:
            raise _bad_row(source, i, s.LLM, row.llm, f"LLM not in the catalog ({', '.join(sorted(known))})")
        out.append(row.model_dump(exclude_none=True))
    return out


_IGNORED_FEEDBACK_COLUMNS = (s.QUERY_ID, s.TIMESTAMP, s.LATENCY_MS)


def _records(
    interactions: pd.DataFrame | Sequence[Mapping[str, object]] | Sequence[Interaction],
) -> list[Mapping[str, object]]:
    if isinstance(interactions, pd.DataFrame):
        return interactions.to_dict("records")  # type: ignore[return-value]
    return [r.model_dump(exclude_none=True) if isinstance(r, Interaction) else r for r in interactions]


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _bad_row(source: str, index: int, column: str, value: object, why: str) -> DataValidationError:
    return DataValidationError(f"{source}: row {index + 1}, column {column!r}: {why} (value {value!r})")


def _text_column(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    values = frame[column]
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            why = "missing (NaN)" if value is None or (isinstance(value, float) and np.isnan(value)) else "empty"
            raise _bad_row(source, values.index[i], column, value, f"{why}; every row needs a non-empty {column}")
    return values.astype(str)


def _numeric(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """The column as floats; text that is no number, and infinities (one of them would poison every
    prediction that reads the row), name their row."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _bad_row(source, frame.index[i], column, frame[column].iloc[i], "not a number")
    values = values.astype(float)
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        raise _bad_row(source, frame.index[i], column, frame[column].iloc[i], "not a finite number")
    return values


def _check_effect(frame: pd.DataFrame, source: str) -> None:
    if s.EFFECT not in frame.columns:
        frame[s.EFFECT] = np.nan
    effect = _numeric(frame, s.EFFECT, source)
    outside = (effect < 0) | (effect > 1)
    if outside.any():
        i = int(np.flatnonzero(outside.to_numpy())[0])
        raise _bad_row(source, frame.index[i], s.EFFECT, effect.iloc[i], "effect must lie in [0, 1]")
    chosen = frame[s.CHOSEN] if s.CHOSEN in frame.columns else pd.Series(pd.NA, index=frame.index)
    neither = effect.isna() & chosen.isna()
    if neither.any():
        i = int(np.flatnonzero(neither.to_numpy())[0])
        raise _bad_row(
            source, frame.index[i], s.EFFECT, effect.iloc[i], f"missing (NaN) and no {s.CHOSEN!r} value either"
        )
    frame[s.EFFECT] = effect


LIMITS = {s.COST: s.MAX_COST, s.TOKENS_IN: s.MAX_TOKENS, s.TOKENS_OUT: s.MAX_TOKENS, s.LATENCY_MS: s.MAX_LATENCY_MS}


def _check_bounded(frame: pd.DataFrame, limits: dict[str, float], source: str) -> None:
    """Numeric columns in [0, limit]."""
    for column, limit in limits.items():
        if column not in frame.columns:
            continue
        values = _numeric(frame, column, source)
        for outside, why in ((values < 0, "must not be negative"), (values > limit, f"must not exceed {limit:g}")):
            if outside.any():
                i = int(np.flatnonzero(outside.to_numpy())[0])
                raise _bad_row(source, frame.index[i], column, values.iloc[i], why)
        frame[column] = values


def _check_propensity(frame: pd.DataFrame, source: str) -> None:
    """A logging policy's probability lies in (0, 1]; a missing one (rows the router did not choose, or an
    older log) stays NaN."""
    if s.PROPENSITY not in frame.columns:
        return
    values = _numeric(frame, s.PROPENSITY, source)
    outside = (values <= 0) | (values > 1)
    if outside.any():
        i = int(np.flatnonzero(outside.to_numpy())[0])
        raise _bad_row(source, frame.index[i], s.PROPENSITY, values.iloc[i], "propensity must lie in (0, 1]")
    frame[s.PROPENSITY] = values


def _check_llms(frame: pd.DataFrame, names: Sequence[str], source: str) -> None:
    known = set(names)
    unknown = ~frame[s.LLM].isin(known)
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise _bad_row(
            source, frame.index[i], s.LLM, frame[s.LLM].iloc[i], f"LLM not in the catalog ({', '.join(sorted(known))})"
        )


def _filled(frame: pd.DataFrame, column: str, default: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(default, index=frame.index, dtype=object)
    values = frame[column].astype(object)
    values = values.where(values.notna(), default).astype(str)
    return values.where(values.str.strip() != "", default)


def read_catalog(path: str | Path) -> list[LLMProfile]:
    """Read an LLM catalog: YAML or JSON, a list of profiles or a mapping name → profile."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: file not found")
    if path.is_dir():
        raise DataValidationError(f"{path}: is a folder; give the catalog file (YAML or JSON)")
    suffix = path.suffix.lower()
    if suffix not in CATALOG_SUFFIXES:
        raise DataValidationError(f"{path}: unknown catalog type {suffix!r}; expected .yaml, .yml or .json")
    text = path.read_text()
    if not text.strip():
        raise DataValidationError(f"{path}: file is empty")
    try:
        if suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:
        raise DataValidationError(f"{path}: cannot be parsed: {exc}") from exc
    return catalog_from_records(raw, source=str(path))


def catalog_from_records(raw: object, source: str = "<catalog>") -> list[LLMProfile]:
    """Validate catalog records (a list of dicts, or {name: dict}); names must be unique."""
    if isinstance(raw, dict) and "llms" in raw:
        raw = raw["llms"]
    if isinstance(raw, dict):
        raw = [{"name": name, **fields} for name, fields in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise DataValidationError(f"{source}: expected a non-empty list of LLM profiles")
    profiles: list[LLMProfile] = []
    for i, record in enumerate(raw):
        try:
            profiles.append(LLMProfile.model_validate(record))
        except Exception as exc:
            raise DataValidationError(f"{source}: LLM entry {i + 1}: {_pydantic_message(exc)}") from exc
    names = [p.name for p in profiles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataValidationError(f"{source}: duplicate LLM name(s) {dupes}")
    return profiles


def _pydantic_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"field {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors()]
        return "; ".join(parts)
    return str(exc)


def write_catalog(llms: Sequence[LLMProfile], path: str | Path) -> None:
    """Write a catalog as YAML or JSON by suffix."""
    path = Path(path)
    records = [m.model_dump(exclude_none=True) for m in llms]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(records, indent=2))
    else:
        import yaml

        path.write_text(yaml.safe_dump(records, sort_keys=False))


def write_interactions(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a log as CSV, Parquet or JSONL by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True)
    else:
        raise DataValidationError(f"{path}: unknown file type {suffix!r}")
