"""Engine and session setup for SQLite (the embedded default) and Postgres.

`Database.session()` is a read unit of work; `Database.transaction()` a write one that commits on
success. On SQLite, writers in one process queue on a lock and open their transaction with
``BEGIN IMMEDIATE``: writers wait their turn instead of failing with "database is locked" half-way
through a transaction (the failure Prefect users know from SQLite). Read sessions run in autocommit
on both backends: a one-statement read is one statement, not BEGIN, the query and ROLLBACK (on Postgres,
one round trip instead of three); a read of several statements gets no common snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import tracing
from core.errors import ServiceUnavailable

# The rollups' mapper events on Execution. Every ORM session is opened by a `Database`, so registering them
# wherever this module is imported means no writer of runs can skip them.
from persistence import execution_rollups  # noqa: F401

# Called after a SQLite transaction that wrote to the events outbox has committed (set by the process's
# bootstrap: it wakes the event hub's relay; on Postgres a trigger's NOTIFY does that, see migration 0018).
_events_committed: Callable[[], None] | None = None
_wrote_events = threading.local()


def on_events_committed(callback: Callable[[], None] | None) -> None:
    """Register what to call after a SQLite transaction that added events has committed (None: nothing)."""
    global _events_committed
    _events_committed = callback


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 5,
        echo: bool = False,
        sqlite_busy_timeout_ms: int = 30_000,
        application_name: str = "orchestrator",
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self._ensure_sqlite_dir()
            self.engine = self._sqlite_engine(pool_size, echo, sqlite_busy_timeout_ms, begin=None)
            self._write_engine = self._sqlite_engine(1, echo, sqlite_busy_timeout_ms, begin="BEGIN IMMEDIATE")
            read_engine = self.engine
        else:
            # No pre-ping (a round trip per checkout): the first disconnect error invalidates the whole
            # pool, that request answers 503, and the next ones reconnect.
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_recycle=1800,
                echo=echo,
                # Names each component's connections in pg_stat_activity (API replicas, store, reconciler).
                connect_args={"application_name": application_name},
            )
            self._write_engine = self.engine
            read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.is_sqlite:
            event.listen(self._write_engine, "after_cursor_execute", _note_event_inserts)
        self._read_engine = read_engine
        self._read_sessions = sessionmaker(read_engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        if tracing.enabled():  # a span per statement inside a trace; nothing at all when tracing is off
            tracing.instrument_engine(self.engine, self._write_engine)

    @classmethod
    def from_settings(cls, settings: Any, application_name: str = "orchestrator") -> Database:
        db = settings.database
        return cls(
            settings.database_url,
            application_name=application_name,
            pool_size=db.database_pool_size,
            max_overflow=db.database_max_overflow,
            echo=db.database_echo,
            sqlite_busy_timeout_ms=db.sqlite_busy_timeout_ms,
        )

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end)."""
        with _unavailable_on_connection_errors(), self._read_sessions() as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read-only Core connection, for hot paths where an ORM session costs more than the query."""
        with _unavailable_on_connection_errors(), self._read_engine.connect() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write unit of work: commits when the block ends without an exception."""
        _wrote_events.flag = False
        with (
            _unavailable_on_connection_errors(),
            self._writer_turn(),
            self._write_sessions() as session,
            session.begin(),
        ):
            yield session
        if _wrote_events.flag:
            _wrote_events.flag = False
            if _events_committed is not None:
                _events_committed()

    def ping(self) -> float:
        """Round trip to the database in milliseconds."""
        started = time.perf_counter()
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
            return
        with self._write_lock:
            yield

    def _ensure_sqlite_dir(self) -> None:
        database = self.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def _sqlite_engine(self, pool_size: int, echo: bool, busy_timeout_ms: int, *, begin: str | None) -> Engine:
        """`begin`: the statement that opens a transaction (None: statements run in autocommit)."""
        engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=0,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin (pysqlite recipe).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        if begin is not None:

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Any) -> None:
                conn.exec_driver_sql(begin)

        return engine


@contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    """A database that cannot be reached is a 503 for the caller, not a 500."""
    try:
        yield
    except OperationalError as exc:
        if exc.connection_invalidated or _is_connection_error(exc):
            raise ServiceUnavailable("The database is unavailable; try again shortly") from exc
        raise


def _is_connection_error(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return any(
        marker in message
        for marker in (
            "connection refused",
            "could not connect",
            "server closed",
            "database is locked",
            "connection timeout",
            "unable to open database",
        )
    )


def _note_event_inserts(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    """A transaction runs its statements on its caller's thread: that thread's flag is its transaction's."""
    if statement.startswith("INSERT INTO events"):
        _wrote_events.flag = True
