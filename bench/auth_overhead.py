"""What authentication costs per request: `GET /api/v1/users/me` with a JWT and with an API key against
the unauthenticated `GET /health`, through the platform as `orchestrator up` runs it, in one run; plus
the in-process cost of the authentication step alone (token check + revocation lookup, key lookup).

Run from the repository root: `.venv/bin/python bench/auth_overhead.py [--database-url URL] [--redis-url URL]`.
Target (issue 3): authentication costs under 1 ms per request at p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from http_load import load
from platform_process import running_platform

PASSWORD = "bench-password-123"  # noqa: S105 (a throwaway account of the benchmark)


def _credentials(base: str) -> tuple[str, str]:
    with httpx.Client(base_url=base, timeout=30) as client:
        client.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
        token = client.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
        access = token.json()["access_token"]
        key = client.post(
            "/api/v1/auth/api-keys", json={"name": "bench"}, headers={"Authorization": f"Bearer {access}"}
        )
        return access, key.json()["key"]


def http_figures(args: argparse.Namespace) -> list[tuple[str, dict]]:
    extra = {"ORCHESTRATOR_DATABASE_URL": args.database_url, "ORCHESTRATOR_REDIS_URL": args.redis_url}
    with tempfile.TemporaryDirectory() as tmp, running_platform(Path(tmp) / "platform", **extra) as (base, _):
        access, key = _credentials(base)
        options = {
            "concurrency": args.concurrency,
            "requests": args.requests,
            "duration": args.duration,
            "warmup": args.warmup,
        }
        return [
            ("GET /health (no auth)", load(f"{base}/health", **options)),
            (
                "GET /api/v1/users/me, JWT",
                load(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {access}"}, **options),
            ),
            ("GET /api/v1/users/me, API key", load(f"{base}/api/v1/users/me", headers={"X-API-Key": key}, **options)),
        ]


def in_process_figures(args: argparse.Namespace) -> dict[str, float]:
    """Median microseconds of the authentication dependency itself, without HTTP."""
    from fastapi.security import HTTPAuthorizationCredentials
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from core.settings import load_settings
    from persistence.migrate import upgrade
    from serve_app.app import create_app
    from serve_app.deps import authenticate

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = load_settings(
            root={"data_dir": tmp},
            database={"database_url": url},
            redis={"redis_url": args.redis_url},
            auth={"jwt_secret": SecretStr("b" * 48)},
        )
        app = create_app(settings)
        with TestClient(app) as client:
            access, key = _credentials_in(client)

            class FakeRequest:
                def __init__(self) -> None:
                    self.app = app
                    self.state = type("S", (), {})()
                    self.scope = {"client": ("127.0.0.1", 1), "headers": []}

            def median_us(make_call) -> float:
                async def measure() -> float:
                    for _ in range(200):
                        await make_call()
                    samples = []
                    for _ in range(2000):
                        started = time.perf_counter()
                        await make_call()
                        samples.append((time.perf_counter() - started) * 1e6)
                    return statistics.median(samples)

                return client.portal.call(measure)

            jwt_credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access)
            by_jwt = median_us(lambda: authenticate(FakeRequest(), jwt_credentials, None))
            by_key = median_us(lambda: authenticate(FakeRequest(), None, key))
            return {"JWT (decode + revocation lookup)": by_jwt, "API key (hash + key lookup)": by_key}


def _credentials_in(client) -> tuple[str, str]:
    client.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
    access = client.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}).json()
    key = client.post(
        "/api/v1/auth/api-keys", json={"name": "b"}, headers={"Authorization": f"Bearer {access['access_token']}"}
    )
    return access["access_token"], key.json()["key"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary data dir")
    parser.add_argument("--redis-url", default="", help="default: no Redis (per-replica rate limits)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()

    rows = http_figures(args)
    micro = in_process_figures(args)
    baseline = rows[0][1]
    backend = "postgres" if args.database_url.startswith("postgresql") else "sqlite"
    redis_state = "on" if args.redis_url else "off"
    print(f"\n{backend}, redis {redis_state}, {args.concurrency} connections, {os.cpu_count()} cores")
    print(f"{'request':<32} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'p50 - health':>13}")
    for name, result in rows:
        delta = result["p50_ms"] - baseline["p50_ms"]
        print(
            f"{name:<32} {result['rps']:>8.0f} {result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f} "
            f"{result['errors']:>7} {delta:>+12.2f}ms"
        )
    print("\nauthentication step alone, in process (median of 2000):")
    for name, micros in micro.items():
        print(f"  {name:<34} {micros:8.0f} µs")


if __name__ == "__main__":
    main()
