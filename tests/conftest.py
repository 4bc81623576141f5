"""Shared fixtures: real databases (SQLite always, Postgres when configured), Redis, one Ray per session.

- ``ORCHESTRATOR_TEST_DATABASE_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``): the
  Postgres the backend-parametrised tests run against. Each test session works in a schema of its own,
  dropped at the end, so that parallel sessions and a developer's data are never touched.
- ``ORCHESTRATOR_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/15``): the Redis for Redis tests.
Tests that need a service that is not configured are skipped with the reason shown by ``-ra``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray._private.auto_init_hook as ray_auto_init
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.settings import Settings, load_settings
from persistence.base import Base
from persistence.db import Database
from persistence.migrate import upgrade

# The platform `orchestrator up` runs, shared by tests/e2e and tests/chaos (one per session).
pytest_plugins = ["tests.platform_fixtures"]

POSTGRES_ENV = "ORCHESTRATOR_TEST_DATABASE_URL"
REDIS_ENV = "ORCHESTRATOR_TEST_REDIS_URL"
BACKENDS = ["sqlite", "postgres"]

# The test process is never a Ray driver: the platforms the tests start run Ray in processes of their own. A Ray
# call reached here by accident (a test that fakes `ray.is_initialized` while a dispatch is under way, say) must
# fail rather than connect this process to the cluster the machine started last (the e2e platform's): every later
# test's deploy or approval decision would then go to that platform's actors and database. Ray's
# `RAY_ENABLE_AUTO_CONNECT=0`, for this process only (the processes tests start keep Ray's default).
ray_auto_init.enable_auto_connect = False


def _postgres_url_with_schema(base_url: str, schema: str) -> str:
    url = make_url(base_url)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database per backend, for the whole session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'orchestrator.db'}"
        upgrade(url)
        yield url
        return
    base_url = os.environ.get(POSTGRES_ENV)
    if not base_url:
        pytest.skip(f"Postgres tests need {POSTGRES_ENV} (CI sets it)")
    yield from _postgres_schema(base_url)


def _postgres_schema(base_url: str, revision: str = "head") -> Iterator[str]:
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _postgres_url_with_schema(base_url, schema)
    try:
        upgrade(url, revision)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The session's database, emptied after each test so that tests do not see each other's rows."""
    database = Database(database_url)
    try:
        yield database
    finally:
        with database.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())
        database.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis tests need {REDIS_ENV} (CI sets it)")
    return url


def make_settings(tmp_path: Path, database_url: str, **groups: dict) -> Settings:
    """Settings for a test: its own data dir and database, a test JWT key, nothing from ~/.orchestrator."""
    base = {
        "root": {"data_dir": tmp_path, "environment": "test"},
        "database": {"database_url": database_url},
        "auth": {"jwt_secret": SecretStr(secrets.token_urlsafe(48))},
        "redis": {"redis_url": ""},
    }
    for group, values in groups.items():
        base.setdefault(group, {}).update(values)
    return load_settings(**base)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/multinode last: its cluster of several Ray nodes shares the two cores with nothing else that runs (the
    end-to-end session's platform is idle by then)."""
    items.sort(key=lambda item: "tests/multinode/" in item.nodeid.replace("\\", "/"))
