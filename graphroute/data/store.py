"""Durable interaction store: SQLite in WAL mode by default, PostgreSQL by URL.

``add`` returns only after its rows are committed (SQLite with synchronous=FULL), so a service that answers 2xx
after ``add`` never loses acknowledged feedback, even if killed right after. ``read_store`` turns a store back into
an interaction log, which is how `graphroute train` closes the loop logs → train → serve → feedback → retrain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from graphroute import schema as s
from graphroute.errors import DataValidationError

COLUMNS = (s.USER_ID, s.QUERY, s.LLM, s.EFFECT, s.CHOSEN, s.COST, s.TASK, s.TOKENS_IN, s.TOKENS_OUT)
_TYPES = {s.EFFECT: "REAL", s.COST: "REAL", s.CHOSEN: "INTEGER", s.TOKENS_IN: "REAL", s.TOKENS_OUT: "REAL"}


def _schema_sql(id_column: str) -> str:
    cols = ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS interactions ({id_column}, received_at TEXT NOT NULL, {cols})"


def _records(rows: Sequence[dict[str, object]]) -> list[tuple[object, ...]]:
    now = datetime.now(UTC).isoformat()
    out = []
    for row in rows:
        values = [row.get(c) for c in COLUMNS]
        chosen = row.get(s.CHOSEN)
        values[COLUMNS.index(s.CHOSEN)] = None if chosen is None or pd.isna(chosen) else int(bool(chosen))
        out.append((now, *values))
    return out


class InteractionStore(Protocol):
    def add(self, rows: Sequence[dict[str, object]]) -> int:
        """Commit rows; returns how many. Raises only before anything is committed."""
        ...

    def read(self) -> pd.DataFrame:
        """Every stored row as an interaction log (columns of GUIDE §3 plus received_at)."""
        ...


class SQLiteStore:
    """One file; WAL journal with synchronous=FULL, a fresh connection per call (safe across threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(_schema_sql("id INTEGER PRIMARY KEY AUTOINCREMENT"))

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        return con

    def add(self, rows: Sequence[dict[str, object]]) -> int:
        marks = ", ".join("?" * (len(COLUMNS) + 1))
        con = self._connect()
        try:
            with con:  # one transaction: all rows or none
                con.executemany(
                    f"INSERT INTO interactions (received_at, {', '.join(COLUMNS)}) VALUES ({marks})", _records(rows)
                )
        finally:
            con.close()
        return len(rows)

    def read(self) -> pd.DataFrame:
        con = self._connect()
        try:
            frame = pd.read_sql_query("SELECT * FROM interactions ORDER BY id", con)
        finally:
            con.close()
        return _as_log(frame)


class PostgresStore:
    """The same table in PostgreSQL, for several servers sharing one store."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url, self._psycopg = url, psycopg
        with psycopg.connect(url) as con:
            con.execute(_schema_sql("id BIGSERIAL PRIMARY KEY").replace("REAL", "DOUBLE PRECISION"))

    def add(self, rows: Sequence[dict[str, object]]) -> int:
        marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
        with self._psycopg.connect(self.url) as con:  # commits on leaving the block
            with con.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO interactions (received_at, {', '.join(COLUMNS)}) VALUES ({marks})", _records(rows)
                )
        return len(rows)

    def read(self) -> pd.DataFrame:
        with self._psycopg.connect(self.url) as con, con.cursor() as cur:
            cur.execute("SELECT * FROM interactions ORDER BY id")
            names = [d.name for d in cur.description or []]
            frame = pd.DataFrame(cur.fetchall(), columns=names)
        return _as_log(frame)


def _as_log(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=["id"], errors="ignore")
    if s.CHOSEN in frame:
        frame[s.CHOSEN] = frame[s.CHOSEN].map(lambda v: None if pd.isna(v) else bool(v)).astype("boolean")
    return frame.dropna(axis=1, how="all")


def open_store(url: str | Path) -> SQLiteStore | PostgresStore:
    """``postgresql://…`` opens PostgreSQL; ``sqlite:///path`` or a plain path opens SQLite."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text.removeprefix("sqlite:///"))
    if "://" in text:
        raise DataValidationError(
            f"store url: unsupported scheme in {text.split('://')[0]!r}; use sqlite:/// or postgresql://"
        )
    return SQLiteStore(text)


def is_store_url(source: str | Path) -> bool:
    return str(source).startswith(("sqlite:///", "postgresql://", "postgres://"))
