"""Live events and webhooks through the platform as `orchestrator up` runs it, in one run:

1. event fan-out latency: 100 WebSocket subscribers (one asyncio client each) on the `events` channel;
   each published event is timed from the server's own stamp of the change (the event's `timestamp`,
   written in the transaction that made it) to its receipt on every subscriber; p50/p99 over all
   (event, subscriber) pairs. The request's own round trip is shown beside it as the baseline;
2. webhook deliveries/s: `--webhook-events` events written to the outbox in one transaction, then timed
   from that commit to the last signed delivery received by a local receiver (the relay, the delivery
   rows and the POSTs, all included). The receiver's own ceiling (plain POSTs from this process, same
   run) is the baseline.

Run from the repository root: `.venv/bin/python bench/realtime.py [--database-url URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_process import free_port, running_platform
from tasks import PASSWORD, _percentile, scratch_database

SECRET = "bench-webhook-secret"  # noqa: S105 (the benchmark's own receiver)


class Receiver(BaseHTTPRequestHandler):
    """Counts deliveries whose signature verifies, and when the last one arrived. Keep-alive (HTTP/1.1), as
    a production receiver behind any web server would be."""

    protocol_version = "HTTP/1.1"

    received: set[str] = set()
    bad = 0
    last_at = 0.0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        with Receiver.lock:
            if hmac.compare_digest(expected, self.headers.get("X-Orchestrator-Signature", "")):
                Receiver.received.add(self.headers.get("X-Orchestrator-Event-ID", ""))
            else:
                Receiver.bad += 1
            Receiver.last_at = time.time()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def fan_out(base: str, token: str, subscribers: int, events: int) -> tuple[list[float], list[float]]:
    url = base.replace("http://", "ws://") + "/api/v1/ws"
    connections = []
    for _ in range(subscribers):
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)
        json.loads(await ws.recv())  # authenticated
        await ws.send(json.dumps({"type": "subscribe", "channel": "events", "filters": {"events": ["bench.*"]}}))
        json.loads(await ws.recv())  # subscribed
        connections.append(ws)
    latencies: list[float] = []

    async def listen(ws) -> None:
        got = 0
        while got < events:
            message = json.loads(await ws.recv())
            if message["type"] == "bench.tick":
                latencies.append((time.time() - _stamp(message["timestamp"])) * 1000)
                got += 1

    listeners = [asyncio.create_task(listen(ws)) for ws in connections]
    round_trips = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(events):
            began = time.perf_counter()
            response = await http.post("/api/v1/events/publish", json={"event_type": "bench.tick", "payload": {"i": i}})
            round_trips.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 201, response.text
            await asyncio.sleep(0.1)
    await asyncio.wait_for(asyncio.gather(*listeners), 120)
    for ws in connections:
        await ws.close()
    return latencies, round_trips


def receiver_ceiling(url: str, posts: int) -> float:
    began = time.perf_counter()
    with httpx.Client() as client:
        for _ in range(posts):
            client.post(url, content=b"{}", headers={"X-Orchestrator-Signature": "sha256=0"})
    return posts / (time.perf_counter() - began)


def webhook_throughput(http: httpx.Client, headers: dict, database_url: str, data_dir: Path, count: int) -> tuple:
    from persistence.db import Database
    from persistence.models import User
    from services import events

    ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 drops concurrent connects
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    ceiling = receiver_ceiling(url, 500)
    Receiver.received.clear()
    Receiver.bad = 0
    created = http.post("/api/v1/webhooks", headers=headers, json={"url": url, "events": ["bench.*"], "secret": SECRET})
    assert created.status_code == 201, created.text

    db = Database(database_url or f"sqlite:///{data_dir / 'orchestrator.db'}", pool_size=1, max_overflow=0)
    with db.session() as session:
        user = session.query(User).filter(User.email == "bench@example.com").one()
    owner = type("Owner", (), {"owner_type": "user", "owner_id": user.id})()
    with db.transaction() as session:
        for i in range(count):
            events.emit(session, "bench.webhook", {"i": i}, source="bench", owner=owner)
    committed = time.time()
    deadline = time.monotonic() + 300
    while len(Receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    db.dispose()
    server.shutdown()
    delivered = len(Receiver.received)
    return delivered, Receiver.bad, delivered / max(1e-9, Receiver.last_at - committed), ceiling


def run(args: argparse.Namespace) -> None:
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "platform"
        extra = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "ORCHESTRATOR_API_REPLICAS": str(args.replicas),
        }
        with running_platform(data_dir, **extra) as (base, _), httpx.Client(base_url=base, timeout=120) as http:
            http.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            token = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
            access = token.json()["access_token"]
            headers = {"Authorization": f"Bearer {access}"}

            latencies, round_trips = asyncio.run(fan_out(base, access, args.subscribers, args.events))
            delivered, bad, rate, ceiling = webhook_throughput(
                http, headers, database_url, data_dir, args.webhook_events
            )

    print(f"fan-out to {args.subscribers} WebSocket subscribers, {args.events} events, {args.replicas} API replica(s):")
    print(
        f"  change -> receipt  p50 {_percentile(latencies, 0.5):.1f} ms  p99 {_percentile(latencies, 0.99):.1f} ms"
        f"  ({len(latencies)} receipts)"
    )
    print(f"  baseline: POST /events/publish round trip p50 {_percentile(round_trips, 0.5):.1f} ms")
    print(f"webhooks: {delivered}/{args.webhook_events} delivered, {bad} bad signatures")
    print(
        f"  {rate:.0f} deliveries/s (outbox commit -> last receipt); receiver ceiling {ceiling:.0f} POSTs/s "
        f"from one client = {rate / ceiling:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: the platform's embedded SQLite")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--webhook-events", type=int, default=2000)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
