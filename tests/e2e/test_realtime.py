"""Live events on the live platform, over real WebSocket connections through Serve's proxy (two API
replicas, one `EventHub` actor): a run's updates in order, filters and tenant isolation across replicas,
the slow-consumer rule, and the `/dashboard/real-time` SSE resumed with `Last-Event-ID`."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.conftest import free_port
from tests.e2e.conftest import E2E_WS_BUFFER
from tests.e2e.test_agent_actors import _eventually
from tests.e2e.test_workflow_runs import FIX, _ended, _execute, _workflow
from tests.integration.test_realtime import _raw_client, _read_until_close


def _ws(platform, headers: dict[str, str] | None = None, path: str = "/api/v1/ws") -> ClientConnection:
    url = platform.base_url.replace("http://", "ws://") + path
    ws = connect(url, additional_headers=headers or {}, open_timeout=30, max_size=None)
    if headers:
        assert _receive(ws)["type"] == "authenticated"
    return ws


def _receive(ws: ClientConnection, timeout_s: float = 20) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=timeout_s))
        # Pings, and new accounts' announcements (relayed perhaps after the test connected).
        if message["type"] not in ("ping", "user.registered", "agent.created"):
            return message


def _subscribe(ws: ClientConnection, channel: str, **filters: Any) -> None:
    ws.send(json.dumps({"type": "subscribe", "channel": channel, "filters": filters}))
    assert _receive(ws)["type"] == "subscribed"


def _account(http: httpx.Client) -> dict[str, str]:
    email = f"live-{secrets.token_hex(4)}@example.com"
    assert http.post("/api/v1/auth/register", json={"email": email, "password": "correct horse 1"}).status_code == 201
    token = http.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 1"}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_a_runs_updates_arrive_in_order(http, owner, platform) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "a", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "b", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    with _ws(platform) as ws:
        ws.send(json.dumps({"type": "auth", "token": owner["Authorization"].split()[1]}))  # first-message auth
        assert _receive(ws)["type"] == "authenticated"
        _subscribe(ws, "executions", workflowId=workflow["id"])
        run_id = _execute(http, owner, workflow, input_data={"value": 1})
        received = []
        while not received or received[-1]["type"] not in ("execution.completed", "execution.failed"):
            received.append(_receive(ws))
    assert _ended(http, owner, run_id)["status"] == "completed"
    assert {m["data"]["execution_id"] for m in received} == {run_id}
    assert received[0]["type"] == "execution.started" and received[-1]["type"] == "execution.completed"
    progress = [m["data"]["progress"] for m in received]
    assert progress == sorted(progress) and progress[-1] == 1.0, progress
    steps = [m["data"]["current_step"] for m in received if m["type"] == "execution.updated"]
    # current_step names the node the run is at after each recorded step, in graph order.
    assert [s for i, s in enumerate(steps) if s and s not in steps[:i]] == ["a", "b", "out"], steps
    assert all(m["correlation_id"] for m in received)


def test_subscribers_on_both_replicas_get_what_their_filters_and_tenancy_allow(http, owner, platform) -> None:
    other = _account(http)
    project = http.post("/api/v1/projects", headers=owner, json={"name": "Live"}).json()
    # Several connections each: Serve spreads them over the two replicas.
    mine = [_ws(platform, owner, "/ws" if i % 2 else "/api/v1/ws") for i in range(4)]
    theirs = [_ws(platform, other) for _ in range(2)]
    try:
        for ws in mine:
            _subscribe(ws, "tasks", project_id=project["id"])
        for ws in theirs:
            _subscribe(ws, "events")
        http.post("/api/v1/tasks", headers=owner, json={"type": "bugfix", "title": "outside the project"})
        task = http.post("/api/v1/tasks", headers=owner, json={"type": "bugfix", "project_id": project["id"]}).json()
        http.post("/api/v1/events/publish", headers=other, json={"event_type": "other.hello"})
        for ws in mine:
            message = _receive(ws)
            assert message["type"] == "task.created" and message["data"]["task_id"] == task["id"], message
        for ws in theirs:  # their own event, and nothing of the owner's before it
            assert _receive(ws)["type"] == "other.hello"
    finally:
        for ws in mine + theirs:
            ws.close()


def test_a_client_that_stops_reading_is_closed_with_4008_and_does_not_hold_the_others_back(
    http, owner, platform
) -> None:
    """Behind Serve's HAProxy ingress a replica serves its WebSockets on its own uvicorn server (cluster/
    runtime.py, HA_PROXY_FLAGS), so a client that stops reading pushes back on the replica once the sockets
    between them are full, its queue fills and the replica closes it."""
    sock, slow = _raw_client(platform.base_url.removeprefix("http://"), owner)
    slow.send_text(json.dumps({"type": "subscribe", "channel": "events", "filters": {"events": ["load.*"]}}).encode())
    sock.sendall(b"".join(slow.data_to_send()))
    healthy = _ws(platform, owner)
    _subscribe(healthy, "events", events=["load.*"])
    blob = "x" * 800_000  # an event just under the API's 1 MB request limit
    # Enough to fill every socket buffer between the replica and the client at the largest the kernel lets
    # them grow, then the connection's queue. Within ~40 s: the replica's uvicorn ends a connection that
    # does not answer its pings (20 s apart, 20 s to answer) with 1011.
    count = (_largest_socket_buffers() + (E2E_WS_BUFFER + 2) * len(blob)) // len(blob)
    try:
        for i in range(count):
            payload = {"i": i, "blob": blob}
            published = http.post(
                "/api/v1/events/publish", headers=owner, json={"event_type": "load.test", "payload": payload}
            )
            assert published.status_code == 201, published.text
            assert _receive(healthy)["data"]["i"] == i  # the others are not held back
    finally:
        healthy.close()
    close = _read_until_close(sock, slow)  # its backlog, then the close frame
    sock.close()
    assert close is not None, "the slow connection was not closed"
    assert close.code == 4008 and "slow consumer" in close.reason, close


def _largest_socket_buffers() -> int:
    """Bytes the kernel may hold between a replica and a client that does not read, through HAProxy: the
    replica's send buffer, HAProxy's receive and send buffers (Linux's autotuning maxima)."""
    try:
        receive = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
        send = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        receive, send = 6 << 20, 4 << 20  # Linux's defaults
    return receive + 2 * send


def test_the_dashboard_counts_the_runs_the_cluster_ran(http, owner) -> None:
    """Runs executed by run actors (their own processes, writing through the store) are in the dashboard's
    figures at once: the rollups are kept in the transactions that change the runs."""
    good = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    bad = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "boom", "type": "python", "config": {"function": f"{FIX}:broken"}},
        {"id": "out", "type": "output"},
    )
    ids = [_execute(http, owner, good, input_data={"value": n}) for n in range(3)]
    ids.append(_execute(http, owner, bad, input_data={}))
    runs = [_ended(http, owner, run_id) for run_id in ids]
    assert [run["status"] for run in runs] == ["completed"] * 3 + ["failed"]

    body = http.get("/api/v1/dashboard/metrics", params={"timeframe": "24h"}, headers=owner).json()
    assert body["overview"]["executions"]["value"] == 4 and body["overview"]["active_agents"]["value"] == 2
    trends = body["charts"]["execution_trends"]
    assert sum(point["total"] for point in trends) == 4 and sum(point["failed"] for point in trends) == 1
    performance = body["charts"]["performance"]
    assert performance["finished_executions"] == 4 and performance["success_rate"] == 0.75
    durations = [run["duration"] for run in runs]
    assert performance["max_duration_ms"] == max(durations)
    assert performance["average_duration_ms"] == round(sum(durations) / 4, 1)
    assert {run["id"] for run in body["recent_activity"]} == set(ids)


def test_the_dashboards_sse_resumes_from_last_event_id(http, owner) -> None:
    with http.stream("GET", "/api/v1/dashboard/real-time", headers=owner) as stream:
        first = _sse_ids(stream, 1)
    with http.stream("GET", "/api/v1/dashboard/real-time", headers={**owner, "Last-Event-ID": "41"}) as stream:
        resumed = _sse_ids(stream, 1)
    assert first == [1] and resumed == [42]


def _sse_ids(stream: httpx.Response, count: int) -> list[int]:
    ids: list[int] = []
    deadline = time.monotonic() + 30
    for line in stream.iter_lines():
        if line.startswith("id:"):
            ids.append(int(line.split(":", 1)[1]))
            if len(ids) == count or time.monotonic() > deadline:
                break
    return ids


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that checks each signature as docs/webhooks.md shows and records event ids."""

    secret = ""
    received: ClassVar[list[str]] = []
    bad_signatures = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, self.headers.get("X-Orchestrator-Signature", "")):
            assert json.loads(body)["id"] == self.headers["X-Orchestrator-Event-ID"]
            type(self).received.append(self.headers["X-Orchestrator-Event-ID"])
        else:
            type(self).bad_signatures += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_retry_while_the_receiver_is_down_and_deliver_every_event_after(http, owner) -> None:
    port = free_port()
    _Receiver.secret, _Receiver.received, _Receiver.bad_signatures = "e2e-webhook-secret-1", [], 0
    hook = http.post(
        "/api/v1/webhooks",
        headers=owner,
        json={"url": f"http://127.0.0.1:{port}/hook", "events": ["order.*"], "secret": _Receiver.secret},
    )
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    # Down: nothing listens on the port yet.
    published = [
        http.post(
            "/api/v1/events/publish", headers=owner, json={"event_type": "order.placed", "payload": {"n": i}}
        ).json()["event"]["id"]
        for i in range(5)
    ]

    def deliveries() -> list[dict]:
        return http.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=owner, params={"limit": 100}).json()[
            "deliveries"
        ]

    _eventually(
        lambda: len(deliveries()) == 5 and all(d["status"] == "failed" and d["attempts"] >= 2 for d in deliveries()),
        timeout_s=30,
        what="every delivery failed and retried while the receiver is down",
    )
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _eventually(
            lambda: all(d["status"] == "delivered" for d in deliveries()),
            timeout_s=30,
            what="every delivery made once the receiver is back",
        )
    finally:
        server.shutdown()
    assert sorted(set(_Receiver.received)) == sorted(published) and _Receiver.bad_signatures == 0
