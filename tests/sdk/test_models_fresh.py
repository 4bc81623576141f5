"""The checked-in models match the app's OpenAPI (regenerate: python sdk/scripts/generate_models.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("generate_models", ROOT / "sdk" / "scripts" / "generate_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_models_match_the_apps_openapi() -> None:
    generator = _generator()
    fresh = generator.render(generator.openapi_spec())
    checked_in = generator.MODELS_PATH.read_text()
    assert generator.same_code(checked_in, fresh), (
        "sdk/orchestrator_sdk/models.py is stale: run python sdk/scripts/generate_models.py"
    )


def test_a_schema_change_is_detected() -> None:
    generator = _generator()
    spec = generator.openapi_spec()
    spec["components"]["schemas"]["TaskOut"]["properties"]["new_field"] = {"type": "string"}
    assert not generator.same_code(generator.MODELS_PATH.read_text(), generator.render(spec))


def test_models_tolerate_new_fields_and_read_as_mappings() -> None:
    from orchestrator_sdk import models

    out = models.TaskAssign.model_validate({"agentId": "a1", "later": 1})
    assert out.agent_id == "a1" and out["agentId"] == "a1" and out.get("later") == 1
