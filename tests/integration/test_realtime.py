"""The WebSocket API in-process on each real database, fed by a real `EventHub` (the actor's class, run in
the app's event loop instead of as an actor): authentication, subscriptions and filters, tenant isolation,
errors in the envelope, ping/pong, and the hub's relay (outbox → live events, marked published)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from actors.event_hub import EventHub
from persistence.db import Database
from serve_app.app import create_app
from serve_app.realtime import Connection, EventFeed, Outgoing
from services.subscriptions import Viewer
from tests.conftest import make_settings
from tests.integration.test_agents import _user

WS = "/api/v1/ws"


@pytest.fixture
def live(tmp_path: Path, db: Database, database_url: str) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        database_url,
        realtime={"ws_auth_timeout_s": 1.0, "ws_ping_interval_s": 0.5, "event_relay_interval_s": 0.02},
    )
    app = create_app(settings)
    hub = EventHub(settings)
    app.state.event_feed = EventFeed(hub.poll)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


# Pings, and the announcements of the accounts a test has just made (they may be relayed after it connects).
SKIPPED = ("ping", "user.registered", "agent.created")


def _next_event(ws: Any, *, skip: tuple[str, ...] = SKIPPED) -> dict[str, Any]:
    while True:
        message = ws.receive_json()
        if message["type"] not in skip:
            return message


def test_authentication_by_first_message_or_header_and_refusals(live: TestClient) -> None:
    alice = _user(live, "alice")
    with live.websocket_connect(WS) as ws:
        ws.send_json({"type": "auth", "token": _token(alice)})
        hello = ws.receive_json()
        assert hello["type"] == "authenticated" and hello["data"]["user_id"]
    with live.websocket_connect("/ws", headers=alice) as ws:  # the alias, with a bearer header
        assert ws.receive_json()["type"] == "authenticated"
    with live.websocket_connect(WS) as ws:
        ws.send_json({"type": "auth", "token": "not-a-token"})
        error = ws.receive_json()
        assert error["type"] == "error" and error["error"]["code"] == "AUTHENTICATION_ERROR"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4401
    with live.websocket_connect(WS) as ws:  # says nothing: closed after the auth timeout
        assert ws.receive_json()["error"]["code"] == "AUTHENTICATION_ERROR"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4401


def test_bad_messages_get_the_error_envelope_and_the_connection_stays(live: TestClient) -> None:
    _user(live, "admin")  # the first account is the platform admin
    alice = _user(live, "alice")
    with live.websocket_connect(WS, headers=alice) as ws:
        ws.receive_json()
        ws.send_text("not json")
        assert _next_event(ws)["error"]["code"] == "VALIDATION_ERROR"
        ws.send_json({"type": "subscribe", "channel": "weather"})
        error = _next_event(ws)["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "channel"
        ws.send_json({"type": "subscribe", "channel": "tasks", "filters": {"colour": "red"}})
        assert _next_event(ws)["error"]["details"][0]["field"] == "filters.colour"
        ws.send_json({"type": "subscribe", "channel": "system"})
        assert _next_event(ws)["error"]["code"] == "AUTHORIZATION_ERROR"
        ws.send_json({"type": "unsubscribe", "channel": "tasks"})
        assert _next_event(ws)["error"]["details"][0]["field"] == "channel"
        ws.send_json({"type": "ping"})
        assert _next_event(ws)["type"] == "pong"
        # Idle: the server pings (every 0.5 s here).
        assert ws.receive_json()["type"] == "ping"


def _relayed(db: Database) -> None:
    """Wait (bounded) until the hub has relayed every outbox event."""
    from sqlalchemy import select

    from persistence.models import Event

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with db.session() as session:
            if not session.scalars(select(Event.id).where(Event.published_at.is_(None)).limit(1)).all():
                return
        time.sleep(0.05)
    raise AssertionError("the outbox was not relayed within 5 s")


def test_subscribers_receive_their_own_matching_events_in_order_and_no_other_tenants(
    live: TestClient, db: Database
) -> None:
    _user(live, "admin")
    alice, bob = _user(live, "alice"), _user(live, "bob")
    project = live.post("/api/v1/projects", headers=alice, json={"name": "Apollo"}).json()
    with live.websocket_connect(WS, headers=alice) as alice_ws, live.websocket_connect(WS, headers=bob) as bob_ws:
        alice_ws.receive_json(), bob_ws.receive_json()
        alice_ws.send_json({"type": "subscribe", "channel": "tasks", "filters": {"projectId": project["id"]}})
        subscribed = _next_event(alice_ws)
        assert subscribed == {
            "type": "subscribed",
            "data": {"channel": "tasks", "filters": {"project_id": [project["id"]]}},
        }
        bob_ws.send_json({"type": "subscribe", "channel": "events"})
        assert _next_event(bob_ws)["type"] == "subscribed"

        live.post("/api/v1/tasks", headers=alice, json={"type": "bugfix", "title": "elsewhere"})
        created = [
            live.post(
                "/api/v1/tasks", headers=alice, json={"type": "bugfix", "title": f"t{i}", "project_id": project["id"]}
            ).json()
            for i in range(3)
        ]
        live.patch(f"/api/v1/tasks/{created[0]['id']}", headers=alice, json={"title": "renamed"})
        live.post("/api/v1/events/publish", headers=bob, json={"event_type": "bob.hello", "payload": {"n": 1}})

        received = [_next_event(alice_ws) for _ in range(4)]
        assert [m["type"] for m in received] == ["task.created"] * 3 + ["task.updated"]
        assert [m["data"]["task_id"] for m in received[:3]] == [task["id"] for task in created]
        assert all(
            m["data"]["project_id"] == project["id"] and m["id"] and m["timestamp"].endswith("Z") for m in received
        )
        # Bob's `events` channel carries everything he may see: his own event, none of Alice's.
        bob_event = _next_event(bob_ws)
        assert bob_event["type"] == "bob.hello" and bob_event["data"] == {"n": 1}
        bob_ws.send_json({"type": "ping"})
        assert _next_event(bob_ws)["type"] == "pong"  # nothing of Alice's was queued before it

        alice_ws.send_json({"type": "unsubscribe", "channel": "tasks"})
        assert _next_event(alice_ws)["type"] == "unsubscribed"
        live.post("/api/v1/tasks", headers=alice, json={"type": "bugfix", "project_id": project["id"]})
        _relayed(db)  # relayed, so it would be queued for Alice before her pong if she were still subscribed
        alice_ws.send_json({"type": "ping"})
        assert _next_event(alice_ws)["type"] == "pong"


def test_mentions_push_a_notification_to_the_mentioned_user(live: TestClient) -> None:
    admin = _user(live, "admin")  # may see Alice's task, so may mention her on it
    alice = _user(live, "alice")
    me = live.get("/api/v1/users/me", headers=alice).json()
    task = live.post("/api/v1/tasks", headers=alice, json={"type": "bugfix"}).json()
    with live.websocket_connect(WS, headers=alice) as ws:
        ws.receive_json()
        ws.send_json({"type": "subscribe", "channel": "notifications"})
        _next_event(ws)
        comment = live.post(
            f"/api/v1/tasks/{task['id']}/comments",
            headers=admin,
            json={"content": "see this", "mentions": [me["email"]]},
        )
        assert comment.status_code == 201, comment.text
        pushed = _next_event(ws)
    assert pushed["type"] == "notification.created" and pushed["data"]["type"] == "mention"
    listed = live.get("/api/v1/users/me/notifications", headers=alice).json()["notifications"]
    assert pushed["data"]["id"] == listed[0]["id"]


def test_the_relay_marks_events_published(live: TestClient, db: Database) -> None:
    alice = _user(live, "alice")
    with live.websocket_connect(WS, headers=alice) as ws:  # a connection starts the hub's loops
        ws.receive_json()
        live.post("/api/v1/events/publish", headers=alice, json={"event_type": "relay.check"})
        _relayed(db)


def test_a_consumer_over_its_buffer_is_marked_for_disconnection() -> None:
    connection = Connection(Viewer("u1"), buffer=2)
    from services.subscriptions import parse

    connection.subscriptions["events"] = parse("events", None)
    mine = {"type": "x.y", "id": "1", "data": {}, "owner": "user:u1", "timestamp": "t"}
    connection.offer(Outgoing({**mine, "owner": "user:u2"}))  # not theirs: not queued
    assert connection.queue.qsize() == 0
    connection.offer(Outgoing(mine)), connection.offer(Outgoing(mine))
    assert not connection.overflowed.is_set()
    connection.offer(Outgoing(mine))
    assert connection.overflowed.is_set() and connection.queue.qsize() == 2


@pytest.fixture
def served(tmp_path: Path, db: Database, database_url: str) -> Iterator[str]:
    """The app under a real uvicorn server (a real socket, so a client that stops reading pushes back on
    the server's sends), fed by an in-process EventHub."""
    import threading

    import uvicorn

    from tests.conftest import free_port

    settings = make_settings(tmp_path, database_url, realtime={"ws_buffer_messages": 5, "event_relay_interval_s": 0.02})
    app = create_app(settings)
    app.state.event_feed = EventFeed(EventHub(settings).poll)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


def _raw_client(address: str, headers: dict[str, str]) -> tuple[socket.socket, ClientProtocol]:
    """A WebSocket client that reads only when told to: a socket with a small receive buffer and websockets'
    sans-I/O protocol (the library clients read into memory without bound, so never push back)."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect((host, int(port)))
    protocol = ClientProtocol(parse_uri(f"ws://{address}/api/v1/ws"), max_size=None)
    request = protocol.connect()
    request.headers.update(headers)
    protocol.send_request(request)
    sock.sendall(b"".join(protocol.data_to_send()))
    while not protocol.events_received() and protocol.handshake_exc is None:
        protocol.receive_data(sock.recv(65536))
    return sock, protocol


def _read_until_close(sock: socket.socket, protocol: ClientProtocol, timeout_s: float = 10) -> Close | None:
    """Read what the server sent a `_raw_client` (its backlog) up to the close frame; None if the server
    ended the connection without one or sent nothing more within `timeout_s`."""
    sock.settimeout(timeout_s)
    while True:
        try:
            data = sock.recv(1 << 20)
        except OSError:  # a timeout, or a reset
            return None
        if not data:
            return None
        protocol.receive_data(data)
        for frame in protocol.events_received():
            if isinstance(frame, Frame) and frame.opcode == Opcode.CLOSE:
                return Close.parse(frame.data)


def test_a_consumer_that_stops_reading_is_closed_with_4008_and_others_continue(served: str) -> None:
    import httpx
    from websockets.sync.client import connect

    with httpx.Client(base_url=f"http://{served}", timeout=30) as http:
        headers = _user(http, "reader")  # type: ignore[arg-type]
        sock, slow = _raw_client(served, headers)
        slow.send_text(b'{"type": "subscribe", "channel": "events", "filters": {"events": ["load.*"]}}')
        sock.sendall(b"".join(slow.data_to_send()))
        with connect(f"ws://{served}/ws", additional_headers=headers, max_size=None) as healthy:
            healthy.recv(timeout=10)
            # Only the load: the account's own user.registered may be relayed after the connections open.
            healthy.send('{"type": "subscribe", "channel": "events", "filters": {"events": ["load.*"]}}')
            healthy.recv(timeout=10)
            blob = "x" * 500_000
            # ~20 MB: more than the socket buffers (the server's send buffer, our 32 KB) and the buffer of 5.
            for i in range(40):
                published = http.post(
                    "/api/v1/events/publish",
                    headers=headers,
                    json={"event_type": "load.test", "payload": {"i": i, "blob": blob}},
                )
                assert published.status_code == 201, published.text
                assert json.loads(healthy.recv(timeout=10))["data"]["i"] == i  # the others are not held back
        # Now read what the server sent the slow client: its backlog, then the close frame.
        close = _read_until_close(sock, slow)
        sock.close()
    assert close is not None, "the server did not close the slow connection"
    assert close.code == 4008 and "slow consumer" in close.reason


def test_a_revoked_credential_closes_the_connection(live: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import serve_app.routes.ws as ws_route

    monkeypatch.setattr(ws_route, "VIEWER_REFRESH_S", 0.3)
    alice = _user(live, "alice")
    with live.websocket_connect(WS, headers=alice) as ws:
        ws.receive_json()
        assert live.post("/api/v1/auth/logout", headers=alice).status_code == 200
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
    assert closed.value.code == 4401


def test_a_scoped_key_receives_only_the_resources_its_scopes_may_read(live: TestClient) -> None:
    alice = _user(live, "alice")
    key = live.post("/api/v1/auth/api-keys", headers=alice, json={"name": "feed", "permissions": ["events:read"]})
    assert key.status_code == 201, key.text
    with live.websocket_connect(WS, headers={"X-API-Key": key.json()["key"]}) as ws:
        ws.receive_json()
        ws.send_json({"type": "subscribe", "channel": "tasks"})
        assert _next_event(ws)["error"]["code"] == "AUTHORIZATION_ERROR"
        ws.send_json({"type": "subscribe", "channel": "events"})
        assert _next_event(ws)["type"] == "subscribed"
        live.post("/api/v1/tasks", headers=alice, json={"type": "bugfix"})  # task.created: needs tasks:read
        live.post("/api/v1/events/publish", headers=alice, json={"event_type": "feed.tick"})
        assert _next_event(ws)["type"] == "feed.tick"


def test_platform_event_names_cannot_be_published_and_registration_and_agents_emit_theirs(live: TestClient) -> None:
    alice = _user(live, "alice")
    for name in ("system.health", "notification.created", "webhook.test"):
        response = live.post("/api/v1/events/publish", headers=alice, json={"event_type": name})
        assert response.status_code == 422, (name, response.text)
    live.post("/api/v1/agents", headers=alice, json={"name": "Bot"})
    types = {event["event_type"] for event in live.get("/api/v1/events", headers=alice).json()["events"]}
    assert {"user.registered", "agent.created"} <= types
