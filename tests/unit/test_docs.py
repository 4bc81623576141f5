"""Docs that must match the code: the configuration reference, the API guide's routes and errors, README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster import config_reference
from cluster.cli import app as cli
from core.errors import ERROR_CODES
from core.settings import Settings, load_settings
from serve_app.app import create_app
from serve_app.routing import api_routes, is_public, minimum_role

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
API_GUIDE = ROOT / "docs" / "api.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A route in a table's first column: `GET/POST /agents/{id}`.
ROUTE_SPAN = re.compile(r"`((?:GET|POST|PUT|PATCH|DELETE)(?:/(?:GET|POST|PUT|PATCH|DELETE))*) (/[^`\s]*)`")
# `user (writes: agent)`, `agent (GET: user)`.
# An event name as the platform writes it in code: "task.created".
EVENT_LITERAL = re.compile(
    r'"((?:task|execution|agent|approval|marketplace|project|user|system|notification|webhook)\.[a-z_]+)"'
)
ROLE_OVERRIDE = re.compile(r"\((writes|GET|POST|PUT|PATCH|DELETE): (public|user|agent|admin)\)")


def _template(path: str) -> str:
    """A path with its parameters' names dropped and without the API prefix: /tasks/{}/files/{}."""
    path = re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])
    return path.removeprefix("/api/v1") or "/"


def _documented_routes() -> dict[tuple[str, str], str]:
    """(method, path template) → the role the guide's route tables give it."""
    documented: dict[tuple[str, str], str] = {}
    for line in API_GUIDE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")] if line.startswith("| `") else []
        if len(cells) < 3 or not ROUTE_SPAN.search(cells[0]):
            continue
        who = cells[1]
        base = who.split()[0]
        overrides = dict(ROLE_OVERRIDE.findall(who))
        for methods, path in ROUTE_SPAN.findall(cells[0]):
            for method in methods.split("/"):
                role = overrides.get(method) or (overrides.get("writes") if method != "GET" else None) or base
                documented[(method, _template(path))] = role
    return documented


@pytest.fixture(scope="module")
def served_routes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """(method, path template) → the least role the app's dependencies ask (public, user, agent, admin)."""
    app = create_app(load_settings(root={"data_dir": tmp_path_factory.mktemp("data")}))
    served: dict[tuple[str, str], str] = {}
    for route in api_routes(app):
        if not route.path.startswith(("/api/", "/health", "/stats", "/oauth/")):
            continue  # the OpenAPI docs
        for method in route.methods & set(METHODS):
            role = minimum_role(route, method)
            served[(method, _template(route.path))] = (
                "public" if is_public(route) else (role.value if role is not None else "user")
            )
    return served


def test_configuration_reference_is_generated_from_the_settings() -> None:
    assert not config_reference.undocumented(), "every setting needs a Field(description=...) in core/settings.py"
    diff = config_reference.stale_diff(CONFIGURATION)
    assert not diff, f"docs/configuration.md is stale; run `orchestrator docs config`:\n{diff[:3000]}"


def test_configuration_reference_lists_every_variable() -> None:
    text = CONFIGURATION.read_text()
    for _, _, fields in config_reference.settings_groups():
        for name, field in fields.items():
            assert f"| `{config_reference.env_name(name, field)}` |" in text


def test_configuration_reference_names_variables_the_settings_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_PORT", "9123")
    monkeypatch.setenv("ORCHESTRATOR_RUN_POOL_SIZE", "7")
    settings = Settings()
    assert (settings.api.port, settings.workflows.run_pool_size) == (9123, 7)
    text = CONFIGURATION.read_text()
    assert "| `ORCHESTRATOR_PORT` |" in text and "| `ORCHESTRATOR_RUN_POOL_SIZE` |" in text


def test_configuration_reference_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_JWT_SECRET", "a-very-secret-value-that-must-not-leak-0123456789")
    monkeypatch.setenv("ORCHESTRATOR_API_KEY_CI", "ao_leaky:agent")
    text = config_reference.render()
    assert "must-not-leak" not in text and "ao_leaky" not in text
    assert "| `ORCHESTRATOR_JWT_SECRET` | secret | generated |" in text


def test_docs_config_check_fails_on_a_stale_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(config_reference.render().replace("`8000`", "`8001`"))
    stale = CliRunner().invoke(cli, ["docs", "config", "--check", "--output", str(page)])
    assert stale.exit_code == 1 and "is stale" in stale.output
    assert CliRunner().invoke(cli, ["docs", "config", "--output", str(page)]).exit_code == 0
    fresh = CliRunner().invoke(cli, ["docs", "config", "--check", "--output", str(page)])
    assert fresh.exit_code == 0, fresh.output


def test_api_guide_lists_every_served_route_with_its_role(served_routes: dict[tuple[str, str], str]) -> None:
    documented = _documented_routes()
    assert len(served_routes) > 100, "the route walker found the app's routes"
    missing = sorted(f"{method} {path}" for method, path in set(served_routes) - set(documented))
    assert not missing, f"docs/api.md's route tables lack {missing}"
    gone = sorted(f"{method} {path}" for method, path in set(documented) - set(served_routes))
    assert not gone, f"docs/api.md lists routes the app does not serve: {gone}"
    wrong = sorted(
        f"{method} {path}: documented {documented[(method, path)]}, served {role}"
        for (method, path), role in served_routes.items()
        if documented[(method, path)] != role
    )
    assert not wrong, f"docs/api.md gives these routes the wrong role: {wrong}"


def test_api_guide_documents_every_error_code() -> None:
    text = API_GUIDE.read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \|", text, flags=re.MULTILINE))
    for code, status in ERROR_CODES.items():
        assert code in rows, f"docs/api.md's error table lacks {code}"
        assert rows[code] == str(status), f"docs/api.md gives {code} status {rows[code]}, the code {status}"


def test_api_guide_lists_every_event_type_the_platform_emits() -> None:
    text = API_GUIDE.read_text()
    catalog = text[text.index("## Events") : text.index("## Routes")]
    emitted = {
        name
        for package in ("services", "actors")
        for source in (ROOT / package).glob("*.py")
        for name in EVENT_LITERAL.findall(source.read_text())
    }
    assert len(emitted) > 20, "the scan found the platform's event names"
    missing = sorted(name for name in emitted if f"`{name}`" not in catalog)
    assert not missing, f"docs/api.md's event types lack {missing}"


def test_readme_opens_with_the_install_and_test_commands() -> None:
    text = README.read_text()
    quick_start = text[text.index("## Quick start") :]
    blocks = quick_start.split("```bash")[1:3]
    install = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' -e ./sdk && .venv/bin/orchestrator up"
    assert install in blocks[0]
    assert ".venv/bin/python -m pytest" in blocks[1]
    assert ".venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/orchestrator docs config --check" in (ROOT / ".ci" / "run").read_text()


def test_readme_stays_a_front_door() -> None:
    assert len(README.read_bytes()) <= 15_000, "README.md is the front door: reference material goes to docs/"
    text = README.read_text()
    for page in (
        "docs/api.md",
        "docs/architecture.md",
        "docs/configuration.md",
        "docs/deploy.md",
        "docs/workflows.md",
        "docs/webhooks.md",
        "bench/README.md",
    ):
        assert f"]({page}" in text, f"README.md's contents list lacks {page}"


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(ROOT)))
def test_docs_point_only_inside_the_repository(page: Path) -> None:
    text = page.read_text()
    outside = re.findall(r"API\.md|ARCHITECTURE\.md|STYLE\.md|\.\./shared|\bseeds?\b \d{3}|\bseeds?\b \d", text)
    assert not outside, f"{page.name} cites documents outside the repository: {sorted(set(outside))}"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
