"""Docs that must match the code."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from core.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _env_names(model: type[BaseSettings]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= _env_names(annotation)
        else:
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            names.add(str(extra.get("env", f"{ENV_PREFIX}{name.upper()}")))
    return names


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    missing = sorted(name for name in _env_names(Settings) if f"`{name}`" not in text)
    assert not missing, f"README.md's configuration table lacks {missing}"


def test_readme_opens_with_the_install_and_test_commands() -> None:
    text = README.read_text()
    quick_start = text[text.index("## Quick start") :]
    blocks = quick_start.split("```bash")[1:3]
    assert "pip install -e '.[dev]'" in blocks[0] and "orchestrator up" in blocks[0]
    assert "python -m pytest" in blocks[1]
    assert ".venv/bin/python -m pytest" in Path(README.parent / ".ci" / "run").read_text()
