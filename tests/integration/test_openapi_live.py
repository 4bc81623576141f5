"""The OpenAPI document against the running API: Schemathesis's own command line, as CI would run it against a
deployment, sends its examples, coverage, fuzzing and stateful phases to the app served by uvicorn on Postgres,
with every check it has (`--checks all` in `schemathesis.toml`), signed in as two tenants (`owner`, `stranger`) who
must not see each other's objects, and the platform admin for what only an admin may do
(`schemathesis_users.json`).

The in-process passes in test_openapi_conformance.py check the project's own rules (the error envelope, the
tenant replay); this one checks Schemathesis's, over HTTP, including the ones that need a real server: a
schema-valid request must be accepted, a schema-violating one rejected, a deleted resource gone, a route's
authentication not ignored, another tenant's object not readable. The seed is fixed and the run bounded in time
(`max-time` in `schemathesis.toml`). A server error or an access failure not listed under "live" in
`openapi_baseline.json` (each there with why it stays) fails the test; other new findings are printed (`STRICT`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.test_auth_flow import PASSWORD

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
BASELINE = Path(__file__).with_name("openapi_baseline.json")
PHASES = ("examples", "coverage", "fuzzing", "stateful")
# The users of schemathesis_users.json; the first account registered is the platform admin.
USERS = ("admin@example.com", "owner@example.com", "stranger@example.com")
START_TIMEOUT_S = 60
UVICORN = (sys.executable, "-m", "uvicorn", "--factory", "serve_app.app:create_app")
SCHEMATHESIS = (sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG))


def _server_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("ORCHESTRATOR_", "RAY_"))}
    env.update(
        ORCHESTRATOR_ENVIRONMENT="test",
        ORCHESTRATOR_DATA_DIR=str(data_dir),
        ORCHESTRATOR_DATABASE_URL=database_url,
        ORCHESTRATOR_JWT_SECRET=secrets.token_urlsafe(48),
        ORCHESTRATOR_REDIS_URL="",
        # Thousands of requests from one client in a few minutes: the limits would answer most of them 429.
        ORCHESTRATOR_RATE_LIMIT_ENABLED="false",
        PYTHONPATH=str(REPO),
    )
    return env


def _wait_until_serving(base_url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"uvicorn exited with {server.returncode}")
        try:
            if httpx.get(f"{base_url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API did not answer within {START_TIMEOUT_S} s")


def _register(base_url: str) -> None:
    for email in USERS:
        response = httpx.post(f"{base_url}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text


class Run:
    """What the NDJSON event stream of one `schemathesis run` says: cases and operations per phase, failures."""

    def __init__(self, path: Path) -> None:
        self.cases: Counter[str] = Counter()
        self.operations: dict[str, set[str]] = defaultdict(set)
        self.phases_run: set[str] = set()
        # (operation, check) -> an example: phase, status and the failure's title.
        self.failures: dict[tuple[str, str], str] = {}
        self.errors: list[str] = []
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if "PhaseFinished" in event:
                phase = event["PhaseFinished"]
                if phase["phase"]["is_enabled"] and phase["status"] != "skip":
                    self.phases_run.add(phase["phase"]["name"])
            elif "NonFatalError" in event:
                error = event["NonFatalError"]
                self.errors.append(f"{error.get('label')}: {error['value']['type']}: {error['value']['message']}")
            elif "ScenarioFinished" in event:
                self._scenario(event["ScenarioFinished"])

    def _scenario(self, scenario: dict) -> None:
        phase = scenario["phase"]
        recorder = scenario["recorder"]
        for case_id, checks in (recorder.get("checks") or {}).items():
            case = recorder["cases"][case_id]["value"]
            self.cases[phase] += 1
            # A stateful scenario is a chain of operations; a case of the other phases has its operation's label
            # (its own path may be a variant the coverage phase tries, such as an unexpected method).
            self.operations[phase].add(f"{case['method']} {case['path']}" if phase == "stateful" else recorder["label"])
            for check in checks:
                if check["status"] != "failure":
                    continue
                failure = check["failure_info"]["failure"]
                key = (failure["operation"], check["name"])
                interaction = recorder["interactions"].get(case_id) or {}
                response = interaction.get("response") or {}
                content = response.get("content") or {}
                body = base64.b64decode(content["$base64"])[:200] if "$base64" in content else b""
                self.failures.setdefault(
                    key,
                    f"[{phase}] {failure['code']} {failure['title']}: {response.get('status_code')} "
                    f"{body.decode(errors='replace')}",
                )


# The checks whose new failures fail the test: a server error, and every access check. A time-bounded run
# reaches different cases from run to run (how many depends on the machine's speed), so a new schema-conformance
# finding (a 422 the schema does not predict, say) may show up in one run and not the next: those are printed
# as NEW above for review, and the derandomized in-process pass (test_openapi_conformance.py) is their gate.
STRICT = frozenset(
    {
        "not_a_server_error",
        "ignored_auth",
        "use_after_free",
        "ensure_resource_availability",
        "object_level_authorization",
    }
)


def _baseline() -> dict[tuple[str, str], str]:
    entries = json.loads(BASELINE.read_text())["live"]
    return {(entry["operation"], entry["check"]): entry["why"] for entry in entries}


def test_schemathesis_cli_against_the_running_api(tmp_path: Path, db, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the live run serves the API on Postgres (the in-process fuzzing pass covers SQLite)")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*UVICORN, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,  # no .env of the developer's is read
        env=_server_env(database_url, tmp_path / "data"),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "uvicorn.log").open("w"),
    )
    report = tmp_path / "events.ndjson"
    try:
        _wait_until_serving(base_url, server)
        _register(base_url)
        started = time.monotonic()
        completed = subprocess.run(
            [*SCHEMATHESIS, "run", f"{base_url}/openapi.json", "--report", "ndjson", f"--report-ndjson-path={report}"],
            cwd=REPO,  # the config names the users file relative to the repository
            capture_output=True,
            text=True,
            timeout=600,
        )
        took = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert report.exists(), f"schemathesis wrote no report:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    run = Run(report)
    known = _baseline()
    new = {key: example for key, example in run.failures.items() if key not in known}
    print(f"\nSchemathesis CLI against uvicorn on Postgres, {took:.0f} s (exit {completed.returncode}):")
    for phase in PHASES:
        print(f"  {phase}: {len(run.operations[phase])} operations, {run.cases[phase]} cases")
    print(f"  {len(run.failures)} failing (operation, check) pairs, {len(run.failures) - len(new)} in the baseline")
    for (operation, check), example in sorted(run.failures.items()):
        print(f"  {'known' if (operation, check) in known else 'NEW  '} {operation} {check}: {example[:300]}")
    for operation, check in sorted(known.keys() - run.failures.keys()):
        print(f"  not seen this run: {operation} {check}")
    for error in run.errors:
        print(f"  error: {error[:300]}")

    assert run.phases_run >= set(PHASES), f"phases that did not run: {set(PHASES) - run.phases_run}"
    assert not run.errors, "errors during the run:\n" + "\n".join(run.errors)
    failing = {key: example for key, example in new.items() if key[1] in STRICT}
    assert not failing, "new failures:\n" + "\n".join(f"{o} {c}: {e}" for (o, c), e in sorted(failing.items()))
