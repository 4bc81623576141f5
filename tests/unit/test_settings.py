from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from core.settings import PLATFORM_PACKAGES, Settings, load_settings, resolve_secrets


def test_defaults_are_safe_for_a_laptop(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.api.port == 8000
    assert settings.api.host == "127.0.0.1"
    assert settings.database_url == f"sqlite:///{tmp_path / 'orchestrator.db'}"
    assert settings.auth.jwt_secret is None
    assert settings.auth.default_role == "agent"


def test_flat_environment_names_fill_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_PORT", "9100")
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("ORCHESTRATOR_DEFAULT_ROLE", "USER")
    settings = Settings()
    assert settings.api.port == 9100
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.auth.default_role == "user"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("secret", ["changethis", "short-secret"])
def test_unsafe_jwt_secret_is_refused_outside_development(secret: str) -> None:
    with pytest.raises(ValidationError, match="unsafe"):
        load_settings(root={"environment": "production"}, auth={"jwt_secret": SecretStr(secret)})
    # Development tolerates it, so that a quick local try is not blocked.
    assert load_settings(root={"environment": "development"}, auth={"jwt_secret": SecretStr(secret)})


def test_missing_secret_is_generated_once_into_the_data_dir(tmp_path) -> None:
    settings = load_settings(root={"data_dir": tmp_path})
    first = resolve_secrets(settings)
    second = resolve_secrets(settings)
    key_file = tmp_path / "secrets" / "jwt_secret"
    assert first.auth.jwt_secret is not None
    assert first.auth.jwt_secret.get_secret_value() == second.auth.jwt_secret.get_secret_value()
    assert len(first.auth.jwt_secret.get_secret_value()) >= 48
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Never printed by accident.
    assert first.auth.jwt_secret.get_secret_value() not in repr(first)


@pytest.mark.parametrize(
    ("listed", "entry"),
    [
        ("core", "core"),  # the platform's own package
        ("services.foo", "services.foo"),  # inside one
        ("acme_agents, serve_app.plugins", "serve_app.plugins"),  # any entry of the list
        (" runtime ", "runtime"),  # a module of the operator's own that would shadow the platform's `runtime`
    ],
)
def test_agent_code_may_not_live_in_the_platforms_packages(
    monkeypatch: pytest.MonkeyPatch, listed: str, entry: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_AGENT_CODE_MODULES", listed)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert f"ORCHESTRATOR_AGENT_CODE_MODULES: '{entry}'" in message
    assert "operators' code must live in packages of their own names" in message


def test_agent_code_in_packages_of_its_own_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Names that merely start like a platform package are the operator's own.
    monkeypatch.setenv("ORCHESTRATOR_AGENT_CODE_MODULES", "acme_agents, core_tools.graphs, tests.fixtures")
    assert Settings().agents.code_modules == ("acme_agents", "core_tools.graphs", "tests.fixtures")


def test_the_platforms_packages_are_those_the_distribution_installs() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    installed = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(pattern.removesuffix("*") for pattern in installed) == sorted(PLATFORM_PACKAGES)
