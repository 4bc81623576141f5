"""Requirements and workspace runs through the platform as `orchestrator up` runs it, in one run:

1. the platform's own overhead of a 4-stage requirement: requirements submitted one at a time, each through
   analyst → implementer → validator → integrator against a local OpenAI-compatible server that answers at
   once; (created → completed, server stamps) minus the same four chat calls made directly with httpx in
   this run (the baseline: what the LLM calls alone cost);
2. a workspace run: the request that starts `hello_world.py` in the sandbox to its first `execution_output`
   event on the SSE stream, p50/p95 (the sandbox itself starts in ~20 ms: bench/sandbox_latency.py).

Run from the repository root: `.venv/bin/python bench/requirements.py [--database-url URL] [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_process import running_platform
from tasks import PASSWORD, _percentile, scratch_database

from tests.fixtures.scripted_llm import ScriptedLLM, serve

APPROVING = {
    "analyst": ["Goal: print Hello World."],
    "implementer": ["```python path=hello_world.py\nprint('Hello World')\n```"],
    "validator": ["APPROVED"],
    "integrator": ["Run it with python."],
}


def bare_llm_calls(url: str, rounds: int) -> float:
    """Seconds for the four chat calls of one requirement made directly (best of `rounds`)."""
    best = float("inf")
    with httpx.Client(timeout=30) as client:
        for _ in range(rounds):
            started = time.perf_counter()
            for role in APPROVING:
                body = {
                    "model": "tiny",
                    "stream": True,
                    "messages": [
                        {"role": "system", "content": f"You are the {role} of a team."},
                        {"role": "user", "content": "x"},
                    ],
                }
                with client.stream("POST", f"{url}/chat/completions", json=body) as response:
                    for _ in response.iter_lines():
                        pass
            best = min(best, time.perf_counter() - started)
    return best


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    llm = ScriptedLLM(APPROVING)
    with (
        serve(llm) as llm_url,
        scratch_database(args.database_url) as database_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        baseline = bare_llm_calls(llm_url, 20)
        env = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_HTTP_ALLOWED_HOSTS": "127.0.0.1",
            "ORCHESTRATOR_RATE_LIMIT_REQUIREMENTS": "100000/h",
            "ORCHESTRATOR_RATE_LIMIT_FILES": "100000/h",
        }
        with (
            running_platform(Path(tmp) / "platform", **env) as (base, ready_s),
            httpx.Client(base_url=base, timeout=60) as http,
        ):
            backend = "Postgres" if database_url.startswith("postgresql") else "SQLite"
            print(f"platform ready in {ready_s:.1f}s ({backend})")
            http.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            token = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            http.post("/api/v1/settings", headers=headers, json={"openai_base_url": llm_url, "llm_model": "tiny"})
            totals, project = [], ""
            for index in range(args.runs + 1):  # the first warms the run pool
                accepted = http.post(
                    "/api/v1/requirements", headers=headers, json={"requirement": "Hello World"}
                ).json()
                project = accepted["project_id"]
                while (run := http.get(f"/api/v1/executions/{accepted['execution_id']}", headers=headers).json())[
                    "status"
                ] not in ("completed", "failed"):
                    time.sleep(0.05)
                assert run["status"] == "completed", run["error"]
                if index:
                    totals.append(_stamp(run["completed_at"]) - _stamp(run["created_at"]))
            overheads = [total - baseline for total in totals]
            firsts = []
            for index in range(args.runs + 1):
                started = time.perf_counter()
                run = http.post(
                    f"/api/v1/projects/{project}/workspace/run/implementation/hello_world.py", headers=headers
                ).json()
                with http.stream("GET", f"/api/v1/executions/{run['execution_id']}/stream", headers=headers) as stream:
                    for line in stream.iter_lines():
                        if line == "event: execution_output":
                            break
                if index:
                    firsts.append(time.perf_counter() - started)
    ms = lambda values, q: _percentile(values, q) * 1000  # noqa: E731
    print(f"the four LLM calls alone (baseline, best of 20): {baseline * 1000:.1f} ms")
    print(
        f"4-stage requirement, created -> completed ({len(totals)} runs): p50 {ms(totals, 0.5):.0f} ms, "
        f"p95 {ms(totals, 0.95):.0f} ms; ratio to the baseline {statistics.median(totals) / baseline:.1f}x"
    )
    print(f"platform overhead beyond the LLM calls: p50 {ms(overheads, 0.5):.0f} ms, p95 {ms(overheads, 0.95):.0f} ms")
    print(
        f"workspace run, request -> first output on the SSE stream: p50 {ms(firsts, 0.5):.0f} ms, "
        f"p95 {ms(firsts, 0.95):.0f} ms"
    )


if __name__ == "__main__":
    main()
