"""The example notebook (examples/python_defined_workflow.ipynb) executed headless against the live
platform, top to bottom, in a real Jupyter kernel (nbclient + ipykernel): its steps are functions of the
notebook shipped to the cluster, and its approval is decided by a second client meanwhile."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import make_admin

pytest.importorskip("nbclient", reason="the notebook test needs nbclient (the dev extra)")
nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (the dev extra)")
pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (the dev extra)")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "python_defined_workflow.ipynb"


def _decide(platform, decider: dict, stop: threading.Event, decided: list) -> None:
    """The second client: approve the notebook's request with the input its schema asks for."""
    with httpx.Client(base_url=platform.base_url, timeout=30, headers=decider) as http:
        while not stop.is_set() and not decided:
            for approval in http.get("/api/v1/approvals/pending").json().get("approvals", []):
                if approval["reason"] == "Score these rows?":
                    answer = http.post(
                        f"/api/v1/approvals/{approval['id']}/approve", json={"input": {"note": "ok from a colleague"}}
                    )
                    decided.append(answer.status_code)
            time.sleep(0.5)


def test_the_example_notebook_runs_top_to_bottom(platform, approver, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ORCHESTRATOR_URL", platform.base_url)
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", approver["Authorization"].removeprefix("Bearer "))
    monkeypatch.delenv("ORCHESTRATOR_API_KEY", raising=False)
    decider = make_admin(platform, "colleague")  # not the requester: nobody approves their own request
    stop, decided = threading.Event(), []
    thread = threading.Thread(target=_decide, args=(platform, decider, stop, decided), daemon=True)
    thread.start()
    executed = tmp_path / "executed.ipynb"
    # In a process of its own: nbclient drives the kernel through an event loop of its own, which would
    # otherwise stay behind in this test process (and break later tests' `asyncio.run`).
    script = (
        "import sys, nbformat, nbclient\n"
        "notebook = nbformat.read(sys.argv[1], as_version=4)\n"
        "nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3').execute()\n"
        "nbformat.write(notebook, sys.argv[2])\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(NOTEBOOK), str(executed)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    assert done.returncode == 0, done.stderr[-4000:]
    assert decided == [200]
    notebook = nbformat.read(executed, as_version=4)
    last = notebook.cells[-1]
    printed = "".join(output.get("text", "") for output in last.outputs if output.get("name") == "stdout")
    assert printed.strip() == "4 2 approved ok from a colleague"
