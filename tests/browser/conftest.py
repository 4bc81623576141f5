"""Browser fixtures: the API app on a real port (uvicorn in a thread, SQLite, an in-process EventHub feeding
its WebSockets, as tests/integration/test_realtime.py does), and headless Chromium driven by Playwright.

Chromium is Debian's (`apt-get install chromium`), started with Playwright's `executable_path`; without
Playwright or without that binary every test here is skipped with the reason.
`ORCHESTRATOR_TEST_CHROMIUM` names another binary; `ORCHESTRATOR_CONSOLE_SCREENSHOTS=<dir>` makes the
tests save the console's screenshots there (docs/console.md's come from `=docs`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings
from persistence.db import Database
from persistence.migrate import upgrade
from tests.conftest import free_port, make_settings

CHROMIUM = os.environ.get("ORCHESTRATOR_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("ORCHESTRATOR_CONSOLE_SCREENSHOTS")
PASSWORD = "correct-horse-battery"
FIX = "tests.fixtures.workflow_nodes"


@dataclass
class Platform:
    """The running app: its URL, an HTTP client on it, and the in-process run driver."""

    url: str
    http: httpx.Client
    settings: Settings
    db: Database
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    def user(self, name: str) -> dict[str, str]:
        """Bearer headers for `<name>@example.com`, registered on first use (the first account is the admin)."""
        if name not in self.users:
            email = f"{name}@example.com"
            registered = self.http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert registered.status_code == 201, registered.text
            tokens = self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
            self.users[name] = {
                "id": registered.json()["id"],
                "email": email,
                "headers": {"Authorization": f"Bearer {tokens['access_token']}"},
            }
        return self.users[name]["headers"]

    def call(self, method: str, path: str, who: str, expect: int | None = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, headers=self.user(who), **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json()

    def drive(self, execution_id: str) -> str:
        """Run (or resume) the execution in this process until it ends or waits; its status then."""
        from actors.run import environment
        from runtime.engine import execute
        from services.executions import DatabaseRunStore

        execute(DatabaseRunStore(self.db, self.settings), execution_id, f"test#{uuid.uuid4().hex[:8]}",
                environment(self.settings, None))  # fmt: skip
        return self.http.get(f"/api/v1/executions/{execution_id}", headers=self.user("root")).json()["status"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped, not session-scoped: while Playwright's sync API is open its event loop counts as running
    in this thread, and every later test's `asyncio.run` would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright for Python (`pip install playwright`, in the dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (`apt-get install chromium`)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root in a container, where Chromium's own sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Platform]:
    import uvicorn

    from actors.event_hub import EventHub
    from serve_app.app import create_app
    from serve_app.realtime import EventFeed

    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp / 'orchestrator.db'}"
    upgrade(url)
    settings = make_settings(
        tmp,
        url,
        agents={"agent_code_modules": "tests.fixtures"},
        rate_limits={
            "rate_limit_auth": "1000/15m",
            "rate_limit_general": "100000/h",
            "rate_limit_executions": "1000/h",
        },
    )
    app = create_app(settings)
    # The app's WebSockets are fed by a real EventHub run in the server's event loop (no Ray).
    app.state.event_feed = EventFeed(EventHub(settings).poll)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    db = Database(url)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as http:
        # The run driver uses the settings as the app resolved them (its secrets read).
        running = Platform(base, http, app.state.context.settings, db)
        running.user("root")  # the first account: the platform admin
        try:
            yield running
        finally:
            server.should_exit = True
            thread.join(15)
            db.dispose()


@pytest.fixture
def new_page(browser: Any, platform: Platform) -> Iterator[Any]:
    """Pages in fresh browser contexts (each its own sessionStorage); page errors and CSP violations fail
    the test."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make(width: int = 1100, height: int = 860) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=platform.url)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not problems, problems


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)
