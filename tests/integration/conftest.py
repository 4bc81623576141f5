"""Integration fixtures: the FastAPI app in-process against each real database backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from persistence.db import Database
from serve_app.app import create_app
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path, db: Database, database_url: str) -> Settings:
    # Depends on `db` so that the tables are emptied after the test.
    return make_settings(tmp_path, database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client
