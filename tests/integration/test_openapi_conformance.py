"""The whole API under fuzzing: Schemathesis generates requests for every operation of the OpenAPI document,
valid ones and invalid ones, sends them to the app in-process (SQLite), and checks each answer against the
document: never a 500, only the statuses the operation declares, the declared content type, a body that
matches the declared schema, and every error in the envelope `{"error": {code, message, details, timestamp,
correlation_id}}` (docs/api.md "Errors").

The Python API of Schemathesis 4 is used directly (its pytest plugin does not load under pytest 9). Cases are
derandomized and bounded per operation, so a run is reproducible and takes a minute or two. What the test is
known to find and the project decided to keep is listed, each with why, in `openapi_baseline.json`: a failure
not listed there fails the test; a listed one that no longer happens is reported, to be removed.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from serve_app.app import create_app
from tests.conftest import make_settings
from tests.integration.test_auth_flow import PASSWORD

BASELINE = Path(__file__).with_name("openapi_baseline.json")
# Cases per operation and generation mode: enough to reach every status an operation answers to bad input,
# few enough for the whole API in a couple of minutes on SQLite.
POSITIVE_CASES = 15
NEGATIVE_CASES = 8
ADMIN_CASES = 6
ENVELOPE_KEYS = {"code", "message", "details", "timestamp", "correlation_id"}
# Operations whose 503 is a report rather than an error: the health checks (docs/api.md "Health").
HEALTH = {"GET /health", "GET /api/v1/health", "GET /api/v1/system/health"}


def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error answer is the envelope, with the response's correlation id."""
    label = f"{case.method.upper()} {case.operation.path}"
    if response.status_code < 400 or label in HEALTH:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"error {response.status_code} is not JSON: {response.content[:200]!r}") from exc
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(body) != {"error"} or not error.keys() >= ENVELOPE_KEYS:
        raise AssertionError(f"error {response.status_code} is not the envelope: {str(body)[:200]}")
    correlation = {name.lower(): value for name, value in response.headers.items()}.get("x-correlation-id")
    if isinstance(correlation, list):  # Schemathesis keeps every value of a header
        correlation = correlation[0]
    if error["correlation_id"] != correlation:
        raise AssertionError("the envelope's correlation_id is not the X-Correlation-ID header")
    return None


CHECKS = {
    "not_a_server_error": not_a_server_error,
    "status_code_conformance": status_code_conformance,
    "content_type_conformance": content_type_conformance,
    "response_schema_conformance": response_schema_conformance,
    "error_envelope": error_envelope,
}


@dataclass
class Findings:
    cases: int = 0
    operations: set[str] = field(default_factory=set)
    # (operation, check) -> an example: the status and the failure's title.
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)


def _describe(exc: BaseException) -> str:
    failure = exc.exceptions[0] if isinstance(exc, FailureGroup) else exc
    title = getattr(failure, "title", None) or type(failure).__name__
    message = " ".join(str(getattr(failure, "message", None) or failure).split())
    return f"{title}: {message}"


def _token(client: Any, email: str) -> str:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _register(client: Any, email: str) -> str:
    response = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return _token(client, email)


def _fuzz(schema: Any, client: Any, email: str, mode: schemathesis.GenerationMode, cases: int, found: Findings) -> None:
    token = _token(client, email)
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = {"Authorization": f"Bearer {token}"}
        _exercise(operation, mode, cases, client, headers, found)
        # A generated logout revokes the token: sign in again for the next operation.
        if client.get("/api/v1/users/me", headers=headers).status_code == 401:
            token = _token(client, email)


def _exercise(
    operation: Any, mode: schemathesis.GenerationMode, cases: int, client: Any, headers: dict, found: Findings
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    found.operations.add(label)

    @hypothesis_settings(
        max_examples=cases,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(session=client, headers=headers, timeout=10)
        found.cases += 1
        found.statuses[response.status_code] += 1
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except (Failure, FailureGroup, AssertionError) as exc:
                found.failures.setdefault((label, name), f"{response.status_code}: {_describe(exc)}"[:300])

    with contextlib.suppress(Unsatisfiable):  # nothing to negate: an operation without parameters or body
        run()


def _baseline() -> dict[tuple[str, str], str]:
    entries = json.loads(BASELINE.read_text())["known"]
    return {(entry["operation"], entry["check"]): entry["why"] for entry in entries}


def test_every_operation_conforms_to_the_openapi_document(tmp_path: Path, db, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the fuzzing pass runs on SQLite (the same routes; Postgres adds minutes, not coverage)")
    settings = make_settings(tmp_path, database_url, rate_limits={"rate_limit_enabled": False})
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    found = Findings()
    try:
        # An event stream is read up to its first event: the endless ones (dashboard) end there.
        with asgi.get_client(app, max_stream_events=1) as client:
            _register(client, "admin@example.com")  # the first account is the platform admin
            _register(client, "user@example.com")
            _fuzz(schema, client, "user@example.com", schemathesis.GenerationMode.POSITIVE, POSITIVE_CASES, found)
            _fuzz(schema, client, "user@example.com", schemathesis.GenerationMode.NEGATIVE, NEGATIVE_CASES, found)
            _fuzz(schema, client, "admin@example.com", schemathesis.GenerationMode.POSITIVE, ADMIN_CASES, found)
    finally:
        asgi.shutdown_lifespans()

    known = _baseline()
    new = {key: example for key, example in found.failures.items() if key not in known}
    gone = sorted(key for key in known if key not in found.failures)
    print(
        f"\nOpenAPI conformance: {len(found.operations)} operations, {found.cases} cases, "
        f"statuses {dict(sorted(found.statuses.items()))}, {len(found.failures)} failing (operation, check) pairs "
        f"({len(found.failures) - len(new)} known)"
    )
    for (operation, check), example in sorted(found.failures.items()):
        print(f"  {'known' if (operation, check) in known else 'NEW  '} {operation} {check}: {example}")
    for operation, check in gone:
        print(f"  no longer seen (remove from {BASELINE.name}?): {operation} {check}")
    assert not new, "new conformance failures:\n" + "\n".join(f"{o} {c}: {e}" for (o, c), e in sorted(new.items()))


# The stateful phase: chains of calls along the document's links (create → get → act), as one tenant, each
# answer checked as above plus Schemathesis's checks that a deleted resource is gone, a created one can be
# read, and a route does not ignore its authentication; and every resource the first tenant reads is
# replayed as a second tenant, who must get 404 (docs/api.md: another tenant's resource answers 404).
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8
STATEFUL_CHECKS = {
    **CHECKS,
    "use_after_free": use_after_free,
    "ensure_resource_availability": ensure_resource_availability,
    "ignored_auth": ignored_auth,
}


def _other_tenant_sees(case: Any, response: Any, client: Any, stranger: dict) -> str | None:
    """What a second tenant gets for a resource the first one just read, if it should not have gotten it."""
    if case.method.upper() != "GET" or response.status_code != 200 or "{" not in case.operation.path:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("is_public") or body.get("public")):
        return None  # shared on purpose
    replay = case.call(session=client, headers=stranger, timeout=10)
    return None if replay.status_code in (403, 404) else f"another tenant got {replay.status_code}"


def test_stateful_chains_along_the_links_as_two_tenants(tmp_path: Path, db, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the stateful pass runs on Postgres (the fuzzing pass covers SQLite)")
    settings = make_settings(tmp_path, database_url, rate_limits={"rate_limit_enabled": False})
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = Findings()
    try:
        with asgi.get_client(app, max_stream_events=1) as client:
            _register(client, "admin@example.com")
            _register(client, "owner@example.com")
            _register(client, "stranger@example.com")
            tenant = {"Authorization": f"Bearer {_token(client, 'owner@example.com')}"}
            stranger = {"Authorization": f"Bearer {_token(client, 'stranger@example.com')}"}

            class Chains(schema.as_state_machine()):  # type: ignore[misc]
                def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                    return {"session": client, "headers": tenant, "timeout": 10}

                def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
                    label = f"{case.method.upper()} {case.operation.path}"
                    found.cases += 1
                    found.operations.add(label)
                    found.statuses[response.status_code] += 1
                    for name, check in STATEFUL_CHECKS.items():
                        try:
                            case.validate_response(response, checks=[check], headers=tenant)
                        except (Failure, FailureGroup, AssertionError) as exc:
                            found.failures.setdefault((label, name), f"{response.status_code}: {_describe(exc)}"[:300])
                    leak = _other_tenant_sees(case, response, client, stranger)
                    if leak:
                        found.failures.setdefault((label, "tenant_isolation"), leak)

                def teardown(self) -> None:
                    # A generated logout may have revoked the token: sign in again for the next scenario.
                    if client.get("/api/v1/users/me", headers=tenant).status_code == 401:
                        tenant["Authorization"] = f"Bearer {_token(client, 'owner@example.com')}"

            run_state_machine_as_test(
                Chains,
                settings=hypothesis_settings(
                    max_examples=STATEFUL_SCENARIOS,
                    stateful_step_count=STATEFUL_STEPS,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
    finally:
        asgi.shutdown_lifespans()

    known = _baseline()
    new = {key: example for key, example in found.failures.items() if key not in known}
    print(
        f"\nStateful: {found.cases} calls over {len(found.operations)} operations, "
        f"statuses {dict(sorted(found.statuses.items()))}, {len(found.failures)} failing pairs"
    )
    for (operation, check), example in sorted(found.failures.items()):
        print(f"  {'known' if (operation, check) in known else 'NEW  '} {operation} {check}: {example}")
    assert found.cases > STATEFUL_SCENARIOS  # chains happened, not single calls
    assert not new, "new stateful failures:\n" + "\n".join(f"{o} {c}: {e}" for (o, c), e in sorted(new.items()))
