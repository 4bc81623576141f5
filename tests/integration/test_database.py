"""The database layer on each backend: migrations match the models, SQLite is configured for
concurrency, and concurrent writers never fail with "database is locked"."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from persistence.base import Base
from persistence.db import Database
from persistence.migrate import current_revision, downgrade, head_revision, upgrade
from persistence.models import User


def test_migrations_produce_exactly_the_models(db: Database, database_url: str) -> None:
    assert current_revision(database_url) == head_revision()
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_migrations_downgrade_and_upgrade_cleanly(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    downgrade(url, "base")
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pragmas.db'}", sqlite_busy_timeout_ms=12_345)
    with database.session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 12_345
    database.dispose()


def test_concurrent_writers_all_commit(db: Database) -> None:
    def write(index: int) -> None:
        for n in range(10):
            with db.transaction() as session:
                session.add(User(email=f"w{index}-{n}@example.com", password_hash="x", role="user", preferences={}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(8)))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 80


def test_a_failed_transaction_leaves_no_trace(db: Database) -> None:
    try:
        with db.transaction() as session:
            session.add(User(email="ghost@example.com", password_hash="x", role="user", preferences={}))
            session.flush()
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
