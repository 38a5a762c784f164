"""``sqlite:///path``: recorded payments in one SQLite file, the embedded default store.

WAL journal with ``synchronous=FULL``: a transaction is durable once :meth:`SQLiteStore.transaction` returns, so
a restart or a ``kill -9`` loses nothing that was committed. Every transaction starts with ``BEGIN IMMEDIATE``,
which takes the database's write lock before reading, so read-counters-then-record is atomic across threads and
processes sharing the file. A file that is not this store's database, or cannot be opened, or was deleted or
replaced after it was opened, is an :class:`~policy_engine.EvaluationError`: no decision is computed without the
counters.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ..aggregates import PENDING, Row
from ..errors import EvaluationError, StoreUnavailableError
from .store import Payment, Recorded, unknown_request

#: Bumped when the layout changes; a file of another version is refused rather than misread.
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    request_id TEXT PRIMARY KEY, digest TEXT NOT NULL, instant INTEGER NOT NULL, outcome TEXT NOT NULL,
    status TEXT NOT NULL, decision TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    aggregate TEXT NOT NULL, entity TEXT NOT NULL, instant INTEGER NOT NULL,
    request_id TEXT NOT NULL REFERENCES payments(request_id), value TEXT, matches INTEGER NOT NULL,
    event INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS entries_window ON entries (aggregate, entity, instant);
"""


def _failure(url: str, exc: sqlite3.Error) -> StoreUnavailableError:
    return StoreUnavailableError(f"state store {url} is unreachable or corrupt ({type(exc).__name__}: {exc}); no "
                                 "decision is made without the counters")


class _Txn:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def recorded(self, request_id: str) -> Recorded | None:
        row = self._db.execute("SELECT digest, decision, status FROM payments WHERE request_id = ?",
                               (request_id,)).fetchone()
        return None if row is None else Recorded(*row)

    def rows(self, aggregate: str, entity: str, lo: int, hi: int) -> list[Row]:
        cursor = self._db.execute(
            "SELECT e.instant, e.value, e.matches, e.event, p.outcome, p.status FROM entries e "
            "JOIN payments p ON p.request_id = e.request_id "
            "WHERE e.aggregate = ? AND e.entity = ? AND e.instant >= ? AND e.instant < ?",
            (aggregate, entity, lo, hi))
        return [Row(i, v, bool(m), bool(ev), o, s) for i, v, m, ev, o, s in cursor]

    def record(self, payment: Payment) -> None:
        self._db.execute("INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?)",
                         (payment.request_id, payment.digest, payment.instant, payment.outcome, PENDING,
                          payment.decision))
        self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(e.aggregate, e.entity, payment.instant, payment.request_id, e.value, e.matches,
                               e.event) for e in payment.entries])
        self._db.executemany("DELETE FROM entries WHERE aggregate = ? AND entity = ? AND instant < ?",
                             [(e.aggregate, e.entity, e.keep_from) for e in payment.entries
                              if e.keep_from is not None])


class SQLiteStore:
    """One connection per store, used under a lock (a connection is not for concurrent use); other processes
    open their own and SQLite's write lock orders them. ``busy_timeout``: how long a call waits for that lock and
    then for the database's, each (so at most twice that in all) before it is a
    :class:`~policy_engine.errors.StoreUnavailableError`."""

    def __init__(self, path: str, url: str | None = None, *, busy_timeout: float = 30.0):
        self.url = url or f"sqlite:///{path}"
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._path = None if path == ":memory:" else os.path.abspath(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                self._db.close()
                raise EvaluationError(f"state store {self.url} has layout version {version}; this engine reads "
                                      f"version {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._file = self._identity()
        except (sqlite3.Error, OSError) as exc:
            raise _failure(self.url, exc) from exc

    def _identity(self) -> tuple[int, int] | None:
        """The database file's device and inode (None for ``:memory:``)."""
        if self._path is None:
            return None
        found = os.stat(self._path)
        return found.st_dev, found.st_ino

    def _check_file(self) -> None:
        """The connection keeps writing to a file deleted or replaced under it, while every process opening the
        path afterwards counts in another file: each would see only its own payments and a payer's limit would
        split between them. So the file at the path must still be the one opened."""
        try:
            same = self._identity() == self._file
        except OSError:
            same = False
        if not same:
            raise StoreUnavailableError(f"state store {self.url}: the database file was deleted or replaced "
                                        "after this engine opened it; no decision is made without the counters "
                                        "(restore the file, or restart the engine to open the one there now)")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This store's connection, bounded, on the file it opened (every call goes through here): while another
        process holds the database, each waiting thread would otherwise wait its whole busy timeout in turn, the
        k-th k times as long, and a readiness probe behind them."""
        if not self._lock.acquire(timeout=self.busy_timeout):
            raise StoreUnavailableError(f"state store {self.url}: the database stayed busy for {self.busy_timeout}s "
                                        "(another process holds its write lock); no decision is made without the "
                                        "counters")
        try:
            self._check_file()
            yield
        finally:
            self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        with self._locked():
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _failure(self.url, exc) from exc
            try:
                yield _Txn(self._db)
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):  # a corrupt page or a full disk: the store's fault, say so
                    raise _failure(self.url, exc) from exc
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()  # a COMMIT that fails may leave the transaction open: the next BEGIN would fail
                raise _failure(self.url, exc) from exc

    def _rollback(self) -> None:
        """End the open transaction, if SQLite has not ended it already (it does on a full disk or an I/O
        error); a connection that cannot even roll back fails the next BEGIN, which says so."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def report(self, request_id: str, status: str) -> None:
        with self._locked():
            try:
                changed = self._db.execute("UPDATE payments SET status = ? WHERE request_id = ?",
                                           (status, request_id)).rowcount
            except sqlite3.Error as exc:
                raise _failure(self.url, exc) from exc
        if not changed:
            raise unknown_request(request_id, self.url)

    def ping(self) -> None:
        with self._locked():
            try:
                self._db.execute("SELECT 1 FROM payments LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise _failure(self.url, exc) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
