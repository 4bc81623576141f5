"""Alembic environment: the URL comes from `persistence.migrate.alembic_config`, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from persistence import models  # noqa: F401  (registers every table on Base.metadata)
from persistence.base import Base
from persistence.db import Database

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    if Database(url).is_sqlite:
        # Reuse the pragmas (WAL, foreign keys) of the application's engine.
        db = Database(url)
        connectable = db.engine
    else:
        connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `orchestrator db upgrade`")
run_migrations_online()
