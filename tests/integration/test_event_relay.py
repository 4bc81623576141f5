"""The outbox relay against a real Redis on each real database: an unreachable Redis holds back only the
Redis stream (events still reach webhooks and live subscribers), and the stream catches up, in order,
once Redis is back."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import redis
from sqlalchemy import select

from actors import event_hub
from actors.event_hub import EventHub
from persistence.db import Database
from persistence.models import Event
from tests.conftest import make_settings


def _stored(db: Database) -> list[Event]:
    with db.session() as session:
        return list(session.scalars(select(Event).where(Event.source == "relay-test").order_by(Event.created_at)))


async def _until(check, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_redis_outage_holds_back_only_the_stream_which_catches_up_in_order(
    tmp_path: Path, db: Database, database_url: str, redis_url: str, monkeypatch
) -> None:
    monkeypatch.setattr(event_hub, "RETRY_S", 0.2)
    prefix = f"relay-test-{secrets.token_hex(4)}:"
    settings = make_settings(
        tmp_path,
        database_url,
        realtime={"event_relay_interval_s": 0.02},
        redis={"redis_url": "redis://127.0.0.1:1/0", "redis_key_prefix": prefix},
    )
    hub = EventHub(settings)  # nothing listens on port 1: Redis is unreachable
    stream = redis.Redis.from_url(redis_url)

    def emit(*numbers: int) -> None:
        with db.transaction() as session:
            session.add_all(Event(event_type="deploy.finished", source="relay-test", data={"n": n}) for n in numbers)

    async def scenario() -> list[int]:
        await hub.start()
        after = (await hub.poll(None, None, timeout_s=0))["seq"]
        emit(0, 1, 2)
        # Fanned out all the same: published, and in the live ring for WebSocket subscribers.
        await _until(lambda: all(e.published_at for e in _stored(db)) and len(_stored(db)) == 3, "the fan-out")
        live = await hub.poll(hub._epoch, after, timeout_s=0)
        assert [m["data"]["n"] for m in live["events"] if m["source"] == "relay-test"] == [0, 1, 2]
        assert all(event.streamed_at is None for event in _stored(db))
        emit(3)
        await _until(lambda: len(_stored(db)) == 4 and all(e.published_at for e in _stored(db)), "the next event")

        # Redis is back (the hub's client now reaches the test's Redis).
        hub._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        await _until(lambda: all(e.streamed_at for e in _stored(db)), "the stream's catch-up")
        emit(4)  # streamed with its batch again
        await _until(lambda: len(_stored(db)) == 5 and all(e.streamed_at for e in _stored(db)), "the new event")
        entries = await asyncio.to_thread(stream.xrange, f"{prefix}events")
        return [json_n(fields) for _, fields in entries]

    try:
        assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]  # each once, in order
    finally:
        stream.delete(f"{prefix}events")


def json_n(fields: dict[bytes, bytes]) -> int:
    return json.loads(fields[b"event"])["data"]["n"]


def test_a_commit_that_adds_events_wakes_the_relay_without_waiting_for_its_poll(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    """The relay's poll is set to 10 s: an event reaches a live subscriber well before it only because the
    commit woke the hub (Postgres: the events trigger's NOTIFY to the hub's LISTEN; SQLite: the writer's
    commit hook, which in a real process tells the hub over Ray and here calls it directly)."""
    from persistence import db as database

    settings = make_settings(tmp_path, database_url, realtime={"event_relay_interval_s": 10.0})
    hub = EventHub(settings)

    async def scenario() -> list[float]:
        await hub.start()
        loop = asyncio.get_running_loop()
        if db.is_sqlite:
            database.on_events_committed(lambda: asyncio.run_coroutine_threadsafe(hub.wake(), loop))
        try:
            await asyncio.sleep(0.5)  # the listener connected; the relay's first look done, its poll begun
            delays = []
            for n in range(3):
                after = (await hub.poll(None, None, timeout_s=0))["seq"]
                began = time.monotonic()
                await asyncio.to_thread(_emit_one, db, n)
                got = await hub.poll(hub._epoch, after, timeout_s=5.0)
                assert [e["data"] for e in got["events"] if e["source"] == "relay-test"] == [{"n": n}], got
                delays.append(time.monotonic() - began)
            return delays
        finally:
            database.on_events_committed(None)

    delays = asyncio.run(scenario())
    assert max(delays) < 2.0, delays  # not the 10 s poll


def _emit_one(db: Database, n: int) -> None:
    with db.transaction() as session:
        session.add(Event(event_type="deploy.finished", source="relay-test", data={"n": n}))
