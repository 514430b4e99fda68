"""The event store: every change made while serving, SQLite (WAL) by default, PostgreSQL by URL.

Three tables: ``events`` (id, kind, payload), ``interactions`` (the rows of feedback events, linked by event id,
with an optional unique ``feedback_id``) and ``meta`` (the store's id). A write returns only after its transaction
is committed (SQLite with synchronous=FULL), so a service that answers 2xx after it never loses an acknowledged
change, even when killed right after; a row whose ``feedback_id`` is already stored is not stored again, so a
client may retry. Writers are serialised (SQLite's write lock, a PostgreSQL advisory lock), so event ids are
committed in increasing order and a reader that remembers the last id it saw never misses one.

``read`` turns the feedback rows back into an interaction log, which is how `graphroute train` closes the loop
logs → train → serve → feedback → retrain.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from graphroute import schema as s
from graphroute.errors import DataValidationError
from graphroute.events import FEEDBACK, Event, FeedbackEvent, from_record

COLUMNS = (s.USER_ID, s.QUERY, s.LLM, s.EFFECT, s.CHOSEN, s.COST, s.TASK, s.TOKENS_IN, s.TOKENS_OUT, s.PROPENSITY)
FEEDBACK_ID = s.FEEDBACK_ID
_TYPES = {c: "REAL" for c in (s.EFFECT, s.COST, s.TOKENS_IN, s.TOKENS_OUT, s.PROPENSITY)} | {s.CHOSEN: "INTEGER"}
WRITE_LOCK = 7_231_014  # PostgreSQL advisory lock key of the store's writers
READ_LIMIT = 5_000  # events per read of ``events_after``
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite write waits for another writer


class StoreBusy(Exception):
    """A write that would have to wait (see ``EventStore.append_feedback``); nothing was written."""


@dataclass(frozen=True)
class FeedbackReceipt:
    """What a feedback write did: its event id (None when every row was a duplicate), the rows it stored."""

    event_id: int | None
    stored: list[dict[str, Any]]
    duplicates: int


@dataclass(frozen=True)
class _Dialect:
    name: str
    serial: str  # primary-key column definition
    real: str
    begin_write: str  # starts a write transaction holding the writers' lock

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.name == "postgresql" else text


SQLITE = _Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "BEGIN IMMEDIATE")
POSTGRES = _Dialect(
    "postgresql", "BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _row_values(row: dict[str, Any]) -> list[object]:
    values = [row.get(c) for c in COLUMNS]
    chosen = row.get(s.CHOSEN)
    values[COLUMNS.index(s.CHOSEN)] = None if chosen is None or pd.isna(chosen) else int(bool(chosen))
    return values


class EventStore:
    """One store (see the module docstring); use ``open_store``. Safe to share between threads."""

    def __init__(self, dialect: _Dialect, connect: Any, location: str) -> None:
        self.dialect, self._connect, self.location = dialect, connect, location
        self._local = threading.local()
        with self._transaction(write=True) as cur:  # under the writers' lock: replicas may start together
            self._create(cur)
            self.store_id = self._store_id(cur)

    # ----- connections -----
    def _connection(self) -> Any:
        """One connection per thread, opened on first use (a connection per call costs a PostgreSQL handshake)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    @contextmanager
    def _transaction(self, write: bool = False, wait: bool = True) -> Iterator[Any]:
        """One transaction on this thread's connection. ``wait`` False: ``StoreBusy`` at once where the write
        would wait (another writer holds a SQLite store; any PostgreSQL round trip)."""
        if not wait and self.dialect.name != "sqlite":
            raise StoreBusy("a PostgreSQL write waits on the network")
        con = self._connection()
        cur = con.cursor()
        try:
            if not wait:
                cur.execute("PRAGMA busy_timeout = 0")
            try:
                if write or self.dialect.name == "sqlite":
                    cur.execute(self.dialect.begin_write if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                if not wait:
                    raise StoreBusy(str(exc)) from exc
                raise
            finally:
                if not wait:
                    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            yield cur
            con.commit()
        except BaseException:
            try:
                con.rollback()
            except Exception:  # a broken connection: drop it, the next call opens a new one
                self._local.con = None
            raise
        finally:
            cur.close()

    def _execute(self, cur: Any, text: str, params: Sequence[object] = ()) -> Any:
        cur.execute(self.dialect.sql(text), tuple(params))
        return cur

    # ----- schema -----
    def _create(self, cur: Any) -> None:
        d = self.dialect
        cols = ", ".join(f"{c} {_TYPES.get(c, 'TEXT').replace('REAL', d.real)}" for c in COLUMNS)
        self._execute(
            cur,
            f"CREATE TABLE IF NOT EXISTS events (id {d.serial}, kind TEXT NOT NULL, payload TEXT NOT NULL, "
            "received_at TEXT NOT NULL)",
        )
        self._execute(
            cur, f"CREATE TABLE IF NOT EXISTS interactions (id {d.serial}, received_at TEXT NOT NULL, {cols})"
        )
        self._execute(cur, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._upgrade(cur)
        self._execute(cur, "CREATE INDEX IF NOT EXISTS interactions_event ON interactions (event_id)")
        self._execute(
            cur, f"CREATE UNIQUE INDEX IF NOT EXISTS interactions_{FEEDBACK_ID} ON interactions ({FEEDBACK_ID})"
        )

    def _upgrade(self, cur: Any) -> None:
        """Stores written before events existed hold bare interaction rows: link them to one feedback event."""
        if self.dialect.name == "sqlite":
            have = {row[1] for row in self._execute(cur, "PRAGMA table_info(interactions)").fetchall()}
        else:
            have = {
                row[0]
                for row in self._execute(
                    cur,
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'interactions' "
                    "AND table_schema = current_schema()",
                ).fetchall()
            }
        for column, kind in (("event_id", "BIGINT"), (FEEDBACK_ID, "TEXT"), (s.PROPENSITY, self.dialect.real)):
            if column not in have:
                self._execute(cur, f"ALTER TABLE interactions ADD COLUMN {column} {kind}")
        if self._execute(cur, "SELECT COUNT(*) FROM interactions WHERE event_id IS NULL").fetchone()[0]:
            event = self._insert_event(cur, FEEDBACK, {})
            self._execute(cur, "UPDATE interactions SET event_id = ? WHERE event_id IS NULL", (event,))

    def _store_id(self, cur: Any) -> str:
        found = self._execute(cur, "SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        if found:
            return str(found[0])
        new = uuid.uuid4().hex
        self._execute(cur, "INSERT INTO meta (key, value) VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING", (new,))
        return str(self._execute(cur, "SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0])

    # ----- writes -----
    def _insert_event(self, cur: Any, kind: str, payload: dict[str, Any]) -> int:
        found = self._execute(
            cur,
            "INSERT INTO events (kind, payload, received_at) VALUES (?, ?, ?) RETURNING id",
            (kind, json.dumps(payload), _now()),
        ).fetchone()
        return int(found[0])

    def append(self, event: Event, wait: bool = True) -> int:
        """Commit one event (feedback goes through ``append_feedback``); returns its id. ``wait`` as in
        ``append_feedback``."""
        if isinstance(event, FeedbackEvent):
            receipt = self.append_feedback(list(event.rows), wait)
            return receipt.event_id or 0
        with self._transaction(write=True, wait=wait) as cur:
            return self._insert_event(cur, event.kind, event.payload())

    def append_feedback(self, rows: Sequence[dict[str, Any]], wait: bool = True) -> FeedbackReceipt:
        """Commit the rows whose ``feedback_id`` is new (or absent) as one feedback event; all or nothing.

        ``wait`` False: raise ``StoreBusy`` instead of waiting for another writer or a network round trip, so a
        server can commit on its event loop when that costs a local file write only (a hand-off to a thread
        costs more than the write: measured with 8 clients routing and reporting, 0.75 against 0.86 of the
        route-only throughput) and hand the write to a thread otherwise.
        """
        return self.append_feedback_groups([rows], wait)[0]

    def append_feedback_groups(
        self, groups: Sequence[Sequence[dict[str, Any]]], wait: bool = True
    ) -> list[FeedbackReceipt]:
        """Several requests' rows in one transaction and one event (a server batches bulk uploads so), with a
        receipt per group; a feedback id repeated across groups is stored once, for the first."""
        with self._transaction(write=True, wait=wait) as cur:
            fresh = self._fresh(cur, [row for group in groups for row in group])
            if not fresh:
                return [FeedbackReceipt(None, [], len(group)) for group in groups]
            event = self._insert_event(cur, FEEDBACK, {})
            names = ", ".join(COLUMNS)
            marks = ", ".join("?" * (len(COLUMNS) + 3))
            now = _now()
            text = f"INSERT INTO interactions (event_id, {FEEDBACK_ID}, received_at, {names}) VALUES ({marks})"
            cur.executemany(self.dialect.sql(text), [(event, r.get(FEEDBACK_ID), now, *_row_values(r)) for r in fresh])
        kept = {id(r) for r in fresh}
        receipts = []
        for group in groups:
            stored = [r for r in group if id(r) in kept]
            receipts.append(FeedbackReceipt(event, stored, len(group) - len(stored)))
        return receipts

    def _fresh(self, cur: Any, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows whose feedback id is neither stored nor repeated earlier in ``rows`` (runs under the write lock)."""
        ids = sorted({str(r[FEEDBACK_ID]) for r in rows if r.get(FEEDBACK_ID) is not None})
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT {FEEDBACK_ID} FROM interactions WHERE {FEEDBACK_ID} IN ({marks})"
            seen.update(str(r[0]) for r in self._execute(cur, query, chunk).fetchall())
        fresh = []
        for row in rows:
            key = row.get(FEEDBACK_ID)
            if key is not None:
                if str(key) in seen:
                    continue
                seen.add(str(key))
            fresh.append(row)
        return fresh

    # ----- reads -----
    def last_event(self) -> int:
        with self._transaction() as cur:
            return int(self._execute(cur, "SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def events_after(self, cursor: int, limit: int = READ_LIMIT) -> list[Event | tuple[int, str]]:
        """Events with id > ``cursor`` in id order (at most ``limit``); an event that cannot be read (a kind from a
        newer writer, a broken payload) comes back as (id, reason) so the caller can report and skip it."""
        with self._transaction() as cur:
            found = self._execute(
                cur, "SELECT id, kind, payload FROM events WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)
            ).fetchall()
            feedback = [int(r[0]) for r in found if r[1] == FEEDBACK]
            rows = self._rows_of(cur, feedback)
        out: list[Event | tuple[int, str]] = []
        for event_id, kind, payload in found:
            try:
                out.append(from_record(int(event_id), str(kind), str(payload), tuple(rows.get(int(event_id), ()))))
            except (ValueError, KeyError, TypeError) as exc:
                out.append((int(event_id), f"unreadable {kind!r} event: {exc}"))
        return out

    def _rows_of(self, cur: Any, events: list[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        if not events:
            return out
        names = ", ".join(COLUMNS)
        for start in range(0, len(events), 500):
            chunk = events[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT event_id, {FEEDBACK_ID}, {names} FROM interactions WHERE event_id IN ({marks}) ORDER BY id"
            for record in self._execute(cur, query, chunk).fetchall():
                row = {k: v for k, v in zip((FEEDBACK_ID, *COLUMNS), record[1:], strict=True) if v is not None}
                if s.CHOSEN in row:
                    row[s.CHOSEN] = bool(row[s.CHOSEN])
                out.setdefault(int(record[0]), []).append(row)
        return out

    def read(self) -> pd.DataFrame:
        """Every stored feedback row as an interaction log (the log columns plus received_at)."""
        with self._transaction() as cur:
            found = self._execute(cur, f"SELECT received_at, {', '.join(COLUMNS)} FROM interactions ORDER BY id")
            names = [d[0] for d in found.description]
            frame = pd.DataFrame(found.fetchall(), columns=names)
        if s.CHOSEN in frame:
            frame[s.CHOSEN] = frame[s.CHOSEN].map(lambda v: None if pd.isna(v) else bool(v)).astype("boolean")
        return frame.dropna(axis=1, how="all")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def _sqlite(path: Path) -> Any:
    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        return con

    return connect


def open_store(url: str | Path) -> EventStore:
    """``postgresql://…`` opens PostgreSQL; ``sqlite:///path`` or a plain path opens SQLite (created if missing)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        import psycopg

        return EventStore(POSTGRES, lambda: psycopg.connect(text), text.split("@")[-1])
    if "://" in text and not text.startswith("sqlite:///"):
        raise DataValidationError(
            f"store url: unsupported scheme in {text.split('://')[0]!r}; use sqlite:/// or postgresql://"
        )
    path = Path(text.removeprefix("sqlite:///"))
    if path.is_dir():
        raise DataValidationError(f"store url: {path} is a folder; give the path of a file (e.g. {path}/events.sqlite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return EventStore(SQLITE, _sqlite(path), str(path))


def is_store_url(source: str | Path) -> bool:
    return str(source).startswith(("sqlite:///", "postgresql://", "postgres://"))
